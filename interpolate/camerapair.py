"""The flow backend's state for a pair whose camera moved: both keyframes carried to the camera's
half-way view (H^(1/2), H^(-1/2); see `keyrender.interpolate.camera`), the subject followed by the
residual flow on the pre-aligned pair."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from keyrender.interpolate.flowcore import (
    bidirectional_flow, blend_fields, consistency, gray_pair, inside_frame, intermediate_flows, ncc, pick_substitute, pixel_grid,
    shrink_flow, working_size,
)


def field_scale(h: int, w: int, fh: int, fw: int) -> np.ndarray:
    """The map from a field's pixel (u, v, 1) to the frame's (x, y, 1), pixel centres aligned (as
    `_strip` samples the fields)."""
    sx, sy = w / fw, h / fh
    return np.float64([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class HalfwayViews:
    """A pair carried to the camera's half-way view at the flow's working size (`halfway_views`):
    the grey keyframes `am` (A by H^(1/2)) and `bm` (B by H^(-1/2)), where each has content (`va`,
    `vb`: 1 inside its view), the camera path at that size (`path`) and the map from its pixels to
    the frame's (`scale`, see `field_scale`)."""

    size: tuple[int, int]
    flow_size: tuple[int, int]
    scale: np.ndarray
    path: object  # keyrender.interpolate.camera.CameraPath
    am: np.ndarray
    bm: np.ndarray
    va: np.ndarray
    vb: np.ndarray


