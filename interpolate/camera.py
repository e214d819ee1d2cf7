"""The camera between two keyframes, solved from feature matches.

`solve_camera(a, b)` finds the global motion A -> B as a 3x3 homography in the frames' pixels:

1. SIFT keypoints (Lowe, IJCV 2004) on grayscale copies whose long side is at most `max_side`
   (a smaller frame at its own size, enlarged to `max_side` where that finds too few matches);
   scale and rotation invariant, so zooms of 2.5x either way and rolls still match.
2. Nearest-neighbour matching with Lowe's ratio test, then mutual (cross) consistency, both
   from one distance matrix (`mutual_nearest`).
3. RANSAC fits of four models of increasing freedom: translation, similarity (rotation + uniform
   scale, `estimateAffinePartial2D`), affine (`estimateAffine2D`) and homography
   (`findHomography`, MAGSAC++ when OpenCV has it). The *simplest* model whose inlier count is
   within 10% of the best one's is kept (a pan stays a pan; fewer degrees of freedom, less noise).
   A moving subject covering part of the frame is an outlier population: RANSAC keeps the
   background's (dominant) motion.

`homography_power(H, t)` is the camera at constant velocity: H^t = expm(t logm(H)), the matrix
power through the matrix logarithm (a pan moves linearly, a zoom geometrically, a roll at
constant angular speed), not a linear blend of matrices, whose zoom would not be geometric.
The logarithm is taken once per pair (`CameraPath`).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

MODELS = ("translation", "similarity", "affine", "homography")


@dataclass(frozen=True)
class CameraModel:
    """The camera's motion A -> B: `matrix` maps A's pixel (x, y, 1) to B's (full resolution)."""

    matrix: np.ndarray
    kind: str  # one of MODELS
    inliers: int  # matches consistent with the model
    matches: int  # matches after the ratio and cross checks
    coverage: float  # share of the matched area (8 x 8 cells of the frame) that the inliers span
    #: "features" (SIFT matches, this module) or "photometric" (direct alignment of frames too
    #: plain for features, `keyrender.interpolate.direct`; verified there, so it explains the pair)
    source: str = "features"
    score: float | None = None  # photometric: the overlap's normalized cross-correlation

    def explains(self, min_inliers: int = 15, min_ratio: float = 0.5, min_coverage: float = 0.6) -> bool:
        """Whether the model is the camera of the pair: supported by `min_inliers` matches and by
        `min_ratio` of them, or spanning `min_coverage` of the matched area (a background with a
        textured subject in front). A photometric model was verified when it was found."""
        if self.source == "photometric":
            return True
        return self.inliers >= min_inliers and (self.inlier_ratio >= min_ratio or self.coverage >= min_coverage)

    @property
    def inlier_ratio(self) -> float:
        return self.inliers / max(1, self.matches)

    def corner_motion(self, height: int, width: int) -> float:
        """Largest displacement of a frame corner under the model, in pixels."""
        c = np.float32([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]]).reshape(-1, 1, 2)
        return float(np.abs(cv2.perspectiveTransform(c, self.matrix) - c).max())

    def summary(self, height: int, width: int) -> dict:
        """For the manifest: the model, its support and what it does to the frame."""
        m = self.matrix / self.matrix[2, 2]
        a = m[:2, :2]
        scale = float(np.sqrt(abs(np.linalg.det(a))))
        centre = np.float32([[[(width - 1) / 2, (height - 1) / 2]]])
        shift = cv2.perspectiveTransform(centre, m)[0, 0] - centre[0, 0]
        extra = {} if self.source == "features" else {"source": self.source, "score": self.score}
        return {
            "model": self.kind, "inliers": self.inliers, "matches": self.matches, **extra,
            "pan_x": round(float(shift[0]) / width, 4), "pan_y": round(float(shift[1]) / height, 4),
            "zoom": round(scale, 4),
            "roll_deg": round(float(np.degrees(np.arctan2(a[1, 0] - a[0, 1], a[0, 0] + a[1, 1]))), 2),
        }


