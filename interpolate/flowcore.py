"""The flow backend's building blocks: DIS optical flow both ways, forward-backward consistency,
the camera's motion fitted to the flow, the occlusion substitutes and Super SloMo's
linear-motion approximation (see `keyrender.interpolate.flow` for how they fit together)."""

from __future__ import annotations

import cv2
import numpy as np

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def thumbnail(frame: np.ndarray, max_side: int) -> np.ndarray:
    """Grayscale float32 thumbnail whose long side is at most `max_side` (area averaging)."""
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    s = min(1.0, max_side / max(h, w))
    if s < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return gray.astype(np.float32)


def dis_calc(dis, a: np.ndarray, b: np.ndarray, pad: int = 16) -> np.ndarray:
    """`dis.calc(a, b)` on images padded by `pad` px (mirrored), the flow cropped back.

    DIS's patches near the border have little support and its coarse levels are tiny on small
    frames; a mirrored margin roughly halves the wrong vectors along the borders (measured on a
    translated texture). It also lets any size through: DIS itself needs a side >= 12 px.
    """
    h, w = a.shape[:2]
    py, px = max(pad, (17 - h) // 2 + 1, 0), max(pad, (17 - w) // 2 + 1, 0)
    if py or px:
        mode = cv2.BORDER_REFLECT101 if min(h, w) > max(py, px) else cv2.BORDER_REPLICATE
        a = cv2.copyMakeBorder(a, py, py, px, px, mode)
        b = cv2.copyMakeBorder(b, py, py, px, px, mode)
        return np.ascontiguousarray(dis.calc(a, b, None)[py : py + h, px : px + w])
    return dis.calc(a, b, None)


def ncc(x: np.ndarray, y: np.ndarray) -> float:
    x = x - x.mean()
    y = y - y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    if den < 1e-6:
        # both flat: related if they have the same level
        return 1.0 if np.allclose(x, y, atol=1e-3) else 0.0
    return float((x * y).sum() / den)


def compensated_similarity(gray_a: np.ndarray, gray_b: np.ndarray, f_ab: np.ndarray, c_a: np.ndarray) -> float:
    """NCC between A and B warped onto A by the flow A->B, over A's flow-consistent pixels
    (which must be at least 35% of the frame): high when the flow explains B from A (same scene moved),
    near 0 for unrelated pictures (a cut)."""
    h, w = gray_a.shape
    gx, gy = pixel_grid(h, w)
    b_on_a = cv2.remap(gray_b, gx + f_ab[..., 0], gy + f_ab[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = c_a > 0.5
    if mask.mean() < 0.35:  # the flow cannot be followed back over most of the frame
        return 0.0
    return ncc(gray_a[mask].astype(np.float32), b_on_a[mask].astype(np.float32))


def working_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(h, w) of the flow resolution: the frame scaled so that its long side is <= `max_side`."""
    s = max_side / max(height, width)
    if s >= 1.0:
        return height, width
    return max(8, round(height * s)), max(8, round(width * s))


def gray_pair(a: np.ndarray, b: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Two RGB frames as grey images of `size` (h, w): area-resampled when it is not their own."""
    h, w = size
    out = []
    for frame in (a, b):
        g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if g.shape != (h, w):
            g = cv2.resize(g, (w, h), interpolation=cv2.INTER_AREA)
        out.append(g)
    return out[0], out[1]


def blend_fields(t: float, vis: tuple[np.ndarray, np.ndarray], gray: tuple[np.ndarray, np.ndarray],
                 maps_a: tuple[np.ndarray, np.ndarray], maps_b: tuple[np.ndarray, np.ndarray],
                 *, inside: tuple[np.ndarray, np.ndarray], hedge: float, hedge_level: float, k: int
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """A's weight at time t and the hedge's cross-fade field, from where frame t samples A and B.

    `vis`: each keyframe's consistency (is its pixel visible in the other), `gray`: the grey
    keyframes, `maps_a`/`maps_b`: the (x, y) sample maps into them, `inside`: whether a sample
    falls inside its frame (A's, B's). A's sample is trusted unless B sees the point and A's pixel is not
    visible in B, and the reverse; where both are doubtful the time weights decide.

    Hedge: where A and B, both warped to t, still disagree, the flow is wrong there (people
    crossing, limbs, motion beyond the search): a confidently wrong warp tears and costs more than a
    ghost. The plain cross-fade is mixed in, up to `hedge`, in proportion to the disagreement
    (smoothed over a k x k box) up to `hedge_level` levels; not where a sample falls outside its
    frame (they differ there by construction). None when hedge is 0."""
    in_a, in_b = inside
    vis_a = cv2.remap(vis[0], *maps_a, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    vis_b = cv2.remap(vis[1], *maps_b, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    w_a = (1.0 - t) * (0.05 + vis_b) * in_a + 1e-4
    w_b = t * (0.05 + vis_a) * in_b + 1e-4
    wa = (w_a / (w_a + w_b)).astype(np.float32, copy=False)
    if hedge <= 0:
        return wa, None
    a_at_t = cv2.remap(gray[0], *maps_a, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    b_at_t = cv2.remap(gray[1], *maps_b, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    diff = cv2.blur(cv2.absdiff(a_at_t, b_at_t).astype(np.float32), (k, k))
    fade = hedge * np.minimum(diff * (1.0 / hedge_level), 1.0) * in_a * in_b
    return wa, fade.astype(np.float32, copy=False)


def bidirectional_flow(
    gray_a: np.ndarray, gray_b: np.ndarray, preset: str = "fast", variational_iterations: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """DIS optical flow A->B and B->A (float32 H x W x 2, in pixels of the given images)."""
    if preset not in DIS_PRESETS:
        raise ValueError(f"preset: unknown DIS preset {preset!r}; known: {', '.join(DIS_PRESETS)}")
    dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
    if variational_iterations is not None:
        dis.setVariationalRefinementIterations(int(variational_iterations))
    f_ab = dis_calc(dis, gray_a, gray_b)
    f_ba = dis_calc(dis, gray_b, gray_a)
    return f_ab, f_ba


def dis_refine(gray_a: np.ndarray, gray_b: np.ndarray, init: np.ndarray, preset: str = "medium",
               variational_iterations: int | None = None) -> np.ndarray:
    """DIS optical flow A->B started from `init` (a flow of any size, resized to the images'):
    DIS's coarse-to-fine search refines a given hypothesis instead of starting from zero, so a
    displacement far beyond its search range (from matches) is followed to the subject's edges."""
    h, w = gray_a.shape[:2]
    start = cv2.resize(init, (w, h), interpolation=cv2.INTER_LINEAR)
    start[..., 0] *= w / init.shape[1]
    start[..., 1] *= h / init.shape[0]
    dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
    if variational_iterations is not None:
        dis.setVariationalRefinementIterations(int(variational_iterations))
    if hasattr(dis, "setUseInitialFlow"):  # OpenCV 4; OpenCV 5 starts from any flow it is given
        dis.setUseInitialFlow(True)
    return dis.calc(gray_a, gray_b, np.ascontiguousarray(start, dtype=np.float32))


def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))


def consistency(f_ab: np.ndarray, f_ba: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Forward-backward consistency of A's pixels, in [0, 1]: ~1 where A->B->A returns home.

    c(x) = exp(-|F_ab(x) + F_ba(x + F_ab(x))|^2 / (sigma^2 + 0.01 (|F_ab|^2 + |F_ba(..)|^2)))
    (the tolerance grows with the motion, as in Sundaram et al., ECCV 2010). Low values mark the
    pixels of A that are occluded in B or that leave the frame.
    """
    h, w = f_ab.shape[:2]
    gx, gy = pixel_grid(h, w)
    fx, fy = cv2.split(f_ab)  # (contiguous copies: the arithmetic below on strided views costs ~2x)
    mx, my = gx + fx, gy + fy
    back = cv2.remap(f_ba, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    bx, by = cv2.split(back)
    ex, ey = fx + bx, fy + by
    err = ex * ex + ey * ey
    mag = fx * fx + fy * fy + bx * bx + by * by
    c = np.exp(-err / (sigma * sigma + 0.01 * mag))
    c[(mx < -0.5) | (mx > w - 0.5) | (my < -0.5) | (my > h - 0.5)] = 0.0
    return c.astype(np.float32, copy=False)


def global_motion(
    f_ab: np.ndarray, c_a: np.ndarray, step: int | None = None, min_inliers: float = 0.5,
    tolerance: float = 1.0, min_move: float = 1.0,
) -> np.ndarray | None:
    """The camera's motion A->B as a homography (3x3, working-resolution pixels), or None when no
    single homography explains at least `min_inliers` of A's flow-consistent samples, or when it
    moves no corner of the frame by `min_move` px or more (a still camera).

    Fitted robustly (RANSAC, `tolerance` px) to the flow on a grid of every `step`-th pixel
    (default: about 1200 samples) where the forward-backward check passed. A pan gives a
    translation, a push-in a scale: the motion that the pixels without a usable flow of their
    own (leaving the frame, occluded) most likely share.
    """
    h, w = c_a.shape
    step = step or max(2, int(np.sqrt(h * w / 1200)))
    ys, xs = np.mgrid[step // 2 : h : step, step // 2 : w : step]
    ok = c_a[ys, xs] > 0.8
    if ok.sum() < 32 or ok.mean() < 0.25:
        return None
    src = np.stack([xs[ok], ys[ok]], axis=-1).astype(np.float32)
    dst = src + f_ab[ys[ok], xs[ok]]
    hom, inl = cv2.findHomography(src, dst, cv2.RANSAC, tolerance, maxIters=500, confidence=0.99)
    if hom is None or inl is None or inl.mean() < min_inliers:
        return None
    corners = np.float32([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]]).reshape(-1, 1, 2)
    if np.abs(cv2.perspectiveTransform(corners, hom) - corners).max() < min_move:
        return None  # a still camera: nothing leaves the frame, the plain substitute is better
    return hom


def pick_substitute(g_from: np.ndarray, g_to: np.ndarray, flow: np.ndarray, camera: np.ndarray,
                     grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per pixel, `camera` where it lands outside the frame or matches `g_to` better (smoothed
    absolute difference) than `flow` does, else `flow`; a soft choice, so no seams. `grid` is
    `pixel_grid` of the frame."""
    h, w = g_from.shape
    gx, gy = grid
    src = g_from.astype(np.float32)

    def err(f):
        x, y = gx + f[..., 0], gy + f[..., 1]
        warped = cv2.remap(g_to, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        return cv2.blur(np.abs(warped - src), (7, 7)), inside_frame(x, y, w, h)

    e_flow, in_flow = err(flow)
    e_cam, in_cam = err(camera)
    # a candidate that leaves the frame cannot be checked; the camera decides about leaving
    better = 1.0 / (1.0 + np.exp(np.clip((e_cam - e_flow) / 2.0, -30.0, 30.0)))
    take_cam = np.where((in_cam < 0.5) | (in_flow < 0.5), 1.0, better).astype(np.float32)[..., None]
    return flow + take_cam * (camera - flow)


def homography_flows(hom: np.ndarray, h: int, w: int, grid: tuple[np.ndarray, np.ndarray] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Dense flows A->B and B->A (H x W x 2) of the homography `hom` (A->B); `grid`: `pixel_grid(h, w)`
    if the caller has it."""
    gx, gy = grid if grid is not None else pixel_grid(h, w)
    pts = np.stack([gx, gy], axis=-1).reshape(-1, 1, 2)
    fwd = cv2.perspectiveTransform(pts, hom).reshape(h, w, 2) - pts.reshape(h, w, 2)
    bwd = cv2.perspectiveTransform(pts, np.linalg.inv(hom)).reshape(h, w, 2) - pts.reshape(h, w, 2)
    return fwd.astype(np.float32), bwd.astype(np.float32)


def shrink_flow(flow: np.ndarray, h: int, w: int) -> np.ndarray:
    """A flow field resized to h x w (area averaging), its vectors scaled to the new pixels."""
    sy, sx = h / flow.shape[0], w / flow.shape[1]
    out = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA)
    out[..., 0] *= sx
    out[..., 1] *= sy
    return out


def intermediate_flows(f01: np.ndarray, f10: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Super SloMo's linear-motion approximation of the flows from time t to A (F_t0) and to B (F_t1)."""
    ft0 = (-(1.0 - t) * t) * f01 + (t * t) * f10
    ft1 = ((1.0 - t) * (1.0 - t)) * f01 + (-t * (1.0 - t)) * f10
    return ft0, ft1


def despeckle(flow: np.ndarray, size: int = 5) -> np.ndarray:
    """The flow (H x W x 2, float32) median-filtered per component over `size` x `size` (3 or 5):
    removes isolated wrong vectors, which warp a few pixels from far away (dark specks and broken
    contours around moving people at large keyframe gaps), and keeps the edges between motions.
    Fields smaller than the window are returned as they are."""
    if min(flow.shape[:2]) < size:
        return flow
    return np.dstack([cv2.medianBlur(np.ascontiguousarray(flow[..., i]), size) for i in range(2)])


def inside_frame(x: np.ndarray, y: np.ndarray, w: int, h: int, margin: float = 0.5) -> np.ndarray:
    return (((x >= -margin) & (x <= w - 1 + margin) & (y >= -margin) & (y <= h - 1 + margin))).astype(np.float32)

