"""Requests and comparisons shared by the keyframe tests (test_keyframes*.py)."""

from __future__ import annotations

import numpy as np

from keyrender.keyframes import CharacterCondition, KeyframeRequest


def emb(seed: int) -> np.ndarray:
    """A unit-length 512-d identity embedding, seeded."""
    e = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return e / np.linalg.norm(e)


def request(**kw) -> KeyframeRequest:
    """A three-keyframe, 64x64 request for one character; keywords replace any field."""
    base = dict(
        shot="s1",
        scene="sc1",
        prompts=["a woman walks in the rain", "a woman turns around", "a woman smiles"],
        times=[0.0, 1.0, 2.0],
        negative_prompt="blurry",
        width=64,
        height=64,
        seed=11,
        characters=[CharacterCondition("ana", emb(1))],
    )
    base.update(kw)
    return KeyframeRequest(**base)


def diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images, in grey levels."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