def _gray(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    h, w = g.shape
    # small frames are enlarged to the working size too: a 2.5x zoom leaves few keypoints
    # that both views share at a small size
    s = max_side / max(h, w)
    if s != 1.0:
        g = cv2.resize(g, (max(1, round(w * s)), max(1, round(h * s))),
                       interpolation=cv2.INTER_AREA if s < 1.0 else cv2.INTER_CUBIC)
    return g, s


_FEATURES: "OrderedDict[tuple, tuple]" = OrderedDict()
_FEATURES_LOCK = threading.Lock()


def frame_features(frame: np.ndarray, max_side: int = 640, max_features: int = 4000) -> tuple[list, np.ndarray | None, float]:
    """SIFT keypoints and descriptors of one RGB frame on its working copy (long side `max_side`):
    (keypoints, descriptors or None, scale of the working copy).

    The last four results are kept (keyed by a hash of the pixels and the settings: two frames at
    two sizes, see `match_features`): a sequence of pairs (a retimed clip, a shot's keyframes)
    shares each keyframe between two neighbouring pairs, so each frame is detected once, not twice."""
    key = (hashlib.blake2b(np.ascontiguousarray(frame).data, digest_size=16).digest(), frame.shape, frame.dtype.str,
           int(max_side), int(max_features))
    with _FEATURES_LOCK:
        hit = _FEATURES.get(key)
        if hit is not None:
            _FEATURES.move_to_end(key)
            return hit
    g, s = _gray(frame, max_side)
    sift = cv2.SIFT_create(nfeatures=max_features, contrastThreshold=0.02)
    kp, desc = sift.detectAndCompute(g, None)
    out = (kp, desc, s)
    with _FEATURES_LOCK:
        _FEATURES[key] = out
        while len(_FEATURES) > 4:
            _FEATURES.popitem(last=False)
    return out


def match_features(a: np.ndarray, b: np.ndarray, max_side: int = 640, max_features: int = 4000,
                   ratio: float = 0.8, own_size: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """SIFT matches between two RGB frames: (points in A, points in B, scale of the working copy),
    points in working-copy pixels (N x 2 float32 each). Ratio test and mutual nearest neighbours.
    The working copy's long side is `max_side` (frames shrunk or enlarged to it); `own_size`:
    frames smaller than that are matched at their own size (see `pair_camera`)."""
    side = min(max_side, max(a.shape[:2])) if own_size else max_side
    return _match(a, b, side, max_features, ratio)


def pair_camera(a: np.ndarray, b: np.ndarray, max_side: int = 640, tolerance: float = 2.0, min_matches: int = 50
                ) -> tuple[tuple[np.ndarray, np.ndarray, float], "CameraModel | None"]:
    """The pair's feature matches (`match_features`) and best camera model (`fit_camera`), at
    the cheapest size that serves: frames smaller than `max_side` are matched at their own size
    first, and enlarged to `max_side` only where that gives fewer than `min_matches` matches or
    no model that explains the pair (`CameraModel.explains`).

    A 2.5x zoom between two 320 x 180 frames leaves a few dozen keypoints that both views share
    at their own size and the enlargement finds the rest; a textured subject can outnumber a
    plain background's matches at the small size. An ordinary pair has hundreds of matches at
    its own size, where SIFT costs about a quarter and the matching (quadratic in the features)
    less still."""
    if max(a.shape[:2]) < max_side:
        own = match_features(a, b, max_side, own_size=True)
        if len(own[0]) >= min_matches:
            fit = fit_camera(a, b, max_side, tolerance, matches=own)
            if fit is not None and fit.explains():
                return own, fit
    matches = match_features(a, b, max_side)
    return matches, fit_camera(a, b, max_side, tolerance, matches=matches)


def _match(a: np.ndarray, b: np.ndarray, side: int, max_features: int, ratio: float
           ) -> tuple[np.ndarray, np.ndarray, float]:
    ka, da, s = frame_features(a, side, max_features)
    kb, db, _ = frame_features(b, side, max_features)
    empty = np.zeros((0, 2), np.float32)
    if da is None or db is None or len(ka) < 2 or len(kb) < 2:
        return empty, empty, s
    ia, ib = mutual_nearest(da, db, ratio)
    if not len(ia):
        return empty, empty, s
    pts_a = np.float32([k.pt for k in ka])
    pts_b = np.float32([k.pt for k in kb])
    return pts_a[ia], pts_b[ib], s


def mutual_nearest(da: np.ndarray, db: np.ndarray, ratio: float = 0.8, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into A's and B's descriptors) of the pairs that pass Lowe's ratio test A -> B (the
    nearest of B's descriptors closer than `ratio` times the second nearest, in L2) and are each
    other's nearest neighbours (B -> A as well), in A's order.

    One distance matrix serves both directions: ||a||^2 + ||b||^2 - 2 a.b, the product by BLAS,
    in blocks of `block` of A's rows (memory: block x len(db) floats). About 3x faster than two
    brute-force matcher passes (knnMatch A -> B, match B -> A) on 4000 SIFT features each, with
    the same matches on the benchmark's frames (ties in float32 aside)."""
    da = np.ascontiguousarray(da, np.float32)
    db = np.ascontiguousarray(db, np.float32)
    na, nb = len(da), len(db)
    if na < 1 or nb < 2:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    sq_a = np.einsum("ij,ij->i", da, da)
    sq_b = np.einsum("ij,ij->i", db, db)
    best = np.empty(na, np.intp)
    d1 = np.empty(na, np.float32)
    d2 = np.empty(na, np.float32)
    col = np.full(nb, np.inf, np.float32)  # each B descriptor's nearest distance (squared) in A
    for r0 in range(0, na, block):
        r1 = min(na, r0 + block)
        d = da[r0:r1] @ db.T
        d *= -2.0
        d += sq_b[None, :]
        d += sq_a[r0:r1, None]  # squared distances
        rows = np.arange(r1 - r0)
        i1 = d.argmin(1)
        m1 = d[rows, i1]
        np.minimum(col, d.min(0), out=col)
        d[rows, i1] = np.inf
        best[r0:r1], d1[r0:r1], d2[r0:r1] = i1, m1, d.min(1)
    d1, d2 = np.maximum(d1, 0.0), np.maximum(d2, 0.0)
    # ratio test on distances (squared: d1 < ratio^2 d2); mutual: A's nearest is B's nearest too
    keep = (d1 < ratio * ratio * d2) & (d1 <= col[best])
    idx = np.flatnonzero(keep)
    return idx, best[idx]


def _residuals(m: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    proj = cv2.perspectiveTransform(pa.reshape(-1, 1, 2).astype(np.float64), m).reshape(-1, 2)
    return np.linalg.norm(proj - pb, axis=1)


def _fit_models(pa: np.ndarray, pb: np.ndarray, tol: float) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    method = getattr(cv2, "USAC_MAGSAC", cv2.RANSAC)
    hom, _ = cv2.findHomography(pa, pb, method, tol, maxIters=2000, confidence=0.999)
    if hom is not None and np.all(np.isfinite(hom)) and abs(hom[2, 2]) > 1e-9:
        out["homography"] = hom / hom[2, 2]
    aff, _ = cv2.estimateAffine2D(pa, pb, method=cv2.RANSAC, ransacReprojThreshold=tol, maxIters=2000,
                                  confidence=0.999, refineIters=10)
    if aff is not None:
        out["affine"] = np.vstack([aff, [0, 0, 1]])
    sim, _ = cv2.estimateAffinePartial2D(pa, pb, method=cv2.RANSAC, ransacReprojThreshold=tol, maxIters=2000,
                                         confidence=0.999, refineIters=10)
    if sim is not None:
        out["similarity"] = np.vstack([sim, [0, 0, 1]])
    # translation: RANSAC over single matches (each proposes a shift), least squares on the inliers
    d = pb - pa
    cand = d[np.random.default_rng(0).choice(len(d), size=min(len(d), 300), replace=False)]
    votes = (np.linalg.norm(d[None, :, :] - cand[:, None, :], axis=2) < tol).sum(1)
    best = cand[int(np.argmax(votes))]
    inl = np.linalg.norm(d - best, axis=1) < tol
    shift = d[inl].mean(0) if inl.any() else best
    out["translation"] = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1]], np.float64)
    return out


