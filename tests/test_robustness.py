"""Trying to break a render as a careless user or an attacker would (issue 14): nothing that
keyrender did not write is replaced or deleted, memory does not grow with the number of shots,
malformed input is reported with its line, never hangs and never half-renders."""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from keyrender.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# ---- 1. never replace what keyrender did not write -------------------------------------------


def _tree(p: Path) -> dict[str, bytes]:
    return {str(f.relative_to(p)): f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file()}


@pytest.mark.parametrize("shot_id", ["cast", "storyboard", "notes.txt"])
def test_shot_named_like_a_users_folder_or_file_is_refused_and_nothing_is_touched(project, shot_id):
    (project / "notes.txt").write_text("the user's own notes\n")
    csv = project / "s.csv"
    csv.write_text("scene,shot,prompt,characters,duration,keyframes,keyframe_images\n"
                   f"1,{shot_id},p,eileen,1,2,storyboard/1A_0.jpg;storyboard/1A_1.jpg\n"
                   "1,ok,p,eileen,1,2,storyboard/1A_0.jpg;storyboard/1A_1.jpg\n")
    before = _tree(project)
    for extra in (["--dry-run"], []):
        r = run("run", str(csv), "--out", str(project), *extra)
        assert r.exit_code == 2, r.output
        assert f"s.csv:2: column 'shot': shot '{shot_id}'" in r.output and "not written by keyrender" in r.output
        assert "Traceback" not in r.output
    assert _tree(project) == before  # the cast, the storyboard and the notes are untouched, nothing added


@pytest.mark.parametrize("shot_id", ["report.html", "timeline.otio", "REPORT.HTML"])
def test_names_keyrender_writes_in_the_output_folder_are_reserved(project, shot_id):
    csv = project / "s.csv"
    csv.write_text("scene,shot,prompt,duration,keyframes,keyframe_images\n"
                   f"1,{shot_id},p,1,2,storyboard/1A_0.jpg;storyboard/1A_1.jpg\n")
    r = run("run", str(csv), "--out", str(project / "out"), "--dry-run")
    assert r.exit_code == 2 and "reserved" in r.output and ":2: column 'shot'" in r.output, r.output


def test_own_shot_folders_are_still_replaced_and_a_foreign_one_is_not(project):
    out = project / "out"
    csv = project / "shotlist.csv"
    assert run("run", str(csv), "--out", str(out), "--only", "1A").exit_code == 0
    r = run("run", str(csv), "--out", str(out), "--only", "1A", "--force")
    assert r.exit_code == 0 and "1 rendered" in r.output  # its own folder: replaced
    # a folder the user put there under a shot's name, without keyrender's manifest: refused
    (out / "2A").mkdir()
    (out / "2A" / "mine.txt").write_text("keep me")
    r = run("run", str(csv), "--out", str(out))
    assert r.exit_code == 2 and "2A" in r.output and "not written by keyrender" in r.output
    assert (out / "2A" / "mine.txt").read_text() == "keep me"


def test_leftover_cleaning_spares_the_users_dot_files(project):
    out = project / "out"
    out.mkdir()
    (out / ".old-photos").mkdir()
    (out / ".old-photos" / "a.txt").write_text("mine")
    (out / ".staging-notes").write_text("mine too")
    assert run("run", str(project / "shotlist.csv"), "--out", str(out), "--only", "2A").exit_code == 0
    assert (out / ".old-photos" / "a.txt").read_text() == "mine" and (out / ".staging-notes").is_file()


# ---- 2. a missing face model costs no memory per shot ----------------------------------------


def test_missing_face_model_error_keeps_no_frames_alive(project, tmp_path):
    from keyrender.errors import ModelNotFoundError
    from keyrender.pipeline import RenderContext, RenderOptions

    opts = RenderOptions(out=tmp_path / "out", face_model=str(tmp_path / "no-such-face-model"))
    context = RenderContext(opts, project / "cast", lambda e: None)

    def one_shot():
        frames = np.zeros((64, 64, 3), np.uint8)  # stands for a shot's frames
        ref = weakref.ref(frames)
        try:
            context.identities(["eileen"])
        except ModelNotFoundError as exc:
            depth = 0
            tb = exc.__traceback__
            while tb is not None:
                depth, tb = depth + 1, tb.tb_next
            return ref, depth, str(exc)
        raise AssertionError("expected ModelNotFoundError")

    results = [one_shot() for _ in range(5)]
    gc.collect()
    assert all(ref() is None for ref, _, _ in results), "a shot's frames are kept alive by the stored error"
    depths = {d for _, d, _ in results}
    assert len(depths) == 1, f"the error's traceback grows shot after shot: {depths}"
    assert len({m for *_, m in results}) == 1 and "no-such-face-model" in results[0][2]
