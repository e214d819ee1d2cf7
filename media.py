"""Video and image I/O: streamed H.264 encode/decode with PyAV, image load/save, fitting.

Frames cross this boundary as RGB uint8 numpy arrays H x W x 3. Writers take frames one at a time,
so memory does not grow with the length of a shot, and write to a temporary file that is renamed
into place only when the video is complete.
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from keyrender.errors import InputError
from keyrender.fsutil import atomic_path


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 H x W x 3 (alpha dropped, grey expanded)."""
    import cv2

    path = Path(path)
    data = np.fromfile(path, dtype=np.uint8) if path.is_file() else None
    if data is None:
        raise InputError(f"image not found: {path}")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"cannot decode image {path} (damaged, or not an image)")
    if img.dtype != np.uint8:
        img = (img / (256 if img.dtype == np.uint16 else img.max() or 1)).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def save_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB uint8 image (PNG or JPEG by extension), atomically."""
    import cv2

    _check_frame(image)
    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"cannot encode image as {path.suffix}: {path}")
    with atomic_path(path) as tmp:
        buf.tofile(tmp)


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
    """(width, height) of an image file, reading only what is needed."""
    img = load_image(path)
    return img.shape[1], img.shape[0]


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

    def __init__(self, path: str | os.PathLike, fps: Fraction | int | float, width: int, height: int,
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


def read_frames(path: str | os.PathLike, every: int = 1) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (index, time in seconds, RGB uint8 frame) for every `every`-th frame, streamed."""
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(f"video {path} does not exist")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:  # type: ignore[attr-defined]
        raise InputError(f"cannot open video {path}: {exc}") from None
    with container:
        if not container.streams.video:
            raise InputError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i % every:
                    continue
                t = float(frame.pts * stream.time_base) if frame.pts is not None else i / float(stream.average_rate or 1)
                yield i, t, frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as exc:  # type: ignore[attr-defined]
            raise InputError(f"cannot decode video {path}: {exc}") from None


def probe_video(path: str | os.PathLike) -> dict:
    """Frame count (decoded, exact), fps as a Fraction, size, codec and pixel format of a video."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        return {
            "frames": count,
            "fps": Fraction(stream.average_rate) if stream.average_rate else None,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
        }