def _plausible(m: np.ndarray, w: int, h: int) -> bool:
    """A camera move, not a degenerate fit: orientation kept, scale within 1/4..4, mild perspective."""
    a = m[:2, :2]
    det = np.linalg.det(a)
    if not np.isfinite(det) or det <= 0 or not 1 / 16 < det < 16:
        return False
    return abs(m[2, 0]) * w + abs(m[2, 1]) * h < 0.5


def solve_camera(a: np.ndarray, b: np.ndarray, max_side: int = 640, tolerance: float = 2.0,
                 min_inliers: int = 15, min_ratio: float = 0.5) -> CameraModel | None:
    """The camera's motion A -> B (see the module docstring), or None when no model is supported
    by at least `min_inliers` matches and `min_ratio` of them (the background must dominate the
    matches: three bands moving three ways are no camera move). `tolerance`: RANSAC threshold in
    pixels of a working copy whose long side is `max_side` (scaled to the frame's own pixels where
    it was matched at its own size; see `match_features`)."""
    _, model = pair_camera(a, b, max_side, tolerance)
    return model if model is not None and model.explains(min_inliers, min_ratio) else None


def fit_camera(a: np.ndarray, b: np.ndarray, max_side: int = 640, tolerance: float = 2.0,
               matches: tuple[np.ndarray, np.ndarray, float] | None = None) -> CameraModel | None:
    """The best-supported camera model A -> B whatever its support (None: fewer than 4 matches
    or no plausible fit); `solve_camera` decides whether it explains the pair. Its inlier count
    also says whether two pictures share anything at all (a cut has next to no consistent
    matches). `matches`: `match_features(a, b, max_side)` when the caller has it already."""
    pa, pb, s = matches if matches is not None else match_features(a, b, max_side)
    n = len(pa)
    if n < 4:
        return None
    h, w = a.shape[:2]
    wh, ww = round(h * s), round(w * s)
    # the tolerance is meant at the working size `max_side`: a frame matched at its own, smaller
    # size (see `match_features`) gets the same tolerance in its pixels (a looser one lets an
    # affine fit take in a moving subject), not under half a pixel
    tolerance = max(0.5, tolerance * min(1.0, max(wh, ww) / max_side))

    def cells(idx: np.ndarray) -> np.ndarray:
        grid = np.zeros((8, 8), bool)
        c = np.clip((pa[idx] / [ww, wh] * 8).astype(int), 0, 7)
        grid[c[:, 1], c[:, 0]] = True
        return grid

    # The motions present, one after the other (sequential RANSAC); the camera is the one whose
    # matches span the most of the frame, not the one with the most matches: a textured subject
    # can own more keypoints than the background it moves over.
    groups, rest = [], np.arange(n)
    for _ in range(3):
        if len(rest) < 8:
            break
        hom, mask = cv2.findHomography(pa[rest], pb[rest], cv2.RANSAC, tolerance * 1.5, maxIters=2000)
        if hom is None or mask is None or mask.sum() < 8:
            break
        mask = mask.ravel().astype(bool)
        groups.append(rest[mask])
        rest = rest[~mask]
    all_cells = cells(np.arange(n))
    if groups:
        group = max(groups, key=lambda g: (cells(g).sum(), len(g)))
        pa_all, pb_all = pa, pb
        pa, pb = pa[group], pb[group]
    else:
        pa_all, pb_all = pa, pb
    fits = {k: m for k, m in _fit_models(pa, pb, tolerance).items() if _plausible(m, ww, wh)}
    if not fits:
        return None
    counts = {k: int((_residuals(m, pa, pb) < tolerance).sum()) for k, m in fits.items()}
    top = max(counts.values())
    kind = next(k for k in MODELS if k in counts and counts[k] >= 0.9 * top)
    m = fits[kind]
    inl = _residuals(m, pa, pb) < tolerance
    support = int((_residuals(m, pa_all, pb_all) < tolerance).sum())
    # least-squares refit of the chosen model on its inliers
    if kind == "homography" and inl.sum() >= 8:
        ref, _ = cv2.findHomography(pa[inl], pb[inl], 0)
        if ref is not None and _plausible(ref / ref[2, 2], ww, wh):
            m = ref / ref[2, 2]
    # how much of the matched area the inliers span (8 x 8 cells of the frame)
    span = np.zeros((8, 8), bool)
    c = np.clip((pa[inl] / [ww, wh] * 8).astype(int), 0, 7)
    span[c[:, 1], c[:, 0]] = True
    # back to full-resolution pixels: S^-1 M S
    sc = np.diag([s, s, 1.0])
    full = np.linalg.inv(sc) @ m @ sc
    return CameraModel(full / full[2, 2], kind, support, n, float(span.sum() / max(1, all_cells.sum())))


