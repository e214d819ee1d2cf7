"""The camera of a keyframe pair too plain for feature matches, by direct (photometric) alignment.

SIFT needs corners. A frame that is mostly wall, sky or studio backdrop has a few dozen keypoints
or none, so `fit_camera` finds no model although the camera plainly moved, and "no consistent
matches" stops being evidence of a cut. For such pairs (`few_keypoints`):

1. `direct_camera` searches the camera on 128 px thumbnails: for every zoom in 1..3x and roll in
   -20..20 degrees, the zoomed, rolled A is phase-correlated with B (and B with A for zooms out),
   with and without a Hann window (a pan of half the frame leaves its overlap at the window's
   edge). Each hypothesis is scored by the normalized cross-correlation of the overlap (at least
   a quarter of one frame), the best few are refined by ECC (Evangelidis & Psarakis, PAMI 2008;
   `cv2.findTransformECC`, affine) at 256 px, and the best refined model is kept when it is both
   good (NCC >= `min_ncc`) and *determined*: moving it by 3% of the frame or zooming it by 4%
   must lose at least `min_drop` of correlation. A blank wall matches itself anywhere, so it
   fails that test and no camera is claimed. The model is reported as the simplest of
   translation / similarity / affine that reproduces the refined one within half a pixel.
2. `colour_distance` (Bhattacharyya distance of the frames' Lab histograms) decides whether such a
   pair is a cut: with too few keypoints to match, only pictures that also differ in colour are.
   On the benchmark's footage a cut between clips is 0.67-0.91 and camera moves over one photo
   0.03-0.47.
"""

from __future__ import annotations

import cv2
import numpy as np

from keyrender.interpolate.camera import CameraModel, frame_features
from keyrender.interpolate.flowcore import gray_pair, ncc, working_size

#: below this many SIFT keypoints (on the 640 px working copy) a frame is too plain for matches
#: to decide anything: the benchmark's real footage has 2,600-4,000, plain walls 0-50
FEW_KEYPOINTS = 50
#: a pair of plain frames is a cut only when their colours differ at least this much
CUT_COLOUR_DISTANCE = 0.6


def few_keypoints(a: np.ndarray, b: np.ndarray, max_side: int = 640) -> int | None:
    """The smaller keypoint count of the two frames when it is under `FEW_KEYPOINTS`, else None.
    (`frame_features` keeps the last two frames' features: after the matching this is free.)"""
    n = min(len(frame_features(a, max_side)[0]), len(frame_features(b, max_side)[0]))
    return n if n < FEW_KEYPOINTS else None


