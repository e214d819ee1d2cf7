"""Video and image I/O: streamed H.264 encode/decode with PyAV, image load/save, fitting.

Frames cross this boundary as RGB uint8 numpy arrays H x W x 3. Writers take frames one at a time,
so memory does not grow with the length of a shot, and write to a temporary file that is renamed
into place only when the video is complete.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from keyrender.core.errors import InputError
from keyrender.core.fsutil import atomic_path
from keyrender.core.imagefile import (  # noqa: F401  (IMAGE_SUFFIXES: re-exported)
    IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, ImageFileError, probe_image,
)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 H x W x 3, as it is displayed: EXIF orientation applied,
    alpha dropped, grey expanded, 16-bit scaled to 8. The package's one image decoder.

    The header is checked first (imagefile.probe_image: formats, byte and pixel limits), so an
    oversized or lying file costs no decode. A truncated file is an InputError, not grey rows.
    """
    from PIL import Image

    header = probe_image(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(header.path) as im:
                im.load()
                img = _to_rgb(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        why = "truncated" if "truncated" in str(exc) else "damaged"
        raise ImageFileError(header.path, f"cannot decode ({why}: {exc})") from None
    img = _orient(img, header.orientation)
    if img.shape[:2] != (header.height, header.width):  # the header lied about the size
        raise ImageFileError(header.path, f"cannot decode (its header says {header.width}x{header.height}, "
                                          f"it holds {img.shape[1]}x{img.shape[0]})")
    return np.ascontiguousarray(img)


def _to_rgb(im) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im).astype(np.uint32)
        grey = (a >> 8 if a.max(initial=0) > 255 else a).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode != "RGB":
        im = im.convert("RGBA").convert("RGB") if im.mode in ("P", "PA", "LA") else im.convert("RGB")
    return np.asarray(im)


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) as displayed (the transforms of PIL's exif_transpose)."""
    if orientation == 2:
        return img[:, ::-1]
    if orientation == 3:
        return img[::-1, ::-1]
    if orientation == 4:
        return img[::-1]
    if orientation == 5:
        return img.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(img, k=-1)
    if orientation == 7:
        return img.transpose(1, 0, 2)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(img, k=1)
    return img


def save_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB uint8 image (PNG or JPEG by extension), atomically."""
    import cv2

    _check_frame(image)
    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"cannot encode image as {path.suffix}: {path}")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(buf.tobytes())  # (ndarray.tofile reports a full disk as a short write without errno)


def save_thumbnail(path: str | os.PathLike, image: np.ndarray, width: int = 320) -> None:
    """Write a small copy of an RGB uint8 image (at most `width` wide; JPEG by the extension),
    atomically: the report's filmstrip of a shot's spans."""
    import cv2

    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    save_image(path, image)


def fit_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale to cover width x height and centre-crop: no distortion, no borders."""
    import cv2

    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    scale = max(width / w, height / h)
    nw, nh = max(width, round(w * scale)), max(height, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    x0, y0 = (nw - width) // 2, (nh - height) // 2
    return np.ascontiguousarray(resized[y0:y0 + height, x0:x0 + width])


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file as displayed, from its header (no decode)."""
    header = probe_image(path)
    return header.width, header.height


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{type(frame).__name__} {getattr(frame, 'dtype', '')} {getattr(frame, 'shape', '')}"
        raise ValueError(f"expected an RGB uint8 H x W x 3 array, got {got.strip()}")


class VideoWriter:
    """Streams RGB frames into an H.264 MP4 (yuv420p, exact fractional fps) with PyAV.

    The file appears at `path` only after close() succeeds; until then it is a hidden temporary
    file beside it, removed if anything fails. Odd sizes are padded by one pixel (edge copy):
    yuv420p needs even dimensions.

        with VideoWriter(path, fps=Fraction(24000, 1001), width=w, height=h) as out:
            for frame in frames:
                out.write(frame)
    """

    def __init__(self, path: str | os.PathLike, fps: Fraction | int | float, width: int, height: int, *,
                 crf: int = 18, preset: str = "medium", codec: str = "libx264"):
        import av

        self.path = Path(path)
        self.fps = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
        self.width, self.height = int(width), int(height)
        self.enc_width, self.enc_height = self.width + self.width % 2, self.height + self.height % 2
        self.frames = 0
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        try:
            self._container = av.open(str(self._tmp), mode="w", format="mp4")
            stream = self._container.add_stream(codec, rate=self.fps)
            stream.width, stream.height = self.enc_width, self.enc_height
            stream.pix_fmt = "yuv420p"
            stream.time_base = Fraction(1, 1) / self.fps
            stream.options = {"crf": str(crf), "preset": preset}
            stream.codec_context.options = {"crf": str(crf), "preset": preset}
            self._stream = stream
        except BaseException as exc:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def write(self, frame: np.ndarray) -> None:
        import av

        _check_frame(frame)
        if frame.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame {self.frames} is {frame.shape[1]}x{frame.shape[0]}, the video is {self.width}x{self.height}")
        if (self.enc_width, self.enc_height) != (self.width, self.height):
            frame = np.pad(frame, ((0, self.enc_height - self.height), (0, self.enc_width - self.width), (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self.frames
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._atomic.__exit__(None, None, None)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._container.close()
        exc = RuntimeError("aborted")
        self._atomic.__exit__(RuntimeError, exc, None)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def check_video_file(path: str | os.PathLike) -> Path:
    """`path` as a Path when it is a regular file; InputError saying what it is otherwise (missing,
    a folder, a pipe or device: a FIFO would block the reader)."""
    import stat

    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"video {path} does not exist") from None
    except OSError as exc:
        raise InputError(f"video {path} cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"video {path} is a folder, not a video file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"video {path} is not a regular file (a pipe, socket or device); give a video file")
    return path


def check_frame_size(path: str | os.PathLike, width: int, height: int, what: str = "declares") -> None:
    """A video's frame size within the limits of an image (MAX_IMAGE_SIDE per side,
    MAX_IMAGE_PIXELS in all): InputError naming the file otherwise. Checked from the container's
    header before any frame is decoded, and on each decoded frame (a stream may change size)."""
    if max(width, height) > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise InputError(f"video {path} {what} {width}x{height} frames; at most {MAX_IMAGE_SIDE} per side and "
                         f"{MAX_IMAGE_PIXELS // 1_000_000} MP in all are read (as for images)")


def open_video(path: str | os.PathLike):
    """(container, its first video stream) of a video file, its frame size checked from the
    header (`check_frame_size`) before any frame is decoded. InputError naming the file when it
    is not a regular file, cannot be opened, has no video stream or declares oversized frames.
    The caller closes the container.

    Opening a container probes its streams, and the probe decodes a first frame when the header
    leaves the pixel format open (a PNG track): a 16000x16000 frame would cost seconds and 800 MB
    right there. So the decoders get FFmpeg's `max_pixels` (MAX_IMAGE_PIXELS): the probe refuses
    the frame and says its size in the log, read here; decoding later is refused the same way."""
    import av
    import av.logging

    path = check_video_file(path)
    limit = {"max_pixels": str(MAX_IMAGE_PIXELS)}
    level, skip = av.logging.get_level(), av.logging.get_skip_repeated()
    av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)  # the second such file must say its size too
    try:
        with av.logging.Capture(True) as logs:
            container = av.open(str(path), options=limit)
    except (av.error.FFmpegError, OSError) as exc:  # type: ignore[attr-defined]
        raise InputError(f"{path}: cannot open as a video ({exc})") from None
    finally:
        av.logging.set_level(level)
        av.logging.set_skip_repeated(skip)
    try:
        for _, _, message in logs:
            m = _PICTURE_SIZE.search(message or "")
            if m:
                check_frame_size(path, int(m.group(1)), int(m.group(2)))
        if not container.streams.video:
            raise InputError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        check_frame_size(path, stream.codec_context.width or 0, stream.codec_context.height or 0)
        stream.codec_context.options = dict(limit)
    except BaseException:
        container.close()
        raise
    return container, stream


_PICTURE_SIZE = re.compile(r"Picture size (\d+)x(\d+)")


def read_frames(path: str | os.PathLike, every: int = 1,
                info: dict | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (index, time in seconds, RGB uint8 frame) for every `every`-th frame, streamed.

    `info`, when given, is filled as the frames go: "decoded" (frames decoded, every one, not
    only the yielded ones), "end" (seconds from the stream's start to the end of the last decoded
    frame) and, once the stream ends, "truncated": None, or why the video is shorter than its
    container says (`truncation`). With `info`, a decode error after the first frame ends the
    stream and is reported there (the frames read so far stay usable); without it, or before any
    frame, it is an InputError.
    """
    import av

    path = Path(path)
    container, stream = open_video(path)
    state = info if info is not None else {}
    state.update(decoded=0, end=None, truncated=None)
    with container:
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
        damaged = None
        try:
            for i, frame in enumerate(container.decode(stream)):
                t = float(frame.pts * stream.time_base) if frame.pts is not None else i / float(rate or 1)
                check_frame_size(path, frame.width, frame.height, f"frame {i} is")
                state["decoded"] = i + 1
                state["end"] = t - start + (1 / float(rate) if rate else 0.0)
                if i % every:
                    continue
                yield i, t, frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as exc:  # type: ignore[attr-defined]
            if info is None or not state["decoded"]:
                raise InputError(f"cannot decode video {path}: {exc}") from None
            damaged = f"cannot decode past frame {state['decoded'] - 1} ({exc})"
        state["truncated"] = damaged or truncation(container, stream, state["decoded"], state["end"])


def truncation(container, stream, decoded: int, end: float | None) -> str | None:
    """Why a video stream, decoded to its end, is shorter than its container says (a download
    cut short, a copy that stopped), or None when it is whole or the container states no length.

    The stated length is the stream's duration (else the container's); the decoded length runs
    from the stream's start to the end of its last frame (its time plus one frame). Timestamps
    are compared, not frame counts: an AVI counts its dropped frames in its header. More than a
    frame and a half missing is truncated.
    """
    if stream.duration and stream.time_base:
        stated = float(stream.duration * stream.time_base)
    elif container.duration:
        stated = container.duration / 1_000_000  # av.time_base
    else:
        return None
    rate = stream.average_rate or stream.guessed_rate
    frame = 1 / float(rate) if rate else 0.04
    if end is None:
        return f"no frame decodes, its header states {stated:.2f} s"
    if end < stated - 1.5 * frame:
        return (f"truncated: its frames end at {end:.2f} s ({decoded} decoded), "
                f"its header states {stated:.2f} s")
    return None


def probe_video(path: str | os.PathLike) -> dict:
    """Frame count (decoded, exact), fps as a Fraction, size, codec and pixel format of a video."""
    container, stream = open_video(path)
    with container:
        count = sum(1 for _ in container.decode(stream))
        return {
            "frames": count,
            "fps": Fraction(stream.average_rate) if stream.average_rate else None,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
        }
