"""Retime a clip to K times its frame rate, streamed through PyAV.

The output runs at exactly K times the input's nominal rate (a Fraction, e.g. 30000/1001 * 2),
H.264 yuv420p, with even dimensions (an odd width or height is padded by one replicated
column/row, which yuv420p needs). Output frame n shows the picture at time first + n / (K rate),
taken from the input frames' own timestamps: for a constant-rate clip that is each input frame
followed by K-1 in-betweens at j/K; for a variable-rate clip (dropped-frame slots, screen
recordings, phone footage) the in-betweens fall at their true fractional times, the gaps are
filled, and the duration is kept. Frames are decoded, interpolated and encoded one pair at a time;
the file is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from keyrender.core.errors import InputError
from keyrender.interpolate.base import Interpolator
from keyrender.interpolate.checks import even_times
from keyrender.core.fsutil import check_output_path
from keyrender.outputs.media import VideoWriter, check_frame_size, check_video_file, open_video, truncation


def retime_video(
    src: str | Path,
    dst: str | Path,
    factor: int,
    interpolator: Interpolator,
    crf: int = 18,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write `src` retimed by `factor` to `dst`; returns a summary (frames, fps, pair modes).

    Footage may contain cuts: build the flow interpolator with `detect_cuts=True` (as `keyrender
    interpolate VIDEO --factor K` does) so that a pair across a cut is held, not morphed.

    `progress(done, total)` is called after each input frame (total may be 0 if unknown).
    """
    src, dst = Path(src), Path(dst)
    if factor < 2:
        raise InputError(f"--factor: must be at least 2, got {factor}")
    check_video_file(src)
    check_output_path(dst, inputs=[src])  # before any work: the source is never replaced
    inp, vs = open_video(src)  # the frame size from the header, before anything is decoded
    with inp:
        rate = vs.average_rate or vs.guessed_rate
        if not rate:
            raise InputError(f"{src}: frame rate unknown")
        out_rate = Fraction(rate) * factor
        tb = vs.time_base
        total = vs.frames or 0
        modes: dict[str, int] = {}
        n_in = n_out = skipped = 0
        writer = None
        try:
            prev = prev_time = None
            first: Fraction | None = None

            def put(img: np.ndarray) -> None:
                nonlocal writer, n_out
                if writer is None:  # the size is known at the first frame
                    writer = VideoWriter(dst, out_rate, img.shape[1], img.shape[0], crf=crf)
                writer.write(img)
                n_out += 1

            for frame in _decode(inp, vs, src):
                check_frame_size(src, frame.width, frame.height, f"frame {n_in} is")
                n_in += 1
                if frame.pts is None or tb is None:  # no timestamps: assume a constant rate
                    now = Fraction(n_in - 1) / Fraction(rate)
                else:
                    now = Fraction(frame.pts) * Fraction(tb)
                if first is not None:
                    # snap to the output grid within a quarter slot: timestamps in ms (Matroska,
                    # many AVIs) put 1/15 s at 67 ms, which must still land on its slot
                    slot = (now - first) * out_rate
                    if abs(slot - round(slot)) < Fraction(1, 4):
                        now = first + round(slot) / out_rate
                if prev_time is not None and now <= prev_time:
                    skipped += 1  # a repeated or out-of-order timestamp: nothing new to show
                    continue
                cur = frame.to_ndarray(format="rgb24")
                if prev is None:
                    first = now
                else:
                    # output slots n with prev_time <= slot < now; slot == prev_time is prev itself
                    n0 = math.ceil((prev_time - first) * out_rate)  # exact on Fractions
                    n1 = math.ceil((now - first) * out_rate)
                    ts = [((first + Fraction(n) / out_rate) - prev_time) / (now - prev_time) for n in range(n0, n1)]
                    if ts and ts[0] == 0:
                        put(prev)
                        ts = ts[1:]
                    if ts:
                        info: dict = {}
                        for f in interpolator.inbetween(prev, cur, [float(t) for t in ts], info=info):
                            put(f)
                        modes[info.get("mode", "?")] = modes.get(info.get("mode", "?"), 0) + 1
                prev, prev_time = cur, now
                if progress:
                    progress(n_in, total)
            if prev is None:
                raise InputError(f"{src}: no frames decoded")
            start = Fraction(vs.start_time) * Fraction(tb) if vs.start_time is not None and tb else Fraction(0)
            cut = truncation(inp, vs, n_in, float(prev_time - start + 1 / Fraction(rate)))
            if cut:  # a shorter video would pass for the whole one: nothing is written
                raise InputError(f"{src}: {cut}")
            put(prev)
            writer.close()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
    return {
        "frames_in": n_in, "frames_out": n_out, "fps_in": Fraction(rate), "fps_out": out_rate,
        "modes": modes, "skipped_timestamps": skipped,
    }


