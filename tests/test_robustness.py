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
from helpers import can_mount_tmpfs, run


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


@pytest.mark.slow
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
    from keyrender.core.errors import ModelNotFoundError
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
    from keyrender.core.shotlist import load_shotlist

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

    from keyrender.core.shotlist import ShotListError

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
    from keyrender.core.shotlist import ShotListError

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


# ---- 5, 7, 10. images: one reader, limits before decoding, every damaged one at once ----------


def _jpeg(path: Path, w: int, h: int, orientation: int = 1) -> np.ndarray:
    from PIL import Image

    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 4, : w // 4] = (255, 0, 0)  # a red block in the stored top-left corner
    im = Image.fromarray(img)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, quality=95, exif=exif)
    return img


def test_exif_orientation_is_honoured_by_run(project):
    # a phone photo held upright: stored 128x64 landscape, EXIF orientation 6 (rotate 90 clockwise)
    for i in range(2):
        _jpeg(project / "storyboard" / f"up{i}.jpg", 128, 64, orientation=6)
    csv = project / "s.csv"
    csv.write_text("scene,shot,prompt,duration,keyframes,keyframe_images\n"
                   "1,U,p,0.5,2,storyboard/up0.jpg;storyboard/up1.jpg\n")
    out = project / "out"
    r = run("run", str(csv), "--out", str(out))
    assert r.exit_code == 0, r.output
    from keyrender.outputs.media import load_image

    kf = load_image(out / "U" / "keyframes" / "kf000_f00000.png")
    assert kf.shape == (128, 64, 3)  # portrait, as the phone showed it
    assert kf[5, -5, 0] > 200 and kf[5, 5, 0] < 50  # the stored top-left is now top-right


