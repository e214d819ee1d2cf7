"""Crash safety for real: `keyrender run` in a subprocess, SIGKILLed while it encodes a shot, then
run again: every output is whole (videos decode with the right frame counts, manifests parse and
verify), and nothing half-written is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keyrender.outputs.media import probe_video
from keyrender.pipeline import is_done



def _leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.startswith((".staging-", ".old-")) or ".tmp" in p.name]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_shot_then_rerun_finishes_with_every_file_valid(tmp_path, copy_sample):
    proj = tmp_path / "proj"
    copy_sample(proj)
    board = "storyboard/1A_0.jpg;storyboard/1A_1.jpg;storyboard/1A_2.jpg"
    csv = proj / "long.csv"
    csv.write_text("scene,shot,prompt,characters,duration,fps,keyframes,keyframe_images\n"
                   f'1,L1,"Eileen",eileen,5,24,3,{board}\n'
                   f'1,L2,"Eileen again",eileen,5,24000/1001,3,{board}\n')
    out = tmp_path / "out"
    # identity checks on, but sparse: a shot must finish well within the deadline on a busy CPU
    cmd = [sys.executable, "-m", "keyrender.cli", "run", str(csv), "--out", str(out), "-q", "--check-every", "12"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    killed_in = None
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            # kill while the second shot's video is being encoded (the first one is finished)
            partial = [p for p in out.glob(".staging-L2-*/.video.*") if p.stat().st_size > 0] if out.is_dir() else []
            if partial and (out / "L1" / "manifest.json").is_file():
                os.kill(proc.pid, signal.SIGKILL)
                killed_in = partial[0]
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None and killed_in is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert killed_in is not None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    assert _leftovers(out), "the kill should have left the shot's staging folder behind"
    assert not (out / "L2").exists()

    p = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert {s["shot"]: s["status"] for s in summary["shots"]} == {"L1": "cached", "L2": "rendered"}
    assert _leftovers(out) == []
    for shot, fps in (("L1", "24/1"), ("L2", "24000/1001")):
        m = json.loads((out / shot / "manifest.json").read_text())
        assert m["status"] == "done" and m["video"]["fps"] == fps
        assert probe_video(out / shot / "video.mp4")["frames"] == m["video"]["frames"] == 120
        assert is_done(out / shot, m["cache_key"])     # every file matches its size and sha256
    assert (out / "report.html").is_file() and (out / "timeline.otio").is_file()
