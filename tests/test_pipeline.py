"""End to end through `keyrender run` on the storyboard sample: outputs, caching, bad input,
failure isolation, crash safety, and the torch-free dry run."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from keyrender.outputs.media import load_image, probe_video, read_frames
from helpers import RUN_CLI, psnr, run, run_python


@pytest.mark.slow
def test_sample_renders_videos_keyframes_manifests_then_caches(project):
    out = project / "out"
    r = run("run", str(project / "shotlist.csv"), "--out", str(out))
    assert r.exit_code == 0, r.output
    expected = {"1A": (48, Fraction(24)), "1B": (48, Fraction(24000, 1001)), "2A": (36, Fraction(24))}
    for shot, (frames, fps) in expected.items():
        info = probe_video(out / shot / "video.mp4")
        assert (info["frames"], info["fps"], info["codec"], info["pix_fmt"]) == (frames, fps, "h264", "yuv420p")
        m = json.loads((out / shot / "manifest.json").read_text())
        assert m["status"] == "done" and m["video"]["frames"] == frames
        assert m["video"]["fps"] == f"{fps.numerator}/{fps.denominator}"
        # Eileen is checked in every shot by the built-in face model (dlib), frame by frame
        ident = m["identity"]
        assert ident["checked"] is True and ident["why_not"] is None, ident["why_not"]
        assert ident["judge"]["model"].startswith("dlib:") and ident["judge"]["metric"] == "euclidean"
        # every keyframe and every third in-between (the default stride) is checked, and passes
        checked = {int(f) for f in ident["frames"]}
        assert checked == {k["frame"] for k in m["keyframes"]} | set(range(0, frames, 3)), (shot, sorted(checked))
        assert ident["check_every"] == 3 and set(ident["thresholds"]) == {"eileen"}
        assert ident["flagged_frames"] == [], (shot, ident["flagged_frames"])
        # the frames at keyframe times are the keyframes (up to H.264 loss)
        kf = {k["frame"]: load_image(out / shot / k["path"]) for k in m["keyframes"]}
        for i, _, frame in read_frames(out / shot / "video.mp4"):
            if i in kf:
                assert psnr(frame, kf[i]) > 30, (shot, i)
    assert "identity checks are off" not in r.output
    assert (out / "report.html").read_text().count("<svg") >= 3  # a similarity plot per shot
    assert (out / "report.html").is_file() and (out / "timeline.otio").is_file()
    shot_files = lambda: {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent != out}
    before = shot_files()

    r = run("run", str(project / "shotlist.csv"), "--out", str(out))
    assert r.exit_code == 0 and "0 rendered, 3 cached" in r.output
    assert shot_files() == before  # the shots are untouched; the run's report and timeline are new

    # edit one row: only that shot renders again
    csv = project / "shotlist.csv"
    csv.write_text(csv.read_text().replace("close-up of Eileen", "a closer close-up of Eileen"))
    r = run("run", str(csv), "--out", str(out), "--json")
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert {s["shot"]: s["status"] for s in summary["shots"]} == {"1A": "cached", "1B": "cached", "2A": "rendered"}

    # notes are not part of the picture: editing them renders nothing
    csv.write_text(csv.read_text().replace("keyframes given as times", "keyframes given as times (checked)"))
    r = run("run", str(csv), "--out", str(out))
    assert r.exit_code == 0 and "0 rendered, 3 cached" in r.output

    # a damaged output is noticed and rendered again
    video = out / "1A" / "video.mp4"
    video.write_bytes(video.read_bytes()[:-100])
    r = run("run", str(csv), "--out", str(out), "--only", "1A")
    assert "1 rendered" in r.output and probe_video(video)["frames"] == 48
    # a partial rerun keeps the other finished shots in the report and the timeline
    otio = json.loads((out / "timeline.otio").read_text())
    clips = [c["name"] for c in otio["tracks"]["children"][0]["children"] if c.get("OTIO_SCHEMA", "").startswith("Clip")]
    assert clips == ["1A", "1B", "2A"]
    html = (out / "report.html").read_text()
    assert all(f">{s}<" in html for s in ("1A", "1B", "2A")), "a shot is missing from the report"


def test_bad_shot_list_reports_every_mistake_and_writes_nothing(project):
    csv = project / "shotlist.csv"
    lines = csv.read_text().splitlines()
    lines[1] = lines[1].replace(",eileen,", ",zoe,")                 # unknown character
    lines[2] = lines[2].replace(",23.976,", ",fast,")                # not a frame rate
    lines[3] = lines[3].replace("storyboard/2A_1.jpg", "nope.jpg")   # missing image
    csv.write_text("\n".join(lines) + "\n")
    out = project / "out"
    r = run("run", str(csv), "--out", str(out))
    assert r.exit_code == 2
    assert ":2: column 'characters': unknown character 'zoe'" in r.output
    assert ":3: column 'fps': 'fast' is not a frame rate" in r.output
    assert ":4: column 'keyframe_images': image 'nope.jpg' not found" in r.output
    assert "Traceback" not in r.output and not out.exists()


def test_character_without_photos_is_bad_input_in_dry_run_and_run(project):
    for ref in (project / "cast" / "eileen").iterdir():
        ref.unlink()
    out = project / "out"
    for extra in (["--dry-run"], []):
        r = run("run", str(project / "shotlist.csv"), "--out", str(out), *extra)
        assert r.exit_code == 2 and "character 'eileen' has no reference images" in r.output, extra
        assert ":2: column 'characters'" in r.output and not out.exists()


@pytest.mark.slow
def test_one_broken_shot_fails_alone_with_exit_3(project):
    # a PNG whose header, chunks and CRCs are whole but whose pixel data does not inflate passes
    # validation (which decodes nothing) and fails at render time
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bad = project / "storyboard" / "2A_1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 512, 288, 8, 2, 0, 0, 0))
                    + chunk(b"IDAT", b"not deflate data" * 8) + chunk(b"IEND", b""))
    csv = project / "shotlist.csv"
    csv.write_text(csv.read_text().replace("storyboard/2A_1.jpg", "storyboard/2A_1.png"))
    out = project / "out"
    r = run("run", str(project / "shotlist.csv"), "--out", str(out))
    assert r.exit_code == 3, r.output
    assert "2A: FAILED" in r.output and "cannot decode" in r.output
    assert (out / "1A" / "video.mp4").is_file() and (out / "1B" / "video.mp4").is_file()
    assert not (out / "2A").exists() and not list(out.glob(".staging-*"))


@pytest.mark.slow
def test_crash_mid_shot_leaves_old_output_and_no_half_files(project, monkeypatch):
    from keyrender import pipeline
    from keyrender.outputs import media
    from keyrender.pipeline import RenderOptions, render

    out = project / "out"
    assert render(project / "shotlist.csv", RenderOptions(out=out)).exit_code == 0
    old = (out / "1A" / "video.mp4").read_bytes()
    csv = project / "shotlist.csv"
    csv.write_text(csv.read_text().replace("smiling", "laughing"))

    calls = {"n": 0}
    real_write = media.VideoWriter.write

    def dying_write(self, frame):
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt  # like a kill: not an error the shot can absorb
        return real_write(self, frame)

    monkeypatch.setattr(media.VideoWriter, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        render(csv, RenderOptions(out=out))
    assert (out / "1A" / "video.mp4").read_bytes() == old  # the old shot is intact
    assert not list(out.glob(".staging-*")) and not list(out.rglob("*.tmp*"))
    monkeypatch.setattr(media.VideoWriter, "write", real_write)
    result = render(csv, RenderOptions(out=out))
    assert [s.status for s in result.shots] == ["rendered", "cached", "cached"]
    assert pipeline.is_done(out / "1A", json.loads((out / "1A" / "manifest.json").read_text())["cache_key"])


def test_dry_run_and_help_import_no_torch(project):
    heavy, printed = run_python(RUN_CLI, "run", project / "shotlist.csv", "--dry-run", "--out", project / "out")
    assert heavy == []
    assert "3 of 3 shots to render" in printed and "23.976 fps" in printed and "storyboard" in printed
    assert not (project / "out").exists()
    heavy, printed = run_python(RUN_CLI, "--help")
    assert heavy == [] and "run" in printed


def test_only_and_unknown_shot(project):
    out = project / "out"
    r = run("run", str(project / "shotlist.csv"), "--out", str(out), "--only", "2A")
    assert r.exit_code == 0 and [p.name for p in out.iterdir() if p.is_dir()] == ["2A"]
    r = run("run", str(project / "shotlist.csv"), "--out", str(out), "--only", "9Z")
    assert r.exit_code == 2 and "unknown shot 9Z" in r.output


def test_a_span_nothing_explains_is_said_on_the_console_the_manifest_and_the_report(tmp_path):
    """Two storyboard pictures that share nothing (a portrait, a cup of coffee): the span is
    bridged and its verdict reaches the user, one console line, the manifest, the report's
    filmstrip (its middle frame framed in red)."""
    from skimage import data as skimage_data

    from keyrender.outputs.media import save_image

    save_image(tmp_path / "a.png", skimage_data.astronaut()[:288, :512])
    save_image(tmp_path / "b.png", np.ascontiguousarray(skimage_data.coffee()[:288, :512]))
    (tmp_path / "shots.csv").write_text("scene,shot,prompt,frames,keyframe_images\n1,X,,13,a.png;b.png\n")
    r = run("run", str(tmp_path / "shots.csv"), "--out", str(tmp_path / "out"))
    assert r.exit_code == 0, r.output
    lines = [x for x in r.output.splitlines() if "frames 0-12" in x]
    assert len(lines) == 1 and lines[0].startswith("warning: shot X frames 0-12: ") and "report.html" in lines[0]
    m = json.loads((tmp_path / "out" / "X" / "manifest.json").read_text())
    (span,) = m["interpolation"]["spans"]
    assert span["middle"] == "spans/mid_f00006.jpg" and (tmp_path / "out" / "X" / span["middle"]).is_file()
    assert any("frames 0-12" in w for w in m["warnings"])
    page = (tmp_path / "out" / "report.html").read_text()
    assert '<figure class="span bad">' in page and "frames 0&ndash;12" in page


FACES = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "faces" / "people"


@pytest.mark.skipif(not FACES.is_dir(), reason="../shared/faces (evaluation photos) not present")
def test_a_storyboard_pose_change_follows_the_character_it_checks(tmp_path):
    """Two different photos of one person as a shot's two storyboard keyframes (a pose change):
    the span is bridged as a pose change that follows the character the identity check found in
    both keyframes, nothing is held or cut, every checked frame is still the person, and the
    verdict (how much of the picture matched) is on the console and in the manifest."""
    import cv2

    from keyrender.identity.dlib_backend import DlibFaceEmbedder
    from keyrender.outputs.media import load_image, save_image

    emb = DlibFaceEmbedder()

    def crop(src, dst):  # face-centred, the face about a third of the height, 320x180
        img = load_image(src)
        x0, y0, x1, y1 = max(emb.faces(img), key=lambda f: f.box[3] - f.box[1]).box
        s = 180 / (3.0 * (y1 - y0))
        img = cv2.copyMakeBorder(cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA),
                                 200, 200, 400, 400, cv2.BORDER_REFLECT)
        cx, cy = round((x0 + x1) / 2 * s) + 400, round((y0 + y1) / 2 * s) + 200
        save_image(dst, np.ascontiguousarray(img[cy - 90:cy + 90, cx - 160:cx + 160]))

    person = FACES / "jennifer"
    crop(person / "img3.jpg", tmp_path / "a.png")
    crop(person / "img53.jpg", tmp_path / "b.png")
    (tmp_path / "cast" / "jen").mkdir(parents=True)
    for ref in ("img12.jpg", "img54.jpg", "img55.jpg"):
        (tmp_path / "cast" / "jen" / ref).write_bytes((person / ref).read_bytes())
    (tmp_path / "shots.csv").write_text("scene,shot,prompt,characters,frames,keyframe_images\n1,P,,jen,13,a.png;b.png\n")
    r = run("run", str(tmp_path / "shots.csv"), "--out", str(tmp_path / "out"), "--check-every", "1")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "out" / "P" / "manifest.json").read_text())
    (span,) = m["interpolation"]["spans"]
    assert span["mode"] == "pose" and span["subject"] == "jen", span
    assert span["verdict"].startswith("pose change: jen follows") and f"frames 0-12: {span['verdict']}" in r.output
    assert m["identity"]["flagged_frames"] == []          # every frame is still the person
    frames = [f for _, _, f in read_frames(tmp_path / "out" / "P" / "video.mp4")]
    steps = [float(np.abs(x.astype(np.int16) - y).mean()) for x, y in zip(frames, frames[1:])]
    assert max(steps) / np.mean(steps) < 4                 # no hold then jump
