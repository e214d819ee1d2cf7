"""What the keyframe stage is asked for, and the KeyframeGenerator protocol.

The shot renderer (shot.keyframe_request) builds a KeyframeRequest per shot from the shot list and
the cast; a generator turns it into the shot's keyframes (RGB uint8 H x W x 3). Generators never decide pass/fail: the refine
loop does, and asks for re-rolls with `attempt=k`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from .presets import ConsistentAttentionOptions

SEED_SPACE = 2**31 - 1


def derive_seed(shot_seed: int, index: int, attempt: int = 0) -> int:
    """The seed of keyframe `index` of a shot at re-roll `attempt`.

    A pure function of its arguments, so a rerun is reproducible and re-rolling one keyframe
    does not move the seeds of the others. Attempt 0 of keyframe 0 is the shot seed itself.
    """
    if index == 0 and attempt == 0:
        return int(shot_seed) % SEED_SPACE
    digest = hashlib.sha256(f"{int(shot_seed)}:{int(index)}:{int(attempt)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % SEED_SPACE


@dataclass(frozen=True)
class CharacterCondition:
    """One character to condition a shot on.

    embedding: (D,) float32 L2-normalised face embedding (the identity's centroid, from the same
    recognizer family the checks use). region: (x0, y0, x1, y1) in [0, 1] of the frame where this
    character should be, or None for the whole frame.
    """

    name: str
    embedding: np.ndarray = field(repr=False)
    region: tuple[float, float, float, float] | None = None
    reference_embeddings: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class StyleAnchor:
    """What locks the look of a scene: its style text, an optional style reference image, and
    (for every shot after the scene's first) the scene's first keyframe."""

    scene: str
    text: str = ""
    image: np.ndarray | None = field(default=None, repr=False)
    anchor_keyframe: np.ndarray | None = field(default=None, repr=False)


@dataclass
class KeyframeRequest:
    """Everything that decides a shot's keyframes. One entry of `prompts`/`times` per keyframe."""

    shot: str
    scene: str
    prompts: list[str]
    times: list[float]
    negative_prompt: str
    width: int
    height: int
    seed: int
    characters: list[CharacterCondition] = field(default_factory=list)
    identity_strength: float = 0.7
    style: StyleAnchor | None = None
    control_image: np.ndarray | None = field(default=None, repr=False)
    control_type: str | None = None
    # keyframes given by the user (storyboard) or kept from an earlier attempt: index -> image.
    # A generator uses them as context for joint attention and never replaces them.
    fixed: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    # joint attention across the keyframes of this call; None: the generator's defaults (its
    # preset's). Per request, so that a loaded generator shared by runs is never reconfigured.
    consistent: ConsistentAttentionOptions | None = None

    @property
    def count(self) -> int:
        return len(self.prompts)

    def seed_for(self, index: int, attempt: int = 0) -> int:
        """The seed keyframe `index` is drawn with at re-roll `attempt` (derive_seed of this
        request's shot seed): what the generator uses and what the manifest records."""
        return derive_seed(self.seed, index, attempt)


@runtime_checkable
class KeyframeGenerator(Protocol):
    """Generates a shot's keyframes jointly: everything the pipeline and the refine loop call.

    `name` identifies the models and their revisions (it goes into cache keys). Per-call options
    travel in the request (`consistent`, `identity_strength`, `style`, `fixed`): a generator may
    be shared by runs and is never reconfigured by one.
    """

    name: str

    def generate(
        self,
        request: KeyframeRequest,
        indices: Sequence[int] | None = None,
        attempts: Mapping[int, int] | None = None,
        identity_strength: float | None = None,
    ) -> dict[int, np.ndarray]:
        """Keyframes `indices` (default: every index not in request.fixed), in one joint call.

        attempts[i] (default 0) picks the re-roll: the seed is derive_seed(request.seed, i, k).
        Returns index -> RGB uint8 image of request.height x request.width.
        """
        ...

    def regenerate(
        self,
        request: KeyframeRequest,
        index: int,
        init_image: np.ndarray,
        prompt: str,
        *,
        strength: float,
        attempt: int,
        identity_strength: float | None = None,
    ) -> np.ndarray:
        """Image-to-image repair of one frame (an in-between promoted to keyframe), with the
        shot's identity conditioning, at denoise `strength` in (0, 1]."""
        ...

    def prompt_warnings(self, request: KeyframeRequest, indices: Sequence[int] | None = None) -> list[str]:
        """One line per prompt of keyframes `indices` (default: all) that its text encoder would
        cut, naming the words it drops; empty when every prompt fits (or the model reads all)."""
        ...
