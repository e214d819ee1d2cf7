"""Image files on disk, before any pixel is decoded: which suffixes keyrender reads, and a header
probe (format, size as displayed after EXIF orientation) that enforces the limits on an input image.

This is the one owner of both; `media.load_image` (the one decoder) probes first and decodes only
what passed, so a 0.9 MB PNG that declares 30000 x 30000 costs a header read, not 3.6 GB.
Base layer: no torch, no numpy (Pillow reads the headers, lazily imported).
"""

from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

from keyrender.core.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
FORMATS = {"PNG", "JPEG", "WEBP", "BMP"}  # what Pillow calls the formats of IMAGE_SUFFIXES
MAX_IMAGE_BYTES = 256 << 20                # a 256 MB file is no storyboard frame or reference photo
MAX_IMAGE_SIDE = 20000
MAX_IMAGE_PIXELS = 100_000_000             # 100 MP: 300 MB once decoded to RGB
EXIF_ORIENTATION = 0x0112


class ImageFileError(InputError):
    """An image file that cannot be used; `reason` says why without the path."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"image {path}: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class ImageHeader:
    """What an image file declares. width/height are as displayed: EXIF orientations 5-8 (a phone
    held upright) swap the stored width and height."""

    path: Path
    format: str
    width: int
    height: int
    orientation: int = 1
    bytes: int = 0


def is_image_name(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def probe_image(path: str | os.PathLike) -> ImageHeader:
    """Read an image's header and check it against the limits, decoding no pixel.

    InputError naming the file when it is missing, not a regular file, not one of the formats
    (by suffix and by content), larger than MAX_IMAGE_BYTES, or declares more than MAX_IMAGE_SIDE
    per side or MAX_IMAGE_PIXELS in all (a decompression bomb).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not is_image_name(path):
        raise ImageFileError(path, f"not an image file ({', '.join(IMAGE_SUFFIXES)})")
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageFileError(path, "not found") from None
    except OSError as exc:
        raise ImageFileError(path, f"cannot be read: {exc.strerror}") from None
    except ValueError:  # a NUL character: no file system has such a name
        raise ImageFileError(path, "is not a valid file name (it contains a NUL character)") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageFileError(path, "not a regular file")
    if st.st_size > MAX_IMAGE_BYTES:
        raise ImageFileError(path, f"{st.st_size / 2**20:.0f} MB; at most {MAX_IMAGE_BYTES >> 20} MB is read")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # reads the header only
                fmt, (w, h) = im.format or "?", im.size
                orientation = 1
                if fmt == "JPEG" or fmt == "WEBP":  # their EXIF lies in the header
                    try:
                        orientation = int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
                    except Exception:  # a damaged EXIF block is no orientation, not a damaged image
                        orientation = 1
    except Image.DecompressionBombError as exc:
        import re

        n = re.search(r"\((\d+) pixels\)", str(exc))
        many = f"{int(n.group(1)):,} pixels" if n else "too many pixels"
        raise ImageFileError(path, f"declares {many} (a decompression bomb?); at most "
                                   f"{MAX_IMAGE_PIXELS // 1_000_000} MP are read") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageFileError(path, "cannot decode: damaged, or not an image") from None
    if fmt not in FORMATS:
        raise ImageFileError(path, f"{fmt}, not one of PNG, JPEG, WebP, BMP")
    if orientation not in range(1, 9):
        orientation = 1
    if w <= 0 or h <= 0 or max(w, h) > MAX_IMAGE_SIDE or w * h > MAX_IMAGE_PIXELS:
        raise ImageFileError(path, f"declares {w}x{h} pixels; at most {MAX_IMAGE_SIDE} per side and "
                                   f"{MAX_IMAGE_PIXELS // 1_000_000} MP in all are read")
    if orientation >= 5:
        w, h = h, w
    return ImageHeader(path, fmt, w, h, orientation, st.st_size)


def check_image(path: str | os.PathLike) -> ImageHeader:
    """probe_image, and the file is whole: a PNG's chunks to IEND with their CRCs, a JPEG's end
    marker, a WebP's or BMP's declared length. Cheap next to decoding, so validation can find
    every damaged image of a shot list at once. InputError naming the file otherwise."""
    header = probe_image(path)
    if not _whole(header):
        raise ImageFileError(header.path, f"truncated or damaged (its {header.format} data ends early)")
    return header


def _whole(h: ImageHeader) -> bool:
    from PIL import Image

    if h.format == "PNG":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(h.path) as im:
                    im.verify()  # every chunk's CRC, up to IEND; decodes nothing
        except Exception:
            return False
        return True
    with open(h.path, "rb") as fh:
        head = fh.read(12)
        if h.format == "JPEG":
            fh.seek(max(0, h.bytes - (64 << 10)))
            return b"\xff\xd9" in fh.read()  # the end-of-image marker (trailers after it allowed)
    if h.format == "WEBP":
        return h.bytes >= 8 + int.from_bytes(head[4:8], "little")
    if h.format == "BMP":
        return h.bytes >= int.from_bytes(head[2:6], "little")
    return True
