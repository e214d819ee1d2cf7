"""The diffusers-backed KeyframeGenerator: SDXL / SD1.5 + IP-Adapter FaceID + a style IP-Adapter +
consistent attention. Built by `keyframes.loading.load_generator`.

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

`regenerate` (the repair loop's image-to-image) uses the same context rows and adapters. The
joint-attention options are the request's (`KeyframeRequest.consistent`), else the generator's
defaults (the preset's): a cached generator is shared, never reconfigured by a run.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Mapping, Sequence

import numpy as np
import torch

from ..core.errors import InputError, ShotFailedError
from ..core.weights import quiet_hf
from .adapters import default_regions, region_masks
from .attention import ConsistentAttentionState, install_consistent_attention, uninstall_consistent_attention
from .base import KeyframeRequest, derive_seed
from .context import ContextRows, fit
from .presets import ConsistentAttentionOptions, Preset

log = logging.getLogger(__name__)

def _to_uint8(images: np.ndarray) -> np.ndarray:
    return (np.clip(images, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _check_image(img, what: str, shot: str) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise InputError(f"shot {shot}: {what} must be an RGB uint8 H x W x 3 image, got {arr.dtype} {arr.shape}")
    return arr


class DiffusersKeyframeGenerator:
    """KeyframeGenerator over a diffusers SDXL / SD1.5 pipeline with IP-Adapter FaceID.

    Build it with `load_generator`. `consistent` holds the joint-attention defaults (the
    preset's); a call uses `request.consistent` when it is set, so a generator shared by runs is
    never reconfigured. `style_strength` is the style adapter's scale where a scene has a style
    image (default: the preset's; a call may pass its own).
    """

    def __init__(self, preset: Preset, pipe, name: str, device: str, dtype, id_dim: int,
                 controlnet_loader=None, annotator_loader=None, style_loader=None, cpu_offload: bool = False):
        self.preset = preset
        self.pipe = pipe
        self.name = name
        self.device = device
        self.dtype = dtype
        self.id_dim = id_dim
        # `pipe` is under diffusers' model CPU offload: the pipelines derived from it (img2img,
        # ControlNet) are offloaded too, or their new modules (the ControlNet) would stay on the CPU
        self.cpu_offload = bool(cpu_offload)
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
        # a call decodes (and img2img encodes) every row, context rows included: one at a time, as
        # a batch of five at 1024 x 1024 the upcast float32 VAE peaks near 17 GB (docs/fullsize.md)
        pipe.vae.enable_slicing()
        self._controlnet_loader = controlnet_loader
        self._annotator_loader = annotator_loader
        self._controlnets: dict[str, object] = {}
        self._pipes: dict[str, object] = {}
        self._lock = threading.Lock()

    # -- options ---------------------------------------------------------------------------
    def set_consistent(self, **changes) -> ConsistentAttentionOptions:
        """Change this generator's joint-attention defaults (InputError on a bad value; nothing
        changes then). For a generator you own: the pipeline passes per-request options
        (`KeyframeRequest.consistent`) instead, since a loaded generator is shared."""
        self.consistent = replace(self.consistent, **changes).check()
        return self.consistent

    def options(self, request: KeyframeRequest) -> ConsistentAttentionOptions:
        """The joint-attention options of a call: the request's, else this generator's defaults."""
        return self.consistent if request.consistent is None else request.consistent.check()

    def identity_strength(self, request: KeyframeRequest, override: float | None = None) -> float:
        """The FaceID scale of a call: `override`, else the request's, else the preset's."""
        if override is not None:
            return float(override)
        return float(request.identity_strength if request.identity_strength is not None
                     else self.preset.identity_strength)

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
        if self.cpu_offload:
            pipe.enable_model_cpu_offload(device=self.device)
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

    def _context(self, request: KeyframeRequest, exclude, opts: ConsistentAttentionOptions) -> list[tuple[np.ndarray, str]]:
        """Context rows for joint attention: kept keyframes (request.fixed, minus `exclude`), the
        scene's anchor keyframe and its style image, each with its prompt. Empty when joint
        attention is off. (`ContextRows` encodes them, once the adapters are ready.)"""
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

    def _arm(self, opts: ConsistentAttentionOptions, rows: int, steps: int, step: int, seed: int) -> None:
        """Set the shared joint-attention state for one pipeline call."""
        st = self._state
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
            with quiet_hf():  # transformers' own "longer than 77" notice
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
        strength = self.identity_strength(request, identity_strength)
        style_strength = float(self.style_strength if style_strength is None else style_strength)
        opts = self.options(request)

        # 2. rows: generated keyframes, then context rows (attention context only; encoded in 4.)
        prompts = self._prompts(request, [request.prompts[i] for i in indices])
        seeds = [derive_seed(request.seed, i, int(attempts.get(i, 0))) for i in indices]
        n_gen = len(indices)

        context_images = self._context(request, indices, opts)
        rows = n_gen + len(context_images)
        control = self._control_image(request)
        with self._lock:
            # 3. adapters (may load the style adapter, which rebuilds the derived pipelines)
            embeds, masks, scales = self._adapters(request, rows, cfg, strength, style_strength)
            pipe = self.pipe if control is None else self._control_pipe(control[0], request.shot)
            self._set_scales(pipe, scales)
            context = ContextRows(self.pipe, request, context_images, (W, H), self.device, self.dtype)

            # 4. latents: the keyframes' noise, then the context rows noised to the first timestep
            noise = [torch.randn(context.shape, generator=torch.Generator("cpu").manual_seed(s)) for s in seeds]
            sched = pipe.scheduler
            sched.set_timesteps(steps, device=self.device)
            timesteps = sched.timesteps
            init = [n.to(self.device, self.dtype) for n in noise]
            if hasattr(sched, "_begin_index"):
                sched._begin_index = None
            if hasattr(sched, "_step_index"):
                sched._step_index = None
            init += [x / sched.init_noise_sigma for x in context.noised(sched, timesteps[:1])]
            latents = torch.cat(init)

            def on_step_end(p, i, t, kw):
                self._state.step = i + 1
                lat = kw["latents"]
                if i + 1 < len(timesteps):
                    context.reset(lat, n_gen, p.scheduler, timesteps[i + 1 : i + 2])
                if callback is not None:
                    callback(i + 1, steps)
                return {"latents": lat}

            self._arm(opts, rows, steps, 0, derive_seed(request.seed, 0, 0))
            kwargs = dict(
                prompt=prompts + context.prompts,
                negative_prompt=[request.negative_prompt or ""] * rows,
                height=H,
                width=W,
                num_inference_steps=steps,
                guidance_scale=guidance,
                latents=latents,
                generator=[torch.Generator("cpu").manual_seed(s) for s in seeds] + context.generators(),
                ip_adapter_image_embeds=embeds,
                callback_on_step_end=on_step_end,
                output_type="np",
            )
            if control is not None:
                from PIL import Image

                kwargs["image"] = Image.fromarray(control[1])
                kwargs["controlnet_conditioning_scale"] = float(self.controlnet_strength)
            out = self._run(pipe, kwargs, masks, request.shot)
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
        from PIL import Image

        W, H = request.width, request.height
        img = fit(img, W, H)
        guidance = float(self.preset.guidance)
        cfg = guidance > 1.0
        ids = self.identity_strength(request, identity_strength)
        style_strength = float(self.style_strength if style_strength is None else style_strength)
        opts = self.options(request)
        seed = derive_seed(request.seed, int(index), int(attempt))
        steps = int(self.preset.steps)
        # img2img runs int(steps * strength) steps; make sure at least one runs.
        steps = max(steps, int(np.ceil(1.0 / float(strength))))
        context_images = self._context(request, (), opts)
        rows = 1 + len(context_images)
        with self._lock:
            embeds, masks, scales = self._adapters(request, rows, cfg, ids, style_strength)
            pipe = self._img2img_pipe()
            self._set_scales(pipe, scales)
            context = ContextRows(self.pipe, request, context_images, (W, H), self.device, self.dtype)
            self._state.active = False
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
            if len(context):
                # context rows: img2img starts them like the frame (their own seeds); after every
                # step they are reset to their clean latents noised to the next timestep, so they
                # stay what they are while the frame attends to their tokens.
                t_start = steps - min(int(steps * float(strength)), steps)  # as img2img's get_timesteps
                st = self._state

                def on_step_end(p, i, t, kw):
                    st.step = t_start + i + 1
                    lat = kw["latents"]
                    nxt = t_start + i + 1
                    if nxt < len(p.scheduler.timesteps):
                        context.reset(lat, 1, p.scheduler, p.scheduler.timesteps[nxt : nxt + 1])
                    return {"latents": lat}

                kwargs.update(
                    prompt=[kwargs["prompt"]] + context.prompts,
                    negative_prompt=[kwargs["negative_prompt"]] * rows,
                    image=[Image.fromarray(img)] + [Image.fromarray(c) for c in context.images],
                    generator=[torch.Generator("cpu").manual_seed(seed)] + context.generators(),
                    callback_on_step_end=on_step_end,
                )
                self._arm(opts, rows, steps, t_start, seed)
            out = self._run(pipe, kwargs, masks, request.shot)
        return np.ascontiguousarray(_to_uint8(np.asarray(out))[0])

    def _run(self, pipe, kwargs: dict, masks, shot: str) -> np.ndarray:
        """One pipeline call with the joint-attention state armed; disarmed whatever happens.
        Pixels that are not finite (a half-precision overflow, typically in the VAE) fail the
        shot: cast to uint8 they would be black keyframes, saved and judged as pictures."""
        if masks is not None:
            kwargs["cross_attention_kwargs"] = {"ip_adapter_masks": masks}
        try:
            # CLIP reads 77 tokens: diffusers and transformers would print their own notices
            # about longer prompts mid-progress; `prompt_warnings` reports them per shot instead
            with torch.inference_mode(), quiet_hf():
                images = np.asarray(pipe(**kwargs).images)
        finally:
            self._state.active = False
        if not np.isfinite(images).all():
            bad = [i for i in range(len(images)) if not np.isfinite(images[i]).all()]
            dtype = str(self.dtype).replace("torch.", "")
            raise ShotFailedError(shot, f"the keyframe model returned non-finite pixels (NaN or inf) in image(s) {bad} "
                                        f"on {self.device} in {dtype}: a numeric overflow, usually float16 in the VAE "
                                        "(try --device cpu, which runs float32); nothing of this shot was written")
        return images
