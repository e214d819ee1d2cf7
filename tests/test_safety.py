"""Never touch what isn't ours (issue 21): the third trial by a careless user and an attacker.

Each test is one of the issue's items, reproduced as the issue describes it; each fails on the
code before the fix. Section numbers are the issue's items.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from keyrender.cli import main
from helpers import can_mount_tmpfs, run


def _tree(p: Path) -> dict[str, bytes]:
    return {str(f.relative_to(p)): (f.read_bytes() if f.is_file() else b"<dir>")
            for f in sorted(p.rglob("*")) if not f.is_symlink()}


def _one_error(r, code: int) -> str:
    """The command ended with `code`, printed no traceback and one error (an output-folder error
    lists its problems on the lines below it): the error's text."""
    assert r.exit_code == code, r.output
    assert isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output, r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, r.output
    return r.output[r.output.index(errors[0]):]


def _video(path: Path, frames: int = 6, size: tuple[int, int] = (64, 48)) -> Path:
    from keyrender.outputs.media import VideoWriter

    rng = np.random.default_rng(0)
    with VideoWriter(path, 24, *size) as w:
        for _ in range(frames):
            w.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    return path


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory) -> Path:
    from keyrender.identity.tiny import make_tiny_face_pack

    return make_tiny_face_pack(tmp_path_factory.mktemp("pack") / "tiny")


def _tiny_cast(tmp_path: Path) -> Path:
    """A cast of one (alice) for the generated insightface-shaped pack."""
    import cv2

    from helpers import synthetic_frame

    cast = tmp_path / "cast"
    (cast / "alice").mkdir(parents=True)
    for k, pos in enumerate([(88, 88), (80, 96), (96, 80)]):
        assert cv2.imwrite(str(cast / "alice" / f"{k}.png"), synthetic_frame([(1, pos)])[:, :, ::-1])
    return cast


# ---- 1. leftover cleaning deletes only folders keyrender marked ----------------------------------


def test_leftover_cleaning_spares_folders_that_only_look_like_keyrenders(project):
    out = project / "out"
    users = [".old-photos-20240101", ".staging-site-2023abcd", ".staging-site-0123456789abcdef",
             ".old-1A-fedcba9876543210"]
    for name in users:
        (out / name).mkdir(parents=True)
        (out / name / "mine.txt").write_text(f"the user's {name}")
    # one that names itself as keyrender's marker would, but is not the folder the marker names
    (out / users[2] / ".keyrender-temp").write_text(json.dumps({"keyrender": "staging", "folder": "other"}))
    assert run("run", project / "shotlist.csv", "--out", out, "--only", "2A").exit_code == 0
    for name in users:
        assert (out / name / "mine.txt").read_text() == f"the user's {name}", name


def test_a_killed_runs_marked_folders_are_cleaned_and_a_cut_swap_is_undone(tmp_path):
    from keyrender.outputs.staging import MARKER, _mark, clean_leftovers, create_staging

    out = tmp_path / "out"
    staging = create_staging(out, "1A")
    (staging / "video.mp4").write_bytes(b"half a video")
    # a swap cut between its two renames: the previous render of 2A is aside, 2A is gone
    old = out / ".old-2A-0123456789abcdef"
    old.mkdir()
    (old / "manifest.json").write_text('{"schema": "keyrender.manifest/4"}')
    _mark(old, "old", old.name)
    clean_leftovers(out)
    assert not staging.exists()
    assert (out / "2A" / "manifest.json").is_file() and not (out / "2A" / MARKER).exists()
    assert sorted(p.name for p in out.iterdir()) == ["2A"]


# ---- 2. a symlinked output folder is not written through -----------------------------------------


