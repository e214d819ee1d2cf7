"""Regenerate the sample storyboard and cast from scikit-image's `astronaut` photograph.

The photograph (Eileen Collins, NASA) is in the public domain. Crops and zooms of it make camera
moves: the storyboard frames of samples/shotlist.csv. The cast folder holds crops of her face.
Run from the repository root: `python samples/make_samples.py` (needs scikit-image, in the dev extra).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data

HERE = Path(__file__).resolve().parent
W, H = 512, 288  # the sample's frame size (16:9, multiples of 8)


def crop(img: np.ndarray, cx: float, cy: float, width: float) -> np.ndarray:
    """A 16:9 window of `width` source pixels centred at (cx, cy), resized to W x H."""
    height = width * H / W
    x0 = int(round(min(max(cx - width / 2, 0), img.shape[1] - width)))
    y0 = int(round(min(max(cy - height / 2, 0), img.shape[0] - height)))
    window = img[y0:y0 + int(round(height)), x0:x0 + int(round(width))]
    return cv2.resize(window, (W, H), interpolation=cv2.INTER_AREA if width >= W else cv2.INTER_CUBIC)


def save(path: Path, rgb: np.ndarray, quality: int = 92) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 9]
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)


def main() -> None:
    img = data.astronaut()  # 512 x 512 RGB
    board = HERE / "storyboard"
    # shot 1A: slow push in from the whole figure to the face
    for i, (cx, cy, w) in enumerate([(256, 200, 512), (250, 170, 400), (245, 150, 300)]):
        save(board / f"1A_{i}.jpg", crop(img, cx, cy, w))
    # shot 1B: pan from the flag (left) across to the helmet (right), same framing
    for i, cx in enumerate([150, 256, 360]):
        save(board / f"1B_{i}.jpg", crop(img, cx, 180, 300))
    # shot 2A: a close-up that drifts and tilts down slightly
    for i, (cx, cy) in enumerate([(250, 140), (262, 160)]):
        save(board / f"2A_{i}.jpg", crop(img, cx, cy, 260))
    # the cast: crops of her face at a few scales, and a mirror image
    face = (252, 135)
    cast = HERE / "cast" / "eileen"
    for i, size in enumerate((170, 200, 240)):
        x0, y0 = face[0] - size // 2, face[1] - size // 2
        ref = img[max(0, y0):y0 + size, max(0, x0):x0 + size]
        save(cast / f"ref{i}.jpg", cv2.resize(ref, (224, 224), interpolation=cv2.INTER_AREA))
    save(cast / "ref3.jpg", np.ascontiguousarray(cv2.imread(str(cast / "ref1.jpg"))[:, ::-1, ::-1]))


if __name__ == "__main__":
    main()
