"""Audit a video for identity drift: similarity of each character over time, worst frames, plot.

Frames are streamed from PyAV one at a time (in small batches for the recognizer); only the
per-frame scores are kept, so a long video never sits in memory.

Two modes:

* explicit characters (`expected=[...]`): every checked frame should show each of them. A frame
  where one is found but fails (similarity under the threshold, or the face is another cast
  member: "wrong person") is drift; a frame where one is not found counts as missing, reported
  but not drift (faces turn away, leave the frame).
* "expected if seen" (`expected=None`): every cast member is a candidate in every frame, faces
  are attributed to cast members by the same optimal assignment, and a face whose similarity to
  its attributed member is under `min_similarity` is a stranger rather than that member. A
  character is *in the video* when it is recognised (passes) in at least one checked frame; for
  those characters, every frame where a face is attributed to them and fails is drift. Frames
  where they are absent do not count, and characters never recognised are not judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from keyrender.core.errors import InputError

from keyrender.outputs.media import read_frames

from .check import FaceChecker, check_frame
from .identity import get_metric

BATCH = 8


@dataclass
class FrameRecord:
    index: int
    time: float | None
    similarity: dict[str, float | None]
    status: dict[str, str]  # pass | drift | wrong:<name> | missing | absent
    strangers: int = 0

    def margin(self, thresholds: dict[str, float]) -> float:
        vals = [(-1.0 if self.similarity[n] is None else self.similarity[n]) - thresholds[n]
                for n, s in self.status.items() if s != "absent" and s != "missing"]
        return min(vals, default=float("inf"))

    def failed(self) -> bool:
        return any(s == "drift" or s.startswith("wrong:") for s in self.status.values())


@dataclass
class AuditResult:
    path: str
    characters: list[str]
    mode: str  # "expected" or "if-seen"
    every: int
    thresholds: dict[str, float]
    frames: list[FrameRecord] = field(default_factory=list)
    frames_decoded: int = 0
    fps: float | None = None
    truncated: str | None = None  # why the video is shorter than its container says (media.read_frames)

    @property
    def drift(self) -> bool:
        return any(r.failed() for r in self.frames)

    def worst_frames(self, k: int = 5) -> list[FrameRecord]:
        judged = [r for r in self.frames if r.margin(self.thresholds) != float("inf")]
        return sorted(judged, key=lambda r: (r.margin(self.thresholds), r.index))[:k]

    def stats(self) -> dict[str, dict]:
        out = {}
        for n in self.characters:
            sims = [r.similarity[n] for r in self.frames if r.similarity.get(n) is not None
                    and r.status[n] != "absent"]
            st = [r.status[n] for r in self.frames]
            out[n] = {
                "threshold": self.thresholds[n],
                "frames_found": len(sims),
                "frames_passed": st.count("pass"),
                "frames_drift": sum(1 for s in st if s == "drift"),
                "frames_wrong_person": sum(1 for s in st if s.startswith("wrong:")),
                "frames_missing": st.count("missing"),
                "mean_similarity": float(np.mean(sims)) if sims else None,
                "min_similarity": float(np.min(sims)) if sims else None,
            }
        return out

    def to_json(self, worst: int = 5) -> dict:
        def rec(r: FrameRecord) -> dict:
            return {"frame": r.index, "time": r.time, "similarity": r.similarity,
                    "status": r.status, "strangers": r.strangers}

        return {
            "video": self.path, "mode": self.mode, "every": self.every,
            "characters": self.characters, "drift": self.drift,
            "frames_decoded": self.frames_decoded, "frames_checked": len(self.frames),
            "truncated": self.truncated,
            "stats": self.stats(),
            "worst_frames": [rec(r) for r in self.worst_frames(worst)],
            "frames": [rec(r) for r in self.frames],
        }


def audit_video(path: str | Path, checker: FaceChecker, expected: Sequence[str] | None = None,
                every: int = 1, progress: Callable[[int], None] | None = None, *,
                min_similarity: float | None = None) -> AuditResult:
    """Check every `every`-th frame of a video against the cast (see the module docstring).
    A video cut short is audited up to the cut and says so in `truncated`.

    min_similarity: without `expected`, a face under it is a stranger rather than the member it
    is attributed to (None: the face model's metric's own, `Metric.stranger`)."""
    if every < 1:
        raise InputError(f"--every must be 1 or more, got {every}")
    identities = checker.identities
    if expected is not None:
        expected = list(dict.fromkeys(expected))
        unknown = [n for n in expected if n not in identities]
        if unknown:
            raise InputError(f"unknown character(s) {', '.join(unknown)}: the cast has "
                             f"{', '.join(identities)}")
        if not expected:
            raise InputError("no characters to check")
    chars = list(expected) if expected is not None else list(identities)
    result = AuditResult(path=str(path), characters=chars,
                         mode="expected" if expected is not None else "if-seen", every=every,
                         thresholds={n: identities[n].threshold for n in chars})
    pending: list[tuple[int, float | None, np.ndarray]] = []
    floors = {n: (get_metric(identities[n].metric).stranger if min_similarity is None else min_similarity)
              for n in chars}

    def flush() -> None:
        faces_per = checker.embedder.faces_batch([f for _, _, f in pending])
        for (i, t, _), faces in zip(pending, faces_per):
            fc = check_frame(faces, identities, chars)
            sims, status = {}, {}
            strangers = len(fc.strangers)
            for n, c in fc.characters.items():
                if not c.found:
                    sims[n], status[n] = None, ("missing" if expected is not None else "absent")
                elif expected is None and c.similarity < floors[n] and c.wrong_person is None:
                    sims[n], status[n] = None, "absent"
                    strangers += 1
                else:
                    sims[n] = c.similarity
                    status[n] = ("pass" if c.passed else
                                 f"wrong:{c.wrong_person}" if c.wrong_person else "drift")
            result.frames.append(FrameRecord(i, t, sims, status, strangers))
            if progress:
                progress(len(result.frames))
        pending.clear()

    decoding: dict = {}
    for i, t, frame in read_frames(path, every, info=decoding):
        pending.append((i, t, frame))
        if len(pending) >= BATCH:
            flush()
    if pending:
        flush()
    result.frames_decoded, result.truncated = decoding["decoded"], decoding["truncated"]

    if expected is None:  # only characters recognised somewhere are judged
        seen = {n for r in result.frames for n, s in r.status.items() if s == "pass"}
        for r in result.frames:
            for n in r.status:
                if n not in seen and r.status[n] != "absent":
                    r.status[n] = "absent"
                    r.similarity[n] = None
                    r.strangers += 1
    return result


_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def render_plot(result: AuditResult, width: int = 1000, height: int = 380) -> np.ndarray:
    """The similarity-over-time plot as an RGB uint8 image (OpenCV drawing, no matplotlib)."""
    import cv2

    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, 170, 30, 40
    pw, ph = width - left - right, height - top - bottom
    n_last = max((r.index for r in result.frames), default=1) or 1
    y_lo = min([-0.1] + [s for r in result.frames for s in r.similarity.values() if s is not None])
    y_hi = 1.0

    def xy(frame: float, sim: float) -> tuple[int, int]:
        x = left + int(round(pw * frame / n_last))
        y = top + int(round(ph * (y_hi - sim) / (y_hi - y_lo)))
        return x, y

    cv2.rectangle(img, (left, top), (left + pw, top + ph), (0, 0, 0), 1)
    for v in np.arange(np.ceil(y_lo * 5) / 5, y_hi + 1e-6, 0.2):
        x0, y = xy(0, v)
        cv2.line(img, (left, y), (left + pw, y), (225, 225, 225), 1)
        cv2.putText(img, f"{v:.1f}", (8, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.putText(img, "frame", (left + pw // 2 - 20, height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (0, 0, 0), 1)
    cv2.putText(img, "0", (left - 4, top + ph + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.putText(img, f"{n_last}", (left + pw - 20, top + ph + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (0, 0, 0), 1)
    title = f"identity similarity: {Path(result.path).name}" + ("  DRIFT" if result.drift else "")
    cv2.putText(img, title, (left, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (200, 0, 0) if result.drift else (0, 0, 0), 1)
    labels: list[int] = []
    for k, name in enumerate(result.characters):
        color = _COLORS[k % len(_COLORS)]
        thr = result.thresholds[name]
        _, ty = xy(0, thr)
        for x in range(left, left + pw, 12):  # dashed threshold line
            cv2.line(img, (x, ty), (min(x + 6, left + pw), ty), color, 1)
        label = f"{name[:16]} threshold {thr:.3f}"
        (tw, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        ly = ty - 4
        while any(abs(ly - v) < 12 for v in labels):  # equal thresholds: stacked above, not overprinted
            ly -= 12
        labels.append(ly)
        cv2.putText(img, label, (left + pw - tw - 4, ly), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
        pts = [(r, xy(r.index, r.similarity[name])) for r in result.frames
               if r.similarity.get(name) is not None]
        for (_, a), (_, b) in zip(pts, pts[1:]):
            cv2.line(img, a, b, color, 2, cv2.LINE_AA)
        for r, p in pts:
            if r.status[name] != "pass":
                cv2.circle(img, p, 4, (220, 0, 0), -1)
        ly = top + 16 + 18 * k
        cv2.line(img, (left + pw + 12, ly - 4), (left + pw + 32, ly - 4), color, 3)
        cv2.putText(img, name[:16], (left + pw + 38, ly), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    return img


def write_plot(result: AuditResult, path: str | Path) -> Path:
    """Write the plot as PNG (atomically)."""
    import cv2

    from keyrender.core.fsutil import atomic_write_bytes

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(render_plot(result)[:, :, ::-1]))
    if not ok:
        raise InputError(f"cannot encode plot for {path}")
    atomic_write_bytes(path, buf.tobytes())
    return Path(path)
