"""Interpolation stage: the frames between two keyframes.

`inbetween(frame_a, frame_b, times, **options)` is the library call; `get_interpolator(name)`
returns an object implementing `keyrender.interpolate.base.Interpolator`.

Backends:
- "flow" (default): DIS optical flow, occlusion-aware warping, CPU, no weights
  (`keyrender.interpolate.flow`).
- "ltx": LTX-Video's keyframe-conditioned pipeline through diffusers, started from the flow
  backend's in-betweens (`keyrender.interpolate.generative`); "wan": Wan first-last-frame.

Importing this package does not import torch or diffusers; the generative backend imports them
when it is built.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from keyrender.interpolate.base import Interpolator, SubjectHint, takes_hints
from keyrender.interpolate.checks import InterpolationInputError, check_pair, check_times, even_times

BACKENDS = ("flow", "ltx", "wan")

__all__ = [
    "BACKENDS",
    "InterpolationInputError",
    "Interpolator",
    "SubjectHint",
    "backend_options",
    "even_times",
    "get_interpolator",
    "inbetween",
    "takes_hints",
]


def _backend_class(name: str):
    if name == "flow":
        from keyrender.interpolate.flow import FlowInterpolator

        return FlowInterpolator
    if name in ("ltx", "wan"):
        from keyrender.interpolate.generative import GenerativeInterpolator

        return GenerativeInterpolator
    raise InterpolationInputError(f"backend: unknown interpolator {name!r}; known: {', '.join(BACKENDS)}")


def backend_options(name: str) -> frozenset[str]:
    """The keyword options `get_interpolator(name, **options)` takes, as the backend declares them
    (its class's OPTIONS). Imports no torch; unknown names fail fast."""
    options = _backend_class(name).OPTIONS
    return options - {"family"} if name in ("ltx", "wan") else options


def get_interpolator(name: str = "flow", **options) -> Interpolator:
    """Build the interpolator called `name` with its options; unknown names fail fast."""
    if name == "flow":
        from keyrender.interpolate.flow import FlowInterpolator

        return FlowInterpolator(**options)
    if name in ("ltx", "wan"):
        from keyrender.interpolate.generative import GenerativeInterpolator

        return GenerativeInterpolator(family=name, **options)
    raise InterpolationInputError(f"backend: unknown interpolator {name!r}; known: {', '.join(BACKENDS)}")


def inbetween(
    frame_a: np.ndarray,
    frame_b: np.ndarray,
    times: Sequence[float],
    *,
    backend: str | Interpolator = "flow",
    info: dict | None = None,
    hints: Sequence[SubjectHint] | None = None,
    **options,
) -> Iterator[np.ndarray]:
    """Yield one RGB uint8 H x W x 3 frame per time in `times`, between `frame_a` (t=0) and `frame_b` (t=1).

    `times` are floats strictly between 0 and 1, any number, any spacing, in the order given.
    Inputs are checked at call time (`InterpolationInputError`, a `ValueError` and an
    `InputError`); the frames are computed lazily, one per `next()`. `backend` is a name from
    `BACKENDS` (built with `**options`) or an `Interpolator`. When `info` is a dict, it receives
    what was decided for the pair before the first frame: `mode` ("camera", "flow", "pose",
    "fallback", "static"; "cut" only with the flow option `detect_cuts`), `explained`, `trusted`,
    `verdict` (see `Interpolator`). `hints`: subjects seen in both keyframes (`SubjectHint`, e.g.
    a face's landmarks), passed to interpolators that take them (`takes_hints`) and otherwise
    left out (`info["hints"]` then says so).
    """
    check_pair(frame_a, frame_b)
    ts = check_times(times)
    interp = backend if not isinstance(backend, str) else get_interpolator(backend, **options)
    if not isinstance(backend, str) and options:
        raise InterpolationInputError(f"options {sorted(options)} given with an Interpolator instance; pass them to its constructor")
    if hints and not takes_hints(interp):
        if info is not None:
            info["hints"] = f"ignored: {getattr(interp, 'name', type(interp).__name__)} takes no hints"
        hints = None
    if not hints:  # (None or none found: called as the Protocol says, without a hints keyword)
        return interp.inbetween(frame_a, frame_b, ts, info=info)
    return interp.inbetween(frame_a, frame_b, ts, info=info, hints=hints)
