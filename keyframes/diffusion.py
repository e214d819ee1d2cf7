"""The diffusers-backed KeyframeGenerator: SDXL / SD1.5 + IP-Adapter FaceID + a style IP-Adapter +
consistent attention.

One batched call per shot (`generate`):
  1. check the request (sizes, prompts, embeddings) -> InputError naming the shot
  2. rows: the keyframes asked for, then context rows (kept keyframes of `request.fixed`, the
     scene's anchor keyframe, the style reference image) whose tokens the others attend to
  3. adapters: IP-Adapter 0 is FaceID (embeddings per character, zeros for the uncond half, masks
     that route each character to its region, the per-shot identity strength); IP-Adapter 1 is the
     style adapter (the scene's style image through its CLIP image encoder, at the preset's
     style_strength; scale 0 where the scene has none). The style adapter loads on the first
     request with a style image: a run without one never needs its weights.
  4. latents: per-keyframe noise from derive_seed(seed, index, attempt); context rows are their
     VAE latents noised to the current timestep at every step (callback_on_step_end)
  5. denoise with consistent self-attention shared within each CFG half, decode, return uint8.

`regenerate` (the repair loop's image-to-image) uses the same context rows and adapters.
Models load once (`load_generator` keeps a small cache keyed by preset, device, dtype, sources).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from ..errors import InputError, ModelNotFoundError
from ..hflog import quiet_hf as _quiet_diffusers
from .attention import ConsistentAttentionState, install_consistent_attention, uninstall_consistent_attention
from .base import KeyframeRequest, derive_seed
from .presets import ENV_VARS, ConsistentAttentionOptions, Preset, WeightSpec, get_preset

log = logging.getLogger(__name__)

_DTYPES = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float32": torch.float32, "fp32": torch.float32}


# --------------------------------------------------------------------------------------------
# where weights are


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def resolve_offline(offline: bool | None) -> bool:
    if offline is not None:
        return bool(offline)
    return _env_true("HF_HUB_OFFLINE") or _env_true("KEYRENDER_OFFLINE")


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> str:
    """The Hugging Face hub cache, read from the environment at call time (not import time)."""
    if cache_dir:
        return str(cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home, "hub")


def _looks_local(source: str) -> bool:
    return os.path.isabs(source) or source.startswith((".", "~")) or os.path.exists(source)


def _missing(preset: Preset, component: str, spec: WeightSpec | None, source: str, where: str) -> ModelNotFoundError:
    env = ENV_VARS.get(component, "")
    size = f" ({spec.size})" if spec and spec.size else ""
    fetch = ""
    if spec is not None and not _looks_local(source):
        fetch = f" Fetch it with: {replace(spec, repo_id=source).fetch_command()}."
    elif spec is not None:
        fetch = f" It is {spec.repo_id}{size}: {spec.fetch_command()} --local-dir {source}."
    return ModelNotFoundError(
        f"keyframe preset {preset.name!r}: {component} weights {source!r}{size} not found {where}."
        f"{fetch} Or set {env} to a local folder holding them"
        + (", or run with --preset tiny for a smoke run without weights." if preset.name != "tiny" else ".")
    )


def resolve_weights(
    preset: Preset, component: str, offline: bool, cache_dir: str, probe_file: str | None = None
) -> str:
    """The location to load `component` from: a local folder/file, or a repo id that is in the
    cache (offline) or may be downloaded (online). Missing weights -> ModelNotFoundError, with no
    network access when offline."""
    spec = preset.spec(component)
    source = preset.source(component)
    if source is None:
        raise ModelNotFoundError(f"keyframe preset {preset.name!r} has no {component} model")
    if _looks_local(source):
        path = Path(source).expanduser()
        if not path.exists():
            raise _missing(preset, component, spec, str(path), "(no such file or folder)")
        if path.is_dir() and probe_file and not (path / probe_file).exists():
            raise _missing(preset, component, spec, str(path), f"(the folder has no {probe_file})")
        return str(path)
    if offline:
        from huggingface_hub import try_to_load_from_cache

        filename = probe_file or "config.json"
        hit = try_to_load_from_cache(source, filename, cache_dir=cache_dir)
        if not isinstance(hit, str):
            raise _missing(preset, component, spec, source, f"in the Hugging Face cache {cache_dir} (offline mode)")
    return source


# --------------------------------------------------------------------------------------------
# helpers


def _to_uint8(images: np.ndarray) -> np.ndarray:
    return (np.clip(images, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _check_image(img, what: str, shot: str) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise InputError(f"shot {shot}: {what} must be an RGB uint8 H x W x 3 image, got {arr.dtype} {arr.shape}")
    return arr


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


# --------------------------------------------------------------------------------------------
# IP-Adapters


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
    if _looks_local(source) and path.is_file():
        if not (path.parent / "image_encoder" / "config.json").exists():
            raise _missing(preset, "style", spec, str(path),
                           f"complete (no image_encoder/config.json beside it in {path.parent})")
        return AdapterFiles(str(path.parent), None, path.name, "image_encoder")
    weight = f"{spec.subfolder}/{spec.weight_name}" if spec.subfolder else spec.weight_name
    found = resolve_weights(preset, "style", offline, cache_dir, probe_file=weight)
    for probe in (f"{spec.image_encoder}/config.json", f"{spec.image_encoder}/model.safetensors"):
        resolve_weights(preset, "style", offline, cache_dir, probe_file=probe)
    return AdapterFiles(found, spec.subfolder, spec.weight_name, spec.image_encoder)


# --------------------------------------------------------------------------------------------
# the generator


class DiffusersKeyframeGenerator:
    """KeyframeGenerator over a diffusers SDXL / SD1.5 pipeline with IP-Adapter FaceID.

    Build it with `load_generator`. `consistent` (ConsistentAttentionOptions) can be changed
    between calls (`set_consistent(enabled=False)`), and so can `style_strength` (the style
    adapter's scale where a scene has a style image; default: the preset's).
    """

    def __init__(self, preset: Preset, pipe, name: str, device: str, dtype, id_dim: int,
                 controlnet_loader=None, annotator_loader=None, style_loader=None):
        self.preset = preset
        self.pipe = pipe
        self.name = name
        self.device = device
        self.dtype = dtype
        self.id_dim = id_dim
        self.consistent = preset.consistent.check()
        self.style_strength = float(preset.style_strength)
        self.controlnet_strength = 1.0
        # style_loader(pipe) loads FaceID + the style adapter (load_ip_adapters); called on the
        # first request with a style image. None: the preset has no style adapter.
        self._style_loader = style_loader
        self._style_ready = False
        self._style_warned = False
        self._style_zero: torch.Tensor | None = None
        self._state = ConsistentAttentionState()
        install_consistent_attention(pipe.unet, self._state)
        self._controlnet_loader = controlnet_loader
        self._annotator_loader = annotator_loader
        self._controlnets: dict[str, object] = {}
        self._pipes: dict[str, object] = {}
        self._lock = threading.Lock()

    # -- options ---------------------------------------------------------------------------
    def set_consistent(self, **changes) -> ConsistentAttentionOptions:
        """Change the joint-attention options (InputError on a bad value; nothing changes then)."""
        self.consistent = replace(self.consistent, **changes).check()
        return self.consistent

    @property
    def style_loaded(self) -> bool:
        """Whether the style IP-Adapter is loaded (it loads on the first style image)."""
        return self._style_ready

    # -- pipelines sharing the components ----------------------------------------------------
    def _family_pipe(self, kind: str, controlnet=None):
        from diffusers import (
            StableDiffusionControlNetPipeline,
            StableDiffusionImg2ImgPipeline,
            StableDiffusionXLControlNetPipeline,
            StableDiffusionXLImg2ImgPipeline,
        )

        xl = self.preset.family == "sdxl"
        comps = {k: v for k, v in self.pipe.components.items()}
        if kind == "img2img":
            cls = StableDiffusionXLImg2ImgPipeline if xl else StableDiffusionImg2ImgPipeline
            if not xl:
                comps.setdefault("safety_checker", None)
                comps["requires_safety_checker"] = False
        else:
            cls = StableDiffusionXLControlNetPipeline if xl else StableDiffusionControlNetPipeline
            comps["controlnet"] = controlnet
            if not xl:
                comps["requires_safety_checker"] = False
        import inspect

        accepted = set(inspect.signature(cls.__init__).parameters)
        pipe = cls(**{k: v for k, v in comps.items() if k in accepted})
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _control_pipe(self, control_type: str, shot: str):
        if control_type not in self._controlnets:
            if self._controlnet_loader is None:
                raise InputError(f"shot {shot}: preset {self.preset.name!r} has no ControlNet for {control_type!r}")
            self._controlnets[control_type] = self._controlnet_loader(control_type)
        key = f"control:{control_type}"
        if key not in self._pipes:
            self._pipes[key] = self._family_pipe("control", self._controlnets[control_type])
        return self._pipes[key]

    def _img2img_pipe(self):
        if "img2img" not in self._pipes:
            self._pipes["img2img"] = self._family_pipe("img2img")
        return self._pipes["img2img"]

    # -- checks ---------------------------------------------------------------------------------
    def _check(self, request: KeyframeRequest) -> None:
        shot = request.shot
        if request.count == 0:
            raise InputError(f"shot {shot}: no keyframe prompts")
        f = max(8, int(self.pipe.vae_scale_factor))
        if request.width % f or request.height % f or request.width <= 0 or request.height <= 0:
            raise InputError(
                f"shot {shot}: keyframe size {request.width}x{request.height} must be positive multiples of {f}"
            )
        for c in request.characters:
            emb = np.asarray(c.embedding)
            if emb.ndim != 1 or emb.shape[0] != self.id_dim or not np.all(np.isfinite(emb)):
                raise InputError(
                    f"shot {shot}: character {c.name!r} has a face embedding of shape {emb.shape}; the FaceID "
                    f"adapter of preset {self.preset.name!r} takes a finite ({self.id_dim},) ArcFace embedding"
                )
            if c.region is not None:
                x0, y0, x1, y1 = c.region
                if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
                    raise InputError(f"shot {shot}: character {c.name!r} region {c.region} is not inside [0, 1]")
        for k in request.fixed:
            if not 0 <= k < request.count:
                raise InputError(f"shot {shot}: fixed keyframe index {k} outside 0..{request.count - 1}")

    # -- conditioning --------------------------------------------------------------------------
    def _identity(self, request: KeyframeRequest, rows: int, cfg: bool, strength: float):
        chars = request.characters
        if chars:
            embs = np.stack([np.asarray(c.embedding, np.float32) for c in chars])
            embs = embs / np.maximum(np.linalg.norm(embs, axis=1, keepdims=True), 1e-8)
        else:
            embs = np.zeros((1, self.id_dim), np.float32)
            strength = 0.0
        pos = torch.from_numpy(embs)[None].repeat(rows, 1, 1)
        embeds = torch.cat([torch.zeros_like(pos), pos]) if cfg else pos
        embeds = embeds.to(self.device, self.dtype)
        masks = None
        if len(chars) > 1 or (chars and chars[0].region is not None):
            defaults = default_regions(len(chars))
            regions = [c.region if c.region is not None else defaults[k] for k, c in enumerate(chars)]
            masks = [region_masks(regions, request.height, request.width).to(self.device)]
        return [embeds], masks, float(strength)

    def _ensure_style(self) -> bool:
        """Load the style adapter (FaceID is loaded again with it, as adapter 0) unless it is
        loaded; False when the preset has none. Called with the lock held."""
        if self._style_ready:
            return True
        if self._style_loader is None:
            if not self._style_warned:
                log.warning("keyframe preset %r has no style adapter: a style image is used as attention "
                            "context only", self.preset.name)
                self._style_warned = True
            return False
        unet = self.pipe.unet
        uninstall_consistent_attention(unet)
        try:
            self._style_loader(self.pipe)
            self._style_ready = True
        finally:
            install_consistent_attention(unet, self._state)
            self._pipes.clear()  # the img2img / ControlNet pipelines are rebuilt with the image encoder
        return True

    def _style(self, request: KeyframeRequest, rows: int, cfg: bool, strength: float):
        """([embeds of IP-Adapter 1], [its scale]), or ([], []) while no style adapter is loaded."""
        image = request.style.image if request.style is not None else None
        if image is not None:
            image = _check_image(image, "the scene's style image", request.shot)
            if strength != 0.0:
                self._ensure_style()
        if not self._style_ready:
            return [], []
        from diffusers.models.embeddings import ImageProjection
        from PIL import Image

        pipe = self.pipe
        layer = pipe.unet.encoder_hid_proj.image_projection_layers[1]
        hidden = not isinstance(layer, ImageProjection)  # IP-Adapter Plus takes hidden states
        device = pipe._execution_device
        with torch.inference_mode():
            if image is None or strength == 0.0:
                # the adapter is skipped at scale 0; its embeds only need the right shape
                if self._style_zero is None:
                    if hidden:
                        size = int(pipe.image_encoder.config.image_size)
                        pos, _ = pipe.encode_image(torch.zeros(1, 3, size, size), device, 1, True)
                        self._style_zero = torch.zeros_like(pos)
                    else:
                        self._style_zero = torch.zeros(1, layer.image_embeds.in_features)
                pos = neg = self._style_zero
                strength = 0.0
            else:
                pos, neg = pipe.encode_image(Image.fromarray(image), device, 1, hidden)
        ones = [1] * pos.dim()
        pos, neg = pos[None].repeat(rows, *ones), neg[None].repeat(rows, *ones)
        embeds = torch.cat([neg, pos]) if cfg else pos
        return [embeds.to(self.device, self.dtype)], [float(strength)]

    def _adapters(self, request: KeyframeRequest, rows: int, cfg: bool, identity_strength: float,
                  style_strength: float):
        """(ip_adapter_image_embeds, ip_adapter_masks or None, scales): one entry per loaded
        IP-Adapter (FaceID, then style)."""
        embeds, masks, ids = self._identity(request, rows, cfg, identity_strength)
        style_embeds, style_scales = self._style(request, rows, cfg, style_strength)
        if masks is not None:
            masks = masks + [None] * len(style_embeds)
        return embeds + style_embeds, masks, [ids] + style_scales

    def _set_scales(self, pipe, scales: list[float]) -> None:
        pipe.set_ip_adapter_scale(scales if len(scales) > 1 else scales[0])

    def _context(self, request: KeyframeRequest, exclude) -> list[tuple[np.ndarray, str]]:
        """Context rows for joint attention: kept keyframes (request.fixed, minus `exclude`), the
        scene's anchor keyframe and its style image, each with its prompt. Empty when joint
        attention is off."""
        opts = self.consistent
        context: list[tuple[np.ndarray, str]] = []
        if not opts.enabled:
            return context
        for k in sorted(request.fixed):
            if k not in exclude:
                img = _check_image(request.fixed[k], f"fixed keyframe {k}", request.shot)
                context.append((img, self._prompts(request, [request.prompts[k]])[0]))
        style = request.style
        if opts.anchor and style is not None:
            style_prompt = self._prompts(request, [""])[0] or request.prompts[0]
            if style.anchor_keyframe is not None:
                context.append((_check_image(style.anchor_keyframe, "the scene's anchor keyframe", request.shot),
                                style_prompt))
            if style.image is not None:
                context.append((_check_image(style.image, "the scene's style image", request.shot), style_prompt))
        return context

    def _arm(self, rows: int, steps: int, step: int, seed: int) -> None:
        """Set the shared joint-attention state for one pipeline call."""
        opts, st = self.consistent, self._state
        st.active = bool(opts.enabled)
        st.rows = rows
        st.sampling_rate = float(opts.sampling_rate)
        st.layers = opts.layers
        st.start, st.end = float(opts.start), float(opts.end)
        st.num_steps, st.step, st.calls = steps, step, 0
        st.seed = seed

    def prompt_warnings(self, request: KeyframeRequest, indices: Sequence[int] | None = None) -> list[str]:
        """One line per prompt (of the keyframes `indices`, as sent: with the scene's style text)
        and for the negative prompt, when it is longer than its text encoder reads (CLIP: 77
        tokens), naming the words that are dropped. Empty for the tiny preset, whose tokenizer
        makes a token of every character."""
        if self.preset.tiny:
            return []
        tokenizers = [t for t in (getattr(self.pipe, "tokenizer", None), getattr(self.pipe, "tokenizer_2", None))
                      if t is not None]
        if not tokenizers:
            return []
        tok = tokenizers[0]
        limit = int(min(t.model_max_length for t in tokenizers))
        indices = list(range(request.count)) if indices is None else list(indices)
        texts = [(f"keyframe {i} prompt", p) for i, p in zip(indices, self._prompts(request, [request.prompts[i] for i in indices]))]
        if request.negative_prompt:
            texts.append(("negative prompt", request.negative_prompt))
        out = []
        for what, text in texts:
            with _quiet_diffusers():  # transformers' own "longer than 77" notice
                ids = tok(text, add_special_tokens=True, truncation=False).input_ids
            if len(ids) <= limit:
                continue
            kept = tok.decode(ids[1 : limit - 1], skip_special_tokens=True)
            dropped = text[len(kept):].strip() if text.lower().startswith(kept.lower()) else tok.decode(
                ids[limit - 1 : -1], skip_special_tokens=True)
            out.append(f"shot {request.shot}: {what} is {len(ids)} tokens; the text encoder reads {limit}, "
                       f"so this is ignored: {dropped!r}")
        return out

    def _prompts(self, request: KeyframeRequest, prompts: list[str]) -> list[str]:
        text = request.style.text.strip() if request.style is not None and request.style.text else ""
        if not text:
            return list(prompts)
        return [p if text.lower() in p.lower() else (f"{p}, {text}" if p else text) for p in prompts]

    def _control_image(self, request: KeyframeRequest):
        """(controlnet kind, control map) or None."""
        from .control import parse_control_type, preprocess_control

        parsed = parse_control_type(request.control_type, request.shot)
        if parsed is None or request.control_image is None:
            if parsed is not None:
                raise InputError(f"shot {request.shot}: control type {request.control_type!r} given without a control image")
            return None
        kind, pre = parsed
        img = _check_image(request.control_image, "the control image", request.shot)
        cond = preprocess_control(img, kind, pre, request.width, request.height, self._annotator_loader, request.shot)
        return kind, cond

    def _encode(self, image: np.ndarray, width: int, height: int) -> torch.Tensor:
        """Deterministic VAE latents (mode of the posterior, scaled) of an RGB uint8 image."""
        import cv2

        pipe = self.pipe
        if image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        vae = pipe.vae
        upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
        vdtype = torch.float32 if upcast else vae.dtype
        with torch.no_grad():
            if upcast:
                vae.to(torch.float32)
            try:
                dist = vae.encode(x.to(pipe._execution_device, vdtype)).latent_dist
                lat = dist.mode()
            finally:
                if upcast:
                    vae.to(torch.float16)
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return ((lat - shift) * vae.config.scaling_factor).to(self.dtype)

    # -- the KeyframeGenerator API ----------------------------------------------------------------
    def generate(
        self,
        request: KeyframeRequest,
        indices: Sequence[int] | None = None,
        attempts: Mapping[int, int] | None = None,
        identity_strength: float | None = None,
        *,
        steps: int | None = None,
        guidance: float | None = None,
        callback=None,
        style_strength: float | None = None,
    ) -> dict[int, np.ndarray]:
        """Keyframes `indices` (default: all not in request.fixed) in one joint call; see base.py.

        style_strength: the style adapter's scale (default: self.style_strength, the preset's)."""
        self._check(request)
        attempts = dict(attempts or {})
        if indices is None:
            indices = [i for i in range(request.count) if i not in request.fixed]
        indices = [int(i) for i in indices]
        for i in indices:
            if not 0 <= i < request.count:
                raise InputError(f"shot {request.shot}: keyframe index {i} outside 0..{request.count - 1}")
        if len(set(indices)) != len(indices):
            raise InputError(f"shot {request.shot}: keyframe indices {indices} repeat")
        if not indices:
            return {}
        W, H = request.width, request.height
        steps = int(steps or self.preset.steps)
        guidance = float(self.preset.guidance if guidance is None else guidance)
        cfg = guidance > 1.0
        strength = float(
            identity_strength if identity_strength is not None
            else (request.identity_strength if request.identity_strength is not None else self.preset.identity_strength)
        )

        style_strength = float(self.style_strength if style_strength is None else style_strength)

        # 2. rows: generated keyframes, then context rows (attention context only)
        prompts = self._prompts(request, [request.prompts[i] for i in indices])
        seeds = [derive_seed(request.seed, i, int(attempts.get(i, 0))) for i in indices]
        context = self._context(request, exclude=indices)
        all_prompts = prompts + [p for _, p in context]
        rows = len(all_prompts)

        control = self._control_image(request)
        with self._lock:
            # 3. adapters (may load the style adapter, which rebuilds the derived pipelines)
            embeds, masks, scales = self._adapters(request, rows, cfg, strength, style_strength)
            pipe = self.pipe if control is None else self._control_pipe(control[0], request.shot)
            self._set_scales(pipe, scales)

            # 4. latents
            f = self.pipe.vae_scale_factor
            shape = (1, self.pipe.unet.config.in_channels, H // f, W // f)
            noise = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s)) for s in seeds]
            ctx_noise = [
                torch.randn(shape, generator=torch.Generator("cpu").manual_seed(derive_seed(request.seed, 10_000 + j)))
                for j in range(len(context))
            ]
            sched = pipe.scheduler
            sched.set_timesteps(steps, device=self.device)
            timesteps = sched.timesteps
            ctx_x0 = [self._encode(img, W, H) for img, _ in context]
            ctx_noise_dev = [n.to(self.device, self.dtype) for n in ctx_noise]
            init = [n.to(self.device, self.dtype) for n in noise]
            if hasattr(sched, "_begin_index"):
                sched._begin_index = None
            if hasattr(sched, "_step_index"):
                sched._step_index = None
            for x0, n in zip(ctx_x0, ctx_noise_dev):
                noised = sched.add_noise(x0, n, timesteps[:1])
                init.append(noised / sched.init_noise_sigma)
            latents = torch.cat(init)
            n_gen = len(indices)

            def on_step_end(p, i, t, kw):
                self._state.step = i + 1
                lat = kw["latents"]
                if context and i + 1 < len(timesteps):
                    t_next = timesteps[i + 1 : i + 2]
                    for j, (x0, n) in enumerate(zip(ctx_x0, ctx_noise_dev)):
                        lat[n_gen + j : n_gen + j + 1] = p.scheduler.add_noise(x0, n, t_next).to(lat.dtype)
                if callback is not None:
                    callback(i + 1, steps)
                return {"latents": lat}

            st = self._state
            self._arm(rows, steps, 0, derive_seed(request.seed, 0, 0))

            kwargs = dict(
                prompt=all_prompts,
                negative_prompt=[request.negative_prompt or ""] * rows,
                height=H,
                width=W,
                num_inference_steps=steps,
                guidance_scale=guidance,
                latents=latents,
                generator=[torch.Generator("cpu").manual_seed(s) for s in seeds]
                + [torch.Generator("cpu").manual_seed(derive_seed(request.seed, 10_000 + j)) for j in range(len(context))],
                ip_adapter_image_embeds=embeds,
                callback_on_step_end=on_step_end,
                output_type="np",
            )
            if masks is not None:
                kwargs["cross_attention_kwargs"] = {"ip_adapter_masks": masks}
            if control is not None:
                from PIL import Image

                kwargs["image"] = Image.fromarray(control[1])
                kwargs["controlnet_conditioning_scale"] = float(self.controlnet_strength)
            try:
                # CLIP reads 77 tokens: diffusers and transformers would print their own notices
                # about longer prompts mid-progress; `prompt_warnings` reports them per shot instead
                with torch.inference_mode(), _quiet_diffusers():
                    out = pipe(**kwargs).images
            finally:
                st.active = False
        images = _to_uint8(np.asarray(out)[:n_gen])
        return {i: np.ascontiguousarray(images[k]) for k, i in enumerate(indices)}

    def regenerate(
        self,
        request: KeyframeRequest,
        index: int,
        init_image: np.ndarray,
        prompt: str,
        strength: float,
        attempt: int,
        identity_strength: float | None = None,
        *,
        style_strength: float | None = None,
    ) -> np.ndarray:
        """Image-to-image repair of one frame at denoise `strength`, conditioned like `generate`:
        the shot's identities (FaceID), the scene's style image (style adapter), and, while joint
        attention is on, the kept keyframes of `request.fixed` (the pipeline passes the two
        keyframes around the frame), the scene's anchor keyframe and its style image as
        consistent-attention context rows. With joint attention off (or no context) it is the
        plain single-image img2img call."""
        self._check(request)
        img = _check_image(init_image, "the image to regenerate", request.shot)
        if not 0.0 < float(strength) <= 1.0:
            raise InputError(f"shot {request.shot}: regenerate strength {strength} must be in (0, 1]")
        import cv2
        from PIL import Image

        W, H = request.width, request.height

        def fit(a: np.ndarray) -> np.ndarray:
            return a if a.shape[:2] == (H, W) else cv2.resize(a, (W, H), interpolation=cv2.INTER_AREA)

        img = fit(img)
        guidance = float(self.preset.guidance)
        cfg = guidance > 1.0
        ids = float(
            identity_strength if identity_strength is not None
            else (request.identity_strength if request.identity_strength is not None else self.preset.identity_strength)
        )
        style_strength = float(self.style_strength if style_strength is None else style_strength)
        seed = derive_seed(request.seed, int(index), int(attempt))
        steps = int(self.preset.steps)
        # img2img runs int(steps * strength) steps; make sure at least one runs.
        steps = max(steps, int(np.ceil(1.0 / float(strength))))
        context = [(fit(c), p) for c, p in self._context(request, exclude=())]
        rows = 1 + len(context)
        with self._lock:
            embeds, masks, scales = self._adapters(request, rows, cfg, ids, style_strength)
            pipe = self._img2img_pipe()
            self._set_scales(pipe, scales)
            st = self._state
            st.active = False
            kwargs = dict(
                prompt=self._prompts(request, [prompt])[0],
                negative_prompt=request.negative_prompt or "",
                image=Image.fromarray(img),
                strength=float(strength),
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=torch.Generator("cpu").manual_seed(seed),
                ip_adapter_image_embeds=embeds,
                output_type="np",
            )
            if context:
                # context rows: img2img starts them like the frame (their own seeds); after every
                # step they are reset to their clean latents noised to the next timestep, so they
                # stay what they are while the frame attends to their tokens.
                ctx_seeds = [derive_seed(request.seed, 10_000 + j) for j in range(len(context))]
                f = self.pipe.vae_scale_factor
                shape = (1, self.pipe.unet.config.in_channels, H // f, W // f)
                ctx_x0 = [self._encode(c, W, H) for c, _ in context]
                ctx_noise = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s)).to(self.device, self.dtype)
                             for s in ctx_seeds]
                # the step where img2img starts (as its get_timesteps computes it)
                t_start = steps - min(int(steps * float(strength)), steps)

                def on_step_end(p, i, t, kw):
                    st.step = t_start + i + 1
                    lat = kw["latents"]
                    sched = p.scheduler
                    nxt = t_start + i + 1
                    if nxt < len(sched.timesteps):
                        t_next = sched.timesteps[nxt : nxt + 1]
                        for j, (x0, n) in enumerate(zip(ctx_x0, ctx_noise)):
                            lat[1 + j : 2 + j] = sched.add_noise(x0, n, t_next).to(lat.dtype)
                    return {"latents": lat}

                kwargs.update(
                    prompt=[kwargs["prompt"]] + [p for _, p in context],
                    negative_prompt=[kwargs["negative_prompt"]] * rows,
                    image=[Image.fromarray(img)] + [Image.fromarray(c) for c, _ in context],
                    generator=[torch.Generator("cpu").manual_seed(seed)]
                    + [torch.Generator("cpu").manual_seed(s) for s in ctx_seeds],
                    callback_on_step_end=on_step_end,
                )
                self._arm(rows, steps, t_start, seed)
            if masks is not None:
                kwargs["cross_attention_kwargs"] = {"ip_adapter_masks": masks}
            try:
                with torch.inference_mode(), _quiet_diffusers():
                    out = pipe(**kwargs).images
            finally:
                st.active = False
        return np.ascontiguousarray(_to_uint8(np.asarray(out))[0])


# --------------------------------------------------------------------------------------------
# loading


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


@contextlib.contextmanager
def _load_errors(preset: Preset, component: str, source: str):
    """Turn the hub's / diffusers' missing-file errors into a ModelNotFoundError naming the model."""
    try:
        yield
    except ModelNotFoundError:
        raise
    except (OSError, EnvironmentError) as exc:  # hub errors (LocalEntryNotFound, RepositoryNotFound...) are OSErrors
        spec = preset.spec(component)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _missing(preset, component, spec, source, f"or not loadable ({first[:300]})") from exc


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
    with _quiet_diffusers():
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
        with _quiet_diffusers(), _quiet_transformers():
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
    base = resolve_weights(preset, "base", offline, cache_dir, probe_file="model_index.json")
    faceid_spec = preset.spec("faceid")
    faceid_src = preset.source("faceid")
    faceid_name = faceid_spec.weight_name if faceid_spec else None
    faceid_sub = faceid_spec.subfolder if faceid_spec else None
    if faceid_src and _looks_local(faceid_src) and Path(faceid_src).expanduser().is_file():
        p = Path(faceid_src).expanduser()
        faceid_src, faceid_name, faceid_sub = str(p.parent), p.name, None
    else:
        probe = f"{faceid_sub}/{faceid_name}" if faceid_sub else faceid_name
        faceid_src = resolve_weights(preset, "faceid", offline, cache_dir, probe_file=probe)

    common = dict(local_files_only=offline, cache_dir=cache_dir)
    log.info("loading keyframe model %s (%s) on %s", base, preset.name, device)
    extra = {} if xl else {"safety_checker": None, "requires_safety_checker": False}
    with _load_errors(preset, "base", base):
        try:
            pipe = cls.from_pretrained(
                base, torch_dtype=dtype, variant="fp16" if dtype == torch.float16 else None, use_safetensors=True,
                **common, **extra,
            )
        except (OSError, ValueError):
            pipe = cls.from_pretrained(base, torch_dtype=dtype, **common, **extra)
    faceid = AdapterFiles(faceid_src, faceid_sub, faceid_name)
    with _load_errors(preset, "faceid", faceid_src), _quiet_diffusers():
        load_ip_adapters(pipe, faceid, **common)
    if cpu_offload and device.startswith("cuda"):
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if vae_tiling:
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    id_dim = pipe.unet.encoder_hid_proj.image_projection_layers[0].ff.net[0].proj.in_features

    def controlnets(kind):
        comp = f"controlnet_{kind}"
        src = resolve_weights(preset, comp, offline, cache_dir, probe_file="config.json")
        with _load_errors(preset, comp, src):
            net = ControlNetModel.from_pretrained(src, torch_dtype=dtype, **common)
        return net.to(device) if not cpu_offload else net

    def annotators(kind):
        from .control import load_annotator

        probe = "body_pose_model.pth" if kind == "openpose" else "dpt_hybrid-midas-501f0c75.pt"
        src = resolve_weights(preset, "annotators", offline, cache_dir, probe_file=probe)
        return load_annotator(kind, src, cache_dir, offline)

    def style(p):
        # only on the first style image: a run without one never needs these weights
        files = resolve_style(preset, offline, cache_dir)
        with _load_errors(preset, "style", files.source), _quiet_diffusers():
            load_ip_adapters(p, faceid, files, **common)
        if cpu_offload and device.startswith("cuda"):
            p.enable_model_cpu_offload(device=device)  # hooks for the new image encoder too

    name = f"{preset.name}:{base}+{faceid_src}/{faceid_name}"
    if preset.style is not None:
        name += f"+style:{preset.source('style')}"
    return DiffusersKeyframeGenerator(preset, pipe, name=name, device=device, dtype=dtype, id_dim=id_dim,
                                      controlnet_loader=controlnets, annotator_loader=annotators,
                                      style_loader=style if preset.style is not None else None)


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
    consistent: ConsistentAttentionOptions | None = None,
    tiny_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> DiffusersKeyframeGenerator:
    """Load (once per run: a small cache) the KeyframeGenerator of `preset` (default sdxl).

    offline (default: $HF_HUB_OFFLINE / $KEYRENDER_OFFLINE) -> local_files_only; the components'
    locations can be overridden by KEYRENDER_MODEL_* variables. Missing weights raise
    ModelNotFoundError naming the model, its size and the command that fetches it.
    """
    p = get_preset(preset)
    dev, dt = _device_dtype(p, device, dtype)
    off = resolve_offline(offline)
    cache = resolve_cache_dir(cache_dir)
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
    if consistent is not None:
        gen.consistent = consistent.check()
    return gen


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
