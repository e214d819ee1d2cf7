"""Helpers shared by the tests."""

from __future__ import annotations

import numpy as np


def synthetic_face(seed: int, size: int = 80, blocks: int = 6, noise: int = 60) -> np.ndarray:
    """A "face" for the tiny pack: a seeded colour pattern of `blocks` x `blocks` squares with
    fine noise on top (RGB uint8, size x size). Different seeds are different people."""
    import cv2

    rng = np.random.default_rng(seed)
    base = rng.integers(30, 226, size=(blocks, blocks, 3), dtype=np.uint8)
    face = cv2.resize(base, (size, size), interpolation=cv2.INTER_NEAREST).astype(np.int16)
    fine = np.random.default_rng(10_000 + seed).integers(-noise, noise + 1, size=face.shape)
    return np.clip(face + fine, 0, 255).astype(np.uint8)


def synthetic_frame(faces: list[tuple[int, tuple[int, int]]], size: tuple[int, int] = (256, 256),
                    face_size: int = 80, background: int = 128) -> np.ndarray:
    """An RGB frame (H, W) = size, flat `background`, with synthetic faces pasted at top-left
    positions: faces = [(seed, (x, y)), ...]."""
    h, w = size
    frame = np.full((h, w, 3), background, np.uint8)
    for seed, (x, y) in faces:
        frame[y:y + face_size, x:x + face_size] = synthetic_face(seed, face_size)
    return frame
