"""Pose changes: keyframes that differ by more than a camera move, bridged without tears.

Two photos of one person framed alike, a storyboard's two drawings of a beat, two generated
keyframes: the subject turned, changed expression, the background is another one. Optical flow
between such keyframes is a guess over most of the frame, and a confident wrong guess carries a
patch of backdrop onto a cheek (a tear). What this module does instead (`PoseState`):

1. **The subject's path.** When the caller names a subject seen in both keyframes
   (`base.SubjectHint`: a face's landmarks), its similarity transform A -> B (shift, scale,
   roll; `cv2.estimateAffinePartial2D` on the points) is the pair's path, taken at constant
   velocity (`camera.CameraPath`, H^t = expm(t logm H)), as the camera is in
   `camerapair.CameraPairState`. Both keyframes are carried to the half-way view, where the
   residual below is measured. Outside the subject's region the background stays still
   (`STILL_BACKGROUND`: the motion that undoes the path, mixed in smoothly), so a still camera
   stays still. Without hints the path is the identity (the keyframes are framed alike).
2. **The residual, only where it is consistent.** DIS optical flow both ways on the pre-aligned
   pair; each vector is weighted by its forward-backward consistency and by how well it matches
   (grey error over 5 px, `CONFIDENCE_LEVEL`). The weighted vectors are averaged over a Gaussian
   window (`SIGMA` of the long side: Knutsson and Westin's normalized convolution), so the field
   is smooth (no folds, nothing torn apart); where too little consistent flow is near
   (`NEED`) it fades to zero, and no vector exceeds `BOUND` of the long side. Other subjects
   named by hints add their own similarity, relative to the path, inside their region.
3. **A morph.** For time t, both keyframes are warped to t along the path and the residual
   (`CameraPairState.fields`) and dissolved with weights 1 - t and t: what corresponds moves to
   where it is at t, what nothing corresponds to dissolves in place (relative to the subject).

`explained_shares` measures, for any of the flow backend's pair states, the share of the frame
where A and B agree once moved (the span's `explained` in the manifest), and `verdict` turns a
span's decisions into one sentence for the user.

Chosen on `benchmarks/posechange.py` (pairs of photos of one person, measured by tear, held and
face kept; see docs/posechange.md), against the similarity-aligned cross-fade, the camera-pair
state with the face's similarity as camera (raw DIS residual) and the flow backend of before.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from keyrender.interpolate.base import SubjectHint
from keyrender.interpolate.camerapair import CameraPairState, field_scale, halfway_views
from keyrender.interpolate.flowcore import (
    bidirectional_flow, consistency, gray_pair, pixel_grid, shrink_flow, working_size,
)

#: the residual's smoothing window (Gaussian sigma), share of the working long side
SIGMA = 0.015
#: grey error (levels, 5 px box) at which a flow vector's weight has fallen to 1/e
CONFIDENCE_LEVEL = 25.0
#: the largest residual vector, share of the working long side (nothing is carried from far)
BOUND = 0.06
#: smoothed weight below which the residual fades towards zero (too little consistent flow near)
NEED = 0.3
#: weight of a secondary subject's similarity inside its region, against the flow's
PRIOR_WEIGHT = 1.0
#: outside the main subject's region (its box grown STILL_GROW times around its centre, feathered)
#: the background stays where it is (a still camera) instead of following the subject; there the
#: flow does not count, and the motion that undoes the path has BACKGROUND_WEIGHT
STILL_BACKGROUND = True
STILL_GROW = 2.2
BACKGROUND_WEIGHT = 4.0
#: grey levels (5 px box) within which A and B "agree once moved" (`explained_shares`)
EXPLAINED_LEVEL = 16.0
#: local standard deviation (grey levels, 5 px box) above which a pixel is textured
TEXTURE_LEVEL = 4.0
#: a still-camera pair whose flow explains less than this share of the textured picture is bridged
#: as a pose change instead (measured: pose-change pairs 0.00-0.15, real footage 0.84 or more at a
#: 24-frame gap; see docs/posechange.md)
POSE_FROM = 0.5
#: a span is trusted when its motion explains at least this share of the frame (see docs/posechange.md)
TRUSTED_FROM = 0.8


def subject_similarity(hint: SubjectHint) -> np.ndarray | None:
    """The similarity transform (3 x 3) carrying the hint's points in A to its points in B, or None
    when the points do not determine one."""
    m, _ = cv2.estimateAffinePartial2D(hint.points_a, hint.points_b)
    if m is None or not np.isfinite(m).all():
        return None
    return np.vstack([m, [0.0, 0.0, 1.0]])


def move_summary(matrix: np.ndarray, height: int, width: int) -> dict:
    """For the manifest: what a path (3 x 3, A -> B) does to the frame: the centre's shift as a
    share of the frame, the zoom and the roll."""
    m = matrix / matrix[2, 2]
    a = m[:2, :2]
    centre = np.float32([[[(width - 1) / 2, (height - 1) / 2]]])
    shift = cv2.perspectiveTransform(centre, m)[0, 0] - centre[0, 0]
    return {"pan_x": round(float(shift[0]) / width, 4), "pan_y": round(float(shift[1]) / height, 4),
            "zoom": round(float(np.sqrt(abs(np.linalg.det(a)))), 4),
            "roll_deg": round(float(np.degrees(np.arctan2(a[1, 0] - a[0, 1], a[0, 0] + a[1, 1]))), 2)}


def _extent(hint: SubjectHint) -> float:
    """The subject's size: its boxes' area, or its points' spread (squared)."""
    if hint.box_a is not None and hint.box_b is not None:
        return sum((b[2] - b[0]) * (b[3] - b[1]) for b in (hint.box_a, hint.box_b))
    return float(np.ptp(hint.points_a, axis=0).prod() + np.ptp(hint.points_b, axis=0).prod())


