"""Tests of the interpolation stage's library call and flow backend (CPU, no weights)."""

from __future__ import annotations

import types

import cv2
import numpy as np
import pytest

from keyrender.core.errors import InputError
from keyrender.interpolate import InterpolationInputError, Interpolator, even_times, get_interpolator, inbetween
from keyrender.interpolate import flow as flow_mod
from keyrender.interpolate.flow import FlowInterpolator, cross_fade
from helpers import heavy_imports, psnr


def texture(h: int, w: int, seed: int = 0, blur: float = 2.5) -> np.ndarray:
    """A smooth random colour texture (trackable by optical flow)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), blur)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


def shifted_pair(h=120, w=160, dx=8, dy=0, seed=0, pad=24, blur=2.5):
    """Crops of one large texture: A at (pad, pad), B moved by (dx, dy), and the truth at any t."""
    big = texture(h + 2 * pad, w + 2 * pad, seed, blur)

    def at(t: float) -> np.ndarray:
        ox, oy = pad + round(dx * t), pad + round(dy * t)
        return big[oy : oy + h, ox : ox + w].copy()

    return at(0.0), at(1.0), at


# ---- quality: the flow path really moves pixels ---------------------------------------------


def test_midpoint_of_translated_pattern_is_the_shifted_image_not_a_cross_fade():
    a, b, truth = shifted_pair(dx=8, dy=4)
    info: dict = {}
    (mid,) = inbetween(a, b, [0.5], info=info)
    assert info["mode"] == "camera" and info["camera"]["model"] == "translation"  # a pan
    ours, fade = psnr(mid, truth(0.5)), psnr(cross_fade(a, b, 0.5), truth(0.5))
    assert ours > 35.0, ours
    assert ours > fade + 10.0, (ours, fade)


def test_arbitrary_times_any_count_and_spacing():
    a, b, truth = shifted_pair(dx=10, dy=-10, seed=3)
    times = [0.3, 0.1, 0.7, 0.9, 0.5]  # not sorted, not 2^k - 1
    outs = list(inbetween(a, b, times))
    assert len(outs) == len(times)
    for t, f in zip(times, outs):
        assert f.dtype == np.uint8 and f.shape == a.shape
        assert psnr(f, truth(t)) > 30.0, (t, psnr(f, truth(t)))
        assert psnr(f, truth(t)) > psnr(cross_fade(a, b, t), truth(t)) + 6.0


def test_strips_and_reduced_flow_resolution_match_one_piece():
    # long side 400 > flow_max_side 128: flow at reduced size, upsampled while warping
    a, b, truth = shifted_pair(h=250, w=400, dx=12, dy=6, seed=5)
    one = FlowInterpolator(flow_max_side=128, strip_rows=10_000)
    strips = FlowInterpolator(flow_max_side=128, strip_rows=37)
    info: dict = {}
    (f1,) = one.inbetween(a, b, [0.5], info=info)
    (f2,) = strips.inbetween(a, b, [0.5])
    assert info["flow_size"] == [80, 128]
    assert np.array_equal(f1, f2)
    assert psnr(f1, truth(0.5)) > 30.0
    assert psnr(f1, truth(0.5)) > psnr(cross_fade(a, b, 0.5), truth(0.5)) + 8.0


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (31, 47), (121, 163)])
def test_odd_and_tiny_sizes(shape):
    h, w = shape
    a, b, _ = shifted_pair(h=h, w=w, dx=2, seed=7)
    outs = list(inbetween(a, b, [0.25, 0.75]))
    assert [f.shape for f in outs] == [a.shape, a.shape]
    assert all(f.dtype == np.uint8 for f in outs)


def test_occlusion_border_disocclusion_is_filled_from_the_frame_that_sees_it():
    # pattern moves right by 16 px: at t=0.5 the left 8 columns are only visible in A... and the
    # truth there exists (it is a crop of a larger texture); border handling must not smear.
    a, b, truth = shifted_pair(h=120, w=160, dx=12, seed=11)
    (mid,) = inbetween(a, b, [0.5])
    right = slice(154, 160)  # content entering from the right: at t=0.5 only B has it
    assert psnr(mid[:, right], truth(0.5)[:, right]) > psnr(cross_fade(a, b, 0.5)[:, right], truth(0.5)[:, right]) + 3


def push_in(s0: float = 1.0, zoom: float = 1.3, h: int = 144, w: int = 256, seed: int = 2):
    """A camera pushing in on a still picture: the view at magnification s0 (A), s0 * zoom (B),
    and the truth at any t: the camera at constant velocity, magnification s0 * zoom ** t (a
    zoom is geometric, H^t)."""
    big = texture(480, 640, seed=seed, blur=2.0)

    def view(t: float) -> np.ndarray:
        s = s0 * zoom ** t
        m = np.float32([[s, 0, w / 2 - s * 320], [0, s, h / 2 - s * 240]])
        return cv2.warpAffine(big, m, (w, h), flags=cv2.INTER_LINEAR)

    return view(0.0), view(1.0), view


def test_push_in_content_leaving_the_frame_follows_the_camera():
    # In a push-in a band along every edge of A leaves the frame: it has no flow of its own. It
    # must follow the camera's zoom (fitted homography), not smear (the sample's shot 1A did).
    a, b, truth = push_in()
    info: dict = {}
    (mid,) = FlowInterpolator().inbetween(a, b, [0.5], info=info)
    (old,) = FlowInterpolator(camera_motion=False).inbetween(a, b, [0.5])
    assert info["mode"] == "camera" and info["camera_motion"] is True
    edge = np.s_[:, -32:]
    assert psnr(mid, truth(0.5)) > 33.0, psnr(mid, truth(0.5))
    assert psnr(mid[edge], truth(0.5)[edge]) > psnr(old[edge], truth(0.5)[edge]) + 8.0


def test_no_camera_motion_when_objects_move_independently():
    # three bands moving three ways: no single homography explains most of the frame
    bands = [shifted_pair(h=120, w=160, dx=dx, dy=dy, seed=s) for dx, dy, s in ((8, 0, 4), (-8, 0, 9), (0, 8, 6))]
    a = np.concatenate([p[0][i * 40 : (i + 1) * 40] for i, p in enumerate(bands)])
    b = np.concatenate([p[1][i * 40 : (i + 1) * 40] for i, p in enumerate(bands)])
    info: dict = {}
    list(FlowInterpolator().inbetween(a, b, [0.5], info=info))
    assert info["mode"] == "flow" and info["camera_motion"] is False


def test_global_motion_fit():
    h, w = 90, 120
    c = np.ones((h, w), np.float32)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    zoom = np.dstack([(gx - 60) * 0.2, (gy - 45) * 0.2]).astype(np.float32)
    hom = flow_mod.global_motion(zoom, c)
    assert hom is not None and np.allclose(hom[:2, :2], np.eye(2) * 1.2, atol=1e-3)
    assert flow_mod.global_motion(np.zeros((h, w, 2), np.float32), c) is None  # still camera
    assert flow_mod.global_motion(zoom, np.zeros_like(c)) is None  # no trusted flow


def test_where_no_flow_explains_the_change_the_cross_fade_is_mixed_in():
    # a patch whose content changes without moving (a dissolve on a screen in the shot): the
    # flow warps unrelated texture there; A and B warped to t disagree, so `hedge` mixes in the
    # cross-fade, which is the truth here
    bg = texture(120, 160, seed=1)
    a, b = bg.copy(), bg.copy()
    patch = np.s_[40:90, 50:110]
    a[patch], b[patch] = texture(50, 60, seed=2, blur=1.5), texture(50, 60, seed=3, blur=1.5)
    truth = cross_fade(a, b, 0.5)
    (hedged,) = FlowInterpolator().inbetween(a, b, [0.5])
    (crisp,) = FlowInterpolator(hedge=0).inbetween(a, b, [0.5])
    assert psnr(hedged[patch], truth[patch]) > psnr(crisp[patch], truth[patch]) + 2.0


def test_hedge_leaves_a_well_explained_motion_alone():
    a, b, truth = shifted_pair(dx=8, dy=4)
    (hedged,) = FlowInterpolator().inbetween(a, b, [0.5])
    (crisp,) = FlowInterpolator(hedge=0).inbetween(a, b, [0.5])
    # where the warps agree the cross-fade gets no share: the frames differ by a fraction of a level
    assert np.abs(hedged.astype(int) - crisp).mean() < 0.25
    assert psnr(hedged, truth(0.5)) > 40.0
    with pytest.raises(ValueError, match="hedge"):
        FlowInterpolator(hedge=1.5)


# ---- pair guard --------------------------------------------------------------------------------


def test_scene_cut_is_held_not_morphed_and_reported_when_cuts_are_detected():
    a = texture(90, 120, seed=1)
    b = texture(90, 120, seed=2)  # unrelated picture
    info: dict = {}
    outs = list(inbetween(a, b, [0.2, 0.5, 0.8], info=info, detect_cuts=True))
    assert info["mode"] == "cut" and info["trusted"] is False and "cut" in info["verdict"]
    assert np.array_equal(outs[0], a)
    assert np.array_equal(outs[1], b) and np.array_equal(outs[2], b)


def test_between_keyframes_an_unrelated_pair_is_a_continuous_dissolve_never_a_cut():
    a = texture(90, 120, seed=1)
    b = texture(90, 120, seed=2)
    ts = [i / 8 for i in range(1, 8)]
    info: dict = {}
    outs = list(inbetween(a, b, ts, info=info))  # the default: continuous
    assert info["mode"] == "fallback" and info["fallback"] == "dissolve" and info["trusted"] is False, info
    assert "check this span" in info["verdict"]
    seq = [a, *outs, b]
    steps = [float(np.abs(x.astype(np.int16) - y).mean()) for x, y in zip(seq, seq[1:])]
    assert max(steps) / np.mean(steps) < 2.0  # no hold then jump (a hold scores about 8 here)


def test_large_but_real_motion_is_not_a_cut():
    # 24 px of motion on 160 px: the thumbnails no longer correlate, the flow explains it
    a, b, truth = shifted_pair(h=120, w=160, dx=24, dy=8, seed=1, pad=48, blur=4.0)
    assert flow_mod.guard_pair(a, b).mode == "check"
    info: dict = {}
    (mid,) = inbetween(a, b, [0.5], info=info)
    assert info["mode"] in ("camera", "flow"), info
    assert psnr(mid, truth(0.5)) > psnr(cross_fade(a, b, 0.5), truth(0.5)) + 6


def test_static_pair_shortcut_skips_flow(monkeypatch):
    a = texture(64, 80, seed=9)
    b = a.copy()
    b[10, 10] = np.clip(b[10, 10].astype(int) + 1, 0, 255)  # sensor noise level change
    monkeypatch.setattr(flow_mod, "bidirectional_flow", lambda *a, **k: pytest.fail("flow computed for a static pair"))
    info: dict = {}
    outs = list(inbetween(a, b, [0.5, 0.6], info=info))
    assert info["mode"] == "static"
    assert all(psnr(f, a) > 50 for f in outs)


# ---- laziness, flow once per pair ------------------------------------------------------------


def test_frames_are_generated_lazily_and_flow_is_computed_once(monkeypatch):
    a, b, _ = shifted_pair(seed=2)
    calls = {"flow": 0, "render": 0}
    real_flow, real_render = flow_mod.bidirectional_flow, flow_mod.render_time

    def count_flow(*args, **kw):
        calls["flow"] += 1
        return real_flow(*args, **kw)

    def count_render(*args, **kw):
        calls["render"] += 1
        return real_render(*args, **kw)

    from keyrender.interpolate import camerapair

    monkeypatch.setattr(flow_mod, "bidirectional_flow", count_flow)
    monkeypatch.setattr(camerapair, "bidirectional_flow", count_flow)
    monkeypatch.setattr(flow_mod, "render_time", count_render)
    info: dict = {}
    it = inbetween(a, b, even_times(5), info=info)
    assert isinstance(it, types.GeneratorType)
    assert calls == {"flow": 0, "render": 0} and info == {}
    first = next(it)
    assert first.shape == a.shape
    # a camera move: DIS once on the camera-aligned pair, and before that on the raw pair where
    # the thumbnails correlate (guard mode "flow": does the flow alone explain it? see
    # `flow_suffices`: no); never once per time
    n = 1 + (flow_mod.guard_pair(a, b).mode == "flow")
    assert calls == {"flow": n, "render": 1} and info["mode"] == "camera"
    rest = list(it)
    assert len(rest) == 4 and calls == {"flow": n, "render": 5}


def test_empty_times_yield_nothing():
    a, b, _ = shifted_pair()
    assert list(inbetween(a, b, [])) == []


# ---- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("times", [[0.0], [1.0], [0.5, 1.2], [-0.1], [float("nan")], ["x"], 0.5, "0.5"])
def test_times_out_of_range_are_rejected_at_call_time(times):
    a, b, _ = shifted_pair()
    with pytest.raises(InterpolationInputError) as exc:
        inbetween(a, b, times)  # no next(): checks are eager
    assert "times" in str(exc.value)
    assert isinstance(exc.value, ValueError) and isinstance(exc.value, InputError)


def test_bad_frames_are_rejected_with_the_reason():
    a, b, _ = shifted_pair()
    with pytest.raises(InterpolationInputError, match="differ in shape"):
        inbetween(a, b[:-1], [0.5])
    with pytest.raises(InterpolationInputError, match="frame_b: expected dtype uint8"):
        inbetween(a, b.astype(np.float32), [0.5])
    with pytest.raises(InterpolationInputError, match="frame_a: expected an RGB image"):
        inbetween(a[..., 0], b[..., 0], [0.5])
    with pytest.raises(InterpolationInputError, match="frame_a: expected an RGB image"):
        inbetween(np.dstack([a, a[..., :1]]), np.dstack([b, b[..., :1]]), [0.5])
    with pytest.raises(InterpolationInputError, match="numpy array"):
        inbetween([[1]], b, [0.5])


def test_unknown_backend_and_options_fail_fast():
    a, b, _ = shifted_pair()
    with pytest.raises(InputError, match="unknown interpolator 'rife'"):
        inbetween(a, b, [0.5], backend="rife")
    with pytest.raises(ValueError, match="preset"):
        inbetween(a, b, [0.5], preset="slowest")
    with pytest.raises(TypeError):
        inbetween(a, b, [0.5], no_such_option=1)


def test_even_times():
    assert even_times(3) == [0.25, 0.5, 0.75]
    with pytest.raises(InterpolationInputError):
        even_times(0)


def test_flow_interpolator_implements_the_protocol():
    interp = get_interpolator("flow", preset="ultrafast")
    assert isinstance(interp, Interpolator) and interp.name == "flow"
    a, b, truth = shifted_pair(dx=6)
    (mid,) = inbetween(a, b, [0.5], backend=interp)
    assert psnr(mid, truth(0.5)) > 30


def test_importing_the_package_does_not_import_torch():
    assert heavy_imports("import keyrender.interpolate, keyrender.interpolate.flow") == []
