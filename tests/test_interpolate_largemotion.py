"""Large subject motion (flow.match_flow / pick_flow / block_matches / dis_refine): a small
textured subject that moves many times its own size over a still background, as people do between
keyframes a second apart. DIS's coarse-to-fine search loses it; the feature-match hypothesis (and,
where no feature match names it, the block matches) must carry it to the right place."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from keyrender.interpolate import inbetween
from keyrender.interpolate.flow import (
    FlowInterpolator, FlowPairState, block_matches, dis_refine, match_flow, pick_flow, pixel_grid, render_time,
)
from helpers import psnr

skimage_data = pytest.importorskip("skimage.data")


def scene(x: int) -> np.ndarray:
    """A 360 x 480 crop of a real photograph (`astronaut`, blurred: a soft background) with a
    48 x 48 patch of another (`chelsea`, the cat's face: texture) pasted with its corner at (x, 200)."""
    bg = cv2.GaussianBlur(skimage_data.astronaut()[60:420, 0:480], (0, 0), 3)
    cat = cv2.resize(skimage_data.chelsea()[40:200, 120:280], (48, 48), interpolation=cv2.INTER_AREA)
    out = bg.copy()
    out[200:248, x : x + 48] = cat
    return out


@pytest.mark.parametrize("shift", [96, 160])
def test_small_subject_moving_far_lands_where_it_should(shift):
    a, b, truth = scene(60), scene(60 + shift), scene(60 + shift // 2)
    x = 60 + shift // 2
    roi = (slice(200, 248), slice(x, x + 48))  # where the subject is at t = 0.5
    # keyframe spacing (seven in-betweens; t = 0.5 is the fourth): a short span of one to three
    # takes its large motion from the block matches alone, which reach 30% of the frame (96 px
    # here but not 160; see test_interpolate_short_span)
    times = [j / 8 for j in range(1, 8)]
    with_matches = list(inbetween(a, b, times, backend=FlowInterpolator()))[3]
    without = list(inbetween(a, b, times, backend=FlowInterpolator(match_flow=False)))[3]
    p_with, p_without = psnr(with_matches[roi], truth[roi]), psnr(without[roi], truth[roi])
    # the subject is where it should be at t = 0.5 (without the matches: a faint double ghost)
    assert p_with > p_without + 4.0, (p_with, p_without)
    assert p_with > 17.0, p_with


def test_match_flow_ignores_matches_the_flow_already_follows_and_lone_matches():
    flow = np.zeros((60, 80, 2), np.float32)
    pa = np.float32([[10, 10], [12, 11], [60, 40]])
    # the first two agree with the flow (no motion); the third moves but has no confirming neighbour
    pb = pa + np.float32([[0.5, 0], [0, 0.5], [30, 0]])
    assert match_flow(pa, pb, flow, radius=6) is None
    # two confirming matches that the flow misses: their cells move, the rest keeps the flow
    pa2 = np.float32([[40, 30], [44, 31]])
    m = match_flow(pa2, pa2 + [20, 0], flow, radius=6)
    assert m is not None
    assert np.allclose(m[30, 42], [20, 0]) and np.allclose(m[5, 5], [0, 0])


def test_pick_flow_takes_the_hypothesis_that_warps_better_per_pixel():
    g = cv2.GaussianBlur(skimage_data.camera()[250:370, 200:360], (0, 0), 1.5).astype(np.float32)
    shifted = np.roll(g, 7, axis=1)  # B(x) = A(x - 7): A's pixel x is at x + 7 in B
    right = np.zeros(g.shape + (2,), np.float32)
    right[..., 0] = 7
    wrong = np.zeros_like(right)
    picked = pick_flow(g, shifted, [wrong, right], pixel_grid(*g.shape))
    inner = picked[20:-20, 20:-20, 0]
    assert np.median(inner) > 6.5


def test_block_matches_find_a_far_moving_textured_block_and_nothing_on_flat_images():
    a, b = scene(60), scene(180)  # 120 px: within the search (30% of the long side)
    ga, gb = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (a, b))
    zero = np.zeros(ga.shape + (2,), np.float32)
    pa, pb = block_matches(ga, gb, zero, pixel_grid(*ga.shape))
    on_subject = (pa[:, 0] >= 60) & (pa[:, 0] < 108) & (pa[:, 1] >= 200) & (pa[:, 1] < 248)
    assert on_subject.sum() >= 3
    d = pb[on_subject] - pa[on_subject]
    assert np.allclose(np.median(d, axis=0), [120, 0], atol=1.0), d
    # nothing where the flow already explains the pair, nothing on a flat picture
    assert len(block_matches(ga, ga, zero, pixel_grid(*ga.shape))[0]) == 0
    flat = np.full_like(ga, 90)
    assert len(block_matches(flat, np.full_like(ga, 160), zero, pixel_grid(*ga.shape))[0]) == 0
    # an image smaller than a block: nothing, no error
    tiny = np.ascontiguousarray(ga[:10, :12])
    pa, pb = block_matches(tiny, 255 - tiny, zero[:10, :12], pixel_grid(10, 12))
    assert pa.shape == pb.shape == (0, 2)


def test_dis_refine_follows_a_displacement_beyond_dis_search_from_its_start():
    ga, gb = (cv2.cvtColor(scene(x), cv2.COLOR_RGB2GRAY) for x in (60, 180))
    start = np.zeros(ga.shape + (2,), np.float32)
    start[176:272, 36:132, 0] = 120  # a match's displacement, over a box twice the subject's size
    plain = dis_refine(ga, gb, np.zeros_like(start), "medium", 1)
    refined = dis_refine(ga, gb, start, "medium", 1)
    inner = (slice(210, 238), slice(70, 98))
    assert abs(np.median(plain[inner][..., 0])) < 20  # DIS alone stays on the background
    assert abs(np.median(refined[inner][..., 0]) - 120) < 1.0
    # the background inside the box is brought back to its own (zero) motion: the subject's shape
    for y, x in ((180, 40), (268, 128), (224, 45)):
        assert np.abs(refined[y, x]).max() < 1.0, (y, x, refined[y, x])


def test_densify_carries_a_subject_that_no_feature_match_names():
    """The pair state with SIFT run but no match surviving (as on a walker whose limbs changed):
    block matching and the refined hypothesis still put the subject where it is at t = 0.5."""
    a, b, truth = scene(60), scene(180), scene(120)
    none = (np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32))
    roi = (slice(200, 248), slice(120, 168))
    out = {}
    for densify in (False, True):
        state = FlowPairState(a, b, max_side=640, preset="medium", variational=1, matches=none, densify=densify)
        out[densify] = psnr(render_time(a, b, state, 0.5, hedge=0.5)[roi], truth[roi])
    assert out[True] > out[False] + 4.0, out


