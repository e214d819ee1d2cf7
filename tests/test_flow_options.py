"""The flow interpolator's `hedge` and `camera_motion` as shot-list column and run / interpolate
flags: validation, precedence, cache keys, the manifest, and that they reach the interpolator."""

from __future__ import annotations

import inspect
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from keyrender import pipeline
from keyrender.cli import main
from keyrender.core.errors import InputError
from keyrender.core.shotlist import load_shotlist
from keyrender.interpolate.flow import FlowInterpolator
from keyrender.outputs.media import read_frames
from keyrender.pipeline import RenderContext, RenderOptions, interpolation_options, plan, render
from keyrender.shot import options as options_module
from helpers import run

# two shots on the same storyboard pair (a still camera, and a patch whose content changes
# without moving: warps disagree there, which is where the hedge acts) and one more
HEADER = "scene,shot,prompt,frames,keyframes,keyframe_images,hedge\n"
ROWS = {
    "A": "1,A,,9,2,storyboard/H_0.jpg;storyboard/H_1.jpg,{}\n",
    "B": "1,B,,9,2,storyboard/H_0.jpg;storyboard/H_1.jpg,{}\n",
    "C": "1,C,,9,2,storyboard/1B_0.jpg;storyboard/1B_1.jpg,{}\n",
}


def _hedge_pair(project: Path) -> None:
    board = project / "storyboard"
    if (board / "H_1.jpg").exists():
        return
    a = cv2.imread(str(board / "1A_0.jpg"))
    b = a.copy()
    other = cv2.imread(str(board / "1B_2.jpg"))
    b[60:220, 150:380] = other[60:220, 150:380]
    cv2.imwrite(str(board / "H_0.jpg"), a)
    cv2.imwrite(str(board / "H_1.jpg"), b)


def shots(project: Path, **hedges: str) -> Path:
    """project/short.csv with these hedge values (shot id -> column text; blank otherwise)."""
    _hedge_pair(project)
    csv = project / "short.csv"
    csv.write_text(HEADER + "".join(row.format(hedges.get(k, "")) for k, row in ROWS.items()))
    return csv


def statuses(result) -> dict[str, str]:
    return {s.shot: s.status for s in result.shots}


def manifest(out, shot) -> dict:
    return json.loads((out / shot / "manifest.json").read_text())


def frames(path) -> list[np.ndarray]:
    return [f.astype(np.int16) for _, _, f in read_frames(path)]


def test_pipeline_defaults_are_the_flow_interpolators():
    params = inspect.signature(FlowInterpolator).parameters
    assert params["hedge"].default == pipeline.DEFAULT_HEDGE == RenderOptions().hedge
    assert params["camera_motion"].default is pipeline.DEFAULT_CAMERA_MOTION is RenderOptions().camera_motion


def test_bad_hedge_in_the_shot_list_is_located_and_nothing_is_written(project):
    csv = project / "shotlist.csv"
    lines = csv.read_text().splitlines()
    lines[0] += ",hedge"
    for i, value in ((1, "-0.1"), (2, "1.5"), (3, "abc")):
        lines[i] += "," + value
    csv.write_text("\n".join(lines) + "\n")
    out = project / "out"
    for extra in (["--dry-run"], []):
        r = run("run", str(csv), "--out", str(out), *extra)
        assert r.exit_code == 2, r.output
        assert f"{csv}:2: column 'hedge': '-0.1' is not a number in 0..1" in r.output
        assert f"{csv}:3: column 'hedge': '1.5' is not a number in 0..1" in r.output
        assert f"{csv}:4: column 'hedge': 'abc' is not a number in 0..1" in r.output
        assert "3 problems" in r.output and "Traceback" not in r.output and not out.exists()


@pytest.mark.parametrize("value", ["-0.1", "1.5", "abc"])
def test_hedge_flags_are_validated_by_click(project, value):
    out = project / "out"
    r = CliRunner().invoke(main, ["run", str(project / "shotlist.csv"), "--out", str(out), "--hedge", value])
    assert r.exit_code == 2 and "--hedge" in r.output and not out.exists(), r.output
    a, b = project / "storyboard" / "1A_0.jpg", project / "storyboard" / "1A_1.jpg"
    r = CliRunner().invoke(main, ["interpolate", str(a), str(b), "--frames", "1", "--out", str(out), "--hedge", value])
    assert r.exit_code == 2 and "--hedge" in r.output and not out.exists(), r.output


def test_library_options_are_validated_before_anything_is_written(project):
    out = project / "out"
    for bad in ({"hedge": 1.5}, {"hedge": -0.1}, {"hedge": "0.5"}, {"camera_motion": "no"}):
        with pytest.raises(InputError, match=next(iter(bad))):
            render(shots(project), RenderOptions(out=out, **bad))
        assert not out.exists()


