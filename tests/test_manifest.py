"""The typed manifest: docs/manifest.md and the dataclasses name the same fields, the JSON is
written exactly as read (order and optional keys included), foreign or damaged files read as
None, and the scene anchor is taken only from a render of the expected key."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import types
import typing
from pathlib import Path

import numpy as np

from keyrender.core.jobs import ShotJob
from keyrender.outputs.manifest import Attempt, CharacterScore, is_done, Manifest, scene_anchor_path, Score
from keyrender.outputs.staging import written_by_keyrender

DOC = Path(__file__).resolve().parents[1] / "docs" / "manifest.md"


def _dataclass_of(tp) -> type | None:
    """The dataclass inside `tp` (X, X | None, list[X]), and whether it is a list."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _field_paths(cls, prefix: str = "") -> set[str]:
    paths = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        paths.add(path)
        tp = hints[f.name]
        inner = _dataclass_of(tp)
        if inner is not None:
            is_list = typing.get_origin(tp) is list
            paths |= _field_paths(inner, path + ("[]." if is_list else "."))
    return paths


def _documented() -> dict[str, str]:
    """Field path -> the text of its table row (first column split into names, `.x` shorthand
    expanded against the row's first name, a trailing [] dropped)."""
    rows = {}
    fields_table = DOC.read_text().split("\n## ")[0]   # the sections after it (the cache key) are not fields
    for line in fields_table.splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        names = re.findall(r"`([^`]+)`", first)
        base = names[0]
        for n in names:
            if n.startswith("."):
                n = base.rsplit(".", 1)[0] + n
            rows[n.removesuffix("[]")] = line
    return rows


def test_every_documented_field_is_in_the_dataclasses_and_back():
    fields = _field_paths(Manifest)
    documented = _documented()
    assert set(documented) - fields == set(), "documented but not in manifest.Manifest"

    def covered(path: str) -> bool:
        if path in documented or any(d.startswith(path + ".") or d.startswith(path + "[].") for d in documented):
            return True
        # a sub-field described in its parent's row: `identity.judge` names `model`, `metric`...
        parent, _, leaf = path.rpartition(".")
        parent = parent.removesuffix("[]")
        return parent in documented and f"`{leaf}`" in documented[parent]

    assert {p for p in fields if not covered(p)} == set(), "in manifest.Manifest but not documented"
    # the table must not be trivially satisfied: the newer fields are rows of their own
    for p in ("identity.judge", "identity.conditioning_model", "interpolation.fallback", "interpolation.options"):
        assert p in documented


def test_the_documented_score_is_the_score_dataclass():
    block = re.search(r"```json\n(.*?)```", DOC.read_text(), re.S).group(1)
    score = json.loads(block)
    assert set(score) == {f.name for f in dataclasses.fields(Score)}
    (character,) = score["characters"].values()
    assert set(character) == {f.name for f in dataclasses.fields(CharacterScore)}


def _score(sim: float, passed: bool) -> dict:
    return {"passed": passed, "margin": round(sim - 0.5, 3),
            "characters": {"eileen": {"found": True, "similarity": sim, "threshold": 0.5, "passed": passed}}}


SAMPLE = {
    "schema": "keyrender.manifest/1", "shot": "1A", "scene": "1", "status": "done", "flagged": True,
    "cache_key": "0" * 32,
    "inputs": {"row": {"shot": "1A", "prompt": "p"}, "line": 2, "prompt": "p", "negative_prompt": None,
               "characters": ["eileen"], "preset": "tiny", "seed": 7, "notes": None},
    "video": {"path": "video.mp4", "frames": 12, "fps": "24000/1001", "width": 64, "height": 64,
              "codec": "h264", "pix_fmt": "yuv420p"},
    "keyframes": [
        {"index": 0, "frame": 0, "time": 0.0, "path": "keyframes/kf000_f00000.png", "source": "generated",
         "prompt": "p", "seed": 11, "identity": {"attempts": [{"attempt": 0, "seed": 11, **_score(0.3, False)},
                                                              {"attempt": 1, "seed": 12, "identity_strength": 0.9,
                                                               **_score(0.7, True)}],
                                                 "final": _score(0.7, True), "chosen_attempt": 1}},
        {"index": None, "frame": 5, "time": 0.2085, "path": "keyframes/repair_f00005.png", "source": "repair"},
        {"index": 1, "frame": 11, "time": 0.4587, "path": "keyframes/kf001_f00011.png", "source": "storyboard",
         "prompt": "p", "seed": None},
    ],
    "interpolation": {"backend": "flow", "options": {"hedge": 0.25, "camera_motion": False, "hedge_from": "shot",
                                                     "applied": False, "why_not": "used as built"},
                      "spans": [{"from": 0, "to": 11, "depth": 0, "mode": "cut", "max_diff": 3}],
                      "fallback": None, "inbetweens": None},
    "identity": {"checked": True, "why_not": None,
                 "judge": {"model": "dlib:x", "metric": "euclidean", "similarity": "1 - distance"},
                 "conditioning_model": "buffalo_l", "characters": ["eileen"], "thresholds": {"eileen": 0.5},
                 "check_every": 2, "budget": {"generations": 12, "spent": 3},
                 "repairs": [{"frame": 5, "depth": 0, "reason": "eileen similarity 0.1 < 0.5", "before": _score(0.1, False),
                              "attempts": [{"attempt": 0, "seed": 99, **_score(0.2, False)}], "result": "failed",
                              "stopped": "shot budget spent"}],
                 "flagged_frames": [5], "flag_reason": "eileen under the threshold in 1 frame (lowest 0.200 < 0.500)",
                 "wrong_person": [], "checks": {"embedded": 2, "followed": 0},
                 "frames": {"0": _score(0.7, True), "5": _score(0.2, False)}},
    "timings": {"keyframes_s": 1.0, "total_s": 2.0},
    "warnings": ["w"],
    "files": [{"path": "video.mp4", "bytes": 3, "sha256": "ab"}],
}


