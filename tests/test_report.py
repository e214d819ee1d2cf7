"""The run report (report.html) and the editorial timeline (timeline.otio), on real renders of the
storyboard sample: one without a face model, and shot 2A with the tiny face pack, so that the
identity plot, flagged frames and repairs come from the real check-and-repair loop."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import xml.etree.ElementTree as ET
from fractions import Fraction

import numpy as np
import pytest

from keyrender.core.shotlist import load_shotlist
from keyrender.outputs.report import identity_svg, render_report, write_report
from keyrender.outputs.timeline import build_timeline, write_otio
from keyrender.pipeline import RenderOptions, RunResult, ShotResult, render

EVIL = '<script>alert("x")</script> & "quotes"'


@pytest.fixture(scope="module")
def runs(tmp_path_factory, copy_sample):
    """The sample with a hostile prompt and note, rendered twice: all shots without a face
    model, and 2A with the tiny face pack (real identity checks); plus a broken copy."""
    root = tmp_path_factory.mktemp("report")
    proj = root / "proj"
    copy_sample(proj)
    csv = proj / "shotlist.csv"
    csv.write_text(csv.read_text()
                   .replace('"Eileen in her orange flight suit, smiling"', '"Eileen <script>alert(\'p\')</script>, smiling"')
                   .replace("fractional NTSC rate on purpose", EVIL.replace('"', '""').join('""')))
    # no face model: a folder that holds none (the built-in dlib model would check the sample)
    plain = render(csv, RenderOptions(out=root / "plain", face_model=str(root / "no-face-model")),
                   executor="local")
    # the checked run judges 2A against a cast turned upside down: every frame fails the tiny
    # pack's real check, so the report must show flagged frames and an (unavailable) repair
    import cv2

    for p in (proj / "cast" / "eileen").glob("*.jpg"):
        cv2.imwrite(str(p), cv2.imread(str(p))[::-1].copy())
    # 2A is a storyboard shot: its spans are repaired only when asked (storyboard_repair on)
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0] + ",storyboard_repair"]
                             + [ln + (",on" if ln.startswith("2,2A,") else ",") for ln in lines[1:]]) + "\n")
    checked = render(csv, RenderOptions(out=root / "checked", only=["2A"], face_model="tiny", offline=True,
                                        cache_dir=root / "cache"), executor="local")
    return proj, csv, plain, checked


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', page)]


@pytest.mark.slow
def test_report_is_self_contained_and_escapes_shot_list_text(runs, tmp_path):
    import cv2

    proj, csv, plain, _ = runs
    path = write_report(plain, load_shotlist(csv), tmp_path / "report.html")
    page = path.read_text()
    assert "<script" not in page.lower()                      # nothing from the CSV runs
    assert "&lt;script&gt;alert(&#x27;p&#x27;)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;" in page
    # one embedded JPEG thumbnail per keyframe (3 + 3 + 2) and per span's middle frame (2 + 2 + 1),
    # small, and nothing loaded from outside but each shot's own video, in a player
    thumbs = _images(page)
    assert len(thumbs) == 8 + 5
    for data in thumbs:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[1] == 192 and len(data) < 20_000
    assert re.findall(r'src="(?!data:)([^"]*)"', page) == ["1A/video.mp4", "1B/video.mp4", "2A/video.mp4"]
    assert page.count("<video ") == 3 and page.count('poster="data:image/jpeg;base64,') == 3
    assert "<link" not in page
    assert page.count("frames 0&ndash;24: ") == 2 and "camera move (" in page   # the filmstrip, with each verdict
    for shot in ("1A", "1B", "2A"):
        assert f'id="shot-{shot}"' in page
    assert "not checked: no face model" in page
    assert "24000/1001" in page and "interpolate_encode" in page
    assert not list(tmp_path.glob(".*tmp*"))


def test_report_identity_plot_flagged_frames_and_repairs_from_real_checks(runs, tmp_path):
    proj, csv, _, checked = runs
    m = json.loads((checked.out / "2A" / "manifest.json").read_text())
    ident = m["identity"]
    assert ident["checked"] and ident["frames"], "the tiny face pack should check every frame"
    page = render_report(checked, load_shotlist(csv))
    svg = re.search(r"<svg.*?</svg>", page, re.S).group(0)
    root = ET.fromstring(svg)                                  # well-formed SVG
    ns = "{http://www.w3.org/2000/svg}"
    titles = [t.text for t in root.iter(ns + "title")]
    thr = ident["thresholds"]["eileen"]
    assert f"eileen threshold {thr:.3f}" in titles
    found = [f for f, s in ident["frames"].items() if s["characters"]["eileen"]["similarity"] is not None]
    assert len(root.findall(ns + "circle")) == len(found)
    failing = [c for c in root.findall(ns + "circle") if c.get("fill") == "#d62728"]
    assert len(failing) == sum(not ident["frames"][f]["passed"] for f in found)
    # every checked frame fails (the cast is upside down); the repair of the worst in-between is
    # attempted and reported as unavailable (offline, no keyframe model)
    assert ident["flagged_frames"], "the tiny face pack flags 2A's frames against the flipped cast"
    for f in ident["flagged_frames"]:
        assert re.search(rf"\b{f} \(\d+\.\d\d s\): eileen", page), f
    assert "FLAGGED" in page
    repair = ident["repairs"][0]
    assert repair["result"] == "unavailable" and repair["attempts"] == []
    assert "<h4>in-between repairs</h4>" in page
    assert (f"<tr><td>{repair['frame']}</td><td>0</td><td>{html.escape(repair['reason'])}</td>"
            '<td class="bad">unavailable</td><td>-</td></tr>') in page
    assert any("in-between repair unavailable" in w and "--preset tiny" in w for w in m["warnings"])


def test_report_shows_reroll_attempts_and_failed_shot_reasons(runs, tmp_path):
    proj, csv, plain, _ = runs
    out = plain.out
    # keyframe re-rolls happen only for generated keyframes (needs a generator): the table is
    # checked on a manifest entry of the shape refine_keyframes writes
    m = json.loads((out / "1B" / "manifest.json").read_text())
    score = lambda s, ok: {"passed": ok, "margin": s - 0.5, "characters": {"eileen": {
        "found": True, "similarity": s, "threshold": 0.5, "passed": ok}}}
    m["keyframes"][1]["identity"] = {"attempts": [{"attempt": 0, "seed": 11, "identity_strength": 0.8, **score(0.31, False)},
                                                  {"attempt": 1, "seed": 12, "identity_strength": 0.95, **score(0.62, True)}],
                                     "final": score(0.62, True), "chosen_attempt": 1}
    fake = tmp_path / "1B"
    shutil.copytree(out / "1B", fake)
    (fake / "manifest.json").write_text(json.dumps(m))
    result = RunResult([ShotResult("1B", "cached", fake, fake / "video.mp4", fake / "manifest.json"),
                        ShotResult("2A", "failed", tmp_path / "2A", reason="cannot decode image <x.jpg>",
                                   error_type="input")], tmp_path)
    page = render_report(result, load_shotlist(csv))
    assert "<h4>keyframe re-rolls</h4>" in page
    assert "<td>1 (kept)</td><td>12</td><td>0.95</td>" in page and "eileen 0.310 ✗" in page
    assert "1 re-roll(s)" in page
    assert "failed (input): cannot decode image &lt;x.jpg&gt;" in page
    assert 'id="shot-1A"' not in page


def test_identity_svg_handles_missing_faces_and_negative_similarity():
    scores = {0: {"passed": True, "characters": {"a": {"found": True, "similarity": 0.8, "threshold": 0.4, "passed": True},
                                                 "b": {"found": False, "similarity": None, "threshold": 0.45, "passed": False}}},
              5: {"passed": False, "characters": {"a": {"found": True, "similarity": -0.3, "threshold": 0.4, "passed": False}}}}
    svg = identity_svg(scores, {"a": 0.4}, frames=10, fps=Fraction(24), keyframes=[0, 9])
    root = ET.fromstring(svg)
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert "a threshold 0.400" in titles and "b threshold 0.450" in titles
    assert "b not found at frame 0 (0.00 s)" in titles
    assert any(t.startswith("a frame 5 (0.21 s): -0.300 FAILED") for t in titles)
    assert re.search(r'class="ax">-0\.[1-9]</text>', svg)  # the axis extends below zero
    # the threshold lines are labelled on the plot itself, not only in a tooltip
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "a threshold 0.400" in texts and "b threshold 0.450" in texts


def test_identity_svg_shows_who_the_face_is_and_followed_frames():
    ns = "{http://www.w3.org/2000/svg}"
    scores = {0: {"passed": False, "characters": {"a": {"found": True, "similarity": 0.2, "threshold": 0.45, "passed": False,
                                                        "wrong_person": "b", "wrong_similarity": 0.7}}},
              3: {"passed": True, "characters": {"a": {"found": True, "similarity": 0.6, "threshold": 0.45, "passed": True,
                                                       "followed": 0.99}}}}
    root = ET.fromstring(identity_svg(scores, {"a": 0.45}, frames=6, fps=Fraction(24)))
    titles = [t.text for t in root.iter(ns + "title")]
    assert "a frame 0 (0.00 s) looks like b: 0.700" in titles
    assert any(t.startswith("a frame 0 (0.00 s): 0.200 FAILED: looks like b (0.700)") for t in titles)
    followed = [c for c in root.iter(ns + "circle") if c.get("fill") == "#fff"]
    assert len(followed) == 1 and "followed from the keyframes" in followed[0].find(ns + "title").text
    assert any("similarity to who the face is: b" in (t.text or "") for t in root.iter(ns + "text"))


def test_camera_fit_is_not_called_similarity(runs):
    proj, csv, plain, _ = runs
    page = render_report(plain, load_shotlist(csv))
    assert "camera fit: " in page and "(similarity:" not in page
    assert "camera fit: shift, zoom and roll" in page or "camera fit: shift," in page or "camera fit: perspective" in page


def test_check_plot_labels_its_threshold_lines():
    from keyrender.identity.audit import AuditResult, FrameRecord, render_plot

    r = AuditResult(path="x.mp4", characters=["a"], mode="expected", every=1, thresholds={"a": 0.45})
    r.frames = [FrameRecord(i, None, {"a": 0.8}, {"a": "pass"}) for i in range(10)]
    img = render_plot(r)
    h, w = img.shape[:2]
    colour = (31, 119, 180)
    # the dashed threshold line: dashes of 6 px every 12 from x=60, white between them
    (y,) = [y for y in range(h) if tuple(img[y, 62]) == colour and tuple(img[y, 69]) == (255, 255, 255)]
    # its label sits just above it at the plot's right end, in the character's colour
    band = img[y - 14:y - 1, w - 170 - 160:w - 170]
    assert (np.abs(band.astype(int) - (31, 119, 180)).sum(axis=2) < 60).sum() > 40


def test_timeline_loads_in_opentimelineio_in_shot_list_order(runs, tmp_path):
    otio = pytest.importorskip("opentimelineio")
    proj, csv, plain, _ = runs
    sl = load_shotlist(csv)
    # shuffle the result order: the timeline follows the shot list, and a failed shot is a gap
    shots = {r.shot: r for r in plain.shots}
    failed = ShotResult("1B", "failed", plain.out / "1B", reason="boom")
    result = RunResult([shots["2A"], failed, shots["1A"]], plain.out)
    path = write_otio(result, sl, tmp_path / "cut.otio")
    tl = otio.adapters.read_from_file(str(path))
    track = tl.tracks[0]
    assert [(type(c).__name__, c.name) for c in track] == [("Clip", "1A"), ("Gap", "1B (failed)"), ("Clip", "2A")]
    assert track[0].duration() == otio.opentime.RationalTime(48, 24)
    assert track[1].duration() == otio.opentime.RationalTime(48, 24000 / 1001)
    assert track[2].duration() == otio.opentime.RationalTime(36, 24)
    assert track[0].media_reference.target_url == (plain.out / "1A" / "video.mp4").resolve().as_uri()
    assert track[0].available_range().duration.value == 48
    meta = track[0].metadata["keyrender"]
    assert meta["seed"] == sl.shot("1A").seed and "<script>" in meta["prompt"] and meta["fps"] == "24/1"
    assert track[1].metadata["keyrender"]["reason"] == "boom"
    # the whole cut: 2 s + 48 frames at 24000/1001 + 1.5 s, to the microsecond
    total = 2 + float(Fraction(48 * 1001, 24000)) + 1.5
    assert abs(tl.duration().to_seconds() - total) < 1e-6


def test_timeline_fractional_rate_is_exact_and_relative_urls_resolve(runs, tmp_path):
    otio = pytest.importorskip("opentimelineio")
    proj, csv, plain, _ = runs
    path = write_otio(plain, load_shotlist(csv), plain.out / "rel.otio", relative=True)
    tl = otio.adapters.read_from_file(str(path))
    clip = tl.tracks[0][1]
    assert clip.name == "1B" and clip.source_range.duration.rate == 24000 / 1001
    assert clip.metadata["keyrender"]["fps"] == "24000/1001"
    assert (path.parent / clip.media_reference.target_url).resolve() == (plain.out / "1B" / "video.mp4").resolve()
    path.unlink()


def test_timeline_markers_for_flagged_frames(runs):
    otio = pytest.importorskip("opentimelineio")
    proj, csv, _, checked = runs
    data = build_timeline(checked, load_shotlist(csv))
    tl = otio.adapters.read_from_string(json.dumps(data))
    clip = tl.tracks[0][0]
    flagged = checked.shots[0].flagged
    assert [int(mk.marked_range.start_time.value) for mk in clip.markers] == flagged
    assert all(mk.color == "RED" for mk in clip.markers)
    scores = clip.metadata["keyrender"]["identity"]["scores"]["eileen"]
    assert scores["checked"] == len(json.loads((checked.out / "2A" / "manifest.json").read_text())["identity"]["frames"])
