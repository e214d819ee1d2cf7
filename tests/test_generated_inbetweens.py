"""Issue 12, item 6: a preset that generates keyframes in-betweens them with its keyframe-conditioned
video model when the model's weights are on this machine, and says plainly (console once per run,
manifest, report) when it falls back to flow; storyboard spans stay on flow; the choice is in the
cache key. Never downloads: weights are the tiny LTX condition pipeline (the real diffusers
classes, random weights) saved into a local folder or a hub-layout cache.

The keyframe generator is injected (RenderOptions.generator, the documented Protocol swap): its
"generated" keyframes are the next views of the sample's pan, so the pair is related and the
video model is really called (the tiny diffusion model's random keyframes would be held as cuts)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from keyrender.core.shotlist import load_shotlist
from keyrender.keyframes.presets import get_preset
from keyrender.outputs.media import fit_image, load_image
from keyrender.pipeline import RenderOptions, plan, render
from keyrender.shot.options import choose_inbetweener
from helpers import heavy_imports

REPO = "Lightricks/LTX-Video-0.9.5"
W, H = 96, 64
# S: storyboard only; G: two storyboard views and a generated one; B: both generated
SHOTS = (
    "scene,shot,prompt,frames,keyframes,keyframe_images,width,height,seed\n"
    f"1,S,the flag pans,17,3,storyboard/1B_0.jpg;storyboard/1B_1.jpg;storyboard/1B_2.jpg,{W},{H},1\n"
    f"1,G,the flag pans,17,3,storyboard/1B_0.jpg;storyboard/1B_1.jpg;,{W},{H},1\n"
    f"1,B,the flag pans,9,2,,{W},{H},2\n"
)


class PanViews:
    """Keyframe i 'generated' as view i of the sample's pan (storyboard/1B_i.jpg)."""

    name = "pan-views"

    def __init__(self, board: Path):
        self.board = board

    def generate(self, request, indices=None, attempts=None, identity_strength=None):
        return {i: fit_image(load_image(self.board / f"1B_{i}.jpg"), request.width, request.height) for i in indices}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in ("KEYRENDER_MODEL_LTX", "KEYRENDER_MODEL_WAN", "HF_HOME", "KEYRENDER_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # belt and braces: nothing here may download
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("KEYRENDER_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_ltx_folder(tmp_path_factory) -> Path:
    from keyrender.interpolate.tiny import tiny_ltx_pipeline

    folder = tmp_path_factory.mktemp("ltx") / "tiny-ltx"
    tiny_ltx_pipeline().save_pretrained(folder)
    return folder


def hub_cache_with(folder: Path, cache: Path, repo_id: str = REPO) -> Path:
    """`folder` laid out in `cache` as huggingface_hub stores a downloaded repo."""
    import shutil

    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return cache


def shots_project(root: Path, copy_sample) -> Path:
    proj = copy_sample(root / "proj")
    (proj / "shots.csv").write_text(SHOTS)
    return proj


# the sdxl preset as it ships, but few sampling steps for the tiny weights the tests point it at
SDXL = replace(get_preset("sdxl"), video_options={"steps": 4})


def run(proj: Path, preset=SDXL, **kw):
    events: list[dict] = []
    options = RenderOptions(out=proj / "out", preset=preset, device="cpu", generator=PanViews(proj / "storyboard"), **kw)
    result = render(proj / "shots.csv", options, callback=events.append)
    assert result.exit_code == 0, [(s.shot, s.status, s.reason) for s in result.shots]
    return result, events


def manifest(proj: Path, shot: str) -> dict:
    return json.loads((proj / "out" / shot / "manifest.json").read_text())


def span_backends(m: dict) -> list[tuple[str, str]]:
    return [(sp["backend"], sp["mode"]) for sp in m["interpolation"]["spans"]]


@pytest.mark.slow
def test_sdxl_uses_the_video_model_from_a_local_folder(tmp_path, copy_sample, monkeypatch, tiny_ltx_folder):
    monkeypatch.setenv("KEYRENDER_MODEL_LTX", str(tiny_ltx_folder))
    proj = shots_project(tmp_path, copy_sample)
    result, events = run(proj)
    assert {s.shot: s.status for s in result.shots} == {"S": "rendered", "G": "rendered", "B": "rendered"}

    # the storyboard shot is one pan: its spans are camera moves, which flow renders exactly (the
    # video model was there for them, and not used)
    s = manifest(proj, "S")["interpolation"]
    assert s["backend"] == "flow" and s["inbetweens"]["backend"] == "ltx" and s["fallback"] is None
    assert span_backends(manifest(proj, "S")) == [("flow", "camera")] * 2
    # G: the span between its two storyboard views is flow, the one into the generated keyframe
    # is the video model, really run (mode "generative", not held as a cut)
    g = manifest(proj, "G")
    assert span_backends(g) == [("flow", "camera"), ("ltx", "generative")], g["interpolation"]["spans"]
    assert g["interpolation"]["backend"] == "ltx" and g["interpolation"]["fallback"] is None
    assert g["interpolation"]["inbetweens"] == {"backend": "ltx", "model": str(tiny_ltx_folder), "wanted": "ltx",
                                                "fallback": None}
    assert [b for b, _ in span_backends(manifest(proj, "B"))] == ["ltx"]
    assert not [e for e in events if e["event"] == "warning"], events
    loads = [e["what"] for e in events if e["event"] == "load" and "video model" in e["what"]]
    assert loads == [f"video model ltx ({tiny_ltx_folder}) for the in-betweens that flow cannot make (generated "
                     "keyframes, storyboard pictures that are not one camera move)"]
    html = (proj / "out" / "report.html").read_text()
    assert "in-betweened by the keyframe-conditioned video model <b>ltx</b>" in html


@pytest.mark.slow
def test_without_weights_it_falls_back_to_flow_and_says_so(tmp_path, copy_sample):
    proj = shots_project(tmp_path, copy_sample)
    result, events = run(proj)
    for shot in "GB":
        m = manifest(proj, shot)
        interp = m["interpolation"]
        assert {b for b, _ in span_backends(m)} == {"flow"}
        assert interp["backend"] == "flow" and interp["inbetweens"]["backend"] == "flow"
        assert interp["inbetweens"]["wanted"] == "ltx"
        why = interp["fallback"]
        assert why.startswith(f"shot {shot}: generated keyframes in-betweened by optical flow (a morph between poses)")
        # what to fetch and which variable points elsewhere, and that nothing was downloaded
        assert f"hf download {REPO}" in why and "KEYRENDER_MODEL_LTX" in why and "never downloads" in why
        assert why in m["warnings"]
    assert manifest(proj, "S")["interpolation"]["fallback"] is None
    # the console: once per run, not once per shot
    said = [e["message"] for e in events if e["event"] == "warning"]
    assert len(said) == 1 and "in-betweened by optical flow" in said[0] and f"hf download {REPO}" in said[0], said
    html = (proj / "out" / "report.html").read_text()
    assert html.count('<p class="reason bad">in-betweens: shot') == 2

    # the weights appear: every shot renders again once, the generated ones with the video model,
    # the storyboard one with the video model at hand for spans that are not one camera move
    hub_cache_with(load_tiny(tmp_path), tmp_path / "empty-hub")
    jobs = plan(load_shotlist(proj / "shots.csv"),
                RenderOptions(out=proj / "out", preset=SDXL, generator=PanViews(proj / "storyboard")))
    assert {j.shot.id: j.done for j in jobs} == {"S": False, "G": False, "B": False}
    result, events = run(proj)
    assert {s.shot: s.status for s in result.shots} == {"S": "rendered", "G": "rendered", "B": "rendered"}
    g = manifest(proj, "G")["interpolation"]
    assert g["inbetweens"]["model"] == REPO and g["fallback"] is None
    assert [b for b, _ in span_backends(manifest(proj, "G"))] == ["flow", "ltx"]


def load_tiny(tmp_path: Path) -> Path:
    from keyrender.interpolate.tiny import tiny_ltx_pipeline

    folder = tmp_path / "tiny-ltx"
    tiny_ltx_pipeline().save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_tiny_preset_uses_the_tiny_video_model(tmp_path, copy_sample):
    choice = choose_inbetweener(get_preset("tiny"))
    assert (choice.backend, choice.model, choice.fallback) == ("ltx", "tiny", None)
    proj = shots_project(tmp_path, copy_sample)
    run(proj, preset="tiny")
    assert span_backends(manifest(proj, "B")) == [("ltx", "generative")]
    assert manifest(proj, "B")["interpolation"]["inbetweens"]["model"] == "tiny"


def test_choice_rules(tmp_path, monkeypatch, tiny_ltx_folder):
    sdxl = get_preset("sdxl")
    # a folder that is not there, or not a diffusers pipeline: flow, naming the folder and the variable
    monkeypatch.setenv("KEYRENDER_MODEL_LTX", str(tmp_path / "nowhere"))
    c = choose_inbetweener(sdxl)
    assert c.backend == "flow" and c.wanted == "ltx" and "nowhere" in c.fallback and "no such file" in c.fallback
    (tmp_path / "half").mkdir()
    monkeypatch.setenv("KEYRENDER_MODEL_LTX", str(tmp_path / "half"))
    assert "has no model_index.json" in choose_inbetweener(sdxl).fallback
    monkeypatch.setenv("KEYRENDER_MODEL_LTX", str(tiny_ltx_folder))
    assert choose_inbetweener(sdxl).backend == "ltx"
    # the preset's own video_model wins over the variable; wan names its own variable
    assert choose_inbetweener(replace(sdxl, video_model="tiny")).model == "tiny"
    wan = choose_inbetweener(replace(sdxl, video_interpolator="wan"))
    assert wan.backend == "flow" and "KEYRENDER_MODEL_WAN" in wan.fallback
    # a preset without a video model, and one whose interpolator is generative for every span
    assert "names no keyframe-conditioned video model" in choose_inbetweener(replace(sdxl, video_interpolator=None)).fallback
    assert choose_inbetweener(replace(sdxl, interpolator="wan")).backend == "wan"
    # the cache key sees the choice (and where the weights are)
    assert choose_inbetweener(sdxl).cache_record() != choose_inbetweener(replace(sdxl, video_model="tiny")).cache_record()


def test_the_choice_imports_no_torch_and_touches_no_network(tmp_path):
    code = ("import sys, socket\n"
            "def refuse(*a, **k): raise AssertionError('network')\n"
            "socket.socket.connect = refuse\n"
            "from keyrender.keyframes.presets import get_preset\n"
            "from keyrender.shot.options import choose_inbetweener\n"
            "c = choose_inbetweener(get_preset('sdxl'))\n"
            "assert c.backend == 'flow' and 'hf download' in c.fallback, c\n")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("HF_", "KEYRENDER_MODEL"))}
    env.update(HF_HUB_CACHE=str(tmp_path / "hub"))
    assert heavy_imports(code, env=env) == []


