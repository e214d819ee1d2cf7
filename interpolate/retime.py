"""Retime a clip: K-1 in-betweens between each pair of its frames, streamed through PyAV.

The output runs at exactly K times the input rate (a Fraction, e.g. 30000/1001 * 2), H.264
yuv420p, with even dimensions (an odd width or height is padded by one replicated column/row,
which yuv420p needs). Frames are decoded, interpolated and encoded one pair at a time; the file
is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from keyrender.errors import InputError
from keyrender.media import VideoWriter
from keyrender.interpolate.base import Interpolator


def retime_video(
    src: str | Path,
    dst: str | Path,
    factor: int,
    interpolator: Interpolator,
    crf: int = 18,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write `src` retimed by `factor` to `dst`; returns a summary (frames, fps, pair modes).

    `progress(done, total)` is called after each input frame (total may be 0 if unknown).
    """
    import av

    src, dst = Path(src), Path(dst)
    if factor < 2:
        raise InputError(f"--factor: must be at least 2, got {factor}")
    if not src.is_file():
        raise InputError(f"{src}: no such video file")
    try:
        inp = av.open(str(src))
    except av.error.FFmpegError as exc:  # type: ignore[attr-defined]
        raise InputError(f"{src}: cannot open as a video ({exc})") from exc
    with inp:
        if not inp.streams.video:
            raise InputError(f"{src}: has no video stream")
        vs = inp.streams.video[0]
        rate = vs.average_rate or vs.guessed_rate
        if not rate:
            raise InputError(f"{src}: frame rate unknown")
        out_rate = Fraction(rate) * factor
        total = vs.frames or 0
        times = [j / factor for j in range(1, factor)]
        modes: dict[str, int] = {}
        n_in = n_out = 0
        writer = None
        try:
            prev = None

            def put(img: np.ndarray) -> None:
                nonlocal writer, n_out
                if writer is None:  # the size is known at the first frame
                    writer = VideoWriter(dst, out_rate, img.shape[1], img.shape[0], crf=crf)
                writer.write(img)
                n_out += 1

            for frame in inp.decode(vs):
                cur = frame.to_ndarray(format="rgb24")
                if prev is not None:
                    put(prev)
                    info: dict = {}
                    for f in interpolator.inbetween(prev, cur, times, info=info):
                        put(f)
                    modes[info.get("mode", "?")] = modes.get(info.get("mode", "?"), 0) + 1
                prev = cur
                n_in += 1
                if progress:
                    progress(n_in, total)
            if prev is None:
                raise InputError(f"{src}: no frames decoded")
            put(prev)
            writer.close()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
    return {"frames_in": n_in, "frames_out": n_out, "fps_in": Fraction(rate), "fps_out": out_rate, "modes": modes}
