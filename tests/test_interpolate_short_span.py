"""Short spans (`FlowInterpolator(short_span=3)`, a 2-4x retime): no SIFT where the flow shows a
still camera, the large-motion hypothesis from the block matches alone; keyframe spacing and
camera moves keep the feature matching. Real photographs (scikit-image's data)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from keyrender.interpolate import flow as flow_mod
from keyrender.interpolate import inbetween
from keyrender.interpolate.flow import FlowInterpolator, flow_sees_still_camera, working_flows

skimage_data = pytest.importorskip("skimage.data")


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))


def scene(x: int, pan: int = 0) -> np.ndarray:
    """A 360 x 480 crop of a blurred photograph (`astronaut`), `pan` px further right, with a
    48 x 48 textured patch (the cat's face of `chelsea`) pasted with its corner at (x, 200): a
    small subject over a still (or panning) background (as in test_interpolate_largemotion)."""
    bg = cv2.GaussianBlur(skimage_data.astronaut()[60:420, pan : pan + 480], (0, 0), 3)
    cat = cv2.resize(skimage_data.chelsea()[40:200, 120:280], (48, 48), interpolation=cv2.INTER_AREA)
    out = bg.copy()
    out[200:248, x : x + 48] = cat
    return out


@pytest.fixture
def sift_calls(monkeypatch) -> list:
    """Counts the feature matching (the camera solve and the plain matching both)."""
    calls: list = []
    for name in ("pair_camera", "match_features"):
        real = getattr(flow_mod, name)
        monkeypatch.setattr(flow_mod, name, lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    return calls


def test_a_short_span_skips_sift_and_the_block_matches_still_carry_the_subject(sift_calls):
    """A subject moving 96 px (a fifth of the frame) over a still background, one in-between:
    DIS loses it, and the flow gate fails; the short span pays no SIFT, and the block matches put
    the subject where it is at t = 0.5 (without any large-motion hypothesis: a faint double ghost)."""
    a, b, truth = scene(60), scene(156), scene(108)
    roi = (slice(200, 248), slice(108, 156))
    info: dict = {}
    out = list(inbetween(a, b, [0.5], backend=FlowInterpolator(), info=info))[0]
    assert info["mode"] == "flow" and "short span" in info["features"], info
    assert sift_calls == []
    ghost = list(inbetween(a, b, [0.5], backend=FlowInterpolator(match_flow=False)))[0]
    assert psnr(out[roi], truth[roi]) > psnr(ghost[roi], truth[roi]) + 4.0
    assert psnr(out[roi], truth[roi]) > 17.0


@pytest.mark.parametrize("times, short_span", [([0.2, 0.4, 0.6, 0.8], 3), ([0.5], 0)])
def test_longer_spans_and_short_span_off_keep_the_feature_matching(sift_calls, times, short_span):
    """The same pair with four in-betweens (keyframe spacing), or with `short_span=0`: matched as
    before (the frames of such spans are unchanged by the short-span path)."""
    info: dict = {}
    list(inbetween(scene(60), scene(156), times, backend=FlowInterpolator(short_span=short_span), info=info))
    assert info["mode"] == "flow" and "features" not in info, info
    assert sift_calls == [1]


def test_a_short_span_whose_camera_moves_is_still_solved_as_a_camera_move(sift_calls):
    """A 4% pan with the subject moving across it: the flow's own camera is not still, so the
    camera is solved from the feature matches, as in any span."""
    a, b = scene(60), scene(156, pan=19)
    info: dict = {}
    list(inbetween(a, b, [0.5], backend=FlowInterpolator(), info=info))
    assert info["mode"] == "camera" and "features" not in info, info
    assert sift_calls == [1]


def test_flow_sees_still_camera_on_a_still_shot_with_a_moving_subject_and_not_on_a_pan():
    still = working_flows(scene(60), scene(156), 640, "medium", 1)
    assert flow_sees_still_camera(*still)
    pan = working_flows(scene(60), scene(60, pan=8), 640, "medium", 1)  # 1.7% of the width
    assert not flow_sees_still_camera(*pan)
    # a corner motion of 8 px is under 2% of the diagonal (600 px)
    assert flow_sees_still_camera(*pan, max_move=0.02)


def test_short_span_option_is_checked():
    with pytest.raises(ValueError, match="short_span"):
        FlowInterpolator(short_span=-1)
    assert "short_span" in FlowInterpolator.OPTIONS


# The cuts that keep every frame the same, bit for bit (docs/interpolation-speed.md)

def _splat_reference(f01, c0, t, grid, front=3.0, fill=3.0):
    """splat_flow as first written: the samples inside the frame selected first, then summed."""
    h, w = c0.shape
    gx, gy = grid
    vx, vy = -t * f01[..., 0], -t * f01[..., 1]
    qx, qy = gx - vx, gy - vy
    mag = np.sqrt(vx * vx + vy * vy)
    z = (0.2 + c0) * np.exp(np.minimum(mag, 30.0) / front)
    x0, y0 = np.floor(qx), np.floor(qy)
    fx, fy = qx - x0, qy - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    n = h * w
    den, num_x, num_y, cov = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    for dx, dy, wb in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        idx = (yi * w + xi)[ok]
        wz = (wb * z)[ok]
        den += np.bincount(idx, wz, n)
        num_x += np.bincount(idx, wz * vx[ok], n)
        num_y += np.bincount(idx, wz * vy[ok], n)
        cov += np.bincount(idx, wb[ok], n)
    safe = np.maximum(den, 1e-12)
    out = np.dstack([(num_x / safe).reshape(h, w), (num_y / safe).reshape(h, w)]).astype(np.float32)
    cov = np.clip(cov.reshape(h, w), 0.0, 1.0).astype(np.float32)
    near = cv2.GaussianBlur(cov, (0, 0), fill) + 1e-6
    filled = np.dstack([cv2.GaussianBlur(out[..., i] * cov, (0, 0), fill) / near for i in range(2)])
    out = np.where((cov > 0.9)[..., None], out, filled).astype(np.float32)
    size = 2 * int(round(1.5 * fill)) + 1
    cov = cv2.morphologyEx(cov, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    return out, cov


@pytest.mark.parametrize("scale", [1.0, 6.0, 60.0])  # 60: most samples land outside the frame
@pytest.mark.parametrize("t", [0.25, 0.5, 0.75])
def test_splat_flow_is_bit_identical_to_selecting_the_samples_first(scale, t):
    rng = np.random.default_rng(int(scale * 10 + t * 4))
    h, w = 61, 83
    f01 = (rng.standard_normal((h, w, 2)) * scale).astype(np.float32)
    c0 = rng.random((h, w)).astype(np.float32)
    grid = flow_mod.pixel_grid(h, w)
    got, want = flow_mod.splat_flow(f01, c0, t, grid), _splat_reference(f01, c0, t, grid)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_the_percentile_check_of_flow_suffices_answers_as_np_percentile():
    """Including the ties and the limits exactly at the two values the percentile lies between."""
    rng = np.random.default_rng(3)
    for trial in range(400):
        n = int(rng.integers(1, 700))
        v = (rng.random(n) * 20).astype(np.float32)
        if trial % 3 == 0:
            v = np.round(v)  # ties
        s = np.sort(v)
        i = int(np.floor(0.99 * (n - 1)))
        for limit in (float(s[i]), float(s[min(i + 1, n - 1)]), float(np.percentile(v, 99)),
                      float(np.percentile(v, 99)) + 1e-3, float(s[i]) - 1e-3, 0.0, 25.0):
            assert flow_mod._percentile99_reaches(v, limit) == bool(np.percentile(v, 99) >= limit), (n, limit)
