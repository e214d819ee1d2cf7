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


# ---- 3, 4, 9. numbers, quotes and line ends in the shot list ---------------------------------

HEAD = "scene,shot,prompt,duration,fps,keyframes\n"


def _load(tmp_path, text: str | bytes):
    from keyrender.shotlist import load_shotlist

    p = tmp_path / "s.csv"
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return load_shotlist(p)


@pytest.mark.parametrize("row, column", [
    ("1,A,p,1e1000000000,24,", "duration"),
    ("1,A,p,1,1e-1000000000,", "fps"),
    ("1,A,p,2,24,0;1e1000000000;2", "keyframes"),
    ("1,A,p,1e5000,24,", "duration"),
    ("1,A,p,1,1e5000,", "fps"),
    ("1,A,p,1,99999999999999999999999999/1,", "fps"),
])
def test_huge_exponents_are_reported_at_once_not_hung(tmp_path, row, column):
    import time

    from keyrender.shotlist import ShotListError

    t0 = time.perf_counter()
    with pytest.raises(ShotListError) as e:
        _load(tmp_path, HEAD + "1,ok,p,1,24,\n" + row + "\n")
    assert time.perf_counter() - t0 < 2
    assert f"s.csv:3: column '{column}'" in str(e.value), str(e.value)


def test_huge_exponent_in_the_cli_dry_run_is_exit_2(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text(HEAD + "1,A,p,1e5000,24,\n")
    r = run("run", str(p), "--dry-run", "--out", str(tmp_path / "out"))
    assert r.exit_code == 2 and "Traceback" not in r.output and "s.csv:2: column 'duration'" in r.output


def test_unterminated_quote_is_reported_with_its_line_not_swallowing_rows(tmp_path):
    from keyrender.shotlist import ShotListError

    # at the end of the file: every later row is inside the open quote
    with pytest.raises(ShotListError) as e:
        _load(tmp_path, HEAD + '1,A,"p,1,24,\n1,B,p,1,24,\n1,C,p,1,24,\n')
    assert "s.csv:2: " in str(e.value) and "never closed" in str(e.value)
    # closed again further down: the rows in between were swallowed into one prompt
    with pytest.raises(ShotListError) as e:
        _load(tmp_path, HEAD + '1,A,"p,1,24,\n1,B,p,1,24,\n1,C,p",1,24,\n1,D,p,1,24,\n')
    assert "s.csv:2: " in str(e.value) and "closing \" missing" in str(e.value)
    # a prompt over two lines is fine
    sl = _load(tmp_path, HEAD + '1,A,"p\nsecond line",1,24,\n1,B,p,1,24,\n')
    assert [s.id for s in sl.shots] == ["A", "B"] and sl.shots[1].line == 4


def test_cr_only_line_ends_read_like_lf(tmp_path):
    sl = _load(tmp_path, (HEAD + "1,A,p,1,24,\n1,B,p,2,24,\n").replace("\n", "\r"))
    assert [(s.id, s.line, s.frames) for s in sl.shots] == [("A", 2, 24), ("B", 3, 48)]


def test_overlong_field_is_one_line_error(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text(HEAD + '1,A,"' + "x" * 200000 + '",1,24,\n')
    r = run("run", str(p), "--dry-run", "--out", str(tmp_path / "out"))
    assert r.exit_code == 2 and "Traceback" not in r.output and "s.csv:2: " in r.output
    assert "longer than 131072 characters" in r.output and len(r.output) < 1000


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_device_folder_and_oversized_shot_lists_are_refused(tmp_path):
    for path, words in ((Path("/dev/zero"), "not a regular file"), (tmp_path, "is a directory")):
        r = run("run", str(path), "--dry-run", "--out", str(tmp_path / "out"))
        assert r.exit_code == 2 and words in r.output, r.output
    big = tmp_path / "big.csv"
    with open(big, "wb") as fh:
        fh.write(HEAD.encode())
        fh.truncate(17 << 20)
    r = run("run", str(big), "--dry-run", "--out", str(tmp_path / "out"))
    assert r.exit_code == 2 and "larger than 16 MiB" in r.output