def test_precedence_shot_column_then_run_default():
    from keyrender.core.shotlist import Shot

    shot = Shot(id="a", scene="1", line=2, prompt="x", negative_prompt="", characters=(), frames=9, fps=24,
                keyframe_frames=(0, 8), seed=1, style="", style_image=None, width=None, height=None, camera="",
                keyframe_images=(None, None), beats=())
    run_only = interpolation_options(shot, RenderOptions(hedge=0.3, camera_motion=False))
    assert (run_only.hedge, run_only.camera_motion, run_only.hedge_from, run_only.applied) == (0.3, False, "run", "flow")
    own = interpolation_options(replace(shot, hedge=0.0), RenderOptions(hedge=0.3))
    assert (own.hedge, own.camera_motion, own.hedge_from) == (0.0, True, "shot")
    assert own.manifest() == {"hedge": 0.0, "camera_motion": True, "hedge_from": "shot", "applied": True}


def test_cache_key_holds_the_effective_options(project):
    csv = shots(project)
    sl = load_shotlist(csv)
    keys = lambda sl, **kw: {j.shot.id: j.cache_key for j in plan(sl, RenderOptions(out=project / "o", **kw))}
    base = keys(sl)
    # no hedge column, a blank one, and the defaults given explicitly: the same keys
    no_column = project / "nocol.csv"
    no_column.write_text("\n".join(",".join(line.split(",")[:-1]) for line in csv.read_text().splitlines()) + "\n")
    assert keys(load_shotlist(no_column)) == base == keys(sl, hedge=0.5, camera_motion=True)
    # a shot's own hedge changes that shot's key only (storyboard shots have no style anchor)
    edited = keys(load_shotlist(shots(project, B="0")))
    assert edited["B"] != base["B"] and edited["A"] == base["A"] and edited["C"] == base["C"]
    assert keys(load_shotlist(shots(project, B="0.5"))) == base  # the same effective value
    # the run's hedge changes every shot without its own; camera motion changes every shot
    run_hedge = keys(load_shotlist(shots(project, B="0.5")), hedge=0.2)
    assert run_hedge["B"] == base["B"] and run_hedge["A"] != base["A"] and run_hedge["C"] != base["C"]
    no_camera = keys(sl, camera_motion=False)
    assert all(no_camera[s] != base[s] for s in base)
    assert keys(sl, hedge=0.0) != keys(sl, hedge=1.0)


@pytest.mark.slow
def test_changing_a_shots_hedge_renders_that_shot_only_and_the_option_reaches_the_frames(project):
    out = project / "out"
    first = render(shots(project), RenderOptions(out=out))
    assert statuses(first) == {"A": "rendered", "B": "rendered", "C": "rendered"}
    assert manifest(out, "A")["interpolation"]["options"] == {
        "hedge": 0.5, "camera_motion": True, "hedge_from": "run", "applied": True}
    mtimes = {s: (out / s / "video.mp4").stat().st_mtime_ns for s in "ABC"}

    # changing nothing keeps the cache (also with the defaults spelled out)
    assert statuses(render(shots(project), RenderOptions(out=out))) == {s: "cached" for s in "ABC"}
    r = run("run", str(shots(project, A="0.5")), "--out", str(out), "--hedge", "0.5", "--camera-motion")
    assert r.exit_code == 0 and "0 rendered, 3 cached" in r.output, r.output

    # A and B share their keyframes; hedge 0 and 1 give the same keyframes, other in-betweens
    again = render(shots(project, A="0", B="1"), RenderOptions(out=out))
    assert statuses(again) == {"A": "rendered", "B": "rendered", "C": "cached"}
    assert (out / "C" / "video.mp4").stat().st_mtime_ns == mtimes["C"]
    for shot, hedge in (("A", 0.0), ("B", 1.0)):
        assert manifest(out, shot)["interpolation"]["options"] == {
            "hedge": hedge, "camera_motion": True, "hedge_from": "shot", "applied": True}
    a, b = frames(out / "A" / "video.mp4"), frames(out / "B" / "video.mp4")
    # share of the pixels that differ by more than 24 levels (H.264 noise stays below)
    far = [float((np.abs(x - y).max(axis=2) > 24).mean()) for x, y in zip(a, b)]
    assert len(far) == 9 and max(far[0], far[-1]) < 0.001, far  # the keyframes
    assert min(far[3:6]) > 0.01, far                             # the in-betweens

    # the run's --hedge and --no-camera-motion: shots without their own hedge follow the flag
    r = run("run", str(shots(project, A="0", B="1")), "--out", str(out), "--hedge", "0.2", "--json")
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert {s["shot"]: s["status"] for s in summary["shots"]} == {"A": "cached", "B": "cached", "C": "rendered"}
    assert manifest(out, "C")["interpolation"]["options"]["hedge"] == 0.2
    r = run("run", str(shots(project, A="0", B="1")), "--out", str(out), "--hedge", "0.2", "--no-camera-motion")
    assert r.exit_code == 0 and "3 rendered" in r.output
    assert all(manifest(out, s)["interpolation"]["options"]["camera_motion"] is False for s in "ABC")


