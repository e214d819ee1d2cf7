"""Identity: who a character is, as embeddings of their reference faces.

A character's identity is the embeddings of its reference faces, their centroid, the spread (how
far the farthest reference lies from the centroid, 1 - its similarity) and an acceptance
threshold on similarity-to-centroid, calibrated from the references:

    threshold = clip(min_i similarity(ref_i, centroid) - margin, floor, ceiling)

A face is accepted as the character when its similarity to the centroid is at least the
threshold. References that agree closely give a strict threshold (up to the ceiling); loose
references give a lenient one, but never below the floor.

Similarity is computed in each face model's own metric (`METRICS`), always "higher is better":

* "cosine" (insightface's ArcFace recognizers): embeddings L2-normalised, centroid = normalised
  mean, similarity = cosine. A different person scores about 0..0.2, the same person 0.4..0.8;
  margin 0.15, threshold within 0.30..0.50.
* "euclidean" (dlib's ResNet): raw 128-D descriptors, centroid = mean, similarity = 1 - the
  Euclidean distance to the centroid. dlib's own rule "same person when distance < 0.6" is
  similarity > 0.4; on real faces 0.6 falsely matches about 14% of strangers in an open-set
  search (0.9% at 0.55), and in benchmarks/identity.py the closest other person lies at 0.605 from
  a centroid while the farthest held-back photo of the person lies at 0.467. So the threshold is
  the farthest reference's distance + 0.25 (a held-back photo lies farther from the centroid
  than the references that made it), kept within distance 0.50..0.55 (similarity 0.45..0.50).

A threshold calibrated from one or two references knows nothing: with one there is no spread to
measure (the rule falls to its strictest bound), with two there is one distance. An identity built
from fewer than `CALIBRATE_FROM` (3) usable references therefore takes the face model's own pair
threshold (`Metric.pair`, the one `identity compare` applies to two photos: dlib distance 0.55,
ArcFace cosine 0.35) and says so (`Identity.calibration`, `calibration_note`). Measured in
benchmarks/identity.py (docs/identity.md): from one dlib reference, the calibrated rule accepted
96.8% of the person's other photos, the pair threshold 99.0%, both with no cast or stranger false
accept (the closest other face 0.051 under the pair threshold).

All constants can be overridden, and a threshold can be forced per identity.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class Metric:
    """How a face model's embeddings are compared, and the calibration bounds in that metric."""

    name: str
    description: str
    margin: float
    floor: float
    ceiling: float
    stranger: float  # `keyrender check` without --characters: under this, a face is nobody's
    pair: float  # `identity compare` of two single images (no identity, no calibration)


