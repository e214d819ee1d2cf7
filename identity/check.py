"""Frame checks: who is who in a frame, and does each expected character look like themselves.

`check_frame` assigns the faces found in a frame to the expected characters by optimal
assignment on similarity (the Hungarian algorithm, scipy's `linear_sum_assignment`, maximising
the total similarity-to-centroid, in the face model's own metric), never greedily: with two similar characters a greedy pass can give
the best face to the wrong one and leave the other with a stranger.

Then, for each expected character:

* no face assigned -> missing (found=False, failed);
* the assigned face matches another cast member (any identity in `identities`, expected or not)
  better than the expected one, and is accepted by that member's threshold -> `wrong_person`
  names that member and the character fails, whatever its own similarity;
* else it passes when similarity >= its threshold.

Faces not assigned to anybody expected are returned as `strangers` (their boxes).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from keyrender.core.errors import InputError

from .base import CharacterResult, Face, FaceEmbedder, FrameCheck
from .identity import Identity


def _validate_expected(identities: Mapping[str, Identity], expected: Sequence[str]) -> list[str]:
    if isinstance(expected, str):
        expected = [expected]
    expected = list(dict.fromkeys(expected))
    unknown = [n for n in expected if n not in identities]
    if unknown:
        known = ", ".join(sorted(identities)) or "none"
        raise InputError(f"unknown character(s) {', '.join(unknown)}: the cast has {known}")
    return expected


def similarity_matrix(faces: Sequence[Face], identities: Sequence[Identity]) -> np.ndarray:
    """(n_faces, n_identities) similarity of each face to each identity's centroid, in each
    identity's own metric (cosine for ArcFace models, 1 - Euclidean distance for dlib)."""
    if not faces or not identities:
        return np.zeros((len(faces), len(identities)), np.float32)
    emb = np.stack([np.asarray(f.embedding, np.float32) for f in faces])
    return np.stack([np.atleast_1d(i.similarity(emb)) for i in identities], axis=1).astype(np.float32)


def assign(sims: np.ndarray) -> list[tuple[int, int]]:
    """Optimal (face, column) pairs maximising total similarity (Hungarian algorithm)."""
    if sims.size == 0:
        return []
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(sims, maximize=True)
    return list(zip(rows.tolist(), cols.tolist()))


def check_frame(faces: Sequence[Face], identities: Mapping[str, Identity],
                expected: Sequence[str]) -> FrameCheck:
    """The identity verdict for one frame (see the module docstring for the rules)."""
    expected = _validate_expected(identities, expected)
    cast = list(identities)
    all_ids = [identities[n] for n in cast]
    sims_all = similarity_matrix(faces, all_ids)  # faces x cast
    cols = [cast.index(n) for n in expected]
    pairs = assign(sims_all[:, cols]) if cols else []
    by_char = {expected[c]: f for f, c in pairs}
    results: dict[str, CharacterResult] = {}
    for name in expected:
        ident = identities[name]
        f = by_char.get(name)
        if f is None:
            results[name] = CharacterResult(name, found=False, similarity=None,
                                            threshold=ident.threshold, passed=False)
            continue
        row = sims_all[f]
        sim = float(row[cast.index(name)])
        wrong = None
        for j, other in enumerate(cast):
            if other == name:
                continue
            if row[j] > sim and row[j] >= all_ids[j].threshold and \
                    (wrong is None or row[j] > row[cast.index(wrong)]):
                wrong = other
        results[name] = CharacterResult(
            name, found=True, similarity=sim, threshold=ident.threshold,
            passed=wrong is None and sim >= ident.threshold,
            box=tuple(faces[f].box), wrong_person=wrong,
        )
    assigned = {f for f, _ in pairs}
    strangers = tuple(tuple(faces[i].box) for i in range(len(faces)) if i not in assigned)
    return FrameCheck(characters=results, strangers=strangers)


class FaceChecker:
    """Checks images against a cast with one face backend.

    `threshold` forces one acceptance threshold for every identity (None: each identity's own).
    """

    def __init__(self, embedder: FaceEmbedder, identities: Mapping[str, Identity], *,
                 threshold: float | None = None):
        if not identities:
            raise InputError("no identities to check against: the cast is empty")
        self.embedder = embedder
        self.identities = {n: (i.with_threshold(threshold) if threshold is not None else i)
                           for n, i in identities.items()}
        for n, ident in self.identities.items():
            model = getattr(embedder, "name", None)
            if model is not None and ident.model != model:
                raise InputError(f"identity {n!r} was built with face model {ident.model!r}, "
                                 f"not {model!r}: rebuild it (keyrender identity build)")

    def check(self, image: np.ndarray, expected: Sequence[str]) -> FrameCheck:
        return check_frame(self.embedder.faces(image), self.identities, expected)

    def check_batch(self, images: Sequence[np.ndarray], expected: Sequence[str]) -> list[FrameCheck]:
        return [check_frame(f, self.identities, expected)
                for f in self.embedder.faces_batch(list(images))]

    def check_faces(self, faces: Iterable[Face], expected: Sequence[str]) -> FrameCheck:
        return check_frame(list(faces), self.identities, expected)