def test_the_place_a_subject_left_takes_the_motion_around_it_in_the_splat():
    from keyrender.interpolate.largemotion import splat_flow

    # an 8 px wide band moving 40 px right over a still background: splatted to t = 1, no sample
    # lands where the band was, and there the caller would fall back to the linear approximation
    # (which reads the band's motion at that pixel and samples the keyframes 10-30 px away)
    h, w = 60, 200
    f = np.zeros((h, w, 2), np.float32)
    f[:, 60:68, 0] = 40.0
    c = np.ones((h, w), np.float32)
    grid = pixel_grid(h, w)
    left = (slice(0, h), slice(61, 67))  # where the band was
    landed = (slice(0, h), slice(101, 107))  # where it is at t = 1
    _, cov = splat_flow(f, c, 1.0, grid, fill=0)
    assert cov[left].max() < 0.1
    flow, cov = splat_flow(f, c, 1.0, grid)
    assert cov[left].min() > 0.9  # filled from the neighbours: the still background on both sides
    assert np.abs(flow[left]).max() < 1.0
    assert np.allclose(flow[landed][..., 0], -40.0, atol=0.01) and np.abs(flow[landed][..., 1]).max() < 1e-3


def test_despeckle_removes_isolated_wrong_vectors_and_keeps_the_edge_between_motions():
    from keyrender.interpolate.flowcore import despeckle

    f = np.zeros((40, 60, 2), np.float32)
    f[:, 30:, 0] = 12.0  # two motions side by side
    f[10:12, 10:12] = (-50.0, 35.0)  # a 2 x 2 speck of nonsense in the still half
    out = despeckle(f)
    assert np.abs(out[:, :29]).max() == 0.0
    assert np.all(out[:, 31:, 0] == 12.0) and np.all(out[..., 1] == 0.0)
    tiny = np.ones((3, 3, 2), np.float32)
    assert despeckle(tiny) is tiny  # smaller than the window: as it is


def test_the_splat_runs_only_where_the_motion_to_t_can_reach_the_reversal(monkeypatch):
    import keyrender.interpolate.flow as flow

    calls = []
    real = flow.splat_flow

    def counting(f, c, t, grid, **kw):
        calls.append(t)
        return real(f, c, t, grid, **kw)

    monkeypatch.setattr(flow, "splat_flow", counting)
    # the subject moves 96 px: every in-between splats both ways
    list(inbetween(scene(60), scene(156), [0.25, 0.5], backend=FlowInterpolator()))
    assert len(calls) == 4
    # a shift of one pixel: t times the largest motion stays under the reversal's threshold, and
    # the splat (which could change nothing there) is skipped
    calls.clear()
    a = scene(60)
    b = a.copy()
    b[:, 1:] = a[:, :-1]
    list(inbetween(a, b, [0.25, 0.5, 0.75], backend=FlowInterpolator(flow_gate=False)))
    assert calls == []