def pair_path(hints: Sequence[SubjectHint]) -> tuple[np.ndarray, int | None]:
    """The path of a pose pair: the largest subject's similarity A -> B and its index, or the
    identity and None without a usable hint."""
    order = sorted(range(len(hints)), key=lambda i: -_extent(hints[i]))
    for i in order:
        m = subject_similarity(hints[i])
        if m is not None and abs(np.linalg.det(m[:2, :2])) > 1e-3:
            return m, i
    return np.eye(3), None


def _region(box: tuple | None, points: np.ndarray, grow: float) -> np.ndarray:
    """Corners (4 x 2) of a subject's region: its box grown by `grow` around its centre, or the
    points' bounding box grown by twice that (landmarks span less than the subject)."""
    if box is None:
        (x0, y0), (x1, y1) = points.min(0), points.max(0)
        side = max(x1 - x0, y1 - y0, 1.0)
        x0, x1, y0, y1 = x0 - side / 2, x1 + side / 2, y0 - side / 2, y1 + side / 2
        grow = 2 * grow
    else:
        x0, y0, x1, y1 = box
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * grow / 2, (y1 - y0) * grow / 2
    return np.float32([[cx - hw, cy - hh], [cx + hw, cy - hh], [cx - hw, cy + hh], [cx + hw, cy + hh]])


