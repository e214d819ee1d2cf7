"""Follow faces from the keyframes into the in-betweens instead of embedding them afresh.

A render checks every keyframe and every few in-betweens. An in-between is made from the two
keyframes around it, and both have been checked with the full face model (detection, alignment,
descriptor: ~80-130 ms a frame with the built-in dlib judge on a CPU, most of it the descriptor).
`FollowingChecker` checks such an in-between for well under 1 ms a face instead:

1. where each expected character's face should be: its landmarks in keyframes A and B,
   interpolated at the frame's time t (the in-betweener carries the face from A's place to B's);
2. the face there, aligned on those landmarks as the judge aligns a face (`face_chips`: dlib's
   face chip, no detector, no descriptor), grey, blurred a little;
3. compared with the same aligned faces of A, of B and of their blend at t (normalised
   cross-correlation over the pixels that lie inside all the frames compared, at least half
   the face). When one of them matches at `FOLLOW_MATCH` (0.95) or better, the face is the one
   the keyframes showed, carried along: the character passes, with the keyframes' similarity
   interpolated at t (`CharacterResult.followed` holds the match; that similarity is not a
   measurement, and the manifest says so).

Anything else is checked in full, as before (a pass found with the detector at the frame's own
scale is kept; anything else is searched again upsampled, `faces_coarse`): every keyframe and repair keyframe (never followed),
a frame whose two keyframes did not both pass, a face that is not where it should be or does not
match (another person, a face that drifted, a face gone, a face mostly out of frame). So a wrong
face in a single checked frame is still embedded and named. On the real photos of
../shared/faces, aligned faces of two different people never matched above 0.86 (median 0.37),
while the same photo moved, zoomed and re-encoded matched at 0.997 (median): docs/identity.md.

Backends without `face_chips` (insightface packs, injected embedders) are always checked in full.
"""

from __future__ import annotations

import weakref
from typing import Iterable, Iterator, Sequence

import numpy as np

from .base import CharacterResult, FrameCheck
from .check import FaceChecker

#: the least normalised cross-correlation between an in-between's aligned face and the
#: keyframes' (or their blend) for the face to count as theirs, carried along
FOLLOW_MATCH = 0.95
#: the least share of the aligned face that must lie inside every frame compared
FOLLOW_VISIBLE = 0.5
_BLUR_SIGMA = 1.0


