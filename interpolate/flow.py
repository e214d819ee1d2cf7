"""Flow backend: in-betweens from bidirectional optical flow, on CPU, without weights.

The algorithm, per keyframe pair (A at t=0, B at t=1):

1. Pair guard on small thumbnails (as RIFE does): a *static* pair (nothing moved) is cross-faded
   without computing flow. A moving camera is solved first (`camera.pair_camera`, or
   `direct.direct_camera` for keyframes too plain for features) and handled by `CameraPairState`.
   A pair that neither the camera nor the flow explains (keyframes of one shot that differ by
   pose, expression, background) is bridged as a pose change (`posechange.PoseState`: the
   subject named by the caller's hints followed, the consistent residual morphed, the rest
   dissolved); between keyframes there is never a cut or a hold. Only with `detect_cuts`
   (retiming footage, `retime.retime_video`) is an *unrelated* pair (a scene cut: no camera
   model, the flow does not explain B from A, the feature matches do not relate the pictures,
   and frames too plain to match differ in colour too; see `_generate`) held (A for t < 0.5, B
   from t >= 0.5) and a related pair that nothing explains cross-faded (`fallback`).
   The SIFT matching behind the camera solve and the large-motion hypothesis is skipped where
   DIS's flow, computed first, explains the pair (`flow_suffices`), or, in a short span (a 2-4x
   retime), shows a still camera (`flow_sees_still_camera`; see `short_span`).
2. Bidirectional flow A->B and B->A with OpenCV's DIS (Kroeger et al., "Fast Optical Flow using
   Dense Inverse Search", ECCV 2016), computed once per pair at a working resolution (frames are
   downscaled so that the long side is at most `flow_max_side`). DIS estimates at its finest
   scale (half that size for the default preset) and only upsamples, so the steps below work at
   half the flow resolution, and the fields are upsampled strip by strip while warping.
   Large motion: a small subject that moves many times its own size (people a second apart)
   vanishes at DIS's coarse levels. SIFT matches (computed once per pair, shared with the camera
   solve) that DIS misses, confirmed by a neighbour, propose a second flow (`match_flow`); where
   DIS fails, block matching by normalised cross-correlation adds the correspondences SIFT misses
   (`block_matches`: a walker's torso still correlates when his limbs have changed), and DIS
   started from the match hypothesis refines it to the subject's shape (`dis_refine`, a third
   hypothesis). Each pixel keeps the hypothesis that warps better (`pick_flow`).
3. Forward-backward consistency (Sundaram et al., ECCV 2010) marks the pixels of A that are not
   visible in B and vice versa; they become soft occlusion maps. Those pixels get a substitute
   flow: when one homography (fitted with RANSAC to the trusted flow) explains most of the frame,
   the camera's motion (content leaving the frame in a push-in or pan follows the camera instead
   of smearing); otherwise the negated flow of the other direction.
4. For each time t, the flows from t back to A and on to B follow the linear-motion approximation
   of Super SloMo (Jiang et al., CVPR 2018):
       F_t0 = -(1 - t) t F_01 + t^2 F_10,    F_t1 = (1 - t)^2 F_01 - t (1 - t) F_10
   That approximation reads the flows at the pixel of frame t itself, which a far-moving subject
   has not reached in either keyframe; where the motion is large, the flows to t come instead
   from flow reversal (Xu et al., NeurIPS 2019: A's and B's flows splatted forward to time t,
   the larger motion in front; `splat_flow`).
   A and B are backward-warped to t and blended with weights (1 - t) and t, each multiplied by
   the visibility of the sample in the *other* frame (a pixel that only A sees is taken from A)
   and by whether the sample falls inside the frame (borders). Where the two warped frames still
   disagree the flow is wrong, and the plain cross-fade is mixed in (`hedge`): a ghost costs less
   than a tear.
5. The warp runs in horizontal strips, so a 4K frame never needs full-resolution float maps of
   the whole image at once.

Frames are produced lazily: nothing heavier than the input checks runs before the first `next()`.

Where the parts live: the flow primitives (DIS, consistency, `global_motion`, the linear-motion
approximation) in `flowcore`, the large-motion helpers (`match_flow`, `pick_flow`, `splat_flow`) in
`largemotion`, the camera-aligned pair state in `camerapair` (the camera itself in `camera`); this
module holds the pair guard, the still-camera pair state, the warp and the interpolator, and
re-exports the helpers' public names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import cv2
import numpy as np

from keyrender.interpolate.base import CheckedInterpolator
from keyrender.interpolate.camera import match_features, pair_camera
from keyrender.interpolate.camerapair import CameraPairState
from keyrender.interpolate.direct import CUT_COLOUR_DISTANCE, colour_distance, direct_camera, few_keypoints
from keyrender.interpolate.flowcore import (  # noqa: F401  (public names stay importable from here)
    DIS_PRESETS, despeckle, pixel_grid, inside_frame, ncc, pick_substitute, shrink_flow, bidirectional_flow, compensated_similarity,
    blend_fields, consistency, dis_calc, dis_refine, global_motion, gray_pair, homography_flows, intermediate_flows,
    thumbnail, working_size,
)
from keyrender.interpolate.largemotion import block_matches, match_flow, pick_flow, splat_flow  # noqa: F401
from keyrender.interpolate.posechange import (
    POSE_FROM, PoseState, judged, move_summary, pair_path, plain_explained, state_explained,
)


#: flow reversal takes over from the linear approximation where the splatted motion to t exceeds
#: REVERSAL_FROM px of the fields (largest component), fully REVERSAL_RAMP px later
REVERSAL_FROM, REVERSAL_RAMP = 1.5, 3.0

#: a camera that moves the frame's corners by less than this share of its diagonal between two
#: frames is still enough for the flow path in a short span (`flow_sees_still_camera`): the
#: camera-move suite's views at 2-4 frame gaps (1.25% of the width or more per pair) all keep
#: the camera path, where it is 1.5 dB better; at 1% some lose it. DIS's own homography on a
#: still handheld shot (tree.avi) moves the corners by 0.3-1.1 px of 320 x 240 (0.1-0.3%)
STILL_CAMERA = 0.005


@dataclass(frozen=True)
class PairGuard:
    """What the thumbnail check found for a pair: `mode` is "static", "cut" or "flow"."""

    mode: str
    max_diff: float  # largest thumbnail pixel difference, in 0..255 levels
    similarity: float  # normalized cross-correlation of the thumbnails after motion compensation


def guard_pair(
    frame_a: np.ndarray,
    frame_b: np.ndarray,
    static_threshold: float = 2.0,
    cut_threshold: float = 0.35,
) -> PairGuard:
    """Classify a pair as static, a scene cut, or ordinary motion, from 256 px thumbnails.

    Static: no thumbnail pixel differs by more than `static_threshold` levels (of 255).
    Otherwise, when the zero-mean normalized cross-correlation of 64 px thumbnails is below
    `cut_threshold`, the mode is "check": the pair is a cut unless the flow explains B from A
    (`compensated_similarity` >= `cut_threshold`), which the interpolator checks once the flow is
    computed.
    """
    ta = thumbnail(frame_a, 256)
    tb = thumbnail(frame_b, 256)
    max_diff = float(np.abs(ta - tb).max())
    if max_diff <= static_threshold:
        return PairGuard("static", max_diff, 1.0)
    # a low plain correlation is either a cut or large motion: the flow decides (see
    # `compensated_similarity`), at the working resolution, once it is computed anyway
    plain = ncc(thumbnail(frame_a, 64), thumbnail(frame_b, 64))
    return PairGuard("flow" if plain >= cut_threshold else "check", max_diff, plain)


def working_flows(a: np.ndarray, b: np.ndarray, max_side: int, preset: str, variational: int | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pair's grey frames at the working resolution (long side <= `max_side`) and DIS's flows
    A->B and B->A between them: (gray A, gray B, F_ab, F_ba)."""
    h, w = a.shape[:2]
    wh, ww = working_size(h, w, max_side)
    ga, gb = gray_pair(a, b, (wh, ww))
    f_ab, f_ba = bidirectional_flow(ga, gb, preset, variational)
    return ga, gb, f_ab, f_ba


