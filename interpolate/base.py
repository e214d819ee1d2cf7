"""The Interpolator protocol: in-between frames for one pair of keyframes."""

from __future__ import annotations

from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np


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