def _to(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return cv2.perspectiveTransform(np.float32(pts).reshape(-1, 1, 2), m).reshape(-1, 2)


class PoseState(CameraPairState):
    """A pair bridged as a pose change (see the module docstring): the path `matrix` (A -> B,
    the frame's pixels; the main subject's similarity or the identity), the smooth consistent
    residual on the pre-aligned pair, and the other subjects of `hints` (all but `main`) moved
    by their own similarity inside their regions. Renders through `flow.render_time` like the
    camera state it extends."""

    def __init__(self, a: np.ndarray, b: np.ndarray, matrix: np.ndarray, *, max_side: int, preset: str,
                 variational: int | None, hints: Sequence[SubjectHint] = (), main: int | None = None):
        views = halfway_views(a, b, matrix, max_side)
        (h, w), (fh, fw), cf, path_f = views.size, views.flow_size, views.scale, views.path
        am, bm, va, vb = views.am, views.bm, views.va, views.vb
        self.overlap = float(((va > 0.5) & (vb > 0.5)).mean())
        r01, r10 = bidirectional_flow(am, bm, preset, variational)
        self.flow_size = (fh, fw)
        wh, ww = fh, fw
        if min(wh, ww) >= 32:  # as the camera state: the fields at half the flow's resolution
            wh, ww = (wh + 1) // 2, (ww + 1) // 2
            r01, r10 = shrink_flow(r01, wh, ww), shrink_flow(r10, wh, ww)
            am = cv2.resize(am, (ww, wh), interpolation=cv2.INTER_AREA)
            bm = cv2.resize(bm, (ww, wh), interpolation=cv2.INTER_AREA)
        self.gx, self.gy = pixel_grid(wh, ww)
        cw = field_scale(h, w, wh, ww)
        self.path = path_f.conjugate(np.linalg.inv(cf) @ cw)
        self.half, self.half_inv = self.path.at(0.5), self.path.at(-0.5)
        # the other subjects' similarity relative to the path, in the half-way view, per region
        prior01, prior10, prior_w, flow_mask = self._priors(hints, main, np.linalg.inv(cw), wh, ww)
        side = max(wh, ww)
        k0 = self._confidence(r01, r10, am, bm)
        k1 = self._confidence(r10, r01, bm, am)
        fm = 1.0 if flow_mask is None else flow_mask
        self.r01 = self._smooth(r01, k0 * fm, prior01, prior_w, side)
        self.r10 = self._smooth(r10, k1 * fm, prior10, prior_w, side)
        # (what `explained_shares` trusts: the raw flow's consistent, matching vectors)
        self.trust = k0
        self.c0 = self.c1 = np.ones((wh, ww), np.float32)  # a smooth field hides nothing
        self.gray = (am, bm)
        self.size = (h, w)
        self.wsize = (wh, ww)
        self.similarity = 0.0

    def _confidence(self, r: np.ndarray, back: np.ndarray, g0: np.ndarray, g1: np.ndarray) -> np.ndarray:
        """Per vector: forward-backward consistent and matching (grey error over 5 px)."""
        warped = cv2.remap(g1, self.gx + r[..., 0], self.gy + r[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        err = cv2.blur(cv2.absdiff(warped, g0).astype(np.float32), (5, 5))
        return consistency(r, back) * np.exp(-((err / CONFIDENCE_LEVEL) ** 2))

    @staticmethod
    def _smooth(r: np.ndarray, conf: np.ndarray, prior: np.ndarray | None, prior_w: np.ndarray | None,
                side: int) -> np.ndarray:
        """The confident vectors averaged over a Gaussian window (normalized convolution), bounded,
        faded to zero where too little consistent flow is near, and a subject's prior mixed in."""
        s = SIGMA * side
        num = cv2.GaussianBlur(r * conf[..., None], (0, 0), s)
        den = cv2.GaussianBlur(conf, (0, 0), s)
        out = num / (den[..., None] + 1e-6)
        lim = BOUND * side
        mag = np.hypot(out[..., 0], out[..., 1])
        out *= np.minimum(1.0, lim / (mag + 1e-6))[..., None]
        if prior is not None:
            out = (out * den[..., None] + prior * prior_w[..., None]) / (den + prior_w + 1e-6)[..., None]
            den = den + prior_w
        out *= np.clip(den / NEED, 0.0, 1.0)[..., None]
        return out.astype(np.float32)

    def _region_mask(self, hint: SubjectHint, ma: np.ndarray, mb: np.ndarray, grow: float) -> np.ndarray:
        """A soft mask (0..1) of the subject's region in the half-way view: the union of its region
        in A (carried by `ma`) and in B (by `mb`), feathered by a tenth of its size."""
        wh, ww = self.gx.shape
        corners = np.concatenate([_to(ma, _region(hint.box_a, hint.points_a, grow)),
                                  _to(mb, _region(hint.box_b, hint.points_b, grow))])
        (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
        mask = np.zeros((wh, ww), np.float32)
        cv2.rectangle(mask, (int(x0), int(y0)), (int(np.ceil(x1)), int(np.ceil(y1))), 1.0, -1)
        return cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.1 * max(x1 - x0, y1 - y0)))

    def _priors(self, hints: Sequence[SubjectHint], main: int | None, to_work: np.ndarray, wh: int, ww: int):
        """For each subject but `main`: its similarity between the half-way views of A and B, as
        displacement fields both ways, weighted by a soft mask of its region; with STILL_BACKGROUND,
        outside the main subject's region, the motion that undoes the path (the background stays).
        Returns (prior A->B, prior B->A, weight, where the flow counts) or Nones."""
        ma, mb = self.half @ to_work, self.half_inv @ to_work  # frame pixels -> half-way view
        entries = []
        for i, hint in enumerate(hints):
            if i == main:
                continue
            pa, pb = _to(ma, hint.points_a), _to(mb, hint.points_b)
            m, _ = cv2.estimateAffinePartial2D(pa, pb)
            if m is not None:
                entries.append((np.vstack([m, [0.0, 0.0, 1.0]]), PRIOR_WEIGHT * self._region_mask(hint, ma, mb, 1.6)))
        flow_mask = None
        if STILL_BACKGROUND and main is not None:
            subject = self._region_mask(hints[main], ma, mb, STILL_GROW)
            entries.append((np.linalg.inv(self.path.at(1.0)), BACKGROUND_WEIGHT * (1.0 - subject)))
            flow_mask = subject
        if not entries:
            return None, None, None, flow_mask
        num01 = np.zeros((wh, ww, 2), np.float32)
        num10 = np.zeros((wh, ww, 2), np.float32)
        weight = np.zeros((wh, ww), np.float32)
        grid = np.stack([self.gx, self.gy], -1).reshape(-1, 1, 2)
        for rel, mask in entries:
            fwd = cv2.perspectiveTransform(grid, rel).reshape(wh, ww, 2) - grid.reshape(wh, ww, 2)
            bwd = cv2.perspectiveTransform(grid, np.linalg.inv(rel)).reshape(wh, ww, 2) - grid.reshape(wh, ww, 2)
            num01 += fwd * mask[..., None]
            num10 += bwd * mask[..., None]
            weight += mask
        norm = np.maximum(weight, 1e-6)[..., None]
        return num01 / norm, num10 / norm, weight, flow_mask


def explained_shares(gray_a: np.ndarray, gray_b: np.ndarray, flow_ab: np.ndarray, trust: np.ndarray | None = None,
                     level: float = EXPLAINED_LEVEL, texture: float = TEXTURE_LEVEL) -> tuple[float, float]:
    """How much of the picture a motion explains: (of the frame, of its textured part).

    A pixel of A is explained where B, moved by `flow_ab` (A -> B, the grey images' pixels),
    agrees with A within `level` grey levels (absolute difference averaged over 5 x 5 px) and
    either the motion there is trusted (`trust` > 0.5: its forward-backward consistency; None:
    all) or A is flat there (local standard deviation under `texture` levels: a plain backdrop
    agrees under any motion, and nothing on it can be carried from far). The second share counts
    only A's textured pixels, where a wrong motion would tear: it says whether the flow relates
    the pictures at all (when under 2% of the frame is textured, it is the first)."""
    h, w = gray_a.shape
    gx, gy = pixel_grid(h, w)
    b_on_a = cv2.remap(gray_b, gx + flow_ab[..., 0], gy + flow_ab[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    agree = cv2.blur(cv2.absdiff(b_on_a, gray_a).astype(np.float32), (5, 5)) < level
    g = gray_a.astype(np.float32)
    mean = cv2.blur(g, (5, 5))
    textured = cv2.blur(g * g, (5, 5)) - mean * mean > texture * texture
    trusted = np.ones_like(agree) if trust is None else trust > 0.5
    frame = float((agree & (trusted | ~textured)).mean())
    n = int(textured.sum())
    return frame, (float((agree & trusted & textured).sum()) / n if n >= 0.02 * h * w else frame)


def state_explained(state) -> tuple[float, float]:
    """`explained_shares` of one of the flow backend's pair states: the still-camera flow state's
    grey pair, flow A -> B and its consistency, or the camera and pose states' pre-aligned pair,
    residual and what they trust (the camera state: the residual's consistency where both views
    see; the pose state: its consistent, matching vectors)."""
    if hasattr(state, "r01"):
        return explained_shares(state.gray[0], state.gray[1], state.r01, getattr(state, "trust", state.c0))
    return explained_shares(state.gray[0], state.gray[1], state.f01, state.c0)


def plain_explained(a: np.ndarray, b: np.ndarray, max_side: int = 320) -> float:
    """`explained_shares` (of the frame) with no motion (a cross-fade's pair), on grey copies of at most `max_side`."""
    h, w = a.shape[:2]
    ga, gb = gray_pair(a, b, working_size(h, w, max_side))
    return explained_shares(ga, gb, np.zeros((*ga.shape, 2), np.float32))[0]


def _percent(x: float) -> str:
    return f"{round(100 * x)}%"


def verdict(info: dict) -> str:
    """One sentence for the user about a span, from what the interpolator decided (`info`)."""
    mode = info.get("mode")
    share = info.get("explained")
    matched = f"{_percent(share)} of the picture matched" if share is not None else ""
    if mode == "static":
        return "still: the keyframes are the same picture, cross-faded"
    if mode == "empty":
        return "no in-betweens asked for"
    if mode == "cut":
        return "a cut: nothing relates the keyframes, the first is held, then the second"
    if mode == "camera":
        cam = info.get("camera") or {}
        move = cam.get("model", "camera")
        rest = ", the rest dissolves" if info.get("morph") == "smooth" else ""
        return f"camera move ({move}): the picture follows the camera, {matched}{rest}"
    if mode == "flow":
        return f"motion followed by optical flow, {matched}"
    if mode == "pose":
        who = info.get("subject") or "the subject"
        rest = "the rest dissolves" if share is None or share < 0.995 else "nothing dissolves"
        return f"pose change: {who} follows, {matched}, {rest}"
    if mode == "fallback":
        return (f"no motion explains the keyframes: a dissolve that moves only what matches ({matched}); "
                f"check this span")
    if mode == "generative":
        return f"redrawn by the video model {info.get('backend', '')} from the flow in-betweens".replace("  ", " ")
    return f"{mode}: {matched}" if matched else str(mode)


def judged(info: dict) -> dict:
    """`info` completed with `trusted` (explained >= TRUSTED_FROM, and never for a cut or a
    fallback) and `verdict`."""
    mode = info.get("mode")
    share = info.get("explained")
    if mode in ("static", "empty"):
        trusted = True
    elif mode in ("cut", "fallback") or share is None:
        trusted = False
    else:
        trusted = share >= TRUSTED_FROM
    info["trusted"] = bool(trusted)
    info["verdict"] = verdict(info)
    return info
