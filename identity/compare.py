"""Compare two faces: two characters, two images, or one of each, and a same-person verdict.

The similarity is the face model's own (cosine for ArcFace models, 1 - Euclidean distance for
dlib; see `identity.METRICS`): a character counts as its identity's centroid, an image as its
largest face. The verdict's threshold is, in order: the one given; the stricter (higher) of the
characters' own calibrated thresholds; for two images, the metric's pair threshold
(`Metric.pair`: cosine 0.35, dlib distance 0.55).

A character whose identity is not built yet, or is stale (its references changed), is built first,
as `keyrender check` does (the face model is loaded for it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from keyrender.core.errors import InputError

from .base import FaceEmbedder
from .identity import Identity, get_metric, prepare, similarity_to
from .store import IdentityStore, read_image


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    similarity: float
    threshold: float
    same: bool
    model: str
    metric: str

    def to_json(self) -> dict:
        return asdict(self)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def compare(a: str, b: str, store: IdentityStore, load_model: Callable[[], FaceEmbedder], *,
            threshold: float | None = None,
            warn: Callable[[str], None] | None = None,
            progress: Callable | None = None) -> Comparison:
    """`a` and `b` are character names (identities in `store`) or image files. `load_model` is
    called only when an image must be embedded or a character's identity must be built (missing
    or stale: built and saved as `IdentityStore.build` does, its events to `progress`); the
    characters' identities are then the ones of that model. Raises InputError for an image
    without a face, a missing image file, an unknown character, or sides embedded by different
    face models."""
    warn = warn or (lambda line: None)
    embedder: FaceEmbedder | None = None
    sides: list[tuple[str, np.ndarray | Identity]] = []
    for arg in (a, b):
        if Path(arg).is_file():
            if embedder is None:
                embedder = load_model()
            faces = embedder.faces(read_image(Path(arg)))
            if not faces:
                raise InputError(f"no face found in {arg}")
            if len(faces) > 1:
                warn(f"{len(faces)} faces in {arg}; using the largest")
            sides.append((arg, faces[0].embedding))
        elif Path(arg).suffix.lower() in IMAGE_SUFFIXES:
            raise InputError(f"{arg}: no such image file (and not a character of {store.cast_dir})")
        else:
            sides.append((arg, None))
    model = embedder.name if embedder is not None else None
    for i, (arg, value) in enumerate(sides):
        if value is None:
            if store.why_stale(arg, model) is not None:  # not built, or its references changed
                if embedder is None:
                    embedder = load_model()
                    model = embedder.name
                ident = store.build(embedder, names=[arg], progress=progress)[arg]
            else:
                ident = store.load(arg, model)
            model = model or ident.model
            sides[i] = (arg, ident)
    idents = [v for _, v in sides if isinstance(v, Identity)]
    models = {i.model for i in idents} | ({embedder.name} if embedder is not None else set())
    if len(models) > 1:
        raise InputError(f"{a} and {b} were embedded with different face models "
                         f"({', '.join(sorted(models))}): rebuild with `keyrender identity build`")
    metric = idents[0].metric if idents else getattr(embedder, "metric", "cosine")
    (_, va), (_, vb) = sides
    ca = va.centroid if isinstance(va, Identity) else prepare(va, metric)[1]
    eb = vb.centroid if isinstance(vb, Identity) else prepare(vb, metric)[0][0]
    sim = float(similarity_to(eb, ca, metric))
    if threshold is None:
        threshold = max(i.threshold for i in idents) if idents else get_metric(metric).pair
    return Comparison(a=a, b=b, similarity=sim, threshold=float(threshold), same=sim >= threshold,
                      model=models.pop(), metric=metric)
