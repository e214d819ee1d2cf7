"""`keyrender run samples/generate.csv --preset tiny`: generated keyframes through the real
diffusers classes (tiny configs, random weights), the tiny ONNX face pack, the identity loop with
a small budget, and the style anchor across a scene. Offline, CPU."""

from __future__ import annotations

import json
import logging

import pytest
from click.testing import CliRunner

from keyrender.cli import main
from keyrender.outputs.media import probe_video


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.slow
def test_generate_sample_renders_with_tiny_preset(tmp_path, monkeypatch, copy_sample):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("KEYRENDER_CACHE", str(tmp_path / "cache"))
    proj = tmp_path / "proj"
    copy_sample(proj)
    out = tmp_path / "out"
    args = ["run", str(proj / "generate.csv"), "--preset", "tiny", "--device", "cpu", "--out", str(out),
            "--keyframe-attempts", "1", "--budget", "2", "--json"]
    chatter = _Records()
    logging.getLogger("transformers").addHandler(chatter)
    try:
        r = CliRunner().invoke(main, args, catch_exceptions=False)
    finally:
        logging.getLogger("transformers").removeHandler(chatter)
    assert r.exit_code == 0, r.output
    # no library chatter on stderr (the tiny tokenizer's one-character tokens make prompts "too long")
    assert not [m for m in chatter.messages if "Token indices" in m], chatter.messages
    for shot, frames in (("G1", 24), ("G2", 24)):
        info = probe_video(out / shot / "video.mp4")
        assert info["frames"] == frames and info["width"] == 64 and info["height"] == 64
        m = json.loads((out / shot / "manifest.json").read_text())
        assert [k["source"] for k in m["keyframes"] if k["source"] != "repair"] == ["generated"] * len(
            [k for k in m["keyframes"] if k["index"] is not None])
        assert all(isinstance(k["seed"], int) for k in m["keyframes"] if k["index"] is not None)
        assert m["inputs"]["preset"] == "tiny"
        ident = m["identity"]
        # the tiny face pack finds faces in the tiny model's keyframes: the loop really ran
        assert ident["checked"] is True and not ident.get("why_not"), ident.get("why_not")
        kfs = [k for k in m["keyframes"] if k["index"] is not None]
        assert all("final" in k["identity"] and k["identity"]["attempts"][0]["attempt"] == 0 for k in kfs)
        # every re-roll is recorded against the budget, which is never exceeded
        rerolls = sum(len(k["identity"]["attempts"]) - 1 for k in kfs)
        repairs = sum(len(r["attempts"]) for r in ident["repairs"])
        assert rerolls + repairs == ident["budget"]["spent"] <= 2
    g1 = json.loads((out / "G1" / "manifest.json").read_text())
    assert "looks at the camera" in g1["keyframes"][0]["prompt"] and "turns to the window" in g1["keyframes"][-1]["prompt"]
    # a rerun is pure cache: no model work
    r = CliRunner().invoke(main, args[:-1], catch_exceptions=False)
    assert r.exit_code == 0 and "0 rendered, 2 cached" in r.output and "loading" not in r.output
