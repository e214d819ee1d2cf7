"""Executors: the scene schedule, the anchor hand-off, and the storyboard sample rendered through
a real local Ray cluster (CPU only) matching the local executor's output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyrender.core.errors import InputError
from keyrender.core.shotlist import load_shotlist
from keyrender.outputs.media import probe_video
from keyrender.pipeline import RenderOptions, is_done, plan, render
from keyrender.workers import RayExecutor, get_executor, scene_dependencies
from helpers import heavy_imports


def test_scene_dependencies_wait_only_for_generated_shots(project):
    gen = load_shotlist(project / "generate.csv", cast=["eileen"])
    deps = scene_dependencies(plan(gen, RenderOptions(out=project / "o")))
    assert deps == {"G1": None, "G2": "G1"}
    board = load_shotlist(project / "shotlist.csv", cast=["eileen"])
    assert set(scene_dependencies(plan(board, RenderOptions(out=project / "o"))).values()) == {None}
    with pytest.raises(InputError, match="unknown executor 'slurm'"):
        get_executor("slurm")


class _InlineRay:
    """Ray's API as RayExecutor uses it, running each task in this process when it is waited on,
    recording the order of submissions and completions."""

    def __init__(self):
        self.log: list[tuple[str, str]] = []
        self.payloads: dict[str, dict] = {}

    def remote(self, fn):
        ray = self

        class Remote:
            def options(self, **kw):
                ray.options = kw
                return self

            def remote(self, payload):
                sid = payload["job"].shot.id
                ray.log.append(("submit", sid))
                ray.payloads[sid] = payload
                return _Ref(sid, fn, payload)

        return Remote()

    def wait(self, refs, num_returns=1):
        return refs[:1], refs[1:]

    def get(self, ref):
        reply = ref.fn(ref.payload)
        self.log.append(("done", ref.sid))
        return reply


class _Ref:
    def __init__(self, sid, fn, payload):
        self.sid, self.fn, self.payload = sid, fn, payload


@pytest.mark.slow
def test_scene_first_shot_runs_first_and_its_keyframe_is_sent_as_anchor(project, monkeypatch):
    # 1X generates its middle keyframe: it waits for 1A, the first shot of scene 1
    csv = project / "shotlist.csv"
    rows = csv.read_text().splitlines()
    rows.append('1,1X,"Eileen again",eileen,1,24,3,storyboard/1A_0.jpg;;storyboard/1A_2.jpg,,,')
    csv.write_text("\n".join(rows) + "\n")
    fake = _InlineRay()
    ex = RayExecutor(num_gpus=0)
    monkeypatch.setattr(RayExecutor, "_init", lambda self: fake)
    result = render(csv, RenderOptions(out=project / "out", offline=True, preset="sdxl"), executor=ex)
    status = {r.shot: r.status for r in result.shots}
    assert status["1A"] == status["1B"] == status["2A"] == "rendered"
    failed = next(r for r in result.shots if r.shot == "1X")
    assert failed.status == "failed" and "not found" in failed.reason, failed.reason  # no models here
    assert fake.log.index(("done", "1A")) < fake.log.index(("submit", "1X"))
    assert fake.log.index(("submit", "2A")) < fake.log.index(("done", "1A"))  # others do not wait
    # the anchor travels as the files the worker's render_shot reads: 1A's manifest and keyframe 0
    out_1a = project / "out" / "1A"
    m = json.loads((out_1a / "manifest.json").read_text())
    files = fake.payloads["1X"]["files"]
    assert fake.payloads["1X"]["anchor"] is True
    assert files["anchor/" + m["keyframes"][0]["path"]] == (out_1a / m["keyframes"][0]["path"]).read_bytes()
    assert files["anchor/manifest.json"] == (out_1a / "manifest.json").read_bytes()
    assert fake.payloads["1B"]["anchor"] is False and not any(k.startswith("anchor/") for k in fake.payloads["1B"]["files"])
    assert fake.options == {"num_gpus": 0, "num_cpus": 1, "max_retries": 3, "retry_exceptions": False}
    # the worker got the files it reads as bytes, not paths on the driver's disk
    assert sorted(k.split("/")[0] for k in files) == ["anchor"] * 2 + ["cast"] * 4 + ["inputs"] * 2


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'keyrender[ray]')")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"Ray cannot start here: {exc}")
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_renders_the_sample_like_the_local_executor(ray_cluster, project, tmp_path):
    events = []
    local = render(project / "shotlist.csv", RenderOptions(out=tmp_path / "local"))
    remote = render(project / "shotlist.csv", RenderOptions(out=tmp_path / "ray"), callback=events.append,
                    executor=RayExecutor(num_gpus=0, max_retries=1))
    assert remote.exit_code == 0 and [r.status for r in remote.shots] == ["rendered"] * 3
    for a, b in zip(local.shots, remote.shots):
        la, lb = json.loads(a.manifest.read_text()), json.loads(b.manifest.read_text())
        assert probe_video(b.video)["frames"] == probe_video(a.video)["frames"] == lb["video"]["frames"]
        for m in (la, lb):
            m.pop("timings")
        assert lb == la, a.shot                         # same keyframes, scores, files (sha256)
        assert is_done(b.out_dir, lb["cache_key"])
    assert not list((tmp_path / "ray").glob(".staging-*"))
    assert (tmp_path / "ray" / "report.html").is_file() and (tmp_path / "ray" / "timeline.otio").is_file()
    done = [e for e in events if e["event"] == "shot_done"]
    assert [e["done"] for e in done] == [1, 2, 3] and {e["shot"] for e in done} == {"1A", "1B", "2A"}
    # a rerun through Ray is all cached and starts no task
    again = render(project / "shotlist.csv", RenderOptions(out=tmp_path / "ray"), executor=RayExecutor(num_gpus=0))
    assert [r.status for r in again.shots] == ["cached"] * 3


@pytest.mark.slow
def test_a_ray_worker_uses_the_in_betweener_the_plan_chose(ray_cluster, project, tmp_path, monkeypatch):
    """The plan decides once: the driver finds the video model's weights (here through its
    KEYRENDER_MODEL_LTX, which the Ray workers, started earlier, do not have); the cache key names
    that model, and the worker draws the frames with it instead of deciding again on its own
    machine (where it would fall back to flow)."""
    from dataclasses import replace

    from keyrender.keyframes.presets import get_preset

    monkeypatch.setenv("KEYRENDER_MODEL_LTX", "tiny")
    preset = replace(get_preset("tiny"), video_model=None)   # the model's location comes from the variable
    options = RenderOptions(out=tmp_path / "o", preset=preset, only=["G2"])
    (job,) = plan(load_shotlist(project / "generate.csv"), options)
    assert job.spans.video.backend == "ltx" and job.spans.video.model == "tiny"
    result = render(project / "generate.csv", options, executor=RayExecutor(num_gpus=0, max_retries=0))
    assert [r.status for r in result.shots] == ["rendered"], result.shots[0].reason
    m = json.loads(result.shots[0].manifest.read_text())
    assert m["cache_key"] == job.cache_key
    assert m["interpolation"]["inbetweens"]["backend"] == "ltx" and m["interpolation"]["fallback"] is None
    assert [s["backend"] for s in m["interpolation"]["spans"]] == ["ltx"]   # the video model drew the frames


def test_ray_asking_for_gpus_the_cluster_lacks_is_an_input_error(ray_cluster, project, tmp_path):
    with pytest.raises(InputError, match=r"has 0 GPU\(s\).*--num-gpus 0"):
        render(project / "shotlist.csv", RenderOptions(out=tmp_path / "o"), executor=RayExecutor(num_gpus=1))


def test_package_exports_render_lazily_without_torch():

    code = ("import keyrender\n"
            "assert callable(keyrender.render) and keyrender.RenderOptions and keyrender.RunResult\n")
    assert heavy_imports(code) == []


def test_cli_executor_options(project, tmp_path):
    from click.testing import CliRunner

    from keyrender.cli import main

    r = CliRunner().invoke(main, ["run", str(project / "shotlist.csv"), "--out", str(tmp_path / "o"), "--num-gpus", "0"])
    assert r.exit_code == 2 and "need --executor ray" in r.output
    r = CliRunner().invoke(main, ["run", str(project / "shotlist.csv"), "--out", str(tmp_path / "o"), "--only", "2A"])
    assert r.exit_code == 0 and f"report: {tmp_path / 'o' / 'report.html'}" in r.output


@pytest.mark.parametrize("err, words", [(28, "the disk is full"), (30, "read-only file system")])
def test_ray_full_or_read_only_output_stops_the_run_with_one_message(project, monkeypatch, err, words):
    """A driver that cannot write a worker's files (disk full, read-only output) stops the run with
    one message and exit 1, like the local executor, instead of failing every shot alike."""
    import os

    from click.testing import CliRunner

    from keyrender.core import fsutil
    from keyrender.cli import main

    out = project / "out"
    real = fsutil.atomic_write_bytes

    def full(path, data):  # the driver's writes into the output folder fail; the worker's succeed
        if Path(path).is_relative_to(out) and Path(path).relative_to(out).parts[0].startswith(".staging-"):
            raise OSError(err, os.strerror(err), str(path))
        real(path, data)

    fake = _InlineRay()
    fake.cancelled = []
    fake.cancel = fake.cancelled.append
    monkeypatch.setattr(RayExecutor, "_init", lambda self: fake)
    monkeypatch.setattr(fsutil, "atomic_write_bytes", full)
    r = CliRunner().invoke(main, ["run", str(project / "shotlist.csv"), "--out", str(out),
                                  "--executor", "ray", "--num-gpus", "0"])
    assert r.exit_code == 1, r.output
    assert r.output.count("error: ") == 1 and words in r.output and "FAILED" not in r.output, r.output
    assert f"cannot write into {out}" in r.output and "Traceback" not in r.output
    assert [sid for what, sid in fake.log if what == "done"] == ["1A"]       # stopped at the first shot received
    assert len(fake.cancelled) == 2                                  # the two others were cancelled
    assert not [p for p in out.iterdir() if p.name.startswith(".staging-")]


def test_the_anchor_is_the_first_shots_written_keyframe_of_the_planned_key(project):
    """plan() names where a shot's anchor comes from; render_shot's request reads it from that
    shot's written keyframe 0, only when it was rendered with the key the plan built on (so a
    run with --only G2 anchors on G1 exactly as a full run does, and an old render never is)."""
    import numpy as np

    from keyrender.shot.models import RenderContext
    from keyrender.outputs.manifest import Manifest
    from keyrender.outputs.media import save_image
    from keyrender.shot.render import keyframe_request
    from test_manifest import SAMPLE

    options = RenderOptions(out=project / "out", preset="tiny", only=["G2"])
    jobs = plan(load_shotlist(project / "generate.csv", cast=["eileen"]), options)
    (g2,) = jobs
    g1_out = project / "out" / "G1"
    assert g2.anchor_from == g1_out and g2.anchor_key is not None and g2.anchor_key != g2.cache_key
    ctx = RenderContext(options, project / "cast", lambda e: None)
    assert keyframe_request(g2, ctx, {}, {}).style.anchor_keyframe is None       # G1 not rendered

    image = np.random.default_rng(1).integers(0, 256, (g2.height, g2.width, 3), dtype=np.uint8)
    (g1_out / "keyframes").mkdir(parents=True)
    save_image(g1_out / "keyframes" / "kf000_f00000.png", image)
    m = Manifest.from_dict(json.loads(json.dumps(SAMPLE)))
    m.shot, m.cache_key, m.keyframes[0].path = "G1", g2.anchor_key, "keyframes/kf000_f00000.png"
    m.write(g1_out)
    assert np.array_equal(keyframe_request(g2, ctx, {}, {}).style.anchor_keyframe, image)
    m.cache_key = "0" * 32                                                         # an older G1
    m.write(g1_out)
    assert keyframe_request(g2, ctx, {}, {}).style.anchor_keyframe is None