def halfway_views(a: np.ndarray, b: np.ndarray, matrix: np.ndarray, max_side: int) -> HalfwayViews:
    """A and B (RGB) at the flow's working size (long side at most `max_side`), grey, carried to
    the half-way view of the camera `matrix` (A's pixels to B's)."""
    from keyrender.interpolate.camera import CameraPath

    h, w = a.shape[:2]
    fh, fw = working_size(h, w, max_side)
    ga, gb = gray_pair(a, b, (fh, fw))
    cf = field_scale(h, w, fh, fw)
    path_f = CameraPath(np.linalg.inv(cf) @ matrix @ cf)
    half, half_inv = path_f.at(0.5), path_f.at(-0.5)
    am = cv2.warpPerspective(ga, half, (fw, fh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    bm = cv2.warpPerspective(gb, half_inv, (fw, fh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ones = np.ones((fh, fw), np.float32)
    va = cv2.warpPerspective(ones, half, (fw, fh), flags=cv2.INTER_LINEAR, borderValue=0)
    vb = cv2.warpPerspective(ones, half_inv, (fw, fh), flags=cv2.INTER_LINEAR, borderValue=0)
    return HalfwayViews((h, w), (fh, fw), cf, path_f, am, bm, va, vb)


def _apply(m: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The homography m applied to the coordinate maps x, y (float32)."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    d = m[2, 0] * x64 + m[2, 1] * y64 + m[2, 2]
    return (((m[0, 0] * x64 + m[0, 1] * y64 + m[0, 2]) / d).astype(np.float32),
            ((m[1, 0] * x64 + m[1, 1] * y64 + m[1, 2]) / d).astype(np.float32))


class CameraPairState:
    """A pair whose camera moved (see `keyrender.interpolate.camera`): the camera at constant
    velocity, the subject by residual flow on the pre-aligned pair.

    Both keyframes are carried to the camera's half-way view (A by H^(1/2), B by H^(-1/2)); the
    residual flow between them is what the camera does not explain (a subject's motion, parallax).
    Where one aligned frame has no content (it was outside that keyframe's view) the other's is
    put in its place before the flow, so the residual there is zero: such content simply follows
    the camera. For frame t, pixel x sits at y = H^(1/2 - t) x in the half-way view; the residual
    flows of Super SloMo's linear-motion approximation at time t carry y to the aligned A and B,
    and H^(-1/2), H^(1/2) carry those to A's and B's pixels. A pixel that only one keyframe sees
    (content entering or leaving the frame) is taken from that keyframe by the in-frame weights.
    """

    linear_edges = True  # (a `flow.PairState`: the camera's fields extrapolate linearly past the edge)

    def __init__(self, a: np.ndarray, b: np.ndarray, matrix: np.ndarray, *, max_side: int, preset: str,
                 variational: int | None):
        views = halfway_views(a, b, matrix, max_side)
        (h, w), (fh, fw), cf, path_f = views.size, views.flow_size, views.scale, views.path
        am, bm, va, vb = views.am, views.bm, views.va, views.vb
        am_f = np.where(va > 0.5, am, np.where(vb > 0.5, bm, am))
        bm_f = np.where(vb > 0.5, bm, np.where(va > 0.5, am, bm))
        r01, r10 = bidirectional_flow(am_f, bm_f, preset, variational)
        self.flow_size = (fh, fw)
        self.overlap = float(((va > 0.5) & (vb > 0.5)).mean())
        wh, ww = fh, fw
        if min(wh, ww) >= 32:
            wh, ww = (wh + 1) // 2, (ww + 1) // 2
            r01, r10 = shrink_flow(r01, wh, ww), shrink_flow(r10, wh, ww)
            am_f = cv2.resize(am_f, (ww, wh), interpolation=cv2.INTER_AREA)
            bm_f = cv2.resize(bm_f, (ww, wh), interpolation=cv2.INTER_AREA)
            va = cv2.resize(va, (ww, wh), interpolation=cv2.INTER_AREA)
            vb = cv2.resize(vb, (ww, wh), interpolation=cv2.INTER_AREA)
        c0 = consistency(r01, r10)
        c1 = consistency(r10, r01)
        self.gx, self.gy = pixel_grid(wh, ww)
        grid = (self.gx, self.gy)
        # the similarity of the aligned pair once the residual is applied, over what both see
        both = (va > 0.5) & (vb > 0.5)
        b_on_a = cv2.remap(bm_f, self.gx + r01[..., 0], self.gy + r01[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        sel = both & (c0 > 0.5)
        self.similarity = ncc(am_f[sel].astype(np.float32), b_on_a[sel].astype(np.float32)) if sel.mean() > 0.05 else 0.0
        # untrusted residuals: the other direction's (negated) or none (the camera's), whichever
        # matches the other frame better (see `pick_substitute`)
        zero = np.zeros_like(r01)
        sub01 = pick_substitute(am_f, bm_f, -r10, zero, grid)
        sub10 = pick_substitute(bm_f, am_f, -r01, zero, grid)
        c0v, c1v = (c0 * va)[..., None], (c1 * vb)[..., None]
        self.r01 = c0v * r01 + (1.0 - c0v) * sub01
        self.r10 = c1v * r10 + (1.0 - c1v) * sub10
        self.c0, self.c1 = c0 * va, c1 * vb
        # what `posechange.explained_shares` trusts: the residual's consistency where both views see,
        # and what only one keyframe sees (the camera explains it)
        self.trust = np.where(both, c0, 1.0).astype(np.float32)
        self.gray = (am_f, bm_f)
        self.size = (h, w)
        self.wsize = (wh, ww)
        cw = field_scale(h, w, wh, ww)
        self.path = path_f.conjugate(np.linalg.inv(cf) @ cw)  # (one matrix logarithm per pair)
        self.half, self.half_inv = self.path.at(0.5), self.path.at(-0.5)

    def fields(self, t: float, hedge: float = 0.0, hedge_level: float = 50.0):
        """As `_PairState.fields`, plus the camera-only flows and A's weight for the hedge's fade."""
        wh, ww = self.wsize
        gx, gy = self.gx, self.gy
        yx, yy = _apply(self.path.at(0.5 - t), gx, gy)  # frame t -> half-way view
        rt0, rt1 = intermediate_flows(self.r01, self.r10, t)
        r0 = cv2.remap(rt0, yx, yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        r1 = cv2.remap(rt1, yx, yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        max_, may_ = yx + r0[..., 0], yy + r0[..., 1]  # in the aligned A
        mbx, mby = yx + r1[..., 0], yy + r1[..., 1]
        ax, ay = _apply(self.half_inv, max_, may_)
        bx, by = _apply(self.half, mbx, mby)
        in_a, in_b = inside_frame(ax, ay, ww, wh), inside_frame(bx, by, ww, wh)
        ft0 = np.dstack([ax - gx, ay - gy])
        ft1 = np.dstack([bx - gx, by - gy])
        k = max(3, int(round(9 * ww / self.size[1])) | 1)
        wa, fade = blend_fields(t, (self.c0, self.c1), self.gray, (max_, may_), (mbx, mby), inside=(in_a, in_b),
                                hedge=hedge, hedge_level=hedge_level, k=k)
        return ft0, ft1, wa, fade

    def fade_fields(self, t: float):
        """The camera-only flows from frame t to A and B and A's weight: the hedge's cross-fade
        of the camera-aligned keyframes (a ghost of the subject, not of the whole picture)."""
        wh, ww = self.wsize
        gx, gy = self.gx, self.gy
        ax, ay = _apply(self.path.at(-t), gx, gy)
        bx, by = _apply(self.path.at(1.0 - t), gx, gy)
        w_a = (1.0 - t) * inside_frame(ax, ay, ww, wh) + 1e-4
        w_b = t * inside_frame(bx, by, ww, wh) + 1e-4
        return np.dstack([ax - gx, ay - gy]), np.dstack([bx - gx, by - gy]), (w_a / (w_a + w_b)).astype(np.float32)