def _grey(chip: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An aligned face as compared: grey, blurred (sigma 1 px: resampling noise does not count),
    float32; its mask shrunk by the blur's reach (pixels the frame's edge bled into)."""
    import cv2

    g = cv2.GaussianBlur(cv2.cvtColor(np.ascontiguousarray(chip), cv2.COLOR_RGB2GRAY).astype(np.float32),
                         (0, 0), _BLUR_SIGMA)
    m = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return g, m


def match(x: np.ndarray, y: np.ndarray, mask: np.ndarray, visible: float = FOLLOW_VISIBLE) -> float:
    """Normalised cross-correlation of two aligned grey faces over `mask`; -1 when less than
    `visible` of the face is under the mask."""
    if mask.mean() < visible:
        return -1.0
    a, b = x[mask], y[mask]
    a, b = a - a.mean(), b - b.mean()
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / den if den > 1e-6 else -1.0


def _lerp(a, b, t: float):
    return tuple(float((1 - t) * x + t * y) for x, y in zip(a, b))


class _Anchor:
    """A fully checked frame (a keyframe, a repair): its check and, once asked, the aligned
    faces of its expected characters (grey, mask)."""

    def __init__(self, image: np.ndarray, result: FrameCheck, expected: tuple[str, ...]):
        self.ref = weakref.ref(image)
        self.result = result
        self.expected = expected
        self.faces: dict[str, tuple[np.ndarray, np.ndarray]] | None = None


class FollowingChecker:
    """`check(image, expected)` as FaceChecker.check, following faces where it can (see the module
    docstring). `follow(a, b, times, frames)` wraps an in-betweener's frames: the check of a frame
    it yielded may follow the faces of keyframes a and b. `counts` says how many checks embedded
    faces ("embedded") and how many followed them ("followed").

    enabled=False checks every frame in full (the method before faces were followed)."""

    def __init__(self, checker: FaceChecker, *, min_match: float = FOLLOW_MATCH, enabled: bool = True):
        self.checker = checker
        self.identities = checker.identities
        self.min_match = float(min_match)
        self.enabled = enabled and callable(getattr(checker.embedder, "face_chips", None))
        self.counts = {"embedded": 0, "followed": 0}
        self._anchors: dict[int, _Anchor] = {}
        self._pending: tuple | None = None  # (frame, a, b, t): the frame `follow` yielded last

    # -- the check ----------------------------------------------------------------------------
    def __call__(self, image: np.ndarray, expected: Sequence[str]) -> FrameCheck:
        return self.check(image, expected)

    def check(self, image: np.ndarray, expected: Sequence[str]) -> FrameCheck:
        hint, self._pending = self._pending, None
        expected = tuple(dict.fromkeys([expected] if isinstance(expected, str) else expected))
        if hint is not None and hint[0] is image:
            if self.enabled:
                got = self._follow(image, hint[1], hint[2], hint[3], expected)
                if got is not None:
                    self.counts["followed"] += 1
                    return got
            return self._embed(image, expected)
        result = self._embed(image, expected)
        self._anchors[id(image)] = _Anchor(image, result, expected)  # a keyframe or a repair
        return result

    def follow(self, a: np.ndarray, b: np.ndarray, times: Sequence[float],
               frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The in-betweens of keyframes a and b (at `times`), passed through unchanged."""
        for t, frame in zip(times, frames):
            self._pending = (frame, a, b, float(t))
            yield frame
        self._pending = None

    def keyframe_check(self, image: np.ndarray, expected: Sequence[str]) -> FrameCheck:
        """The full check of a keyframe (or repair): the one made when it was checked, else made
        now. Its characters carry the faces assigned to them (box, landmarks)."""
        return self._anchor(image, tuple(dict.fromkeys([expected] if isinstance(expected, str) else expected))).result

    # -- internals ------------------------------------------------------------------------------
    def _embed(self, image: np.ndarray, expected: tuple[str, ...]) -> FrameCheck:
        """The full check; where the backend has a coarse detection (`faces_coarse`: dlib's HOG
        without upsampling, a quarter of the time) and the frame passes on it, that verdict."""
        self.counts["embedded"] += 1
        coarse = getattr(self.checker.embedder, "faces_coarse", None) if self.enabled else None
        faces = coarse(image) if coarse is not None else None
        if faces:
            result = self.checker.check_faces(faces, expected)
            if result.passed:
                return result
        return self.checker.check(image, expected)

    def _anchor(self, image: np.ndarray, expected: tuple[str, ...]) -> _Anchor:
        found = self._anchors.get(id(image))
        if found is None or found.ref() is not image or found.expected != expected:
            found = _Anchor(image, self._embed(image, expected), expected)
            self._anchors[id(image)] = found
        return found

    def _faces(self, anchor: _Anchor, image: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if anchor.faces is None:
            names = list(anchor.expected)
            chips = self.checker.embedder.face_chips(image, [anchor.result.characters[n].landmarks for n in names])
            anchor.faces = {n: _grey(c, m) for n, (c, m) in zip(names, chips)}
        return anchor.faces

    def _follow(self, image, a, b, t, expected) -> FrameCheck | None:
        if not expected:
            return None
        ka, kb = self._anchor(a, expected), self._anchor(b, expected)
        ra, rb = ka.result.characters, kb.result.characters
        if not (ka.result.passed and kb.result.passed) or \
                any(ra[n].landmarks is None or rb[n].landmarks is None for n in expected):
            return None  # a failing keyframe: its in-betweens are judged on their own
        fa, fb = self._faces(ka, a), self._faces(kb, b)
        points = [(1 - t) * np.asarray(ra[n].landmarks, np.float32) + t * np.asarray(rb[n].landmarks, np.float32)
                  for n in expected]
        chips = self.checker.embedder.face_chips(image, points)
        results = {}
        for name, lm, (chip, mask) in zip(expected, points, chips):
            g, m = _grey(chip, mask)
            (ga, ma), (gb, mb) = fa[name], fb[name]
            best = max(match(g, ga, m & ma), match(g, gb, m & mb),
                       match(g, (1 - t) * ga + t * gb, m & ma & mb))
            if best < self.min_match:
                return None
            sim = (1 - t) * ra[name].similarity + t * rb[name].similarity
            results[name] = CharacterResult(name, found=True, similarity=float(sim),
                                            threshold=self.identities[name].threshold, passed=True,
                                            box=_lerp(ra[name].box, rb[name].box, t),
                                            followed=round(best, 4), landmarks=lm)
        return FrameCheck(characters=results)
