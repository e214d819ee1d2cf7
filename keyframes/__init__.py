"""Keyframe stage: model presets and loading, joint keyframe generation, identity and style
conditioning.

Importing this package (or `keyrender.keyframes.presets`) does not import torch: the dry run reads
the presets. `load_generator` imports diffusers when it is called.

Modules, by job: presets (the registry), base (the request and the KeyframeGenerator protocol),
adapters (where a preset's weights are; IP-Adapter loading), generator (the diffusers-backed
generator), context (joint attention's context rows), loading (load_generator and its cache),
control (ControlNet maps), attention (consistent self-attention), tiny (the in-process tiny model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import KeyframeGenerator

from .presets import (
    CONTROL_TYPES,
    DEFAULT_PRESET,
    ENV_VARS,
    LAYER_GROUPS,
    PRESETS,
    ConsistentAttentionOptions,
    Preset,
    WeightSpec,
    get_preset,
    list_presets,
)


#: the request types load on first use (PEP 562): `keyrender.keyframes.presets` (the CLI's
#: choices, the dry run) imports neither numpy nor torch
_BASE = ("CharacterCondition", "KeyframeGenerator", "KeyframeRequest", "StyleAnchor", "derive_seed")


def __getattr__(name: str) -> Any:
    if name in _BASE:
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module 'keyrender.keyframes' has no attribute {name!r}")


def load_generator(preset=None, device=None, dtype=None, offline=None, **kwargs) -> KeyframeGenerator:
    """Load the KeyframeGenerator of `preset` (default sdxl), once per run; see keyframes.loading."""
    get_preset(preset)  # unknown names fail fast, before torch is imported
    from .loading import load_generator as _load

    return _load(preset, device=device, dtype=dtype, offline=offline, **kwargs)


def clear_generator_cache() -> None:
    from .loading import clear_cache

    clear_cache()


__all__ = [
    "CONTROL_TYPES",
    "DEFAULT_PRESET",
    "ENV_VARS",
    "LAYER_GROUPS",
    "PRESETS",
    "CharacterCondition",
    "ConsistentAttentionOptions",
    "KeyframeGenerator",
    "KeyframeRequest",
    "Preset",
    "StyleAnchor",
    "WeightSpec",
    "clear_generator_cache",
    "derive_seed",
    "get_preset",
    "list_presets",
    "load_generator",
]