def test_json_round_trip_is_exact():
    m = Manifest.from_dict(copy.deepcopy(SAMPLE))
    assert json.dumps(m.to_json()) == json.dumps(SAMPLE)          # same keys, same order
    assert m.identity.judge.metric == "euclidean" and m.identity.budget.spent == 3
    assert m.interpolation.options.why_not == "used as built"
    assert [s.mode for s in m.interpolation.span_records()] == ["cut"] and m.interpolation.span_records()[0].suspect
    (repair,) = m.identity.repair_records()
    assert repair.stopped == "shot budget spent" and isinstance(repair.attempts[0], Attempt)
    assert repair.attempts[0].seed == 99 and repair.attempts[0].characters["eileen"].similarity == 0.2
    kf = m.keyframes[0]
    assert kf.chosen_attempt == 1 and kf.final_score().passed and len(kf.attempts()) == 2
    assert m.identity.scores()[5].why() == "eileen 0.200 < 0.500"
    # a manifest written without the optional why_not keeps it out
    applied = copy.deepcopy(SAMPLE)
    del applied["interpolation"]["options"]["why_not"]
    assert json.dumps(Manifest.from_dict(copy.deepcopy(applied)).to_json()) == json.dumps(applied)


def test_read_refuses_foreign_and_damaged_manifests(tmp_path):
    folder = tmp_path / "1A"
    folder.mkdir()
    assert Manifest.read(folder) is None
    (folder / "manifest.json").write_text(json.dumps({**SAMPLE, "schema": "other/1"}))
    assert Manifest.read(folder) is None and not written_by_keyrender(folder)
    (folder / "manifest.json").write_text(json.dumps(SAMPLE)[:300])
    assert Manifest.read(folder) is None and written_by_keyrender(folder)  # ours, damaged: rendered again
    (folder / "manifest.json").write_text(json.dumps({k: v for k, v in SAMPLE.items() if k != "shot"}))
    assert Manifest.read(folder) is None
    m = Manifest.from_dict(copy.deepcopy(SAMPLE))
    m.files = []
    m.write(folder)
    assert Manifest.read(folder).shot == "1A"
    assert is_done(folder, "0" * 32) and not is_done(folder, "1" * 32)


def test_scene_anchor_only_from_a_render_of_the_expected_key(tmp_path):
    from keyrender.outputs.media import load_image, save_image

    first = tmp_path / "1A"
    (first / "keyframes").mkdir(parents=True)
    image = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    save_image(first / "keyframes" / "kf000_f00000.png", image)
    m = Manifest.from_dict(copy.deepcopy(SAMPLE))
    m.keyframes[0].path = "keyframes/kf000_f00000.png"
    m.write(first)
    shot = types.SimpleNamespace(id="1B")
    job = ShotJob(shot=shot, scene=None, out_dir=tmp_path / "1B", width=24, height=16, cache_key="k", done=False,
                  first_in_scene=False, anchor_from=first, anchor_key="0" * 32)
    path = scene_anchor_path(job)
    assert path == first / "keyframes" / "kf000_f00000.png"
    assert np.array_equal(load_image(path), image)                 # PNG: the pixels it was rendered with
    assert scene_anchor_path(dataclasses.replace(job, anchor_key="f" * 32)) is None   # an older render
    assert scene_anchor_path(dataclasses.replace(job, anchor_from=None)) is None
    assert scene_anchor_path(dataclasses.replace(job, anchor_from=tmp_path / "missing")) is None
