"""Types shared by every face backend: a detected face and the FaceEmbedder protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from keyrender.core.errors import InputError


def check_rgb(image: np.ndarray) -> np.ndarray:
    """The image every face backend takes: RGB uint8 H x W x 3 (C-contiguous), else InputError."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise InputError(f"face backend expects an RGB uint8 H x W x 3 image, got {dtype} {shape}")
    return np.ascontiguousarray(image)


@dataclass(frozen=True)
class Face:
    """One face found in an image.

    box: (x0, y0, x1, y1) in pixels; landmarks: (5, 2) float32 (eyes, nose, mouth corners);
    score: detection confidence in [0, 1]; embedding: (D,) float32 in the recognizer's own
    space (L2-normalised for cosine models such as ArcFace; dlib's raw descriptors).
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float
    embedding: np.ndarray = field(repr=False)


@runtime_checkable
class FaceEmbedder(Protocol):
    """Finds faces in RGB uint8 images and embeds them.

    `name` identifies the models (detector + recognizer) so that caches can key on it;
    `metric` says how its embeddings compare ("cosine" or "euclidean", see identity.METRICS).
    """

    name: str
    metric: str

    def faces(self, image: np.ndarray) -> list[Face]:
        """All faces in one RGB uint8 H x W x 3 image, largest first."""
        ...

    def faces_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """faces() for several images; backends batch where they can."""
        ...


@dataclass(frozen=True)
class CharacterResult:
    """How one expected character fared in one frame.

    similarity: similarity (higher is better, in the face model's metric: cosine, or 1 - dlib's
    Euclidean distance) between the face assigned to this character and the identity's
    centroid (None when no face was assigned). wrong_person: the cast member that assigned face matches
    better than the expected one (None when it is the right person); wrong_similarity: its
    similarity to that member. followed: set when the face was not embedded but followed from
    the keyframes around the frame (identity.follow): how closely its aligned face matches
    theirs (normalised cross-correlation, 0..1); `similarity` is then the keyframes' similarity
    interpolated, not a measurement.
    """

    name: str
    found: bool
    similarity: float | None
    threshold: float
    passed: bool
    box: tuple[float, float, float, float] | None = None
    wrong_person: str | None = None
    wrong_similarity: float | None = None
    followed: float | None = None
    landmarks: np.ndarray | None = field(default=None, repr=False, compare=False)  # of the assigned face

    @property
    def margin(self) -> float:
        """similarity - threshold; -1 - threshold when the character is missing."""
        sim = -1.0 if self.similarity is None else self.similarity
        return sim - self.threshold


@dataclass(frozen=True)
class FrameCheck:
    """The identity verdict for one frame: a result per expected character, plus the faces
    that belong to nobody expected (boxes), and among those the cast members recognised (name ->
    similarity, each accepted by that member's threshold): who else is in the picture."""

    characters: dict[str, CharacterResult]
    strangers: tuple[tuple[float, float, float, float], ...] = ()
    others: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.characters.values())

    @property
    def margin(self) -> float:
        """The worst character's margin (higher is better); +inf for a frame with nobody expected."""
        return min((c.margin for c in self.characters.values()), default=float("inf"))