def test_dry_run_says_what_generated_keyframes_will_get(tmp_path, copy_sample, monkeypatch, tiny_ltx_folder):
    from click.testing import CliRunner

    from keyrender.cli import main

    proj = shots_project(tmp_path, copy_sample)
    args = ["run", str(proj / "shots.csv"), "--dry-run", "--out", str(proj / "out")]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0 and "in-betweens of generated keyframes: optical flow (a morph between poses)" in r.output
    assert f"hf download {REPO}" in r.output
    monkeypatch.setenv("KEYRENDER_MODEL_LTX", str(tiny_ltx_folder))
    r = CliRunner().invoke(main, args + ["--json"], catch_exceptions=False)
    rows = {row["shot"]: row for row in map(json.loads, r.output.splitlines())}
    assert rows["S"]["inbetweens"]["model"] == rows["B"]["inbetweens"]["model"] == str(tiny_ltx_folder)
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert f"storyboard pictures that are not one camera move): video model ltx ({tiny_ltx_folder})" in r.output


@pytest.mark.slow
def test_storyboard_pictures_that_are_not_a_camera_move_get_the_video_model_when_it_is_here(tmp_path, copy_sample,
                                                                                          monkeypatch):
    """With the video model's weights on the machine (here the tiny LTX, through its variable), a
    span between two storyboard pictures that flow finds to be one camera move stays flow (exact),
    and one whose pictures differ by more is drawn by the video model. Without the weights nothing
    changes for storyboard shots (their cache keys included)."""
    from skimage import data as skimage_data

    from keyrender.outputs.media import save_image

    proj = copy_sample(tmp_path / "sb-video")
    save_image(proj / "a.png", np.ascontiguousarray(skimage_data.astronaut()[:288, :512]))
    save_image(proj / "b.png", np.ascontiguousarray(skimage_data.coffee()[:288, :512]))
    with open(proj / "shotlist.csv", "a") as fh:
        fh.write("3,3A,a portrait then a cup,,0.5,24,2,a.png;b.png,,,\n")
    sheet = proj / "shotlist.csv"
    before = {j.shot.id: j.cache_key for j in plan(load_shotlist(sheet), RenderOptions(out=proj / "o", preset=SDXL))}
    monkeypatch.setenv("KEYRENDER_MODEL_LTX", "tiny")
    options = RenderOptions(out=proj / "o", preset=SDXL, device="cpu", only=["1B", "3A"])
    jobs = {j.shot.id: j for j in plan(load_shotlist(sheet), options)}
    assert jobs["3A"].spans.video.backend == "ltx" and jobs["3A"].cache_key != before["3A"]
    result = render(sheet, options)
    assert result.exit_code == 0, [r.reason for r in result.shots]
    spans = {s: json.loads((proj / "o" / s / "manifest.json").read_text())["interpolation"]["spans"] for s in ("1B", "3A")}
    assert [(sp["mode"], sp["backend"]) for sp in spans["1B"]] == [("camera", "flow")] * 2   # a pan: flow, exact
    (pose,) = spans["3A"]
    assert pose["backend"] == "ltx" and pose["flow_verdict"]["mode"] not in ("camera", "static")
