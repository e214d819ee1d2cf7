"""`keyrender interpolate`: image pairs to a frame folder, videos retimed through PyAV."""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
from click.testing import CliRunner

from keyrender.cli import main


def texture(h, w, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h + 40, w + 40, 3), dtype=np.uint8), (0, 0), 3)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


def write_png(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_pair_to_frame_folder(tmp_path):
    big = texture(61, 83)
    write_png(tmp_path / "a.png", big[10:71, 10:93])
    write_png(tmp_path / "b.png", big[14:75, 16:99])
    res = CliRunner().invoke(main, ["interpolate", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                                    "--frames", "3", "--out", str(tmp_path / "frames")])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "frames").iterdir() if not p.name.startswith("."))  # .keyrender-frames.json: what it wrote
    assert names == [f"frame_{i:04d}.png" for i in range(5)]  # A, 3 in-betweens, B; no temp files left
    mid = cv2.imread(str(tmp_path / "frames" / "frame_0002.png"))
    assert mid.shape == (61, 83, 3)


def test_pair_errors_name_the_files(tmp_path):
    write_png(tmp_path / "a.png", texture(20, 30))
    write_png(tmp_path / "b.png", texture(21, 30))
    r = CliRunner().invoke(main, ["interpolate", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                                  "--frames", "2", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "a.png" in r.output and "b.png" in r.output
    r = CliRunner().invoke(main, ["interpolate", str(tmp_path / "a.png"), str(tmp_path / "a.png"),
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--frames" in r.output
    (tmp_path / "bad.png").write_text("not an image")
    r = CliRunner().invoke(main, ["interpolate", str(tmp_path / "bad.png"), str(tmp_path / "a.png"),
                                  "--frames", "1", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "bad.png" in r.output


def test_video_retimed_with_exact_rate_and_even_size(tmp_path):
    src = tmp_path / "in.mp4"
    big = texture(25, 33)
    rate = Fraction(30000, 1001)
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = 34, 26, "yuv420p"
        for i in range(5):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(big[5:31, 5 + 2 * i : 39 + 2 * i]), format="rgb24")
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    dst = tmp_path / "out" / "slow.mp4"
    r = CliRunner().invoke(main, ["interpolate", str(src), "--factor", "3", "--out", str(dst)])
    assert r.exit_code == 0, r.output
    with av.open(str(dst)) as c:
        s = c.streams.video[0]
        assert s.average_rate == rate * 3
        assert (s.codec_context.width, s.codec_context.height) == (34, 26)
        assert s.codec_context.pix_fmt == "yuv420p" and s.codec_context.name == "h264"
        assert sum(1 for _ in c.decode(s)) == 4 * 3 + 1
    assert [p.name for p in dst.parent.iterdir()] == ["slow.mp4"]


def test_video_odd_size_is_padded_even(tmp_path):
    from keyrender.outputs.media import VideoWriter, probe_video

    with VideoWriter(tmp_path / "odd.mp4", 24, 33, 25) as w:  # the writer retime streams into
        for _ in range(3):
            w.write(np.zeros((25, 33, 3), np.uint8))
    info = probe_video(tmp_path / "odd.mp4")
    assert (info["width"], info["height"], info["frames"]) == (34, 26, 3)


def test_video_needs_factor(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"\\x00")
    r = CliRunner().invoke(main, ["interpolate", str(tmp_path / "v.mp4"), "--out", str(tmp_path / "o.mp4")])
    assert r.exit_code == 2 and "--factor" in r.output


def test_variable_rate_video_is_retimed_on_its_timestamps(tmp_path):
    # frames at 0, 1, 3, 4 and 7 (of 1/15 s): slots 2, 5 and 6 were dropped. Retimed x2 to 30 fps,
    # the clip keeps its 7/15 s and the gaps are filled at their true times, not squeezed out.
    src = tmp_path / "vfr.mkv"
    big = texture(48, 64, seed=3)
    pts = [0, 1, 3, 4, 7]
    with av.open(str(src), "w") as c:
        s = c.add_stream("ffv1", rate=15)
        s.width, s.height, s.pix_fmt = 64, 48, "bgr0"
        s.time_base = Fraction(1, 15)
        for p in pts:
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(big[10:58, 2 * p : 2 * p + 64]), format="rgb24")
            f.pts, f.time_base = p, Fraction(1, 15)
            for pkt in s.encode(f):
                c.mux(pkt)
        c.mux(s.encode(None))
    dst = tmp_path / "x2.mp4"
    r = CliRunner().invoke(main, ["interpolate", str(src), "--factor", "2", "--out", str(dst)])
    assert r.exit_code == 0, r.output
    assert '"frames_in": 5' in r.output and '"frames_out": 15' in r.output  # slots 0..14 of 1/30 s
    with av.open(str(dst)) as c:
        out = [f.to_ndarray(format="rgb24").astype(np.float32) for f in c.decode(c.streams.video[0])]
    assert len(out) == 15
    truth = [big[10:58, n : n + 64].astype(np.float32) for n in range(15)]  # 1 px per 1/30 s
    err = [float(np.abs(o - t)[:, 8:-8].mean()) for o, t in zip(out, truth)]
    # every slot, dropped or not, shows the picture of its own time (H.264 round trip aside)
    assert max(err) < 6.0, [round(e, 1) for e in err]
    # and not the neighbouring slot's
    assert np.abs(out[10] - truth[12])[:, 8:-8].mean() > 2 * err[10]


def test_hedge_and_camera_motion_reach_the_backend(tmp_path, monkeypatch):
    from keyrender import interpolate

    built = []
    real = interpolate.get_interpolator

    def recording(name, **options):
        built.append((name, options))
        return real("flow", **(options if name == "flow" else options["flow_options"] or {}))

    monkeypatch.setattr(interpolate, "get_interpolator", recording)
    big = texture(61, 83)
    write_png(tmp_path / "a.png", big[10:71, 10:93])
    write_png(tmp_path / "b.png", big[14:75, 16:99])
    pair = [str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--frames", "1"]
    for extra in ([], ["--hedge", "0", "--no-camera-motion"], ["--hedge", "1", "--camera-motion", "--preset", "fast"]):
        r = CliRunner().invoke(main, ["interpolate", *pair, "--out", str(tmp_path / "o"), *extra])
        assert r.exit_code == 0, r.output
    assert built == [("flow", {}), ("flow", {"hedge": 0.0, "camera_motion": False}),
                     ("flow", {"preset": "fast", "hedge": 1.0, "camera_motion": True})]
    built.clear()
    for extra in ([], ["--hedge", "0.25", "--no-camera-motion"]):
        r = CliRunner().invoke(main, ["interpolate", *pair, "--out", str(tmp_path / "o"), "--backend", "ltx",
                                      "--model", "tiny", *extra])
        assert r.exit_code == 0, r.output
    assert built == [("ltx", {"model": "tiny", "flow_options": None}),
                     ("ltx", {"model": "tiny", "flow_options": {"hedge": 0.25, "camera_motion": False}})]
