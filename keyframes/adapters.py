"""Where a keyframe preset's weights are, and the IP-Adapters that condition generation.

`resolve_component` finds one component of a preset (base, faceid, style, controlnet_<kind>,
annotators) through `keyrender.core.weights` (the environment override, local folders, the hub cache,
the offline switch) and raises the missing-weights message in the preset's terms.
`load_ip_adapters` loads FaceID (and the style adapter) through diffusers' own `load_ip_adapter`;
`region_masks` routes each character's identity to its part of the frame.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..core.errors import ModelNotFoundError
from ..core.weights import load_errors, looks_local, missing_weights, resolve
from .presets import ENV_VARS, Preset

_TINY_HINT = "or run with --preset tiny for a smoke run without weights"


def _what(preset: Preset, component: str) -> str:
    return f"keyframe preset {preset.name!r}: {component}"


def missing(preset: Preset, component: str, location: str, where: str) -> ModelNotFoundError:
    """The missing-weights error for one component of a preset (keyrender.core.weights.missing_weights)."""
    return missing_weights(_what(preset, component), location, preset.spec(component), where,
                           ENV_VARS.get(component), "" if preset.tiny else _TINY_HINT)


def resolve_component(preset: Preset, component: str, offline: bool, cache_dir: str,
                      probe_file: str | None = None) -> str:
    """The location to load `component` of `preset` from (keyrender.core.weights.resolve): a local
    folder or file, or a repo id in the cache (offline) or to download (online)."""
    location = preset.source(component)
    if location is None:
        raise ModelNotFoundError(f"keyframe preset {preset.name!r} has no {component} model")
    return resolve(_what(preset, component), location, preset.spec(component), offline=offline,
                   cache_dir=cache_dir, probe_file=probe_file, env_var=ENV_VARS.get(component),
                   alternative="" if preset.tiny else _TINY_HINT)


@contextlib.contextmanager
def component_errors(preset: Preset, component: str, location: str) -> Iterator[None]:
    """A loader's missing-file errors as the preset's missing-weights message."""
    with load_errors(_what(preset, component), location, preset.spec(component), ENV_VARS.get(component),
                     "" if preset.tiny else _TINY_HINT):
        yield


def default_regions(n: int) -> list[tuple[float, float, float, float]]:
    """Side by side: character k of n gets the k-th vertical strip of the frame."""
    return [(k / n, 0.0, (k + 1) / n, 1.0) for k in range(n)]


def region_masks(regions, height: int, width: int):
    """IP-Adapter masks for diffusers (IPAdapterMaskProcessor): a (1, n, H, W) tensor."""
    from diffusers.image_processor import IPAdapterMaskProcessor
    from PIL import Image

    pics = []
    for x0, y0, x1, y1 in regions:
        m = np.zeros((height, width), np.uint8)
        c0, c1 = int(round(x0 * width)), int(round(x1 * width))
        r0, r1 = int(round(y0 * height)), int(round(y1 * height))
        m[r0:max(r1, r0 + 1), c0:max(c1, c0 + 1)] = 255
        pics.append(Image.fromarray(m, mode="L"))
    masks = IPAdapterMaskProcessor().preprocess(pics, height=height, width=width)
    return masks.reshape(1, masks.shape[0], masks.shape[-2], masks.shape[-1])


@dataclass(frozen=True)
class AdapterFiles:
    """Where one IP-Adapter is, in the terms of diffusers' load_ip_adapter: a repo id or local
    folder, the subfolder and file name of its weights, and (for a plain IP-Adapter) the folder of
    `source` that holds its CLIP image encoder."""

    source: str
    subfolder: str | None
    weight_name: str
    image_encoder: str | None = None


def load_ip_adapters(pipe, faceid: AdapterFiles, style: AdapterFiles | None = None, **hub_kwargs) -> None:
    """Load FaceID as IP-Adapter 0 and, when given, the style adapter as IP-Adapter 1, with one
    call of diffusers' `load_ip_adapter` (each call replaces the adapters loaded before).

    FaceID stays first so that the LoRA a FaceID checkpoint may carry keeps its adapter name
    (`faceid_0`) and is not applied twice when the style adapter joins. load_ip_adapter looks for
    an image encoder beside the first adapter only, so the style adapter's CLIP image encoder is
    loaded here first, as load_ip_adapter would load it (CLIPVisionModelWithProjection from
    `<source>/<image_encoder>` in the pipeline's dtype), with a CLIPImageProcessor of its input
    size as the feature extractor. The caller re-installs consistent attention afterwards
    (load_ip_adapter replaces every attention processor).
    """
    sources, subfolders, names = [faceid.source], [faceid.subfolder], [faceid.weight_name]
    if style is not None:
        if getattr(pipe, "image_encoder", None) is None and style.image_encoder:
            from diffusers.utils import is_transformers_version
            from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

            dtype_kw = {"dtype": pipe.dtype} if is_transformers_version(">=", "4.56.0") else {"torch_dtype": pipe.dtype}
            encoder = CLIPVisionModelWithProjection.from_pretrained(
                style.source, subfolder=style.image_encoder, cache_dir=hub_kwargs.get("cache_dir"),
                local_files_only=bool(hub_kwargs.get("local_files_only")), **dtype_kw,
            ).to(pipe.device)
            size = int(encoder.config.image_size)
            pipe.register_modules(image_encoder=encoder,
                                  feature_extractor=CLIPImageProcessor(size=size, crop_size=size))
        sources.append(style.source)
        subfolders.append(style.subfolder)
        names.append(style.weight_name)
    pipe.load_ip_adapter(sources, subfolder=subfolders, weight_name=names, image_encoder_folder=None, **hub_kwargs)


def resolve_style(preset: Preset, offline: bool, cache_dir: str) -> AdapterFiles:
    """Where the preset's style IP-Adapter and its image encoder are; ModelNotFoundError (naming
    the `style` component, its size and the `hf download` command) when they are missing.

    KEYRENDER_MODEL_STYLE may name a repo id, a local folder laid out like the repo, or a local
    weight file with its image encoder in an `image_encoder/` folder beside it."""
    spec = preset.spec("style")
    source = preset.source("style")
    if spec is None or source is None:
        raise ModelNotFoundError(f"keyframe preset {preset.name!r} has no style adapter")
    path = Path(source).expanduser()
    if looks_local(source) and path.is_file():
        if not (path.parent / "image_encoder" / "config.json").exists():
            raise missing(preset, "style", str(path),
                          f"complete (no image_encoder/config.json beside it in {path.parent})")
        return AdapterFiles(str(path.parent), None, path.name, "image_encoder")
    weight = f"{spec.subfolder}/{spec.weight_name}" if spec.subfolder else spec.weight_name
    found = resolve_component(preset, "style", offline, cache_dir, probe_file=weight)
    for probe in (f"{spec.image_encoder}/config.json", f"{spec.image_encoder}/model.safetensors"):
        resolve_component(preset, "style", offline, cache_dir, probe_file=probe)
    return AdapterFiles(found, spec.subfolder, spec.weight_name, spec.image_encoder)