def _expm(a: np.ndarray) -> np.ndarray:
    """The matrix exponential of a small matrix: scaling and squaring of a degree-17 Taylor
    polynomial (the scaled matrix has 1-norm <= 1/2, so the truncation is below 1e-20).

    Used for the 3 x 3 camera logarithms instead of `scipy.linalg.expm`, whose Pade solve goes
    through multithreaded BLAS: on a loaded 2-core machine one 3 x 3 call took ~4 ms, about half
    of a camera pair's time (three calls per in-between). Agrees with scipy to ~1e-13 relative on
    the benchmark's cameras."""
    norm = float(np.abs(a).sum(0).max())
    squarings = max(0, int(np.ceil(np.log2(norm))) + 1) if norm > 0.5 else 0
    x = a / 2.0 ** squarings
    out = np.eye(len(a)) + x
    term = x
    for k in range(2, 18):
        term = term @ x / k
        out = out + term
    for _ in range(squarings):
        out = out @ out
    return out


def _logm(m: np.ndarray) -> np.ndarray:
    """The principal real logarithm of a small matrix: inverse scaling and squaring (square roots
    by the Denman-Beavers iteration until the matrix is within 1/4 of the identity, then the
    series of log(I + X) to degree 40), as `_expm` without scipy's multithreaded BLAS calls (one
    3 x 3 `scipy.linalg.logm` took ~50 ms on a loaded 2-core machine). ValueError where no real
    logarithm exists (a negative real eigenvalue: a rotation of 180 degrees)."""
    eye = np.eye(len(m))
    a = np.asarray(m, np.float64)
    roots = 0
    while np.abs(a - eye).sum(0).max() > 0.25:
        if roots == 60:
            raise ValueError("camera matrix: no real logarithm (a rotation of 180 degrees or more?)")
        y, z = a, eye
        for _ in range(60):
            try:
                y, z = 0.5 * (y + np.linalg.inv(z)), 0.5 * (z + np.linalg.inv(y))
            except np.linalg.LinAlgError:
                raise ValueError("camera matrix: no real logarithm (a rotation of 180 degrees or more?)") from None
            if np.abs(y @ y - a).max() <= 1e-13 * max(1.0, np.abs(a).max()):
                break
        else:
            raise ValueError("camera matrix: no real logarithm (a rotation of 180 degrees or more?)")
        a, roots = y, roots + 1
    x = a - eye
    out, term = np.zeros_like(x), eye
    for k in range(1, 41):
        term = term @ x
        out = out + term * ((-1.0) ** (k + 1) / k)
    return out * 2.0 ** roots


