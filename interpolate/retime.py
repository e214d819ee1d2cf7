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
from keyrender.fsutil import atomic_path
from keyrender.interpolate.base import Interpolator


def _even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


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
        with atomic_path(dst) as tmp:
            with av.open(str(tmp), "w") as out:
                os_ = out.add_stream("libx264", rate=out_rate)
                os_.pix_fmt = "yuv420p"
                os_.codec_context.time_base = Fraction(1, 1) / out_rate
                os_.options = {"crf": str(crf)}
                prev = None

                def put(img: np.ndarray) -> None:
                    nonlocal n_out
                    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(_even(img)), format="rgb24")
                    vf.pts = n_out  # in 1 / out_rate
                    if n_out == 0:
                        os_.width, os_.height = vf.width, vf.height
                    out.mux(os_.encode(vf))
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
                out.mux(os_.encode(None))
    return {"frames_in": n_in, "frames_out": n_out, "fps_in": Fraction(rate), "fps_out": out_rate, "modes": modes}
