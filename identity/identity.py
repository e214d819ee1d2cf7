"""Identity: who a character is, as embeddings of their reference faces.

A character's identity is the L2-normalised embeddings of its reference faces, their centroid
(the normalised mean), the spread (how far the farthest reference lies from the centroid,
1 - cosine) and an acceptance threshold on cosine-to-centroid, calibrated from the references:

    threshold = clip(min_i cos(ref_i, centroid) - MARGIN, THRESHOLD_FLOOR, THRESHOLD_CEILING)

A generated face is accepted as the character when its cosine to the centroid is at least the
threshold. References that agree closely give a strict threshold (up to the ceiling); loose
references give a lenient one, but never below the floor. The bounds suit ArcFace-style
recognizers (a different person scores about 0..0.2 to a centroid, the same person 0.4..0.8);
all three constants can be overridden, and a threshold can be forced per identity.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace

import numpy as np

MARGIN = 0.15
THRESHOLD_FLOOR = 0.30
THRESHOLD_CEILING = 0.50


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def calibrate_threshold(embeddings: np.ndarray, *, margin: float = MARGIN,
                        floor: float = THRESHOLD_FLOOR, ceiling: float = THRESHOLD_CEILING) -> float:
    """The acceptance threshold for cosine-to-centroid, from the references themselves."""
    if floor > ceiling:
        raise ValueError(f"threshold floor {floor} is above the ceiling {ceiling}")
    emb = l2_normalize(np.atleast_2d(embeddings))
    centroid = l2_normalize(emb.mean(axis=0))
    worst = float((emb @ centroid).min())
    return float(np.clip(worst - margin, floor, ceiling))


@dataclass(frozen=True)
class Reference:
    """One reference image that went into an identity (file name relative to the character's
    folder, its sha256, size and mtime for the staleness check, and the face used)."""

    file: str
    sha256: str
    size: int = 0
    mtime_ns: int = 0
    box: tuple[float, float, float, float] | None = None
    score: float | None = None


@dataclass(frozen=True)
class Identity:
    """A character's face identity.

    embeddings: (N, D) float32, L2-normalised, one per usable reference (same order as
    `references`). centroid: (D,) normalised mean. spread: max over references of
    1 - cos(ref, centroid). threshold: acceptance threshold on `similarity()`. skipped:
    (file, reason) of references that could not be used.
    """

    name: str
    embeddings: np.ndarray = field(repr=False)
    centroid: np.ndarray = field(repr=False)
    spread: float
    threshold: float
    references: tuple[Reference, ...]
    model: str
    calibrated_threshold: float | None = None
    skipped: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_embeddings(cls, name: str, embeddings: np.ndarray, references: tuple[Reference, ...],
                        model: str, *, threshold: float | None = None,
                        skipped: tuple[tuple[str, str], ...] = (), **calibration) -> "Identity":
        emb = l2_normalize(np.atleast_2d(np.asarray(embeddings, np.float32)))
        if emb.shape[0] == 0:
            raise ValueError(f"identity {name!r} needs at least one embedding")
        centroid = l2_normalize(emb.mean(axis=0))
        spread = float(max(0.0, 1.0 - float((emb @ centroid).min())))
        calibrated = calibrate_threshold(emb, **calibration)
        return cls(name=name, embeddings=emb, centroid=centroid, spread=spread,
                   threshold=float(calibrated if threshold is None else threshold),
                   references=tuple(references), model=model, calibrated_threshold=calibrated,
                   skipped=tuple(skipped))

    def similarity(self, embedding: np.ndarray) -> float | np.ndarray:
        """Cosine between an embedding (D,) -- or each row of (M, D) -- and the centroid."""
        e = l2_normalize(np.asarray(embedding, np.float32))
        sims = e @ self.centroid
        return float(sims) if np.ndim(sims) == 0 else sims

    def accepts(self, embedding: np.ndarray) -> bool:
        return bool(self.similarity(embedding) >= self.threshold)

    def with_threshold(self, threshold: float | None) -> "Identity":
        """A copy with a forced threshold (None: back to the calibrated one)."""
        t = self.calibrated_threshold if threshold is None else float(threshold)
        return replace(self, threshold=float(t))

    @property
    def digest(self) -> str:
        """A stable content hash for cache keys: the face model, the references' content and
        the threshold (not the float embeddings, which differ in the last bits across devices)."""
        payload = json.dumps({
            "name": self.name, "model": self.model, "threshold": round(self.threshold, 6),
            "references": sorted(r.sha256 for r in self.references),
        }, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def to_json(self) -> dict:
        """Metadata (everything but the embedding arrays)."""
        return {
            "name": self.name, "model": self.model, "threshold": self.threshold,
            "calibrated_threshold": self.calibrated_threshold, "spread": self.spread,
            "dim": int(self.embeddings.shape[1]), "digest": self.digest,
            "references": [
                {"file": r.file, "sha256": r.sha256, "size": r.size, "mtime_ns": r.mtime_ns,
                 "box": list(r.box) if r.box else None, "score": r.score}
                for r in self.references
            ],
            "skipped": [{"file": f, "reason": why} for f, why in self.skipped],
        }