class CameraPath:
    """The camera at constant velocity between A (t=0) and B (t=1) for the homography H (A -> B):
    `at(t)` = H^t = expm(t logm(H)), computed from one logarithm per pair."""

    def __init__(self, matrix: np.ndarray, log: np.ndarray | None = None):
        if log is not None:  # (see `conjugate`)
            self._log = np.asarray(log, np.float64)
            return
        m = np.asarray(matrix, np.float64)
        # scale so that det = 1 (H is defined up to scale; the power of a scaled H is the same
        # projective map, and a unit determinant keeps the logarithm's trace at zero)
        det = np.linalg.det(m)
        if det <= 0:
            raise ValueError("camera matrix: orientation-reversing or singular homography")
        self._log = _logm(m / np.cbrt(det))

    def at(self, t: float) -> np.ndarray:
        """H^t, normalized so that its [2, 2] entry is 1."""
        p = _expm(t * self._log)
        return p / p[2, 2]

    def conjugate(self, c: np.ndarray) -> "CameraPath":
        """The same camera in other coordinates: the path of C^-1 H C (c: C, the map from the new
        coordinates to the old), from this path's logarithm (log(C^-1 H C) = C^-1 log(H) C)."""
        c = np.asarray(c, np.float64)
        return CameraPath(None, np.linalg.inv(c) @ self._log @ c)


def homography_power(matrix: np.ndarray, t: float) -> np.ndarray:
    """H^t for one t (see `CameraPath` for many)."""
    return CameraPath(matrix).at(t)
