"""Frame checks: who is who in a frame, and does each expected character look like themselves.

`check_frame` assigns the faces found in a frame to the expected characters by optimal
assignment on similarity (the Hungarian algorithm, scipy's `linear_sum_assignment`, maximising
the total similarity-to-centroid, in the face model's own metric), never greedily: with two similar characters a greedy pass can give
the best face to the wrong one and leave the other with a stranger.

Then, for each expected character:

* no face assigned -> missing (found=False, failed);
* the assigned face matches another cast member (any identity in `identities`, expected or not)
  better than the expected one, and is accepted by that member's threshold -> `wrong_person`
  names that member (`wrong_similarity`: how well) and the character fails, whatever its own
  similarity. A render passes the whole cast's identities, so another cast member is named;
* else it passes when similarity >= its threshold.

Faces not assigned to anybody expected are returned as `strangers` (their boxes); those that are
a cast member not expected (accepted by that member's threshold) are also named in `others`.
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


#: up to this many faces x characters, `assign` tries every matching itself (exact, and no
#: scipy import: 0.4 s of CPU, a run's whole check budget on a short storyboard shot)
EXHAUSTIVE_PAIRS = 8


def assign(sims: np.ndarray) -> list[tuple[int, int]]:
    """Optimal (face, column) pairs maximising total similarity: the Hungarian algorithm
    (scipy's linear_sum_assignment), or every matching tried when the matrix is small (the
    same optimum; the usual frame has one or two faces for one or two characters)."""
    if sims.size == 0:
        return []
    n, m = sims.shape
    if min(n, m) <= 3 and max(n, m) <= EXHAUSTIVE_PAIRS:
        from itertools import permutations

        k = min(n, m)
        best, best_total = None, -np.inf
        if n <= m:  # each face gets a distinct column
            for cols in permutations(range(m), k):
                total = float(sum(sims[i, c] for i, c in enumerate(cols)))
                if total > best_total:
                    best, best_total = [(i, c) for i, c in enumerate(cols)], total
        else:  # each column gets a distinct face
            for rows in permutations(range(n), k):
                total = float(sum(sims[r, j] for j, r in enumerate(rows)))
                if total > best_total:
                    best, best_total = [(r, j) for j, r in enumerate(rows)], total
        return sorted(best)
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
            wrong_similarity=None if wrong is None else float(row[cast.index(wrong)]),
            landmarks=faces[f].landmarks,
        )
    assigned = {f for f, _ in pairs}
    unassigned = [i for i in range(len(faces)) if i not in assigned]
    strangers = tuple(tuple(faces[i].box) for i in unassigned)
    others: dict[str, float] = {}  # cast members among the faces nobody expected
    for i in unassigned:
        row = sims_all[i]
        j = int(np.argmax(row)) if len(cast) else -1
        if j >= 0 and row[j] >= all_ids[j].threshold and cast[j] not in expected:
            others[cast[j]] = max(float(row[j]), others.get(cast[j], -np.inf))
    return FrameCheck(characters=results, strangers=strangers, others=others)


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
