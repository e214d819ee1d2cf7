"""The identity loop end to end: `render()` with the real face path (insightface + onnxruntime on
the generated tiny ONNX pack), the real flow interpolator, and planted drift.

The generator draws synthetic faces (identity/testing.py): keyframe 1's first attempt is somebody
else, and the interpolator is wrapped so the middle of a long span turns into a third person.
The loop must re-roll the keyframe, promote a drifting in-between to a keyframe, and leave a video
whose frames all pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from keyrender.identity import FaceChecker, IdentityStore, load_face_model
from helpers import synthetic_frame
from keyrender.identity.tiny import make_tiny_face_pack
from keyrender.outputs.media import load_image, read_frames, save_image
from keyrender.pipeline import RenderOptions, render

SIZE = 256
POS = (88, 88)
ANNA, STRANGER, DRIFT = 1, 2, 3


def frame(seed: int) -> np.ndarray:
    return synthetic_frame([(seed, POS)], size=(SIZE, SIZE))


class PlantedGenerator:
    """Draws anna, except keyframe 1 at attempt 0 (a stranger). Records every call."""

    name = "planted-generator"

    def __init__(self):
        self.calls = []

    def generate(self, request, indices=None, attempts=None, identity_strength=None):
        out = {}
        for i in indices:
            k = (attempts or {}).get(i, 0)
            self.calls.append(("generate", i, k))
            out[i] = frame(STRANGER if (i, k) == (1, 0) else ANNA)
        return out

    def regenerate(self, request, index, init_image, prompt, *, strength, attempt, identity_strength=None):
        self.calls.append(("regenerate", index, attempt))
        assert init_image.shape == (SIZE, SIZE, 3)
        return frame(ANNA)


class DriftingInterpolator:
    """The real flow interpolator, but in spans longer than 12 frames the middle fifth shows
    another person."""

    def __init__(self):
        from keyrender.interpolate import get_interpolator

        self.inner = get_interpolator("flow")
        self.name = "drifting-" + getattr(self.inner, "name", "flow")
        self.spans = []

    def inbetween(self, a, b, times, info=None):
        n = len(times) + 1
        self.spans.append(n)
        for t, img in zip(times, self.inner.inbetween(a, b, times, info=info)):
            yield frame(DRIFT) if n > 12 and 0.4 <= t <= 0.6 else img


@pytest.fixture
def drift_project(tmp_path) -> Path:
    cast = tmp_path / "cast" / "anna"
    for i, bg in enumerate((128, 120, 136)):
        ref = synthetic_frame([(ANNA, POS)], size=(SIZE, SIZE), background=bg)
        save_image(cast / f"ref{i}.png", ref)
    (tmp_path / "shots.csv").write_text(
        "scene,shot,prompt,characters,frames,fps,keyframes,width,height\n"
        f"1,S1,anna walks,anna,25,24,2,{SIZE},{SIZE}\n"
    )
    return tmp_path


def test_planted_drift_is_repaired_and_recorded(drift_project):
    pack = make_tiny_face_pack(drift_project / "faces")
    gen, interp = PlantedGenerator(), DriftingInterpolator()
    out = drift_project / "out"
    options = RenderOptions(out=out, preset="tiny", face_model=str(pack), generator=gen, interpolator=interp)
    result = render(drift_project / "shots.csv", options)
    assert result.exit_code == 0 and result.shots[0].status == "rendered", result.shots[0].reason
    m = json.loads((out / "S1" / "manifest.json").read_text())

    # keyframe 1: attempt 0 was a stranger (recorded as failing), attempt 1 passed and was kept
    kf1 = next(k for k in m["keyframes"] if k["index"] == 1)
    attempts = kf1["identity"]["attempts"]
    assert [a["attempt"] for a in attempts] == [0, 1]
    assert attempts[0]["passed"] is False and attempts[1]["passed"] is True
    assert kf1["identity"]["chosen_attempt"] == 1 and kf1["seed"] == attempts[1]["seed"]
    assert ("generate", 1, 1) in gen.calls and ("generate", 0, 1) not in gen.calls  # keyframe 0 untouched

    # the drifting span: its worst frame became a keyframe, both halves were interpolated again
    repairs = m["identity"]["repairs"]
    assert repairs and repairs[0]["before"]["passed"] is False and repairs[0]["result"] == "passed"
    assert all(r["result"] == "passed" for r in repairs)
    repaired = sorted(k["frame"] for k in m["keyframes"] if k["source"] == "repair")
    assert repaired and all(8 <= f <= 16 for f in repaired)
    assert interp.spans[0] == 24 and len(interp.spans) >= 3
    assert m["identity"]["flagged_frames"] == [] and m["flagged"] is False
    assert m["identity"]["budget"]["spent"] == 1 + len(repairs)
    scores = m["identity"]["frames"]
    assert all(s["passed"] for s in scores.values()) and {"0", "24"} <= set(scores)

    # the final video holds the repaired frames: every decoded frame shows anna, nobody else
    checker = FaceChecker(load_face_model(str(pack)), IdentityStore(drift_project / "cast").load_all())
    decoded = {i: img for i, _, img in read_frames(out / "S1" / "video.mp4")}
    assert len(decoded) == 25
    for i, img in decoded.items():
        assert checker.check(img, ["anna"]).passed, i
    for f in repaired:
        assert np.abs(decoded[f].astype(int) - load_image(out / "S1" / f"keyframes/repair_f{f:05d}.png").astype(int)).mean() < 6


def test_unrepairable_drift_is_flagged_not_passed(drift_project):
    class NoRepair(PlantedGenerator):
        def regenerate(self, *a, **k):
            self.calls.append(("regenerate",))
            return frame(DRIFT)  # the repair keeps failing

    pack = make_tiny_face_pack(drift_project / "faces")
    out = drift_project / "out"
    options = RenderOptions(out=out, preset="tiny", face_model=str(pack), generator=NoRepair(),
                            interpolator=DriftingInterpolator())
    result = render(drift_project / "shots.csv", options)
    assert result.exit_code == 0 and result.shots[0].flagged
    m = json.loads((out / "S1" / "manifest.json").read_text())
    assert m["flagged"] is True and m["identity"]["flagged_frames"]
    assert all(r["result"] == "failed" for r in m["identity"]["repairs"])
    # --strict makes such a shot count as failed
    strict = render(drift_project / "shots.csv", RenderOptions(out=out, preset="tiny", face_model=str(pack),
                                                          generator=NoRepair(), interpolator=DriftingInterpolator(),
                                                          strict=True))
    assert strict.exit_code == 3 and strict.shots[0].status == "cached"


def test_prompt_warnings_reach_the_manifest_and_the_console(drift_project):
    class LongPrompts(PlantedGenerator):
        def prompt_warnings(self, request, indices=None):
            return [f"shot {request.shot}: keyframe {i} prompt is 90 tokens" for i in indices]

    events = []
    options = RenderOptions(out=drift_project / "out", preset="tiny", refine=False, generator=LongPrompts(),
                            interpolator=DriftingInterpolator())
    result = render(drift_project / "shots.csv", options, callback=events.append)
    assert result.exit_code == 0, result.shots[0].reason
    m = json.loads((drift_project / "out" / "S1" / "manifest.json").read_text())
    assert "shot S1: keyframe 0 prompt is 90 tokens" in m["warnings"]
    assert {"event": "warning", "message": "shot S1: keyframe 1 prompt is 90 tokens"} in events


def _small_2a(proj: Path, width: int = 128, height: int = 64, storyboard_repair: bool = False) -> None:
    """Shot 2A of the sample at width x height (the storyboard is fitted to it); with
    storyboard_repair, its storyboard spans may be repainted by the identity loop."""
    import csv

    path = proj / "shotlist.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["width"], r["height"] = (str(width), str(height)) if r["shot"] == "2A" else ("", "")
        r["storyboard_repair"] = "on" if storyboard_repair and r["shot"] == "2A" else ""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_failing_inbetween_reaches_the_real_tiny_regenerate(tmp_path, copy_sample, monkeypatch, tiny_generator):
    """No stand-in generator: storyboard shot 2A (at 128 x 64) with the tiny face pack fails its
    in-between checks, and the pipeline's repair path calls the real tiny diffusers generator's
    `regenerate` (image-to-image) with the neighbouring keyframes as context (the shot asks for
    it: a storyboard span is repaired only with `storyboard_repair` on), the preset's
    regenerate strength (read through RefineConfig.repair_strength) and the identity strength
    rising per attempt (RefineConfig.identity_strength). The spy only records and calls through."""
    from dataclasses import replace

    from keyrender.keyframes.presets import PRESETS
    from keyrender.shot.refine import REPAIR_INDEX_BASE, RefineConfig

    monkeypatch.setenv("KEYRENDER_CACHE", str(tmp_path / "cache"))
    # a strength other than the default, to see that it is the preset's that reaches regenerate
    monkeypatch.setitem(PRESETS, "tiny", replace(PRESETS["tiny"], regenerate_strength=0.5))
    calls = []
    real = type(tiny_generator).regenerate

    def spy(request, index, init_image, prompt, *, strength, attempt, identity_strength=None, **kw):
        out = real(tiny_generator, request, index, init_image, prompt, strength=strength, attempt=attempt,
                   identity_strength=identity_strength, **kw)
        calls.append(dict(index=index, strength=strength, attempt=attempt, identity=identity_strength,
                          fixed=sorted(request.fixed), changed=float(np.abs(out.astype(int) - init_image.astype(int)).mean())))
        return out

    monkeypatch.setattr(tiny_generator, "regenerate", spy)
    proj = copy_sample(tmp_path / "proj")
    _small_2a(proj, storyboard_repair=True)
    result = render(proj / "shotlist.csv", RenderOptions(out=tmp_path / "out", only=["2A"], preset="tiny", face_model="tiny",
                                                         device="cpu", shot_generations=2, generator=tiny_generator))
    assert result.exit_code in (0, 3)
    m = json.loads((tmp_path / "out" / "2A" / "manifest.json").read_text())
    repairs = m["identity"]["repairs"]
    assert repairs and calls, "a failing in-between must reach regenerate"
    made = [a for r in repairs for a in r["attempts"]]
    assert len(made) == len(calls) == 2  # the shot's budget
    seeds = [a["seed"] for a in made]
    assert all(isinstance(x, int) for x in seeds) and len(set(seeds)) == 2
    config = RefineConfig()
    for call in calls:
        assert call["strength"] == 0.5
        assert call["identity"] == pytest.approx(config.identity_strength(0.7, call["attempt"]))
        assert call["index"] == REPAIR_INDEX_BASE + repairs[0]["frame"]
        assert call["fixed"] == [0, 1]  # the two keyframes around the frame
        assert call["changed"] > 1.0  # image-to-image really changed the frame
    assert [c["attempt"] for c in calls] == [0, 1]
    assert calls[1]["identity"] > calls[0]["identity"]