def test_default_output_folder_that_is_a_symlink_is_refused(project, tmp_path):
    anywhere = tmp_path / "anywhere"
    anywhere.mkdir()
    (anywhere / "report.html").write_text("someone else's report")
    (anywhere / ".old-site-20240101").mkdir()
    (anywhere / ".old-site-20240101" / "x").write_text("someone else's")
    (project / "renders").symlink_to(anywhere)
    before = _tree(anywhere)
    for extra in (["--dry-run"], []):
        line = _one_error(run("run", project / "shotlist.csv", *extra, catch=True), 2)
        assert "renders is a symlink" in line and "--out" in line, line
    assert _tree(anywhere) == before and not (anywhere / ".keyrender.lock").exists()


def test_output_folder_named_with_out_may_be_a_symlink(project, tmp_path):
    anywhere = tmp_path / "disk"
    anywhere.mkdir()
    (project / "renders").symlink_to(anywhere)
    r = run("run", project / "shotlist.csv", "--out", project / "renders", "--only", "2A")
    assert r.exit_code == 0, r.output
    assert (anywhere / "2A" / "video.mp4").is_file()


def test_lock_file_that_is_a_symlink_is_not_written_through(project, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = project / "out"
    out.mkdir()
    (out / ".keyrender.lock").symlink_to(victim)
    r = run("run", project / "shotlist.csv", "--out", out, "--only", "2A", catch=True)
    assert ".keyrender.lock is a symlink" in _one_error(r, 2)
    assert victim.read_text() == "precious"


# ---- 3. the user's own files: report, timeline, files inside a shot folder -----------------------


@pytest.mark.parametrize("name", ["report.html", "timeline.otio"])
def test_users_report_or_timeline_in_the_output_folder_is_never_overwritten(project, name):
    out = project / "out"
    out.mkdir()
    (out / name).write_text("the user's own file\n")
    for extra in (["--dry-run"], []):
        line = _one_error(run("run", project / "shotlist.csv", "--out", out, *extra, catch=True), 2)
        assert f"{name} was not written by keyrender" in line, line
    assert (out / name).read_text() == "the user's own file\n"
    assert not (out / "2A").exists()


def test_report_and_timeline_writers_leave_a_file_they_did_not_write(project, tmp_path):
    from keyrender.core.errors import KeyrenderError
    from keyrender.core.jobs import RunResult
    from keyrender.core.shotlist import load_shotlist
    from keyrender.outputs.report import write_report
    from keyrender.outputs.timeline import write_otio

    sl = load_shotlist(project / "shotlist.csv")
    result = RunResult([], tmp_path)
    for name, write in (("report.html", write_report), ("timeline.otio", write_otio)):
        p = tmp_path / name
        p.write_text("mine")
        with pytest.raises(KeyrenderError, match="not keyrender's"):
            write(result, sl, p)
        assert p.read_text() == "mine"
        p.unlink()
        write(result, sl, p)      # keyrender's own: written, and replaced next time
        write(result, sl, p)


@pytest.mark.slow
def test_users_files_inside_a_shot_folder_survive_a_rerender(project):
    out = project / "out"
    csv = project / "shotlist.csv"
    assert run("run", csv, "--out", out, "--only", "2A").exit_code == 0
    shot = out / "2A"
    (shot / "my_notes.txt").write_text("call back the actor")
    (shot / "graded").mkdir()
    (shot / "graded" / "v1.mov").write_bytes(b"graded video")
    (shot / "keyframes" / "circled.png").write_bytes(b"my pick")
    video_before = (shot / "video.mp4").read_bytes()
    r = run("run", csv, "--out", out, "--only", "2A", "--force")
    assert r.exit_code == 0 and "1 rendered" in r.output, r.output
    assert (shot / "my_notes.txt").read_text() == "call back the actor"
    assert (shot / "graded" / "v1.mov").read_bytes() == b"graded video"
    assert (shot / "keyframes" / "circled.png").read_bytes() == b"my pick"
    assert (shot / "video.mp4").read_bytes() == video_before  # the render itself is reproducible
    assert not [p.name for p in out.iterdir() if p.name.startswith((".old-", ".staging-"))]


def test_a_users_file_under_a_name_the_new_render_writes_is_kept_beside(tmp_path):
    from keyrender.outputs.staging import settle_old

    old, final = tmp_path / ".old-1A-0123456789abcdef", tmp_path / "1A"
    for d in (old / "keyframes", final / "keyframes"):
        d.mkdir(parents=True)
    (old / "manifest.json").write_text(json.dumps({"schema": "keyrender.manifest/4", "files": [
        {"path": "video.mp4"}, {"path": "keyframes/kf000_f00000.png"}]}))
    (old / "video.mp4").write_bytes(b"old video")
    (old / "keyframes" / "kf000_f00000.png").write_bytes(b"old keyframe")
    (old / "keyframes" / "kf001_f00023.png").write_bytes(b"the user's")  # not in the old manifest
    (final / "keyframes" / "kf001_f00023.png").write_bytes(b"new keyframe")
    (final / "video.mp4").write_bytes(b"new video")
    settle_old(old, final)
    assert not old.exists()
    assert (final / "keyframes" / "kf001_f00023.png").read_bytes() == b"new keyframe"
    assert (final / "keyframes" / "kf001_f00023.yours.png").read_bytes() == b"the user's"
    assert (final / "video.mp4").read_bytes() == b"new video"
    assert not (final / "keyframes" / "kf000_f00000.png").exists()


# ---- 4. two shot lists in one folder ---------------------------------------------------------------


@pytest.mark.slow
def test_a_second_shot_list_does_not_take_over_the_first_ones_folder(project, tmp_path):
    csv = project / "shotlist.csv"
    ep2 = project / "episode2.csv"
    ep2.write_text(csv.read_text())  # it also has a shot 1A
    assert run("run", csv, "--only", "2A").exit_code == 0  # default: renders/ next to the list
    renders = project / "renders"
    before = _tree(renders)
    for extra in (["--dry-run"], []):
        line = _one_error(run("run", ep2, "--only", "2A", *extra, catch=True), 2)
        assert "holds the renders of another shot list" in line and "shotlist.csv" in line, line
    assert _tree(renders) == before
    # a moved (or copied) project is the same list: its renders are reused
    moved = tmp_path / "moved"
    shutil.copytree(project, moved, symlinks=True)
    r = run("run", moved / "shotlist.csv", "--only", "2A")
    assert r.exit_code == 0 and "0 rendered, 1 cached" in r.output, r.output
    # --force: the other list takes the folder (every shot again), and the first one is refused
    assert run("run", ep2, "--only", "2A", "--force").exit_code == 0
    assert run("run", csv, "--only", "2A", "--dry-run").exit_code == 2


def test_a_folder_from_before_the_record_belongs_to_the_list_its_timeline_names(project):
    csv = project / "shotlist.csv"
    out = project / "out"
    assert run("run", csv, "--out", out, "--only", "2A").exit_code == 0
    (out / ".keyrender-shotlist.json").unlink()  # as keyrender left it before it wrote one
    ep2 = project / "episode2.csv"
    ep2.write_text(csv.read_text())
    assert run("run", ep2, "--out", out, "--dry-run").exit_code == 2
    assert run("run", csv, "--out", out, "--only", "2A").exit_code == 0


# ---- 5. an output over its own input ----------------------------------------------------------------


def test_interpolate_never_writes_its_output_over_its_input(tmp_path):
    clip = _video(tmp_path / "clip.mp4")
    data = clip.read_bytes()
    line = _one_error(run("interpolate", clip, "--factor", "2", "--out", clip, catch=True), 2)
    assert "is the input" in line, line
    os.link(clip, tmp_path / "same.mp4")  # a hard link is the same file too
    _one_error(run("interpolate", clip, "--factor", "2", "--out", tmp_path / "same.mp4", catch=True), 2)
    (tmp_path / "link.mp4").symlink_to(clip)
    _one_error(run("interpolate", clip, "--factor", "2", "--out", tmp_path / "link.mp4", catch=True), 2)
    assert clip.read_bytes() == data


def test_interpolate_pair_never_writes_over_one_of_its_images(project, tmp_path):
    """A frame of an earlier run into the same folder taken as a keyframe: it is among the frames
    this run writes (or removes, with fewer frames), so the run is refused."""
    out = tmp_path / "frames"
    a, b = project / "storyboard" / "2A_0.jpg", project / "storyboard" / "2A_1.jpg"
    assert run("interpolate", a, b, "--frames", "4", "--out", out).exit_code == 0
    for frames in ("4", "1"):  # frame_0003.png rewritten; frame_0003.png removed
        mid = out / "frame_0003.png"
        data = mid.read_bytes()
        line = _one_error(run("interpolate", mid, b, "--frames", frames, "--out", out, catch=True), 2)
        assert "frame_0003.png" in line and "writes or removes" in line, line
        assert mid.read_bytes() == data


def test_check_never_writes_its_plot_over_the_video(tmp_path, tiny_pack):
    clip = _video(tmp_path / "clip.mp4")
    data = clip.read_bytes()
    cast = _tiny_cast(tmp_path)
    r = run("check", clip, "--cast", cast, "--face-model", tiny_pack, "--plot", clip, catch=True)
    assert "is the input" in _one_error(r, 2)
    assert clip.read_bytes() == data
    # nor into the cast, where a PNG becomes a reference photo
    r = run("check", clip, "--cast", cast, "--face-model", tiny_pack, "--plot", cast / "alice" / "plot.png", catch=True)
    assert "inside the cast folder" in _one_error(r, 2)
    assert not (cast / "alice" / "plot.png").exists()


def test_an_image_inside_a_shot_folder_the_run_replaces_is_refused(project):
    out = project / "out"
    csv = project / "shotlist.csv"
    assert run("run", csv, "--out", out, "--only", "2A").exit_code == 0
    kf = sorted((out / "2A" / "keyframes").glob("kf*.png"))[0]
    text = csv.read_text().replace("storyboard/2A_0.jpg", f"out/2A/keyframes/{kf.name}")
    csv.write_text(text)  # 2A changes (it renders again) and reads its own keyframe
    line = _one_error(run("run", csv, "--out", out, "--only", "2A", catch=True), 2)
    assert "column 'keyframe_images'" in line and "lies in shot 2A's folder, which this run replaces" in line, line


# ---- 6. a shipped identity store cannot turn the checks off ---------------------------------------


def test_an_edited_threshold_reads_as_damaged_and_is_rebuilt(tmp_path, tiny_pack):
    from keyrender.identity import IdentityStore, load_face_model

    cast = _tiny_cast(tmp_path)
    embedder = load_face_model(str(tiny_pack))
    store = IdentityStore(cast)
    calibrated = store.build(embedder)["alice"].threshold
    (meta,) = (cast / ".keyrender" / "identities").glob("*/alice.json")
    d = json.loads(meta.read_text())
    d["threshold"] = -5.0
    meta.write_text(json.dumps(d))
    why = store.why_stale("alice", embedder.name)
    assert why is not None and why.startswith("damaged"), why
    r = run("identity", "list", "--cast", cast)
    assert "alice: stale (damaged" in r.output and "threshold=-5" not in r.output, r.output
    events = []
    again = store.build(embedder, progress=events.append)["alice"]
    assert again.threshold == calibrated and [e.action for e in events] == ["built"]


# ---- 7. video frames have the limits of images -----------------------------------------------------


def _png_bomb_video(path: Path, side: int) -> Path:
    """A small file holding one side x side PNG frame (zeros deflate ~1000:1), made without ever
    holding the frame: the PNG is compressed row by row and muxed as it is."""
    import struct
    import zlib
    from fractions import Fraction

    import av

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(6)
    row = bytes(1 + side * 3)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    with av.open(str(path), "w", format="mov") as out:
        s = out.add_stream("png", rate=1)
        s.width, s.height, s.pix_fmt = side, side, "rgb24"
        s.time_base = Fraction(1, 1000)
        packet = av.Packet(png)
        packet.stream, packet.pts, packet.dts, packet.time_base = s, 0, 0, s.time_base
        out.mux(packet)
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return _png_bomb_video(tmp_path_factory.mktemp("bomb") / "bomb.mov", 10240)  # 105 MP, ~300 KB


def test_a_video_with_oversized_frames_is_refused_from_its_header(bomb, tmp_path, tiny_pack):
    assert bomb.stat().st_size < 2 << 20
    line = _one_error(run("interpolate", bomb, "--factor", "2", "--out", tmp_path / "x.mp4", catch=True), 2)
    assert "10240x10240" in line and "100 MP" in line, line
    assert not list(tmp_path.glob("*x*.mp4"))
    cast = _tiny_cast(tmp_path)
    line = _one_error(run("check", bomb, "--cast", cast, "--face-model", tiny_pack, catch=True), 2)
    assert "10240x10240" in line and "100 MP" in line, line


def test_opening_an_oversized_video_decodes_nothing(bomb):
    """Opening a container probes it, and the probe of a PNG track decodes its first frame: the
    limit reaches the probe, so the frame (315 MB as RGB) is never made."""
    import resource

    from keyrender.core.errors import InputError
    from keyrender.outputs.media import open_video

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(2):  # FFmpeg's repeated log line is still read the second time
        with pytest.raises(InputError, match="declares 10240x10240 frames"):
            open_video(bomb)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 150 << 10  # KiB


# ---- 8. planning is linear in the row count --------------------------------------------------------


def test_planning_looks_each_scene_up_without_scanning_them_all(tmp_path):
    from keyrender.core.shotlist import load_shotlist
    from keyrender.pipeline import RenderOptions, plan

    n = 2000
    csv = tmp_path / "long.csv"
    csv.write_text("scene,shot,prompt,frames\n" + "".join(f"s{i},S{i},p,2\n" for i in range(n)))
    sl = load_shotlist(csv)
    scans = []

    class Counted(tuple):
        def __iter__(self):
            scans.append(1)
            return super().__iter__()

    object.__setattr__(sl, "scenes", Counted(sl.scenes))
    jobs = plan(sl, RenderOptions(out=tmp_path / "out", preset="tiny"), cast={})
    assert len(jobs) == n
    assert len(scans) <= 2, f"the scenes were scanned {len(scans)} times for {n} shots"
    assert sl.scene_of(sl.shots[-1]).id == f"s{n - 1}"


# ---- 9, 10. a short write is a full disk; one line where a traceback was -----------------------------


def _short_write(monkeypatch):
    """save_image as it fails on a nearly full disk: numpy's tofile writes part of the file and
    raises an OSError with no errno ("250515 requested and 167936 written")."""
    from keyrender.core import fsutil
    from keyrender.outputs import media

    def short(path, image):
        with fsutil.atomic_path(path) as tmp:
            tmp.write_bytes(b"\x89PNG part")
            raise OSError("250515 requested and 167936 written")

    monkeypatch.setattr(media, "save_image", short)


def test_a_short_write_is_a_full_disk_one_message_exit_1(project, monkeypatch):
    _short_write(monkeypatch)
    out = project / "out"
    line = _one_error(run("run", project / "shotlist.csv", "--out", out, catch=True), 1)
    assert "the disk is full" in line and "FAILED" not in line, line
    assert not [p for p in out.iterdir() if p.name.startswith(".staging-")]


def test_interpolate_into_a_nearly_full_disk_is_one_line(project, tmp_path, monkeypatch):
    _short_write(monkeypatch)
    a, b = project / "storyboard" / "2A_0.jpg", project / "storyboard" / "2A_1.jpg"
    line = _one_error(run("interpolate", a, b, "--frames", "2", "--out", tmp_path / "f", catch=True), 1)
    assert "the disk is full" in line, line


@pytest.mark.skipif(not can_mount_tmpfs("size=64k"), reason="needs `unshare -rm` (a private mount namespace) to mount a small tmpfs")
def test_a_really_nearly_full_disk_is_called_full(project, tmp_path):
    """A real 200 KB file system (a tmpfs in a private mount namespace): the keyframe PNGs no
    longer fit, and the run says so in one line (exit 1), as for ENOSPC."""
    import subprocess

    small = tmp_path / "small"
    small.mkdir()
    cmd = (f"mount -t tmpfs -o size=200k tmpfs {small} && "
           f"{sys.executable} -m keyrender.cli run {project / 'shotlist.csv'} --out {small / 'out'} --only 2A")
    p = subprocess.run(["unshare", "-rm", "sh", "-c", cmd], capture_output=True, text=True, timeout=300)
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]
    assert p.returncode == 1, p.stderr
    assert len(errors) == 1 and "the disk is full" in errors[0] and "Traceback" not in p.stderr, p.stderr