def _decode(container, stream, src: Path):
    """The stream's frames; a decode error (a cut or damaged file) is an InputError naming it."""
    import av

    frames = container.decode(stream)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:  # type: ignore[attr-defined]
            raise InputError(f"{src}: truncated or damaged, a frame does not decode ({exc})") from None
        yield frame


PAIR_RECORD = ".keyrender-frames.json"  # the frames this command wrote into its folder last time


def interpolate_pair(path_a: str | Path, path_b: str | Path, n: int, out_dir: str | Path, interpolator,
                     progress: Callable[[int, int], None] | None = None,
                     find_hints: Callable[[np.ndarray, np.ndarray], list] | None = None) -> dict:
    """Write A, N in-betweens and B as PNGs into `out_dir`, streamed: each frame is written as
    soon as it is made (memory does not grow with N). Names are zero-padded to fit N + 2 frames
    (frame_0000.png ... at least four digits). A rerun into the same folder first removes the
    frames it wrote before (listed in .keyrender-frames.json), and never overwrites a file it did
    not write. `find_hints(a, b)`: the pair's `SubjectHint`s, found once both images are read
    (passed to interpolators that take hints). Returns {"frames": count, "info": the
    interpolator's decisions}."""
    import json
    import os

    from keyrender.core.errors import InputError
    from keyrender.core.fsutil import atomic_write_json
    from keyrender.outputs.media import load_image, save_image

    out = Path(out_dir)
    check_output_path(out, folder=True)  # before any work: a file named as the folder is an input error
    a, b = load_image(path_a), load_image(path_b)  # the package's reader: EXIF, limits, truncation
    if a.shape != b.shape:
        raise InputError(f"{path_a} is {a.shape[1]}x{a.shape[0]} but {path_b} is "
                         f"{b.shape[1]}x{b.shape[0]}: keyframes must have the same size")
    total = n + 2
    width = max(4, len(str(total - 1)))
    names = [f"frame_{i:0{width}d}.png" for i in range(total)]
    record = out / PAIR_RECORD
    try:
        old = set(json.loads(record.read_text()).get("frames", [])) if record.is_file() else set()
    except (OSError, ValueError, AttributeError):
        old = set()
    real_out = os.path.realpath(out)
    for src in (path_a, path_b):  # an input among the frames written or removed here
        real = os.path.realpath(src)
        if os.path.dirname(real) == real_out and os.path.basename(real) in (set(names) | old | {PAIR_RECORD}):
            raise InputError(f"{src} is {os.path.basename(real)} of {out}, which this command writes or removes; "
                             "copy it elsewhere or choose another --out")
    foreign = [nm for nm in names if (out / nm).exists() and nm not in old]
    if foreign:
        raise InputError(f"{out} already holds {foreign[0]}" + (f" and {len(foreign) - 1} more" if len(foreign) > 1 else "")
                         + " not written by keyrender interpolate; choose an empty --out")
    out.mkdir(parents=True, exist_ok=True)
    # the record lists every frame that may be ours before any is written: a killed run is cleaned too
    atomic_write_json(record, {"frames": sorted(old | set(names))})
    for nm in sorted(old - set(names)):
        if "/" not in nm and nm.startswith("frame_") and nm.endswith(".png"):
            (out / nm).unlink(missing_ok=True)
    from keyrender.interpolate import inbetween

    info: dict = {}
    hints = find_hints(a, b) if find_hints is not None else None
    frames = iter(inbetween(a, b, even_times(n), backend=interpolator, info=info, hints=hints or None))
    for i, nm in enumerate(names):
        frame = a if i == 0 else b if i == total - 1 else next(frames)
        save_image(out / nm, frame)
        if progress is not None:
            progress(i + 1, total)
    atomic_write_json(record, {"frames": names})
    return {"frames": total, "info": info}
