"""Strips of frames for the README: one keyframe gap that the flow interpolator bridges, one
where motion still defeats it, on real footage (OpenCV's vtest.avi, `make bench-data`).

Each strip is a row per pair: keyframe A | cross-fade | keyrender flow | the real frame | keyframe B,
all at the middle of the gap (t = 0.5), cropped around where A and B differ most, with the
PSNR of each in-between against the real frame printed underneath.

    python benchmarks/strip.py             # writes docs/interp-success.png, docs/interp-failure.png
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

# the benchmark module first: run from a checkout, it is what makes `keyrender` importable
from interpolation import EXTRA, REPO, decode_distinct, psnr

from keyrender.interpolate import inbetween  # noqa: E402
from keyrender.interpolate.flow import FlowInterpolator, cross_fade  # noqa: E402

# (first keyframe, gap): frames of vtest.avi (10 fps)
SUCCESS = (0, 8)
FAILURE = (96, 24)
CROP_W, CROP_H = 256, 192


def _crop_box(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    diff = cv2.blur(np.abs(a.astype(np.int16) - b.astype(np.int16)).sum(2).astype(np.float32), (CROP_W // 2, CROP_H // 2))
    y, x = np.unravel_index(int(np.argmax(diff)), diff.shape)
    h, w = a.shape[:2]
    return int(np.clip(x - CROP_W // 2, 0, w - CROP_W)), int(np.clip(y - CROP_H // 2, 0, h - CROP_H))


def strip(frames: list[np.ndarray], first: int, gap: int) -> np.ndarray:
    a, b = frames[first], frames[first + gap]
    truth = frames[first + gap // 2]
    ours = list(inbetween(a, b, [0.5], backend=FlowInterpolator()))[0]
    fade = cross_fade(a, b, 0.5)
    x0, y0 = _crop_box(a, b)
    tiles = []
    for name, img in ((f"A (frame {first})", a), ("cross-fade", fade), ("keyrender flow", ours),
                      (f"real frame {first + gap // 2}", truth), (f"B (frame {first + gap})", b)):
        tile = np.ascontiguousarray(img[y0 : y0 + CROP_H, x0 : x0 + CROP_W])
        label = name if img is a or img is b or img is truth else f"{name} {psnr(img, truth):.1f} dB"
        band = np.full((22, CROP_W, 3), 255, np.uint8)
        cv2.putText(band, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([tile, band]))
        tiles.append(np.full((CROP_H + 22, 4, 3), 255, np.uint8))
    return np.hstack(tiles[:-1])


def main() -> int:
    video = next((p for p in EXTRA if p.is_file()), None)
    if video is None:
        print("vtest.avi not found: make bench-data", file=sys.stderr)
        return 2
    frames, _ = decode_distinct(video, max(SUCCESS[0] + SUCCESS[1], FAILURE[0] + FAILURE[1]) + 1)
    out = REPO / "docs"
    for name, (first, gap) in (("interp-success.png", SUCCESS), ("interp-failure.png", FAILURE)):
        img = strip(frames, first, gap)
        cv2.imwrite(str(out / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"{out / name}: vtest.avi frames {first}..{first + gap} (gap {gap}), {img.shape[1]}x{img.shape[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