def colour_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance (0 same .. 1 disjoint) of the two frames' 8x8x8 Lab histograms."""

    def hist(x: np.ndarray) -> np.ndarray:
        lab = cv2.cvtColor(cv2.resize(x, (64, 36), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2LAB)
        h = cv2.calcHist([lab], [0, 1, 2], None, [8, 8, 8], [0, 256, 0, 256, 0, 256])
        return cv2.normalize(h, h).flatten()

    return float(cv2.compareHist(hist(a), hist(b), cv2.HISTCMP_BHATTACHARYYA))


def _grey_pair(a: np.ndarray, b: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Both frames grey at long side `max_side` (or their own, if smaller), float32, blurred by 1 px."""
    ga, gb = gray_pair(a, b, working_size(*a.shape[:2], max_side))
    return cv2.GaussianBlur(ga.astype(np.float32), (0, 0), 1.0), cv2.GaussianBlur(gb.astype(np.float32), (0, 0), 1.0)


def _zoom_roll(zoom: float, degrees: float, cx: float, cy: float) -> np.ndarray:
    c, s = zoom * np.cos(np.radians(degrees)), zoom * np.sin(np.radians(degrees))
    return np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0.0, 0.0, 1.0]])


def _shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _masked_ncc(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
    """`flowcore.ncc` over the pixels where `mask` > 0.5; -1 for fewer than 50 of them."""
    m = mask > 0.5
    if m.sum() < 50:
        return -1.0
    return ncc(x[m].astype(np.float64), y[m].astype(np.float64))


def overlap_score(ga: np.ndarray, gb: np.ndarray, m: np.ndarray, min_overlap: float = 0.25) -> float:
    """NCC of B and A carried by the homography m (A -> B) over their overlap, measured in the
    frame that the overlap covers more of (a zoom out puts all of A inside a part of B); -1 when
    the overlap is under `min_overlap` of both frames."""
    h, w = gb.shape
    one = np.ones_like(ga)
    inv = np.linalg.inv(m)
    in_b = cv2.warpPerspective(one, m, (w, h), flags=cv2.INTER_NEAREST)
    in_a = cv2.warpPerspective(one, inv, (w, h), flags=cv2.INTER_NEAREST)
    if max(in_b.mean(), in_a.mean()) < min_overlap:
        return -1.0
    if in_b.mean() >= in_a.mean():
        return _masked_ncc(cv2.warpPerspective(ga, m, (w, h), flags=cv2.INTER_LINEAR), gb, in_b)
    return _masked_ncc(cv2.warpPerspective(gb, inv, (w, h), flags=cv2.INTER_LINEAR), ga, in_a)


def _hypotheses(sa: np.ndarray, sb: np.ndarray) -> list[np.ndarray]:
    """A -> B homographies: A zoomed 1..3x and rolled -20..20 degrees about its centre, then
    shifted by phase correlation with B (with and without a Hann window)."""
    h, w = sa.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    window = cv2.createHanningWindow((w, h), cv2.CV_32F)
    out = []
    for zoom in np.geomspace(1.0, 3.0, 10):
        for roll in range(-20, 21, 5):
            m = _zoom_roll(zoom, roll, cx, cy)
            moved = cv2.warpPerspective(sa, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
            for win in (window, None):
                (dx, dy), _ = cv2.phaseCorrelate(moved, sb, win)
                out.append(_shift(dx, dy) @ m)
    return out


def _ecc(ga: np.ndarray, gb: np.ndarray, m: np.ndarray) -> np.ndarray | None:
    """ECC refinement (affine) of the homography m (A -> B) over the overlap; None when it fails."""
    h, w = gb.shape
    mask = (cv2.warpPerspective(np.ones_like(ga), m, (w, h), flags=cv2.INTER_NEAREST) > 0).astype(np.uint8)
    if mask.sum() < 50:
        return None
    inv = np.linalg.inv(m)
    # (ECC finds the warp of B's pixels into A: template B, input A)
    warp = (inv / inv[2, 2])[:2].astype(np.float32)
    try:
        _, warp = cv2.findTransformECC(gb, ga, warp, cv2.MOTION_AFFINE,
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5), mask, 5)
    except cv2.error:  # did not converge
        return None
    out = np.linalg.inv(np.vstack([warp.astype(np.float64), [0.0, 0.0, 1.0]]))
    return out / out[2, 2] if np.all(np.isfinite(out)) else None


def _simplest(m: np.ndarray, w: int, h: int) -> tuple[str, np.ndarray]:
    """The simplest of translation / similarity / affine that moves the frame's corners within
    half a pixel of the affine m."""
    c = np.float32([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]]).reshape(-1, 1, 2)
    target = cv2.perspectiveTransform(c, m)
    shift = (target - c).reshape(-1, 2).mean(0)
    candidates = [("translation", _shift(*shift))]
    sim, _ = cv2.estimateAffinePartial2D(c, target, method=cv2.LMEDS)
    if sim is not None:
        candidates.append(("similarity", np.vstack([sim, [0.0, 0.0, 1.0]])))
    for kind, cand in candidates:
        if np.abs(cv2.perspectiveTransform(c, cand) - target).max() <= 0.5:
            return kind, cand
    return "affine", m


def direct_camera(a: np.ndarray, b: np.ndarray, *, seed: np.ndarray | None = None, search: bool = True,
                  min_ncc: float = 0.97, min_drop: float = 0.01, keep: int = 6) -> CameraModel | None:
    """The camera A -> B by direct alignment (see the module docstring), or None when no model is
    both good and determined by the pictures. `seed`: a homography to refine too (e.g. a feature
    fit with too few inliers to be trusted alone), in full-resolution pixels; `search=False`
    refines only the seed."""
    h, w = a.shape[:2]
    s1 = min(1.0, 256 / max(h, w))
    ra, rb = _grey_pair(a, b, 256)
    starts = []
    if search:
        s0 = min(1.0, 128 / max(h, w))
        sa, sb = _grey_pair(a, b, 128)
        cands = _hypotheses(sa, sb) + [np.linalg.inv(m) for m in _hypotheses(sb, sa)]
        ranked = sorted(cands, key=lambda m: -overlap_score(sa, sb, m))[:keep]
        up = np.diag([s1 / s0, s1 / s0, 1.0])
        starts = [up @ m @ np.linalg.inv(up) for m in ranked]
    if seed is not None:
        sc = np.diag([s1, s1, 1.0])
        starts.insert(0, sc @ np.asarray(seed, np.float64) @ np.linalg.inv(sc))
    best, best_score = None, -1.0
    for m in starts:
        refined = _ecc(ra, rb, m)
        if refined is None:
            continue
        score = overlap_score(ra, rb, refined)
        if score > best_score:
            best, best_score = refined, score
    if best is None or best_score < min_ncc:
        return None
    # determined: a shift of 3% of the frame or a zoom of 4% must cost correlation
    rh, rw = rb.shape
    d = 0.03 * max(rh, rw)
    cx, cy = (rw - 1) / 2, (rh - 1) / 2
    nudges = [_shift(d, 0), _shift(-d, 0), _shift(0, d), _shift(0, -d),
              _zoom_roll(1.04, 0, cx, cy), _zoom_roll(1 / 1.04, 0, cx, cy)]
    if min(best_score - overlap_score(ra, rb, n @ best) for n in nudges) < min_drop:
        return None
    sc = np.diag([s1, s1, 1.0])
    full = np.linalg.inv(sc) @ best @ sc
    kind, full = _simplest(full / full[2, 2], w, h)
    # (one frame is too plain for matches: `inliers` and `matches` stay 0; coverage is the overlap)
    return CameraModel(full, kind, 0, 0, 1.0, source="photometric", score=round(best_score, 4))