def test_one_interpolator_per_distinct_option_set(project, monkeypatch):
    from keyrender import interpolate

    built = []
    real = interpolate.get_interpolator

    def recording(name, **options):
        built.append((name, options))
        return real(name, **options)

    monkeypatch.setattr(interpolate, "get_interpolator", recording)
    out = project / "out"
    result = render(shots(project, A="0", B="0"), RenderOptions(out=out, camera_motion=False))
    assert statuses(result) == {s: "rendered" for s in "ABC"}
    assert built == [("flow", {"hedge": 0.0, "camera_motion": False}), ("flow", {"hedge": 0.5, "camera_motion": False})]

    ctx = RenderContext(RenderOptions(hedge=0.7), project, lambda e: None)
    sl = load_shotlist(shots(project, A="0", B="0"))
    a, b, c = (interpolation_options(s, ctx.options) for s in sl.shots)
    assert ctx.interpolator(a) is ctx.interpolator(b) is not ctx.interpolator(c)
    assert isinstance(ctx.interpolator(a), FlowInterpolator) and ctx.interpolator(a).hedge == 0.0
    assert ctx.interpolator(c).hedge == 0.7 and ctx.interpolator(interpolation_options(None, ctx.options)) is ctx.interpolator(c)  # the run's
    assert ctx.interpolator(a).camera_motion is True


def test_other_backends_get_them_as_flow_options_when_they_take_them(project, monkeypatch):
    from keyrender import interpolate

    built = []
    monkeypatch.setattr(interpolate, "get_interpolator", lambda name, **options: built.append((name, options)) or object())
    ctx = RenderContext(RenderOptions(hedge=0.1, camera_motion=False, device="cpu"), project, lambda e: None)
    ctx.preset = replace(ctx.preset, interpolator="ltx")
    flow = interpolation_options(None, ctx.options, "ltx")
    assert flow.applied == "flow_options"
    ctx.interpolator(flow)
    name, options = built[0]
    assert name == "ltx" and options["flow_options"] == {"hedge": 0.1, "camera_motion": False}
    assert "hedge" not in options and "camera_motion" not in options

    # a backend that takes no flow options gets none, the key ignores them, the manifest says why
    monkeypatch.setattr(options_module, "backend_parameters", lambda name: {"device", "offline"})
    flow = interpolation_options(None, ctx.options, "ltx")
    assert flow.applied is None and "takes no flow options" in flow.why_not
    built.clear()
    ctx = RenderContext(ctx.options, project, lambda e: None)
    ctx.preset = replace(ctx.preset, interpolator="ltx")
    ctx.interpolator(flow)
    assert "flow_options" not in built[0][1] and "hedge" not in built[0][1]


class Wrapped:
    """An injected interpolator: the flow backend with its own settings."""

    name = "wrapped-flow"

    def __init__(self):
        self.inner = FlowInterpolator(hedge=1.0)

    def inbetween(self, a, b, times, info=None):
        return self.inner.inbetween(a, b, times, info=info)


def test_an_injected_interpolator_is_used_as_built_and_the_manifest_says_so(project):
    out = project / "out"
    interp = Wrapped()
    events = []
    result = render(shots(project, A="0"), RenderOptions(out=out, interpolator=interp), callback=events.append)
    assert statuses(result) == {s: "rendered" for s in "ABC"}
    assert interp.inner.hedge == 1.0  # untouched
    m = manifest(out, "A")
    assert m["interpolation"]["backend"] == "wrapped-flow"
    opts = m["interpolation"]["options"]
    assert opts["applied"] is False and opts["hedge"] == 0.0 and "used as built" in opts["why_not"]
    assert any("not applied" in w for w in m["warnings"])  # the shot asked for hedge 0
    assert not [w for w in manifest(out, "C")["warnings"] if "not applied" in w]  # C asked for nothing
    assert any(e.get("event") == "warning" and "shot A" in e["message"] for e in events)
    # options that cannot apply do not change the keys: nothing renders again
    again = render(shots(project, A="1", C="0.3"), RenderOptions(out=out, interpolator=interp, camera_motion=False))
    assert statuses(again) == {s: "cached" for s in "ABC"}


def test_dry_run_shows_the_effective_options(project):
    csv = shots(project, B="0")
    r = run("run", str(csv), "--out", str(project / "out"), "--dry-run", "--json", "--no-camera-motion")
    lines = {d["shot"]: d for d in map(json.loads, r.output.strip().splitlines())}
    assert lines["B"]["interpolation"] == {"hedge": 0.0, "camera_motion": False, "hedge_from": "shot", "applied": True}
    assert lines["A"]["interpolation"]["hedge"] == 0.5 and lines["A"]["interpolation"]["hedge_from"] == "run"
    r = run("run", str(csv), "--out", str(project / "out"), "--dry-run")
    assert "hedge 0, camera motion on" in r.output and r.output.count("hedge") == 1
    assert not (project / "out").exists()
