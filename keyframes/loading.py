"""Loading a keyframe preset's models, once per run: `load_generator` and its small cache.

The real presets load with diffusers' `from_pretrained` and `load_ip_adapter` from a hub id in
the Hugging Face cache or a local folder (`adapters.resolve_component`, `keyrender.core.weights`);
`tiny` builds the same classes from tiny configs in-process (`keyframes.tiny`). The ControlNets,
the annotators and the style adapter load on first use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Callable

import torch

from ..core.errors import InputError, ModelNotFoundError
from ..core.weights import hub_cache_dir, looks_local, offline as offline_switch, quiet_hf
from .adapters import AdapterFiles, component_errors, load_ip_adapters, resolve_component, resolve_style
from .generator import DiffusersKeyframeGenerator
from .presets import Preset, get_preset

log = logging.getLogger(__name__)

_DTYPES = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float32": torch.float32, "fp32": torch.float32}


def _device_dtype(preset: Preset, device: str | None, dtype) -> tuple[str, torch.dtype]:
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dt = _DTYPES[preset.dtype] if dev.startswith("cuda") else torch.float32
    elif isinstance(dtype, torch.dtype):
        dt = dtype
    else:
        try:
            dt = _DTYPES[str(dtype).lower()]
        except KeyError:
            raise InputError(f"unknown dtype {dtype!r}; use one of {', '.join(sorted(_DTYPES))}") from None
    return dev, dt


@contextlib.contextmanager
def _quiet_transformers():
    """No progress bars for the tiny image encoder that transformers saves and loads in-process."""
    from transformers.utils import logging as tlog

    was = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            tlog.enable_progress_bar()


def _load_tiny(preset: Preset, device: str, dtype, tiny_dir) -> DiffusersKeyframeGenerator:
    from diffusers import StableDiffusionXLPipeline

    from .tiny import (
        TINY_ID_EMBED_DIM,
        TINY_VERSION,
        default_tiny_dir,
        tiny_controlnet,
        tiny_sdxl_components,
        write_tiny_faceid,
        write_tiny_style,
    )

    folder = Path(tiny_dir) if tiny_dir else default_tiny_dir()
    comps = tiny_sdxl_components(folder)
    controlnet = tiny_controlnet(comps["unet"])  # before the IP-Adapter changes the UNet's config
    pipe = StableDiffusionXLPipeline(**comps, add_watermarker=False)
    faceid_dir, weight = write_tiny_faceid(pipe.unet, folder)
    faceid = AdapterFiles(str(faceid_dir), None, weight)
    # the real loader path: diffusers reads the file, converts the FaceID keys, sets processors
    with quiet_hf():
        load_ip_adapters(pipe, faceid)
        pipe.to(device)
        controlnet.to(device)
        if dtype != torch.float32:
            pipe.to(dtype=dtype)
            controlnet.to(dtype=dtype)
    pipe.set_progress_bar_config(disable=True)

    def controlnets(kind):
        return controlnet

    def annotators(kind):
        raise ModelNotFoundError(
            f"keyframe preset 'tiny': the {kind} preprocessor needs annotator weights (lllyasviel/Annotators), "
            "which the tiny preset does not load; use control type canny or none with --preset tiny"
        )

    def style(p):
        # a tiny plain IP-Adapter + CLIP image encoder written to disk as h94/IP-Adapter lays
        # them out, loaded with FaceID by the same load_ip_adapters as the real presets
        with quiet_hf(), _quiet_transformers():
            style_dir, style_weight = write_tiny_style(p.unet, folder)
            load_ip_adapters(p, faceid, AdapterFiles(str(style_dir), None, style_weight, "image_encoder"))

    return DiffusersKeyframeGenerator(
        preset, pipe, name=f"tiny:{TINY_VERSION}", device=device, dtype=dtype, id_dim=TINY_ID_EMBED_DIM,
        controlnet_loader=controlnets, annotator_loader=annotators, style_loader=style,
    )


def _load_real(preset: Preset, device: str, dtype, offline: bool, cache_dir: str, cpu_offload: bool,
               vae_tiling: bool) -> DiffusersKeyframeGenerator:
    from diffusers import ControlNetModel, StableDiffusionPipeline, StableDiffusionXLPipeline

    xl = preset.family == "sdxl"
    cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
    base = resolve_component(preset, "base", offline, cache_dir, probe_file="model_index.json")
    faceid_spec = preset.spec("faceid")
    faceid_src = preset.source("faceid")
    faceid_name = faceid_spec.weight_name if faceid_spec else None
    faceid_sub = faceid_spec.subfolder if faceid_spec else None
    if faceid_src and looks_local(faceid_src) and Path(faceid_src).expanduser().is_file():
        p = Path(faceid_src).expanduser()
        faceid_src, faceid_name, faceid_sub = str(p.parent), p.name, None
    else:
        probe = f"{faceid_sub}/{faceid_name}" if faceid_sub else faceid_name
        faceid_src = resolve_component(preset, "faceid", offline, cache_dir, probe_file=probe)

    common = dict(local_files_only=offline, cache_dir=cache_dir)
    log.info("loading keyframe model %s (%s) on %s", base, preset.name, device)
    extra = {} if xl else {"safety_checker": None, "requires_safety_checker": False}
    with component_errors(preset, "base", base):
        try:
            pipe = cls.from_pretrained(
                base, torch_dtype=dtype, variant="fp16" if dtype == torch.float16 else None, use_safetensors=True,
                **common, **extra,
            )
        except (OSError, ValueError):
            pipe = cls.from_pretrained(base, torch_dtype=dtype, **common, **extra)
    faceid = AdapterFiles(faceid_src, faceid_sub, faceid_name)

    def controlnets(kind):
        comp = f"controlnet_{kind}"
        src = resolve_component(preset, comp, offline, cache_dir, probe_file="config.json")
        with component_errors(preset, comp, src):
            return ControlNetModel.from_pretrained(src, torch_dtype=dtype, **common)

    def annotators(kind):
        from .control import load_annotator

        probe = "body_pose_model.pth" if kind == "openpose" else "dpt_hybrid-midas-501f0c75.pt"
        src = resolve_component(preset, "annotators", offline, cache_dir, probe_file=probe)
        return load_annotator(kind, src, cache_dir, offline)

    def style(_pipe):
        # only on the first style image: a run without one never needs these weights
        return resolve_style(preset, offline, cache_dir)

    name = f"{preset.name}:{base}+{faceid_src}/{faceid_name}"
    if preset.style is not None:
        name += f"+style:{preset.source('style')}"
    return generator_from_pipeline(
        preset, pipe, faceid, name=name, device=device, dtype=dtype,
        style=style if preset.style is not None else None, controlnet_loader=controlnets,
        annotator_loader=annotators, cpu_offload=cpu_offload, vae_tiling=vae_tiling, hub_kwargs=common)


def generator_from_pipeline(preset: Preset, pipe, faceid: AdapterFiles, *, name: str, device: str, dtype,
                            style: Callable[[object], AdapterFiles] | None = None,
                            controlnet_loader: Callable[[str], object] | None = None,
                            annotator_loader: Callable[[str], object] | None = None,
                            cpu_offload: bool = False, vae_tiling: bool = False,
                            hub_kwargs: dict | None = None) -> DiffusersKeyframeGenerator:
    """The generator over an assembled SDXL / SD1.5 pipeline (its components in `dtype`): the
    second half of loading a real preset, after `from_pretrained`.

    FaceID is loaded as IP-Adapter 0 through `load_ip_adapters` (diffusers' `load_ip_adapter`:
    the file's projection, attention processors and LoRA); then the pipeline goes to `device`,
    or, with `cpu_offload` on CUDA, under diffusers' model CPU offload; `vae_tiling` decodes in
    tiles. `style(pipe)` says where the style IP-Adapter is (AdapterFiles); it is called on the
    first style image only, and the adapter joins FaceID then (a pipeline that already holds an
    `image_encoder` keeps it). `controlnet_loader(kind)` returns a ControlNetModel on first use
    of that kind (placed here). `hub_kwargs` go to every hub load (local_files_only, cache_dir).
    `benchmarks/fullsize.py` builds the real classes at their published configs and comes in here.
    """
    hub_kwargs = dict(hub_kwargs or {})
    offload = bool(cpu_offload) and str(device).startswith("cuda")
    with component_errors(preset, "faceid", faceid.source), quiet_hf():
        load_ip_adapters(pipe, faceid, **hub_kwargs)
    if offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if vae_tiling:
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    id_dim = pipe.unet.encoder_hid_proj.image_projection_layers[0].ff.net[0].proj.in_features

    def controlnets(kind):
        net = controlnet_loader(kind)
        # under offload the derived ControlNet pipeline is offloaded with it (generator._control_pipe)
        return net if offload else net.to(device)

    def style_loader(p):
        files = style(p)
        with component_errors(preset, "style", files.source), quiet_hf():
            load_ip_adapters(p, faceid, files, **hub_kwargs)
        if offload:
            p.enable_model_cpu_offload(device=device)  # hooks for the new image encoder too

    return DiffusersKeyframeGenerator(preset, pipe, name=name, device=device, dtype=dtype, id_dim=id_dim,
                                      controlnet_loader=controlnets if controlnet_loader is not None else None,
                                      annotator_loader=annotator_loader,
                                      style_loader=style_loader if style is not None else None,
                                      cpu_offload=offload)


_CACHE: dict[tuple, DiffusersKeyframeGenerator] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 2


def load_generator(
    preset: str | Preset | None = None,
    device: str | None = None,
    dtype=None,
    offline: bool | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    cpu_offload: bool = False,
    vae_tiling: bool = False,
    tiny_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> DiffusersKeyframeGenerator:
    """Load (once per run: a small cache) the KeyframeGenerator of `preset` (default sdxl).

    offline (default: $KEYRENDER_OFFLINE / $HF_HUB_OFFLINE, see keyrender.core.weights) ->
    local_files_only; the components' locations can be overridden by KEYRENDER_MODEL_* variables.
    Missing weights raise ModelNotFoundError naming the model, its size and the command that
    fetches it. A cached generator is shared: per-call options go in the request
    (KeyframeRequest.consistent), never into the generator.
    """
    p = get_preset(preset)
    dev, dt = _device_dtype(p, device, dtype)
    off = offline_switch(offline)
    cache = hub_cache_dir(cache_dir)
    sources = tuple((c, p.source(c)) for c, _ in p.downloads())
    key = (repr(p), dev, str(dt), off, cache, cpu_offload, vae_tiling, sources, str(tiny_dir))
    with _CACHE_LOCK:
        if use_cache and key in _CACHE:
            gen = _CACHE[key]
        else:
            if p.tiny:
                gen = _load_tiny(p, dev, dt, tiny_dir)
            else:
                gen = _load_real(p, dev, dt, off, cache, cpu_offload, vae_tiling)
            if use_cache:
                while len(_CACHE) >= _CACHE_SIZE:
                    _CACHE.pop(next(iter(_CACHE)))
                _CACHE[key] = gen
    return gen


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
