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
