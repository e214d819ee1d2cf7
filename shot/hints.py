"""Where the subject is in two keyframes, for the in-betweener: the identity stage finds faces,
the interpolation stage follows corresponding points (`interpolate.SubjectHint`) and knows no
faces. The shot layer (and the CLI's `interpolate A B`) compose the two here.

    character_hints(check, a, b, characters)  the faces the identity check assigned to each
                                              character in both keyframes (a render's spans)
    largest_face_hints(a, b, embedder)        the largest face of each picture (no cast)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def character_hints(check, a: np.ndarray, b: np.ndarray, characters: Sequence[str]) -> list:
    """One SubjectHint per character whose face the identity check found in both keyframes:
    its 5 landmarks and box in A and in B (the checker's own full check of each keyframe,
    `keyframe_check`, made when the keyframe was checked). Nothing without such a checker."""
    from keyrender.interpolate import SubjectHint

    keyframe_check = getattr(check, "keyframe_check", None)
    if keyframe_check is None or not characters:
        return []
    ra, rb = keyframe_check(a, characters).characters, keyframe_check(b, characters).characters
    hints = []
    for name in characters:
        fa, fb = ra.get(name), rb.get(name)
        if fa is None or fb is None or fa.landmarks is None or fb.landmarks is None:
            continue
        hints.append(SubjectHint(np.asarray(fa.landmarks, np.float32), np.asarray(fb.landmarks, np.float32),
                                 fa.box, fb.box, label=name))
    return hints


def largest_face_hints(a: np.ndarray, b: np.ndarray, embedder=None) -> list:
    """The largest face of each image as an interpolation hint (its 5 landmarks and box in A and
    in B), or no hint when either image shows no face. `embedder`: a `keyrender.identity` face
    model with 5-point landmarks (default: the built-in dlib one)."""
    from keyrender.interpolate import SubjectHint

    if embedder is None:
        from keyrender.identity.dlib_backend import DlibFaceEmbedder

        embedder = DlibFaceEmbedder()
    fa, fb = embedder.faces(a), embedder.faces(b)
    if not fa or not fb:
        return []
    big = lambda faces: max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))  # noqa: E731
    fa, fb = big(fa), big(fb)
    return [SubjectHint(np.asarray(fa.landmarks, np.float32), np.asarray(fb.landmarks, np.float32), fa.box, fb.box,
                        label="the face")]
