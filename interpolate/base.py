"""The Interpolator protocol: in-between frames for one pair of keyframes."""

from __future__ import annotations

from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from keyrender.interpolate.checks import check_pair, check_times


@runtime_checkable
class Interpolator(Protocol):
    """Makes the frames between two RGB uint8 keyframes of the same size.

    `inbetween(a, b, times, info=None)` yields one RGB uint8 frame per time in `times`
    (floats strictly between 0 and 1, in the order given). When `info` is a dict it is filled,
    before the first frame is yielded, with what the interpolator decided for the pair
    (at least `{"mode": "flow" | "static" | "cut" | ...}`), for the manifest.
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


class CheckedInterpolator:
    """Base of keyrender's own interpolators: `inbetween` checks the pair and the times when it
    is called (bad input fails at once, not at the first `next()`), then hands them to the
    subclass's `_generate(a, b, times, info)` generator, which renders lazily."""

    name: str

    def inbetween(
        self,
        frame_a: np.ndarray,
        frame_b: np.ndarray,
        times: Sequence[float],
        info: dict | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield one RGB uint8 frame per time in `times` (checked now, rendered lazily)."""
        check_pair(frame_a, frame_b)
        return self._generate(frame_a, frame_b, check_times(times), info)

    def _generate(self, a: np.ndarray, b: np.ndarray, ts: list[float], info: dict | None) -> Iterator[np.ndarray]:
        raise NotImplementedError