def flow_suffices(gray_a: np.ndarray, gray_b: np.ndarray, f_ab: np.ndarray, f_ba: np.ndarray, *,
                  max_motion: float = 0.025, max_inconsistent: float = 0.05, max_residual: float = 0.01) -> bool:
    """Whether DIS alone explains the pair (`working_flows`' output): the motion is small (99th
    percentile under `max_motion` of the long side), forward-backward consistent (under
    `max_inconsistent` of the pixels fail) and B warped onto A leaves almost nothing unexplained
    (under `max_residual` of the pixels differ by more than 30 levels, 9 px blurred).

    Such a pair needs neither the camera solve nor the match hypothesis (SIFT on both frames, about
    10x the cost of the flow): a camera this still is followed by the flow's own `global_motion`,
    and the matches only propose motions of 4% of the frame or more. A subject that DIS loses
    leaves a residual where it was and where it is, and an inconsistent flow. Thresholds set on
    the benchmark's footage: on vtest.avi (768x576, walking people) the largest 2-frame gap values
    were 0.031 / 0.046 / 0.009 and the smallest 8-frame gap values 0.026 / 0.035 / 0.005."""
    h, w = gray_a.shape
    if _percentile99_reaches(np.hypot(f_ab[..., 0], f_ab[..., 1]), max_motion * max(h, w)):
        return False
    if (consistency(f_ab, f_ba) < 0.5).mean() >= max_inconsistent:
        return False
    gx, gy = pixel_grid(h, w)
    b_on_a = cv2.remap(gray_b, gx + f_ab[..., 0], gy + f_ab[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    residual = cv2.blur(cv2.absdiff(b_on_a, gray_a).astype(np.float32), (9, 9))
    return bool((residual > 30).mean() < max_residual)


def _percentile99_reaches(values: np.ndarray, limit: float) -> bool:
    """`np.percentile(values, 99) >= limit`, from a count of the values at or above `limit` where
    that decides it (the two values the percentile interpolates between are both at or above it,
    or the upper one below it), else from the percentile itself: the same answer without the
    partial sort (1.3 ms at 640 x 480) in almost every pair."""
    n = values.size
    i = int(np.floor(0.99 * (n - 1)))  # the percentile lies between the i-th and (i+1)-th smallest
    above = int(np.count_nonzero(values >= limit))  # the smallest at or above it is the (n - above)-th
    if i >= n - above:
        return True
    if i + 1 < n - above:
        return False
    return bool(np.percentile(values, 99) >= limit)


def flow_sees_still_camera(gray_a: np.ndarray, gray_b: np.ndarray, f_ab: np.ndarray, f_ba: np.ndarray,
                           max_move: float = STILL_CAMERA) -> bool:
    """Whether DIS's own flow (`working_flows`' output) shows a still camera: one homography
    explains at least half of A's forward-backward consistent pixels, which cover at least a
    quarter of the frame (see `global_motion`), and it moves no corner of the frame by `max_move`
    of the frame's diagonal or more.

    Such a pair needs no camera solve from feature matches: the flow follows a camera this still
    as well as the camera path does. It says nothing about a subject that DIS lost (a hand
    crossing a still frame passes); in a short span those are left to the block matches (see
    `FlowInterpolator`, `short_span`)."""
    h, w = gray_a.shape
    hom = global_motion(f_ab, consistency(f_ab, f_ba), min_move=0.0)
    if hom is None:
        return False
    corners = np.float32([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]]).reshape(-1, 1, 2)
    return bool(np.abs(cv2.perspectiveTransform(corners, hom) - corners).max() < max_move * float(np.hypot(h, w)))


class PairState(Protocol):
    """What `render_time` needs of a pair's state, whichever way the pair was explained
    (`FlowPairState`, `camerapair.CameraPairState`, `posechange.PoseState`): the frame's `size`
    and the fields' working size `wsize` (h, w), the working pixel grid `gx`, `gy`, and per time t
    the flows from t to A and B with A's weight and the hedge's share (`fields`), the camera-aligned
    cross-fade's fields or None (`fade_fields`); `linear_edges`: whether the fields are
    extrapolated linearly beyond the frame's edge when upsampled (a camera's zoom stays exact)."""

    size: tuple[int, int]
    wsize: tuple[int, int]
    gx: np.ndarray
    gy: np.ndarray
    linear_edges: bool

    def fields(self, t: float, hedge: float = 0.0, hedge_level: float = 50.0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]: ...

    def fade_fields(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None: ...


class FlowPairState:
    """Everything computed once per pair, at the working resolution (a `PairState`)."""

    linear_edges = False

    def __init__(
        self, a: np.ndarray, b: np.ndarray, *, max_side: int, preset: str, variational: int | None,
        camera: bool = True, check_cut: bool = False, matches: tuple[np.ndarray, np.ndarray] | None = None,
        reversal: bool = True, flows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
        densify: bool = True,
    ):
        # (`densify`: the block matches and the refined hypothesis beside the feature matches;
        # off only for measuring what they add)
        h, w = a.shape[:2]
        # (`flows`: `working_flows(a, b, ...)` when the caller has it already)
        ga, gb, self.f01, self.f10 = flows if flows is not None else working_flows(a, b, max_side, preset, variational)
        wh, ww = ga.shape
        self.flow_size = (wh, ww)
        # the scene-cut check (see `compensated_similarity`), at the flow's own resolution
        self.similarity = (compensated_similarity(ga, gb, self.f01, consistency(self.f01, self.f10))
                           if check_cut else None)
        # DIS estimates its flow at its finest scale (half the input size or less for every
        # preset) and upsamples it bilinearly: the fields below lose nothing measurable at half
        # the resolution (vtest.avi: -0.01 dB) and cost a quarter.
        work = (ga, gb)  # the grey pair at the flow's resolution (see `dis_refine` below)
        if min(wh, ww) >= 32:
            wh, ww = (wh + 1) // 2, (ww + 1) // 2
            self.f01 = shrink_flow(self.f01, wh, ww)
            self.f10 = shrink_flow(self.f10, wh, ww)
            ga = cv2.resize(ga, (ww, wh), interpolation=cv2.INTER_AREA)
            gb = cv2.resize(gb, (ww, wh), interpolation=cv2.INTER_AREA)
        if matches is not None:
            # large motion: a second hypothesis from the feature matches, kept where it warps
            # better (see `match_flow`)
            sx, sy = ww / w, wh / h
            pa = (matches[0] + 0.5) * [sx, sy] - 0.5
            pb = (matches[1] + 0.5) * [sx, sy] - 0.5
            radius = max(4.0, 0.07 * max(wh, ww))
            grid = pixel_grid(wh, ww)
            if densify:
                # where DIS fails, block matching adds the correspondences SIFT misses (see
                # `block_matches`), both ways
                ba, bb = block_matches(ga, gb, self.f01, grid)
                rb, ra = block_matches(gb, ga, self.f10, grid)
                pa = np.concatenate([pa, ba, ra]).astype(np.float32)
                pb = np.concatenate([pb, bb, rb]).astype(np.float32)
            # (motions of a few pixels DIS follows; there a match's hypothesis only adds noise)
            move = 0.04 * max(wh, ww)
            m01 = match_flow(pa, pb, self.f01, radius, min_move=move)
            m10 = match_flow(pb, pa, self.f10, radius, min_move=move)
            for m, fwd in ((m01, True), (m10, False)):
                if m is None:
                    continue
                hyps = [self.f01 if fwd else self.f10, m]
                if densify:
                    # a third hypothesis: DIS started from the matches' (piecewise constant)
                    # displacement, which it refines to the subject's shape (see `dis_refine`)
                    g0, g1 = work if fwd else work[::-1]
                    hyps.append(shrink_flow(dis_refine(g0, g1, m, preset, variational), wh, ww))
                if fwd:
                    self.f01 = pick_flow(ga, gb, hyps, grid)
                else:
                    self.f10 = pick_flow(gb, ga, hyps, grid)
        self.c0 = consistency(self.f01, self.f10)
        self.c1 = consistency(self.f10, self.f01)
        # the flows before the occlusion substitutes below, for the flow reversal (an occluded
        # pixel's own estimate, e.g. a still background's, is what it splats)
        self.raw = (self.f01, self.f10)
        self.raw_max = (float(np.abs(self.f01).max()), float(np.abs(self.f10).max()))
        self.gray = (ga, gb)
        # Where a flow fails its consistency check (the pixel is not visible in the other frame,
        # or DIS guessed), replace it with the negated flow of the other direction at the same
        # place, before the linear-motion approximation mixes both (it reads F_01 and F_10 at
        # the same location): fixes the bands entering the frame and the edges of occlusions.
        c0, c1 = self.c0[..., None], self.c1[..., None]
        self.gx, self.gy = pixel_grid(wh, ww)
        # (RANSAC tolerance: one pixel of the flow resolution)
        self.global_motion = global_motion(self.f01, self.c0, tolerance=ww / self.flow_size[1]) if camera else None
        sub01, sub10 = -self.f10, -self.f01
        if self.global_motion is not None:
            # A camera move (pan, push-in) explains most of the frame. An untrusted pixel gets
            # the camera's motion where that matches the other frame better than the other
            # direction's flow does, or where the camera takes it out of the frame (a band along
            # every edge in a push-in, where the other direction's flow at the same place is
            # wrong). On a moving object, which does not follow the camera, the other direction's
            # flow usually matches better and stays.
            grid = (self.gx, self.gy)
            g01, g10 = homography_flows(self.global_motion, wh, ww, grid)
            sub01 = pick_substitute(ga, gb, sub01, g01, grid)
            sub10 = pick_substitute(gb, ga, sub10, g10, grid)
        f01 = c0 * self.f01 + (1.0 - c0) * sub01
        f10 = c1 * self.f10 + (1.0 - c1) * sub10
        self.f01, self.f10 = f01, f10
        self.reversal = reversal
        self.size = (h, w)
        self.wsize = (wh, ww)

    def fade_fields(self, t: float) -> None:
        """No camera: the hedge fades between the raw keyframes."""
        return None

    def fields(self, t: float, hedge: float = 0.0, hedge_level: float = 50.0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per time t, at working resolution: the flows F_t0 and F_t1 (2 channels each), the
        weight of A in [0,1] and the share of the plain cross-fade (see `hedge`)."""
        ft0, ft1 = intermediate_flows(self.f01, self.f10, t)
        if self.reversal:
            # where the splatted flows land, they replace the linear approximation (see
            # `splat_flow`), only where the motion to t is large: for a few pixels the
            # approximation is as good, and smoother. A splat is a weighted average of the moves
            # t F01 (and its holes' fill of those), so where t times the largest component of F01
            # is under REVERSAL_FROM it could change nothing, and is skipped (tree.avi: most
            # in-betweens; the splat was 40% of a pair's time there)
            grid = (self.gx, self.gy)
            fts = [ft0, ft1]
            for i, (tt, vis) in enumerate(((t, self.c0), (1.0 - t, self.c1))):
                if tt * self.raw_max[i] <= REVERSAL_FROM:
                    continue
                s, k = splat_flow(self.raw[i], vis, tt, grid)
                # (the larger component per pixel; numpy's max over a last axis of 2 costs 70x this)
                big = np.maximum(np.abs(s[..., 0]), np.abs(s[..., 1]))
                k = k * np.clip((big - REVERSAL_FROM) / REVERSAL_RAMP, 0.0, 1.0)
                fts[i] = fts[i] + k[..., None] * (s - fts[i])
            ft0, ft1 = fts
        # (isolated wrong vectors, e.g. where a match's region meets a splatted one, would each
        # fetch a few pixels from far away: vtest.avi +0.01 dB at k=8, +0.07 at k=24, fewer specks)
        ft0, ft1 = despeckle(ft0), despeckle(ft1)
        wh, ww = self.wsize
        ax, ay = self.gx + ft0[..., 0], self.gy + ft0[..., 1]
        bx, by = self.gx + ft1[..., 0], self.gy + ft1[..., 1]
        k = max(3, int(round(9 * ww / self.size[1])) | 1)  # the hedge's smoothing: ~9 px of the frame
        wa, fade = blend_fields(t, (self.c0, self.c1), self.gray, (ax, ay), (bx, by),
                                inside=(inside_frame(ax, ay, ww, wh), inside_frame(bx, by, ww, wh)),
                                hedge=hedge, hedge_level=hedge_level, k=k)
        return ft0, ft1, wa, fade


def render_time(
    a: np.ndarray, b: np.ndarray, state: PairState, t: float, *, strip_rows: int = 256,
    hedge: float = 0.0, hedge_level: float = 50.0,
) -> np.ndarray:
    """One in-between at time t: warp A and B to t and blend, in strips of `strip_rows` rows.

    The fields are computed at the pair's working resolution. When that is smaller than the
    frame, the sampling coordinates (pixel grid plus flow) and the weights are upsampled one strip
    at a time by an affine resampling of single-channel maps, so a 4K frame never holds
    full-resolution float fields of the whole image."""
    ft0, ft1, wa, share = state.fields(t, hedge, hedge_level)
    # a camera move: the hedge fades between the camera-aligned keyframes, not the raw ones
    cam = state.fade_fields(t) if share is not None else None
    h, w = state.size
    wh, ww = state.wsize
    (f0x, f0y), (f1x, f1y) = cv2.split(ft0), cv2.split(ft1)
    flows = [f0x, f0y, f1x, f1y] + ([*cv2.split(cam[0]), *cv2.split(cam[1])] if cam is not None else [])
    weights = [wa, share] + ([cam[2]] if cam is not None else [])
    if (wh, ww) == (h, w):
        gx, gy = state.gx, state.gy
        layers = [f + (gx if i % 2 == 0 else gy) for i, f in enumerate(flows)] + weights
        pad = 0
    else:
        # the flows in the frame's pixels, one sample beyond each edge (extrapolated linearly,
        # so a camera's zoom stays exact up to the frame's edge), upsampled per strip; the pixel
        # grid is added at full resolution
        sx, sy = w / ww, h / wh

        def ext(f, scale=1.0, linear=False):
            if f is None:
                return None
            e = cv2.copyMakeBorder(f * np.float32(scale), 1, 1, 1, 1, cv2.BORDER_REPLICATE)
            if linear and min(f.shape) >= 2:
                e[0, :] = 2 * e[1, :] - e[2, :]
                e[-1, :] = 2 * e[-2, :] - e[-3, :]
                e[:, 0] = 2 * e[:, 1] - e[:, 2]
                e[:, -1] = 2 * e[:, -2] - e[:, -3]
            return e

        linear = cam is not None or state.linear_edges
        layers = [ext(f, sx if i % 2 == 0 else sy, linear) for i, f in enumerate(flows)] + [ext(f) for f in weights]
        pad = 1
        xs = np.arange(w, dtype=np.float32)[None, :]
    out = np.empty_like(a)
    rows = min(strip_rows, h)
    for y0 in range(0, h, rows):
        n = min(h, y0 + rows) - y0
        strips = [None if f is None else _strip(f, y0, n, h, w, pad) for f in layers]
        if pad:
            ys = np.arange(y0, y0 + n, dtype=np.float32)[:, None]
            for i in range(len(flows)):
                strips[i] += xs if i % 2 == 0 else ys
        ax, ay, bx, by = strips[:4]
        wa_s, share_s = strips[len(flows)], strips[len(flows) + 1]
        ia = cv2.remap(a, ax, ay, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        ib = cv2.remap(b, bx, by, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        warped = cv2.blendLinear(ia, ib, wa_s, 1.0 - wa_s)
        if share_s is not None:
            if cam is not None:
                cax, cay, cbx, cby = strips[4:8]
                wc = strips[len(flows) + 2]
                fade = cv2.blendLinear(cv2.remap(a, cax, cay, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
                                       cv2.remap(b, cbx, cby, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
                                       wc, 1.0 - wc)
            else:
                fade = cv2.addWeighted(a[y0 : y0 + n], 1.0 - t, b[y0 : y0 + n], t, 0.0)
            warped = cv2.blendLinear(warped, fade, 1.0 - share_s, share_s)
        out[y0 : y0 + n] = warped
    return out


def _strip(field: np.ndarray, y0: int, n: int, h: int, w: int, pad: int = 0) -> np.ndarray:
    """Rows y0..y0+n of a single-channel map, bilinearly upsampled to the frame's h x w (pixel
    centres aligned; `pad`: samples the map has beyond each edge). A view when `field` is the
    frame's size."""
    fh, fw = field.shape[0] - 2 * pad, field.shape[1] - 2 * pad
    if (fh, fw) == (h, w):
        return field[pad + y0 : pad + y0 + n, pad : pad + w]
    sx, sy = fw / w, fh / h
    m = np.float64([[sx, 0.0, 0.5 * sx - 0.5 + pad], [0.0, sy, (y0 + 0.5) * sy - 0.5 + pad]])
    return cv2.warpAffine(field, m, (w, n), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def cross_fade(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """(1 - t) A + t B, rounded, uint8."""
    return cv2.addWeighted(a, 1.0 - t, b, t, 0.0)


class FlowInterpolator(CheckedInterpolator):
    """The default interpolator: DIS optical flow, occlusion-aware warping, no weights, CPU.

    Options: `preset` (DIS preset: "ultrafast", "fast", "medium"), `flow_max_side` (long side of
    the resolution the flow is computed at), `variational_iterations` (DIS's variational
    refinement; default 1, which matched the presets' 5 on the benchmark clips within 0.02 dB at
    about 60% of the flow time; None keeps the preset's), `static_threshold` and `cut_threshold` (see `guard_pair`),
    `detect_cuts` (off: every pair is a continuous transition, as between the keyframes of a shot;
    on, for retiming footage that contains cuts: an unrelated pair is a cut, see `_generate`),
    `on_cut` ("hold": A then B, or "fade": cross-fade; with `detect_cuts`), `strip_rows` (rows warped at a time),
    `camera_motion` (fit the camera's motion as a homography and let the pixels without a trusted
    flow follow it; see `global_motion`), `hedge` and `hedge_level` (where A and B warped to t
    still disagree, mix in the plain cross-fade: up to `hedge` of it, reached at a disagreement of
    `hedge_level` grey levels; 0 turns it off: crisper where the flow is right, torn where not),
    `match_flow` (a second flow hypothesis from feature matches, and block matches where DIS
    fails, where DIS misses a large motion, and DIS refined from it; see `match_flow`,
    `block_matches`, `dis_refine`) and `flow_reversal` (flows to time t splatted forward where the motion is
    large; see `splat_flow`), `flow_gate` (DIS first, and the SIFT matching behind both only where
    the flow does not explain a small motion; see `flow_suffices`), `short_span` (a pair asked for
    at most this many in-betweens, a 2-4x retime of footage, skips the SIFT matching also where
    the flow misses a subject, as long as the flow shows a still camera (`flow_sees_still_camera`): its
    large-motion hypothesis comes from the block matches alone; 0 turns it off).

    Why the span's length decides: SIFT on both frames and their matching cost several times
    the rest of a pair (DIS, the fields, one warp), so in a pair with one to three in-betweens
    they are most of its time, and at a 2-4 frame gap they bought nothing measurable over the
    block matches (tree.avi, vtest.avi: -0.007..+0.003 dB per row; see
    docs/interpolation-speed.md); across keyframe spacing (8-48 frames) they are a small part of
    the pair and find the walkers that the block matches miss (vtest.avi k=8: about 1 dB). A
    consequence: the frame at a time t of a short span can differ from the frame at the same t of
    a longer one.
    """

    name = "flow"
    #: the keyword options the constructor takes (interpolate.backend_options; a test keeps it true)
    OPTIONS = frozenset({"preset", "flow_max_side", "variational_iterations", "static_threshold", "cut_threshold",
                         "detect_cuts", "on_cut", "strip_rows", "camera_motion", "hedge", "hedge_level",
                         "camera_min_move", "feature_max_side", "related_matches", "match_flow", "flow_reversal",
                         "flow_gate", "short_span"})

    def __init__(
        self,
        *,
        preset: str = "medium",
        flow_max_side: int = 640,
        variational_iterations: int | None = 1,
        static_threshold: float = 2.0,
        cut_threshold: float = 0.35,
        on_cut: str = "hold",
        detect_cuts: bool = False,
        strip_rows: int = 256,
        camera_motion: bool = True,
        hedge: float = 0.5,
        hedge_level: float = 50.0,
        camera_min_move: float = 0.002,
        feature_max_side: int = 640,
        related_matches: int = 10,
        match_flow: bool = True,
        flow_reversal: bool = True,
        flow_gate: bool = True,
        short_span: int = 3,
    ):
        if preset not in DIS_PRESETS:
            raise ValueError(f"preset: unknown DIS preset {preset!r}; known: {', '.join(DIS_PRESETS)}")
        if on_cut not in ("hold", "fade"):
            raise ValueError(f"on_cut: expected 'hold' or 'fade', got {on_cut!r}")
        if flow_max_side < 16:
            raise ValueError(f"flow_max_side: must be at least 16, got {flow_max_side}")
        if strip_rows < 1:
            raise ValueError(f"strip_rows: must be at least 1, got {strip_rows}")
        self.preset = preset
        self.flow_max_side = int(flow_max_side)
        self.variational_iterations = variational_iterations
        self.static_threshold = float(static_threshold)
        self.cut_threshold = float(cut_threshold)
        self.on_cut = on_cut
        self.detect_cuts = bool(detect_cuts)
        self.strip_rows = int(strip_rows)
        self.camera_motion = bool(camera_motion)
        if not 0.0 <= hedge <= 1.0:
            raise ValueError(f"hedge: must be between 0 and 1, got {hedge}")
        if hedge_level <= 0:
            raise ValueError(f"hedge_level: must be positive, got {hedge_level}")
        self.hedge = float(hedge)
        self.hedge_level = float(hedge_level)
        if not camera_min_move >= 0:
            raise ValueError(f"camera_min_move: must be >= 0, got {camera_min_move}")
        if feature_max_side < 64:
            raise ValueError(f"feature_max_side: must be at least 64, got {feature_max_side}")
        self.camera_min_move = float(camera_min_move)
        self.feature_max_side = int(feature_max_side)
        self.related_matches = int(related_matches)
        self.match_flow = bool(match_flow)
        self.flow_reversal = bool(flow_reversal)
        self.flow_gate = bool(flow_gate)
        if short_span < 0:
            raise ValueError(f"short_span: must be >= 0, got {short_span}")
        self.short_span = int(short_span)

    def _generate(self, a, b, ts, info, hints=()) -> Iterator[np.ndarray]:
        if not ts:
            if info is not None:
                info.update(mode="empty", backend=self.name, explained=1.0)
                judged(info)
            return
        if info is None:
            info = {}
        guard = guard_pair(a, b, self.static_threshold, self.cut_threshold)
        info.update(mode=guard.mode, backend=self.name,
                    max_diff=round(guard.max_diff, 3), similarity=round(guard.similarity, 4))
        if guard.mode == "static":
            info["explained"] = 1.0
            judged(info)
            for t in ts:
                yield cross_fade(a, b, t)
            return
        h, w = a.shape[:2]
        flows = None
        blocks_only = False  # the large-motion hypothesis from block matches alone (no SIFT)
        features = self.camera_motion or self.match_flow
        if features and self.flow_gate and guard.mode == "flow":
            # DIS first: where it explains a small motion, no SIFT (see `flow_suffices`); else the
            # flows serve the still-camera state below, or are dropped for the camera's
            flows = working_flows(a, b, self.flow_max_side, self.preset, self.variational_iterations)
            if flow_suffices(*flows):
                features = False
                info["features"] = "skipped: small motion that the flow explains (see flow_suffices)"
            elif len(ts) <= self.short_span and flow_sees_still_camera(*flows, max(STILL_CAMERA, self.camera_min_move)):
                # a short span (a 2-4x retime): SIFT on both frames would cost several times the
                # rest of the pair; where the camera is still it adds nothing that the block
                # matches do not (see `short_span`)
                features = False
                blocks_only = self.match_flow
                info["features"] = ("skipped: a short span and a still camera; large motion from "
                                    "block matches (see flow_sees_still_camera)")
        matches = fit = None
        if features and self.camera_motion:
            matches, fit = pair_camera(a, b, self.feature_max_side)
        elif features:
            matches = match_features(a, b, self.feature_max_side, own_size=True)
        # feature matches in the frame's pixels, for the large-motion hypothesis (see `match_flow`)
        full = (matches[0] / matches[2], matches[1] / matches[2]) if matches is not None and self.match_flow else None
        # the camera explains the pair when its model is supported by enough of the matches
        cam = fit if fit is not None and fit.explains() else None
        # a keyframe too plain for feature matches (a wall, the sky): no matches is no evidence
        # (counted on the matching's working copy, whose features are cached: no second SIFT)
        side = round(max(h, w) * matches[2]) if matches is not None else self.feature_max_side
        plain = few_keypoints(a, b, side) if features and cam is None else None
        if cam is None and self.camera_motion and (plain is not None or (fit is not None and fit.inliers >= 4)):
            # ... so the camera is sought by aligning the frames themselves, and a feature model
            # with too few matches to be trusted alone is refined and checked the same way (see
            # `direct_camera`; the global search only for plain frames)
            direct = direct_camera(a, b, seed=fit.matrix if fit is not None else None, search=plain is not None)
            if direct is not None:
                fit = cam = direct
        if fit is not None:
            info["camera"] = {**fit.summary(h, w), "explains": cam is not None}
        if cam is not None and cam.corner_motion(h, w) >= self.camera_min_move * float(np.hypot(h, w)):
            # 1. the camera moved: it explains B from A (see `CameraPairState`)
            state = CameraPairState(a, b, cam.matrix, max_side=self.flow_max_side, preset=self.preset,
                                   variational=self.variational_iterations)
            explained, textured = state_explained(state)
            if textured < POSE_FROM and not self.detect_cuts:
                # 1'. the model explains too little of the textured picture (its matches are on a
                # subject over backgrounds that differ): a pose change, along the camera when no
                # subject is named
                yield from self._pose(a, b, ts, info, hints, why=f"the camera model explains only {round(100 * textured)}% "
                                      f"of the textured picture", camera=cam.matrix)
                return
            info.update(mode="camera", similarity=round(state.similarity, 4), flow_size=list(state.flow_size),
                        overlap=round(state.overlap, 4), camera_motion=True,
                        occluded_fraction=round(float(((state.c0 < 0.5).mean() + (state.c1 < 0.5).mean()) / 2), 4),
                        explained=round(explained, 3))
            judged(info)
            for t in ts:
                yield render_time(a, b, state, t, strip_rows=self.strip_rows, hedge=self.hedge, hedge_level=self.hedge_level)
            return
        state = None
        if guard.mode == "check":
            # 2. a still camera (or none found) and a low plain correlation: the flow decides
            state = FlowPairState(a, b, max_side=self.flow_max_side, preset=self.preset,
                                  variational=self.variational_iterations, camera=self.camera_motion, check_cut=True,
                                  matches=full, reversal=self.flow_reversal)
            sim = state.similarity
            info["similarity"] = round(sim, 4)
            if sim < self.cut_threshold and not self.detect_cuts:
                # 3. neither the camera nor the flow explains B from A: between keyframes, a pose
                # change (see `posechange`), never a cut
                yield from self._pose(a, b, ts, info, hints, why="neither a camera move nor the flow explains B from A")
                return
            if sim < self.cut_threshold:
                # 3'. footage (`detect_cuts`): a cut when the pictures share nothing (no camera
                # model, different colours), else a fallback cross-fade
                shared = fit.inliers if fit is not None else 0
                # related: enough matches agree on one camera model, or fewer that are most of the
                # matches (between unrelated pictures 1-5 of 27-48 agree by chance: <= 17%)
                related = shared >= self.related_matches or (shared >= 5 and fit.inlier_ratio >= 0.5)
                # (frames too plain to match are a cut only when their colours differ too)
                if not related and (plain is None or colour_distance(a, b) >= CUT_COLOUR_DISTANCE):
                    info.update(mode="cut", on_cut=self.on_cut, explained=0.0)
                    judged(info)
                    for t in ts:
                        if self.on_cut == "fade":
                            yield cross_fade(a, b, t)
                        else:
                            yield (a if t < 0.5 else b).copy()
                    return
                why = (f"{shared} of {fit.matches} feature matches agree on one camera model" if related else
                       f"one keyframe is too plain for feature matches ({plain} keypoints) and their colours agree")
                info.update(mode="fallback", fallback="cross-fade",
                            why=f"neither the camera nor the flow explains B from A, but the pictures are related "
                                f"({why}): not a cut", explained=round(plain_explained(a, b), 3))
                judged(info)
                for t in ts:
                    yield cross_fade(a, b, t)
                return
        if state is None:
            if blocks_only:
                full = (np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32))
            state = FlowPairState(a, b, max_side=self.flow_max_side, preset=self.preset,
                                  variational=self.variational_iterations, camera=self.camera_motion, matches=full,
                                  reversal=self.flow_reversal, flows=flows)
        explained, textured = state_explained(state)
        if textured < POSE_FROM and not self.detect_cuts:
            # 4. the flow explains too little of the textured picture to be followed: a pose change
            yield from self._pose(a, b, ts, info, hints,
                                  why=f"the flow explains only {round(100 * textured)}% of the textured picture")
            return
        info.update(mode="flow", flow_size=list(state.flow_size), camera_motion=state.global_motion is not None,
                    occluded_fraction=round(float(((state.c0 < 0.5).mean() + (state.c1 < 0.5).mean()) / 2), 4),
                    explained=round(explained, 3))
        judged(info)
        for t in ts:
            yield render_time(a, b, state, t, strip_rows=self.strip_rows, hedge=self.hedge, hedge_level=self.hedge_level)

    def _pose(self, a, b, ts, info, hints, *, why: str, camera: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """A pair that nothing explains, bridged continuously (see `posechange`): the largest
        subject of `hints` followed and the others moved in their regions, the consistent residual
        morphed, the rest dissolved. Without hints: along `camera` when a camera model was found
        (`camera`), else `fallback`, the same morph with no path."""
        matrix, main = pair_path(hints)
        if main is None and camera is not None:
            matrix = camera
        state = PoseState(a, b, matrix, max_side=self.flow_max_side, preset=self.preset,
                              variational=self.variational_iterations, hints=hints, main=main)
        explained = state_explained(state)[0]
        if main is None and camera is not None:
            info.update(mode="camera", camera_motion=True, morph="smooth",
                        why=f"{why}: the camera followed, what it does not explain dissolves")
        elif main is None:
            info.update(mode="fallback", fallback="dissolve", why=f"{why}, and no subject was given: "
                        f"a dissolve that moves only what matches nearby")
        else:
            hint = hints[main]
            info.update(mode="pose", why=why, subject=hint.label or "the subject", subjects=len(hints),
                        subject_move=move_summary(matrix, *a.shape[:2]))
        info.update(flow_size=list(state.flow_size), overlap=round(state.overlap, 4), explained=round(explained, 3))
        judged(info)
        for t in ts:
            yield render_time(a, b, state, t, strip_rows=self.strip_rows, hedge=self.hedge, hedge_level=self.hedge_level)
