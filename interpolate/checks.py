"""Input checks shared by every interpolation backend.

Errors are `InputError` (a `ValueError` too, so library callers may catch either) with a message
that names the bad value: which frame, which shape, which time.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from keyrender.core.errors import InputError


class InterpolationInputError(InputError, ValueError):
    """A keyframe pair or a list of times that cannot be interpolated. Exit code 2 in the CLI."""


def check_frame(frame: np.ndarray, name: str) -> np.ndarray:
    """Return `frame` if it is an RGB uint8 H x W x 3 array, else raise naming `name`."""
    if not isinstance(frame, np.ndarray):
        raise InterpolationInputError(f"{name}: expected a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise InterpolationInputError(f"{name}: expected dtype uint8, got {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InterpolationInputError(f"{name}: expected an RGB image H x W x 3, got shape {frame.shape}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise InterpolationInputError(f"{name}: empty image, shape {frame.shape}")
    return frame


def check_pair(frame_a: np.ndarray, frame_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check both keyframes and that they have the same size."""
    check_frame(frame_a, "frame_a")
    check_frame(frame_b, "frame_b")
    if frame_a.shape != frame_b.shape:
        raise InterpolationInputError(
            f"frame_a and frame_b differ in shape: {frame_a.shape} vs {frame_b.shape}"
        )
    return frame_a, frame_b


def check_times(times: Sequence[float]) -> list[float]:
    """Return `times` as a list of floats; each must be finite and strictly between 0 and 1."""
    if isinstance(times, (str, bytes)) or not hasattr(times, "__iter__"):
        raise InterpolationInputError(f"times: expected a sequence of floats, got {times!r}")
    out: list[float] = []
    for i, t in enumerate(times):
        try:
            f = float(t)
        except (TypeError, ValueError):
            raise InterpolationInputError(f"times[{i}]: not a number: {t!r}") from None
        if not math.isfinite(f) or not 0.0 < f < 1.0:
            raise InterpolationInputError(f"times[{i}] = {t!r}: must be strictly between 0 and 1")
        out.append(f)
    return out


def even_times(n: int) -> list[float]:
    """The `n` evenly spaced times strictly between 0 and 1: i / (n + 1)."""
    if n < 1:
        raise InterpolationInputError(f"frames: need at least 1 in-between, got {n}")
    return [i / (n + 1) for i in range(1, n + 1)]