def test_interpolate_into_an_existing_file_or_folder_is_one_line_before_any_work(project, tmp_path, monkeypatch):
    import keyrender.interpolate as interp_pkg

    a, b = project / "storyboard" / "2A_0.jpg", project / "storyboard" / "2A_1.jpg"
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    line = _one_error(run("interpolate", a, b, "--frames", "2", "--out", existing, catch=True), 2)
    assert "is a file" in line and existing.read_text() == "mine", line
    line = _one_error(run("interpolate", a, b, "--frames", "2", "--out", existing / "sub", catch=True), 2)
    assert "is a file" in line, line

    class NoWork:
        name = "flow"

        def inbetween(self, *a, **k):
            raise AssertionError("the retime started before --out was checked")

    monkeypatch.setattr(interp_pkg, "get_interpolator", lambda *a, **k: NoWork())
    clip = _video(tmp_path / "clip.mp4")
    folder = tmp_path / "folder"
    folder.mkdir()
    line = _one_error(run("interpolate", clip, "--factor", "2", "--out", folder, catch=True), 2)
    assert "is a folder" in line, line


def test_check_plot_where_no_file_can_go_is_one_line_before_the_audit(tmp_path, tiny_pack, monkeypatch):
    import keyrender.identity as identity_pkg

    def no_audit(*a, **k):
        raise AssertionError("the audit ran before --plot was checked")

    monkeypatch.setattr(identity_pkg, "audit_video", no_audit)
    clip = _video(tmp_path / "clip.mp4")
    cast = _tiny_cast(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = run("check", clip, "--cast", cast, "--face-model", tiny_pack, "--plot", afile / "p.png", catch=True)
    assert "is a file" in _one_error(r, 2)


# ---- 11. the small ones -----------------------------------------------------------------------------


def test_out_inside_the_cast_is_refused(project):
    before = _tree(project / "cast")
    for extra in (["--dry-run"], []):
        line = _one_error(run("run", project / "shotlist.csv", "--out", project / "cast", *extra, catch=True), 2)
        assert "inside the cast folder" in line, line
    assert _tree(project / "cast") == before


def test_a_symlinked_identity_store_is_not_written_through(tmp_path, tiny_pack, monkeypatch):
    monkeypatch.setenv("KEYRENDER_CACHE", str(tmp_path / "cache"))
    cast = _tiny_cast(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (cast / ".keyrender").symlink_to(elsewhere)
    assert run("identity", "build", cast, "--face-model", tiny_pack).exit_code == 0
    assert list(elsewhere.iterdir()) == []
    assert list((tmp_path / "cache").rglob("alice.json"))


def test_a_decomposed_character_name_matches_its_composed_folder(project):
    import unicodedata

    nfc = unicodedata.normalize("NFC", "José")
    (project / "cast" / "eileen").rename(project / "cast" / nfc)
    csv = project / "shotlist.csv"
    csv.write_text(csv.read_text().replace(",eileen,", "," + unicodedata.normalize("NFD", "José") + ","))
    r = run("run", csv, "--out", project / "out", "--dry-run")
    assert r.exit_code == 0, r.output


def test_check_on_a_fifo_says_what_it_is(tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    line = _one_error(run("check", fifo, "--cast", tmp_path, catch=True), 2)
    assert "not a regular file" in line and "does not exist" not in line, line


def test_many_unknown_columns_are_one_warning_line(tmp_path):
    storyboard = Path(__file__).resolve().parent.parent / "samples" / "storyboard"
    shutil.copytree(storyboard, tmp_path / "storyboard")
    n = 2000
    header = "scene,shot,prompt,duration,keyframes,keyframe_images," + ",".join(f"x{i}" for i in range(n))
    row = "1,A,p,1,2,storyboard/1A_0.jpg;storyboard/1A_1.jpg" + "," * n
    (tmp_path / "s.csv").write_text(header + "\n" + row + "\n")
    r = CliRunner().invoke(main, ["run", str(tmp_path / "s.csv"), "--out", str(tmp_path / "o"), "--dry-run"])
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and f"and {n - 10} more" in lines[0], lines[:3]


@pytest.mark.parametrize("width", ["99999", "4100", "60"])
def test_a_size_out_of_range_suggests_nothing_out_of_range(tmp_path, width):
    from keyrender.core.shotlist import ShotListError, load_shotlist

    p = tmp_path / "s.csv"
    p.write_text(f"scene,shot,prompt,duration,width,height\n1,A,p,1,{width},64\n")
    with pytest.raises(ShotListError) as err:
        load_shotlist(p)
    assert "outside 64..4096" in str(err.value) and "try" not in str(err.value), str(err.value)


def test_an_emptied_manifest_is_an_output_folder_problem_not_a_shot_list_one(project):
    out = project / "out"
    csv = project / "shotlist.csv"
    assert run("run", csv, "--out", out, "--only", "2A").exit_code == 0
    (out / "2A" / "manifest.json").write_text("")
    r = run("run", csv, "--out", out, "--only", "2A", catch=True)
    assert r.exit_code == 2 and "problem in the shot list" not in r.output, r.output
    assert "manifest.json is empty" in r.output and "with the output folder" in r.output, r.output


def test_a_corrupted_store_is_called_damaged_not_unbuilt(tmp_path, tiny_pack):
    cast = _tiny_cast(tmp_path)
    assert run("identity", "build", cast, "--face-model", tiny_pack).exit_code == 0
    (npz,) = (cast / ".keyrender" / "identities").glob("*/alice.npz")
    npz.write_bytes(npz.read_bytes()[:100])
    r = run("identity", "list", "--cast", cast)
    assert "alice: stale (damaged" in r.output and "not built" not in r.output, r.output


@pytest.mark.slow
def test_ctrl_c_during_rays_shutdown_is_one_line_and_exit_130(project, tmp_path):
    """A Ctrl-C that lands while Ray shuts down (the SIGINT is sent from inside Ray's shutdown,
    so it lands there every time): one line, exit 130; no traceback from an exit hook."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'keyrender[ray]')")
    import subprocess

    script = tmp_path / "drive.py"
    script.write_text(
        "import os, signal, sys\n"
        "import ray._private.worker as w\n"
        "real = w.disconnect\n"
        "def interrupted(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(*a, **k)\n"
        "w.disconnect = interrupted\n"
        "from keyrender.cli import main\n"
        "sys.exit(main())\n")
    args = [sys.executable, str(script), "run", str(project / "shotlist.csv"), "--out", str(tmp_path / "out"),
            "--only", "2A", "--executor", "ray", "--num-gpus", "0", "-q"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.returncode == 130 and "interrupted" in p.stderr, (p.returncode, p.stderr[-2000:])
    assert (tmp_path / "out" / "2A" / "video.mp4").is_file()
