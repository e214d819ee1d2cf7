"""The Interpolator protocol: in-between frames for one pair of keyframes, and the optional hints a
caller may pass with the pair (`SubjectHint`)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from keyrender.interpolate.checks import InterpolationInputError, check_pair, check_times


@dataclass(frozen=True)
class SubjectHint:
    """One subject seen in both keyframes of a pair, as the caller knows it (the interpolation
    stage knows no characters: a face, a prop, anything that moves as one piece).

    `points_a`, `points_b`: N x 2 float32 pixel coordinates (x, y) of N >= 2 points of the subject
    in A and in B, in the same order (point i of A is point i of B), e.g. a face's landmarks.
    `box_a`, `box_b`: optional regions (x0, y0, x1, y1, pixels) the subject covers in A and in B;
    without them the region is taken around the points. `label`: a name for the manifest only
    (never interpreted). The interpolator moves the subject with the similarity transform (shift,
    scale, roll) that carries `points_a` to `points_b`, interpolated to each time."""

    points_a: np.ndarray
    points_b: np.ndarray
    box_a: tuple[float, float, float, float] | None = None
    box_b: tuple[float, float, float, float] | None = None
    label: str = ""


def check_hints(hints: Sequence[SubjectHint] | None, shape: tuple[int, ...]) -> tuple[SubjectHint, ...]:
    """The hints as a tuple, their points as float32 N x 2 arrays, each checked against the frame
    size `shape` (InterpolationInputError naming the hint and what is wrong)."""
    if hints is None:
        return ()
    if isinstance(hints, SubjectHint):
        hints = [hints]
    h, w = shape[:2]
    out = []
    for i, hint in enumerate(hints):
        name = f"hints[{i}]" + (f" ({hint.label})" if getattr(hint, "label", "") else "")
        if not isinstance(hint, SubjectHint):
            raise InterpolationInputError(f"{name}: expected a SubjectHint, got {type(hint).__name__}")
        pa = np.asarray(hint.points_a, np.float32)
        pb = np.asarray(hint.points_b, np.float32)
        if pa.ndim != 2 or pa.shape[1] != 2 or pa.shape != pb.shape or len(pa) < 2:
            raise InterpolationInputError(f"{name}: points_a and points_b must be N x 2 with the same N >= 2, "
                                          f"got {pa.shape} and {pb.shape}")
        if not (np.isfinite(pa).all() and np.isfinite(pb).all()):
            raise InterpolationInputError(f"{name}: points must be finite numbers")
        for which, box in (("box_a", hint.box_a), ("box_b", hint.box_b)):
            if box is not None and (len(box) != 4 or not box[0] < box[2] or not box[1] < box[3]):
                raise InterpolationInputError(f"{name}: {which} must be (x0, y0, x1, y1) with x0 < x1 and "
                                              f"y0 < y1, got {box!r}")
        pts = np.concatenate([pa, pb])  # a landmark may sit outside the frame; a frame away is a mistake
        if ((pts[:, 0] < -w) | (pts[:, 0] > 2 * w) | (pts[:, 1] < -h) | (pts[:, 1] > 2 * h)).any():
            raise InterpolationInputError(f"{name}: points far outside the {w}x{h} frame")
        out.append(SubjectHint(pa, pb, None if hint.box_a is None else tuple(map(float, hint.box_a)),
                               None if hint.box_b is None else tuple(map(float, hint.box_b)), str(hint.label)))
    return tuple(out)


@runtime_checkable
class Interpolator(Protocol):
    """Makes the frames between two RGB uint8 keyframes of the same size.

    `inbetween(a, b, times, info=None, hints=None)` yields one RGB uint8 frame per time in `times`
    (floats strictly between 0 and 1, in the order given). When `info` is a dict it is filled,
    before the first frame is yielded, with what the interpolator decided for the pair, for the
    manifest: at least `mode` ("camera" | "flow" | "pose" | "fallback" | "static", or "cut" only
    where cut detection was asked for), and for keyrender's own interpolators `explained` (0..1:
    the share of the frame the motion explains, i.e. where A and B agree once moved), `trusted`
    (bool) and `verdict` (one sentence for the user).

    `hints` (optional) is a sequence of `SubjectHint`: points of subjects the caller found in
    both keyframes (a face's landmarks). An interpolator may ignore them and may leave the
    parameter out of its signature; `keyrender.interpolate.inbetween` passes hints only to
    interpolators whose `inbetween` takes them (see `takes_hints`).
    """

    name: str

    def inbetween(
        self,
        frame_a: np.ndarray,
        frame_b: np.ndarray,
        times: Sequence[float],
        info: dict | None = None,
    ) -> Iterator[np.ndarray]:
        ...


def takes_hints(interpolator) -> bool:
    """Whether `interpolator.inbetween` accepts a `hints` keyword (keyrender's own do; a user's
    interpolator written before hints existed does not, and is called without them)."""
    try:
        params = inspect.signature(interpolator.inbetween).parameters
    except (TypeError, ValueError, AttributeError):
        return False
    return "hints" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class CheckedInterpolator:
    """Base of keyrender's own interpolators: `inbetween` checks the pair, the times and the hints
    when it is called (bad input fails at once, not at the first `next()`), then hands them to
    the subclass's `_generate(a, b, times, info, hints)` generator, which renders lazily."""

    name: str

    def inbetween(
        self,
        frame_a: np.ndarray,
        frame_b: np.ndarray,
        times: Sequence[float],
        info: dict | None = None,
        hints: Sequence[SubjectHint] | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield one RGB uint8 frame per time in `times` (checked now, rendered lazily)."""
        check_pair(frame_a, frame_b)
        return self._generate(frame_a, frame_b, check_times(times), info, check_hints(hints, frame_a.shape))

    def _generate(self, a: np.ndarray, b: np.ndarray, ts: list[float], info: dict | None,
                  hints: tuple[SubjectHint, ...] = ()) -> Iterator[np.ndarray]:
        raise NotImplementedError