METRICS = {
    "cosine": Metric("cosine", "cosine similarity to the L2-normalised centroid", 0.15, 0.30, 0.50, 0.15, 0.35),
    "euclidean": Metric("euclidean", "1 - Euclidean distance to the centroid (dlib's metric)",
                        0.25, 0.45, 0.50, 0.30, 0.45),
}
#: the rules by which a render's checks judge faces; part of a checked shot's cache key, so a
#: change of rules judges (and repairs) those shots again. 2: identities from 1-2 references take
#: the model's pair threshold; faces matched against the whole cast; faces followed into the
#: in-betweens (identity.follow)
JUDGE_RULES = "2"
#: usable references an identity needs before its threshold is calibrated from their spread;
#: with fewer it takes its face model's pair threshold (`Metric.pair`)
CALIBRATE_FROM = 3
MARGIN = METRICS["cosine"].margin
THRESHOLD_FLOOR = METRICS["cosine"].floor
THRESHOLD_CEILING = METRICS["cosine"].ceiling


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown face metric {name!r}: known {', '.join(METRICS)}") from None


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def prepare(embeddings: np.ndarray, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """(embeddings as the metric keeps them, centroid): normalised for cosine, raw for euclidean."""
    get_metric(metric)
    emb = np.atleast_2d(np.asarray(embeddings, np.float32))
    if metric == "cosine":
        emb = l2_normalize(emb)
        return emb, l2_normalize(emb.mean(axis=0))
    return emb, emb.mean(axis=0).astype(np.float32)


def similarity_to(embedding: np.ndarray, centroid: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Similarity (higher is better) of an embedding (D,) or each row of (M, D) to a centroid."""
    e = np.asarray(embedding, np.float32)
    if metric == "cosine":
        return l2_normalize(e) @ centroid
    get_metric(metric)
    return 1.0 - np.linalg.norm(e - centroid, axis=-1)


def calibrate_threshold(embeddings: np.ndarray, *, metric: str = "cosine", margin: float | None = None,
                        floor: float | None = None, ceiling: float | None = None,
                        min_references: int = CALIBRATE_FROM) -> float:
    """The acceptance threshold on similarity-to-centroid (in `metric`), from the references; the
    metric's pair threshold when there are fewer than `min_references` of them."""
    m = get_metric(metric)
    margin = m.margin if margin is None else margin
    floor = m.floor if floor is None else floor
    ceiling = m.ceiling if ceiling is None else ceiling
    if floor > ceiling:
        raise ValueError(f"threshold floor {floor} is above the ceiling {ceiling}")
    emb, centroid = prepare(embeddings, metric)
    if emb.shape[0] < min_references:
        return float(m.pair)
    worst = float(np.min(similarity_to(emb, centroid, metric)))
    return float(np.clip(worst - margin, floor, ceiling))


def calibration_of(count: int, min_references: int = CALIBRATE_FROM) -> str:
    """How an identity of `count` usable references gets its threshold: "references" (calibrated
    from their spread) or "pair" (the face model's pair threshold)."""
    return "references" if count >= min_references else "pair"


def calibration_note(count: int, calibration: str) -> str:
    """What the threshold of an identity of `count` references rests on, in words."""
    refs = f"{count} reference{'s' if count != 1 else ''}"
    if calibration == "pair":
        return (f"{refs}: the model's default threshold; add photos for a calibrated one "
                f"({CALIBRATE_FROM} or more)")
    return f"{refs}: threshold calibrated from their spread"


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

    embeddings: (N, D) float32, one per usable reference (same order as `references`), as the
    metric keeps them (L2-normalised for "cosine", raw for "euclidean"). centroid: (D,) their
    (normalised) mean. spread: max over references of 1 - similarity(ref). threshold:
    acceptance threshold on `similarity()`. metric: see `METRICS`. skipped: (file, reason) of
    references that could not be used.
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
    metric: str = "cosine"
    calibration: str = "references"  # "references" (from their spread) or "pair" (too few: the model's)

    @classmethod
    def from_embeddings(cls, name: str, embeddings: np.ndarray, references: tuple[Reference, ...],
                        model: str, *, threshold: float | None = None,
                        skipped: tuple[tuple[str, str], ...] = (), metric: str = "cosine",
                        **calibration) -> "Identity":
        if np.atleast_2d(np.asarray(embeddings)).shape[0] == 0:
            raise ValueError(f"identity {name!r} needs at least one embedding")
        emb, centroid = prepare(embeddings, metric)
        spread = float(max(0.0, 1.0 - float(np.min(similarity_to(emb, centroid, metric)))))
        calibrated = calibrate_threshold(emb, metric=metric, **calibration)
        how = calibration_of(emb.shape[0], calibration.get("min_references", CALIBRATE_FROM))
        return cls(name=name, embeddings=emb, centroid=centroid, spread=spread,
                   threshold=float(calibrated if threshold is None else threshold),
                   references=tuple(references), model=model, calibrated_threshold=calibrated,
                   skipped=tuple(skipped), metric=metric, calibration=how)

    @property
    def calibration_note(self) -> str:
        """What the threshold rests on, in words ("1 reference: the model's default threshold;
        add photos for a calibrated one"); a forced threshold says so too."""
        note = calibration_note(len(self.embeddings), self.calibration)
        if self.calibrated_threshold is not None and abs(self.threshold - self.calibrated_threshold) > 1e-9:
            note += f" (forced to {self.threshold:.3f})"
        return note

    def similarity(self, embedding: np.ndarray) -> float | np.ndarray:
        """Similarity (the metric's, higher is better) of an embedding (D,) -- or each row of
        (M, D) -- to the centroid."""
        sims = similarity_to(embedding, self.centroid, self.metric)
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
            "name": self.name, "model": self.model, "metric": self.metric, "threshold": self.threshold,
            "calibrated_threshold": self.calibrated_threshold, "calibration": self.calibration,
            "calibration_note": self.calibration_note, "spread": self.spread,
            "dim": int(self.embeddings.shape[1]), "digest": self.digest,
            "references": [
                {"file": r.file, "sha256": r.sha256, "size": r.size, "mtime_ns": r.mtime_ns,
                 "box": list(r.box) if r.box else None, "score": r.score}
                for r in self.references
            ],
            "skipped": [{"file": f, "reason": why} for f, why in self.skipped],
        }