def test_damaged_images_and_oversized_storyboards_are_all_reported_with_lines(project):
    from PIL import Image

    sb = project / "storyboard"
    good = (sb / "1A_0.jpg").read_bytes()
    (sb / "cut.jpg").write_bytes(good[: len(good) // 2])                 # a truncated download
    Image.new("RGB", (4800, 96)).save(sb / "wide.png")                   # over 4096
    # a 30000 x 30000 PNG header: refused from its header, never decoded
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    (sb / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
                                  + chunk(b"IDAT", zlib.compress(b"\0" * 100000)) + chunk(b"IEND", b""))
    csv = project / "s.csv"
    csv.write_text("scene,shot,prompt,characters,duration,keyframes,keyframe_images\n"
                   "1,A,p,,1,2,storyboard/cut.jpg;storyboard/1A_1.jpg\n"
                   "1,B,p,,1,2,storyboard/wide.png;storyboard/wide.png\n"
                   "1,C,p,,1,2,storyboard/1A_0.jpg;storyboard/bomb.png\n"
                   "1,D,p,zoe,1,2,storyboard/1A_0.jpg;storyboard/1A_1.jpg\n")
    r = run("run", str(csv), "--out", str(project / "out"), "--dry-run")
    assert r.exit_code == 2, r.output
    assert "s.csv:2: column 'keyframe_images': 'storyboard/cut.jpg'" in r.output and "truncated" in r.output
    assert "s.csv:3: column 'keyframe_images'" in r.output and "4800" in r.output and "outside 64..4096" in r.output
    assert "s.csv:4: column 'keyframe_images'" in r.output and "900,000,000 pixels" in r.output
    assert "s.csv:5: column 'characters'" in r.output  # the row errors come in the same pass
    # with the shot's own size the wide storyboard is fine (scaled to fit)
    csv.write_text("scene,shot,prompt,duration,keyframes,keyframe_images,width,height\n"
                   "1,B,p,1,2,storyboard/wide.png;storyboard/wide.png,512,64\n")
    assert run("run", str(csv), "--out", str(project / "out"), "--dry-run").exit_code == 0


def test_empty_cast_folder_is_reported_with_the_row_errors(project):
    for ref in (project / "cast" / "eileen").iterdir():
        ref.unlink()
    csv = project / "shotlist.csv"
    csv.write_text(csv.read_text().replace(",23.976,", ",fast,"))
    r = run("run", str(csv), "--out", str(project / "out"), "--dry-run")
    assert r.exit_code == 2
    assert "character 'eileen' has no reference images" in r.output and "'fast' is not a frame rate" in r.output


def test_overlong_shot_id_is_refused_at_validation(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text(HEAD + f"1,{'a' * 240},p,1,24,\n")
    r = run("run", str(p), "--dry-run", "--out", str(tmp_path / "out"))
    assert r.exit_code == 2 and "s.csv:2: column 'shot'" in r.output and "at most" in r.output


# ---- 6, 9, 11. the output folder: locked, full, read-only, leftovers ------------------------


def test_second_run_on_a_locked_output_says_who_holds_it(project):
    import os
    import socket

    from keyrender.pipeline import OutputLock

    from keyrender.outputs.staging import create_staging

    out = project / "out"
    out.mkdir()
    staging = create_staging(out, "1A")  # the first run's shot in progress
    with OutputLock(out):
        r = run("run", str(project / "shotlist.csv"), "--out", str(out))
        assert r.exit_code == 1, r.output
        assert f"pid {os.getpid()} on {socket.gethostname()}, since " in r.output and "in use" in r.output
        assert staging.is_dir(), "the second run deleted the first one's staging folder"
        assert "Traceback" not in r.output
    r = run("run", str(project / "shotlist.csv"), "--out", str(out), "--only", "2A")
    assert r.exit_code == 0 and not staging.exists()  # a later run cleans what the killed one left


@pytest.mark.parametrize("err, words", [(28, "the disk is full"), (30, "read-only file system")])
def test_full_or_read_only_output_stops_the_run_with_one_message(project, monkeypatch, err, words):
    import os

    from keyrender.outputs import media

    def failing_write(self, frame):
        raise OSError(err, os.strerror(err), str(self.path))

    monkeypatch.setattr(media.VideoWriter, "write", failing_write)
    out = project / "out"
    r = run("run", str(project / "shotlist.csv"), "--out", str(out))
    assert r.exit_code == 1, r.output
    assert r.output.count("error: ") == 1 and words in r.output and "FAILED" not in r.output
    assert not [p for p in out.iterdir() if p.name.startswith(".staging-")]


def test_killed_report_writes_leave_no_temp_files_after_the_next_run(project):
    out = project / "out"
    out.mkdir()
    # killed writes: one before a byte was written, two with keyrender's head in them (its marker)
    (out / ".report.ab12cd_3.tmp.html").write_text("")
    (out / ".report.q1w2e3r4.tmp.html").write_text('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                                                   '<meta name="generator" content="keyrender">\n<title>keyr')
    (out / ".timeline.zz99yy00.tmp.otio").write_text('{\n    "OTIO_SCHEMA": "Timeline.1",\n    "metadata": {\n'
                                                     '        "keyrender": {\n            "shotl')
    (out / ".report.mine.html").write_text("not keyrender's")
    (out / ".report.abcd1234.tmp.html").write_text("named like one, but the user's")  # no marker: kept
    assert run("run", str(project / "shotlist.csv"), "--out", str(out), "--only", "2A").exit_code == 0
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [
        ".keyrender-shotlist.json", ".keyrender.lock", ".report.abcd1234.tmp.html", ".report.mine.html"]


# ---- 8, 11. keyrender interpolate A B --frames N ---------------------------------------------


@pytest.mark.slow
def test_interpolate_pair_streams_pads_names_and_cleans_only_its_own_frames(project, tmp_path):
    from keyrender.interpolate.retime import interpolate_pair
    from keyrender.outputs.media import load_image

    a, b = project / "storyboard" / "2A_0.jpg", project / "storyboard" / "2A_1.jpg"
    out = tmp_path / "frames"
    r = run("interpolate", str(a), str(b), "--frames", "12", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("frame_*.png"))[-1] == "frame_0013.png"
    (out / "mine.png").write_bytes(b"user's")
    # fewer frames into the same folder: the 14 old ones are replaced, nothing stale is left
    assert run("interpolate", str(a), str(b), "--frames", "3", "--out", str(out)).exit_code == 0
    assert sorted(p.name for p in out.glob("frame_*.png")) == [f"frame_000{i}.png" for i in range(5)]
    assert (out / "mine.png").read_bytes() == b"user's"

    class Counting:  # frames are written as they are made: never more than one is held
        name = "counting"
        def inbetween(self, x, y, times, info=None):
            for i, t in enumerate(times):
                if 0 < i < 5:
                    assert len(list(out2.glob("frame_*.png"))) == i + 1, "a frame was held back"
                yield x
    out2 = tmp_path / "wide"
    from PIL import Image

    a, b = tmp_path / "a.png", tmp_path / "b.png"  # small frames: 10002 of them are written
    Image.new("RGB", (8, 8), (10, 20, 30)).save(a)
    Image.new("RGB", (8, 8), (30, 20, 10)).save(b)
    res = interpolate_pair(a, b, 10000, out2, Counting())
    names = sorted(p.name for p in out2.glob("frame_*.png"))
    assert res["frames"] == 10002 and names[0] == "frame_00000.png" and names[-1] == "frame_10001.png"
    assert load_image(out2 / names[-1]).shape == load_image(b).shape
    # a folder holding frames it did not write is refused
    other = tmp_path / "other"
    other.mkdir()
    (other / "frame_0001.png").write_bytes(b"someone else's")
    r = run("interpolate", str(a), str(b), "--frames", "3", "--out", str(other))
    assert r.exit_code == 2 and "not written by keyrender" in r.output
    assert (other / "frame_0001.png").read_bytes() == b"someone else's"


def test_interpolate_rejects_a_truncated_jpeg_like_run(project, tmp_path):
    good = (project / "storyboard" / "2A_0.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good[: len(good) * 2 // 3])
    r = run("interpolate", str(cut), str(project / "storyboard" / "2A_1.jpg"), "--frames", "2", "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "truncated" in r.output and "Traceback" not in r.output, r.output


def _faststart(src: Path, dst: Path) -> Path:
    """`src` remuxed with its index (moov) first, as web and phone videos are: cut short, it still
    opens and decodes up to the cut (with the index last, a cut file does not open at all)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("index_first", [False, True])
def test_truncated_video_to_interpolate_factor_is_one_line_exit_2(project, tmp_path, index_first):
    out = project / "out"
    assert run("run", str(project / "shotlist.csv"), "--out", str(out), "--only", "2A").exit_code == 0
    src = out / "2A" / "video.mp4"
    if index_first:
        src = _faststart(src, tmp_path / "fs.mp4")
    video = src.read_bytes()
    work = tmp_path / "work"
    work.mkdir()
    cut = work / "cut.mp4"
    cut.write_bytes(video[: len(video) * 2 // 3])
    r = CliRunner().invoke(main, ["interpolate", str(cut), "--factor", "2", "--out", str(work / "x.mp4")])
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit), r.exception  # a message, not an escaped exception
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {cut}: "), r.output
    assert ("truncated" if index_first else "cannot open") in lines[0], r.output
    assert sorted(p.name for p in work.iterdir()) == ["cut.mp4"]  # no video, no temp file left


@pytest.mark.parametrize("err, words", [(28, "the disk is full"), (30, "read-only file system")])
def test_interpolate_factor_into_a_full_or_read_only_output_is_one_line_exit_1(project, tmp_path, monkeypatch, err, words):
    import os

    from keyrender.outputs import media

    src = project / "out"
    assert run("run", str(project / "shotlist.csv"), "--out", str(src), "--only", "2A").exit_code == 0

    def failing_write(self, frame):
        raise OSError(err, os.strerror(err), str(self.path))

    monkeypatch.setattr(media.VideoWriter, "write", failing_write)
    work = tmp_path / "work"
    work.mkdir()
    r = CliRunner().invoke(main, ["interpolate", str(src / "2A" / "video.mp4"), "--factor", "2", "--out", str(work / "x.mp4")])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], r.output
    assert list(work.iterdir()) == []


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory) -> Path:
    from keyrender.identity.tiny import make_tiny_face_pack

    return make_tiny_face_pack(tmp_path_factory.mktemp("pack") / "tiny")


def _tiny_face_setup(tmp_path, pack):
    """A cast of one for the generated insightface-shaped pack, and a frame of her on screen."""
    import cv2

    from helpers import synthetic_frame

    cast = tmp_path / "cast"
    (cast / "alice").mkdir(parents=True)
    for k, pos in enumerate([(88, 88), (80, 96), (96, 80)]):
        assert cv2.imwrite(str(cast / "alice" / f"{k}.png"), synthetic_frame([(1, pos)])[:, :, ::-1])
    return pack, cast, synthetic_frame([(1, (88, 88))])


def test_check_says_a_truncated_video_is_truncated(tmp_path, tiny_pack):
    import av

    pack, cast, frame = _tiny_face_setup(tmp_path, tiny_pack)
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", format="mp4", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(48):  # noise under her face: every frame costs bytes, a cut lands mid-video
            f = frame.copy()
            f[-40:] = rng.integers(0, 256, f[-40:].shape, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    args = ["--cast", str(cast), "--characters", "alice", "--face-model", str(pack)]
    r = run("check", str(whole), *args)
    assert r.exit_code == 0 and "no drift" in r.output and "truncated:" not in r.output, r.output
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    r = CliRunner().invoke(main, ["check", str(cut), *args])
    assert r.exit_code == 2, r.output  # no drift in what decodes is not "no drift"
    assert "truncated" in r.output and "its header states 2.00 s" in r.output, r.output
    assert "no drift" not in r.output.replace("no drift in the", ""), r.output
    r = CliRunner().invoke(main, ["check", str(cut), *args, "--json"])
    assert r.exit_code == 2
    audit = json.loads(r.output)
    assert audit["truncated"] and 0 < audit["frames_decoded"] < 48 and audit["drift"] is False


@pytest.mark.skipif(not can_mount_tmpfs("ro"), reason="needs `unshare -rm` (a private mount namespace) to mount a read-only tmpfs")
def test_interpolate_into_a_real_read_only_file_system(project, tmp_path):
    """A real read-only mount (a tmpfs in a private mount namespace: no privileges, nothing
    outside the test sees it); as root, a chmod would not stop a write."""
    import subprocess
    import sys

    ro = tmp_path / "ro"
    ro.mkdir()
    a, b = project / "storyboard" / "2A_0.jpg", project / "storyboard" / "2A_1.jpg"
    cmds = [f"{sys.executable} -m keyrender.cli interpolate {a} {b} --frames 2 --out {ro / 'frames'}"]
    out = project / "out"
    assert run("run", str(project / "shotlist.csv"), "--out", str(out), "--only", "2A").exit_code == 0
    cmds.append(f"{sys.executable} -m keyrender.cli interpolate {out / '2A' / 'video.mp4'} --factor 2 --out {ro / 'x.mp4'}")
    for cmd in cmds:
        p = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro tmpfs {ro} && {cmd}"],
                           capture_output=True, text=True, timeout=120)
        lines = (p.stdout + p.stderr).strip().splitlines()
        assert p.returncode == 1, p.stderr
        assert len(lines) == 1 and lines[0].startswith(f"error: cannot write into {ro}") and "read-only file system" in lines[0], p.stderr


# ---- 11. identity commands: a name is never a path -------------------------------------------


def test_identity_commands_read_nothing_outside_the_store(tmp_path, tiny_pack):
    import shutil

    pack, cast, _ = _tiny_face_setup(tmp_path, tiny_pack)
    assert run("identity", "build", str(cast), "--face-model", str(pack)).exit_code == 0
    # the store keeps one folder per face model: identities/<model label>/alice.json
    (saved,) = (cast / ".keyrender" / "identities").glob("*/alice.json")
    # a saved identity put outside the store (reachable from it with enough ../)
    for ext in ("json", "npz"):
        shutil.copy(saved.with_suffix(f".{ext}"), tmp_path / f"x.{ext}")
    assert run("identity", "show", "alice", "--cast", str(cast)).exit_code == 0
    for name in ("../../../x", str(tmp_path / "x"), ".keyrender", "..\\x"):
        for args in (["identity", "show", name, "--cast", str(cast)],
                     ["identity", "compare", name, "alice", "--cast", str(cast), "--face-model", str(pack)]):
            r = run(*args)
            assert r.exit_code == 2 and "is not a character name" in r.output and "threshold" not in r.output, (args, r.output)


# ---- 11. a notes-only edit ---------------------------------------------------------------------


def test_notes_only_edit_updates_the_cached_manifest_without_rendering(project):
    out = project / "out"
    csv = project / "shotlist.csv"
    assert run("run", str(csv), "--out", str(out), "--only", "2A").exit_code == 0
    video = out / "2A" / "video.mp4"
    before = (video.read_bytes(), video.stat().st_mtime_ns)
    csv.write_text(csv.read_text().replace("keyframes given as times", "approved by the director"))
    r = run("run", str(csv), "--out", str(out), "--only", "2A")
    assert r.exit_code == 0 and "0 rendered, 1 cached" in r.output, r.output
    m = json.loads((out / "2A" / "manifest.json").read_text())
    assert m["inputs"]["notes"] == "approved by the director" and m["inputs"]["row"]["notes"] == "approved by the director"
    assert (video.read_bytes(), video.stat().st_mtime_ns) == before  # not rendered again
    assert "approved by the director" in (out / "report.html").read_text()
    from keyrender.pipeline import RenderOptions, prepare

    _, jobs = prepare(csv, RenderOptions(out=out, only=["2A"]))
    assert jobs[0].done  # the rewritten manifest still marks the render current


# ---- 11. images come from the shot list's folder only, unless allowed -------------------------


def test_images_outside_the_shot_list_folder_are_refused_unless_allowed(project, tmp_path):
    import os
    import shutil

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(project / "storyboard" / "2A_0.jpg", elsewhere / "secret.jpg")
    os.symlink(elsewhere / "secret.jpg", project / "storyboard" / "link_out.jpg")
    os.symlink(project / "storyboard" / "2A_1.jpg", project / "storyboard" / "link_in.jpg")  # stays inside: fine
    csv = project / "s.csv"
    ok = "storyboard/2A_0.jpg"
    csv.write_text("scene,shot,prompt,duration,keyframes,keyframe_images,style_image\n"
                   f"1,A,p,1,2,{elsewhere / 'secret.jpg'};{ok},\n"
                   f"1,B,p,1,2,{ok};../elsewhere/secret.jpg,\n"
                   f"1,C,p,1,2,{ok};storyboard/link_out.jpg,\n"
                   f"2,D,p,1,2,{ok};storyboard/link_in.jpg,../elsewhere/secret.jpg\n"
                   f"3,E,p,1,2,{project / ok};./storyboard/../storyboard/link_in.jpg,\n")
    r = run("run", str(csv), "--out", str(project / "out"), "--dry-run")
    assert r.exit_code == 2, r.output
    assert f"s.csv:2: column 'keyframe_images': '{elsewhere / 'secret.jpg'}' is an absolute path, outside" in r.output
    assert "s.csv:3: column 'keyframe_images': '../elsewhere/secret.jpg' goes up with '..'" in r.output
    assert f"s.csv:4: column 'keyframe_images': 'storyboard/link_out.jpg' is a link to {elsewhere / 'secret.jpg'}" in r.output
    assert "s.csv:5: column 'style_image'" in r.output and "--allow-outside-images" in r.output
    assert "s.csv:6" not in r.output  # an absolute path or a link that stays inside is fine
    r = run("run", str(csv), "--out", str(project / "out"), "--dry-run", "--allow-outside-images")
    assert r.exit_code == 0, r.output
    from keyrender.pipeline import RenderOptions, prepare

    _, jobs = prepare(csv, RenderOptions(out=project / "out", allow_outside_images=True))
    assert [j.shot.id for j in jobs] == ["A", "B", "C", "D", "E"]
