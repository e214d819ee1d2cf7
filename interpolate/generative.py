"""Generative backend: keyframe-conditioned video diffusion, started from the flow in-betweens.

LTX-Video's condition pipeline (diffusers `LTXConditionPipeline`) takes keyframes at frame
indices and, with `denoise_strength < 1`, a starting video: here the flow backend's in-betweens,
encoded by the pipeline's own VAE, so the flow guides the motion and the model repairs what flow
cannot (large motion, occlusions, things appearing). Wan 2.1's first-last-frame model
(`WanImageToVideoPipeline` with `last_image`) is the alternative ("wan"; no flow start).

torch, diffusers and transformers are imported inside the functions: importing this module is
cheap. Weights are found by `keyrender.core.weights`, as for the keyframe models: the `model`
argument (a local folder, a hub id, or "tiny"), else the env var (KEYRENDER_MODEL_LTX /
KEYRENDER_MODEL_WAN), else the default hub id through the Hugging Face cache. Downloads happen only
if allowed (`weights.offline`: the `offline` option, else KEYRENDER_OFFLINE / HF_HUB_OFFLINE); a
model that is not found raises `ModelNotFoundError` saying how to get it, without network access.
"tiny" builds the same diffusers classes from tiny configs with random weights (smoke runs, tests),
for both families: `tiny_ltx_pipeline` and `tiny_wan_pipeline`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from keyrender.core import weights
from keyrender.core.weights import WeightSpec, quiet_hf
from keyrender.interpolate.base import CheckedInterpolator
from keyrender.interpolate.checks import InterpolationInputError


@dataclass(frozen=True)
class ModelSpec:
    """A generative interpolation model: where its weights live, its frame grid, and the sampling
    defaults its makers document (the diffusers pipeline's example and defaults)."""

    family: str
    repo_id: str
    env_var: str
    pipeline_class: str
    spatial_multiple: int  # height and width must be multiples of this
    temporal_multiple: int  # num_frames = temporal_multiple * k + 1
    max_area: int  # pixels of the generation size (the model's training resolution)
    max_frames: int  # longest clip generated in one call
    steps: int
    guidance_scale: float  # > 1: classifier-free guidance against `negative_prompt`
    negative_prompt: str = ""
    call_options: tuple[tuple[str, float], ...] = ()  # further pipeline arguments the makers recommend

    @property
    def weights(self) -> WeightSpec:
        """Where the weights are (the whole diffusers repo), for keyrender.core.weights."""
        return WeightSpec(self.repo_id)


MODELS = {
    # LTX-Video 0.9.5 is not guidance-distilled: diffusers' example runs 40 steps at the
    # pipeline's guidance 3 with this negative prompt, at 768 x 512
    "ltx": ModelSpec(
        "ltx", "Lightricks/LTX-Video-0.9.5", "KEYRENDER_MODEL_LTX", "LTXConditionPipeline", 32, 8,
        max_area=768 * 512, max_frames=121, steps=40, guidance_scale=3.0,
        negative_prompt="worst quality, inconsistent motion, blurry, jittery, distorted",
        # its VAE is timestep-aware (0.9.1 and later): diffusers' documented decode settings
        call_options=(("decode_timestep", 0.05), ("image_cond_noise_scale", 0.025)),
    ),
    # Wan 2.1 FLF2V 720P: 1280 x 720 pixels, 81 frames, the pipeline's guidance 5; 50 steps as in
    # Wan's own sampler
    "wan": ModelSpec(
        "wan", "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers", "KEYRENDER_MODEL_WAN", "WanImageToVideoPipeline", 16, 4,
        max_area=1280 * 720, max_frames=81, steps=50, guidance_scale=5.0,
    ),
}


def model_spec(family: str) -> ModelSpec:
    """The spec of `family`; unknown names fail fast, listing the known ones."""
    if family not in MODELS:
        raise InterpolationInputError(f"family: unknown generative model {family!r}; known: {', '.join(MODELS)}")
    return MODELS[family]


def resolve_model(family: str, model: str | None = None) -> str:
    """The model source for `family`: the argument, else its env var, else the default hub id."""
    spec = model_spec(family)
    return weights.source(spec.weights, spec.env_var, model)


def load_dtype(family: str, dtype):
    """`torch_dtype` for from_pretrained: `dtype`, or for Wan a mapping that keeps its VAE and CLIP
    image encoder in float32 (as diffusers' Wan examples load them; both are small) and the rest
    in `dtype`. (benchmarks/fullsize.py builds its random models in the same dtypes.)"""
    import torch

    if family == "wan" and isinstance(dtype, torch.dtype) and dtype != torch.float32:
        return {"default": dtype, "vae": torch.float32, "image_encoder": torch.float32}
    return dtype


def load_pipeline(family: str = "ltx", model: str | None = None, device: str | None = None, dtype=None, *,
                  local_only: bool | None = None, cache_dir: str | None = None, cpu_offload: bool = False,
                  vae_tiling: bool = False):
    """Load the diffusers pipeline for `family` (see the module docstring for where from).
    `local_only`: never download (None: as the environment says, see `keyrender.core.weights.offline`);
    `cache_dir`: the Hugging Face hub cache (default: `keyrender.core.weights.hub_cache_dir`);
    `cpu_offload`, `vae_tiling`: see `place_pipeline`."""
    import torch

    spec = model_spec(family)
    source = resolve_model(family, model)
    if source == "tiny":
        pipe = {"ltx": tiny_ltx_pipeline, "wan": tiny_wan_pipeline}[family]()
    else:
        import diffusers

        cls = getattr(diffusers, spec.pipeline_class)
        if dtype is None:
            dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        offline = weights.offline(local_only)
        cache = weights.hub_cache_dir(cache_dir)
        what = f"interpolation model {family!r}"
        location = weights.resolve(what, source, spec.weights, offline=offline, cache_dir=cache,
                                   probe_file="model_index.json", env_var=spec.env_var)
        with weights.load_errors(what, location, spec.weights, spec.env_var, catch=(OSError, ValueError)):
            pipe = cls.from_pretrained(location, torch_dtype=load_dtype(family, dtype), cache_dir=cache,
                                       local_files_only=offline or weights.looks_local(location))
    return place_pipeline(pipe, device, cpu_offload=cpu_offload, vae_tiling=vae_tiling)


def place_pipeline(pipe, device: str | None = None, cpu_offload: bool = False, vae_tiling: bool = False):
    """Put a video pipeline where it runs and return it: on `device` (default: CUDA when there is
    one); with `cpu_offload` on a CUDA device, under diffusers' model CPU offload instead (each
    model moves to the GPU only while it runs: Wan 2.1 FLF2V's transformer alone is 33 GB in
    bfloat16, its UMT5 encoder 11 GB, so the whole pipeline fits no 24 or 48 GB card otherwise;
    on the CPU it is ignored); `vae_tiling`: the VAE decodes (and encodes) in tiles, so the
    decoder's activations no longer grow with the whole clip's size."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if cpu_offload and str(device).startswith("cuda"):
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if vae_tiling:
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_t5_tokenizer(max_length: int = 64):
    """A T5TokenizerFast built in-process: a Unigram model over a small word list with T5's
    Metaspace pre-tokenizer and `</s>` appended, as T5's own tokenizer.json has (no hub access)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    words = "a the person walks runs turns smiles camera slow fast left right".split()
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("\u2581" + w, -1.0 - i * 0.01) for i, w in enumerate(words)]
    vocab += [(ch, -5.0) for ch in "\u2581abcdefghijklmnopqrstuvwxyz"]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(
        tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0,
        model_max_length=max_length,
    )


def tiny_ltx_components(seed: int = 0) -> dict:
    """The components of `LTXConditionPipeline` at toy size with random weights (as diffusers'
    own fast tests build them): tiny transformer, tiny causal VAE, tiny T5 encoder, in-process tokenizer."""
    import torch
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4,
        attention_head_dim=8, cross_attention_dim=32, num_layers=1, caption_channels=32,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8,
        block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False), upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False, patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    torch.manual_seed(seed)
    tokenizer = tiny_t5_tokenizer()
    text_encoder = T5EncoderModel(
        T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                 relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    )
    for m in (transformer, vae, text_encoder):
        m.eval()  # built modules start in training mode (dropout); from_pretrained returns eval
    return {
        "transformer": transformer, "vae": vae, "scheduler": FlowMatchEulerDiscreteScheduler(),
        "text_encoder": text_encoder, "tokenizer": tokenizer,
    }


def tiny_ltx_pipeline(seed: int = 0):
    from diffusers import LTXConditionPipeline

    return LTXConditionPipeline(**tiny_ltx_components(seed))


# Wan 2.1 image-to-video attends to image and text tokens apart: its attention processor takes the
# last 512 context tokens as text and the rest as image, so prompts are always padded to 512 tokens
# (the pipeline's default max_sequence_length; a shorter one silently mixes them up).
WAN_TEXT_TOKENS = 512
# the tiny Wan's CLIP: a 32 x 32 crop in 8 x 8 patches is 16 tokens and a class token, per image
_TINY_CLIP_SIZE, _TINY_CLIP_PATCH = 32, 8


def tiny_wan_components(seed: int = 0) -> dict:
    """The components of `WanImageToVideoPipeline` for Wan 2.1 first-last-frame (FLF2V) at toy size
    with random weights: the same classes and wiring as the real model (CLIP image tokens of both
    keyframes with a learned position embedding over the pair, decoupled image cross-attention),
    built in-process from configs, no hub access."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    # 8x spatial (three downsamples), 4x temporal (two), 16 latent channels: Wan 2.1's VAE grid
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
    )
    clip_tokens = (_TINY_CLIP_SIZE // _TINY_CLIP_PATCH) ** 2 + 1
    clip_dim = 16
    heads, head_dim = 2, 12
    torch.manual_seed(seed)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=head_dim,
        # noise latents + (4-frame mask + VAE-encoded [A, zeros, B]) condition, as the pipeline concatenates
        in_channels=2 * vae.config.z_dim + vae.config.scale_factor_temporal, out_channels=vae.config.z_dim,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
        image_dim=clip_dim,  # CLIP hidden size (1280 in the real model)
        added_kv_proj_dim=heads * head_dim,  # image cross-attention keys/values (5120 = inner dim in the real model)
        pos_embed_seq_len=2 * clip_tokens,  # first + last frame tokens (2 * 257 in the real FLF2V model)
    )
    torch.manual_seed(seed)
    tokenizer = tiny_t5_tokenizer(max_length=WAN_TEXT_TOKENS)
    text_encoder = UMT5EncoderModel(
        UMT5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                   relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    )
    torch.manual_seed(seed)
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(hidden_size=clip_dim, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         image_size=_TINY_CLIP_SIZE, patch_size=_TINY_CLIP_PATCH)
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": _TINY_CLIP_SIZE}, crop_size={"height": _TINY_CLIP_SIZE, "width": _TINY_CLIP_SIZE}
    )
    for m in (transformer, vae, text_encoder, image_encoder):
        m.eval()
    return {
        "transformer": transformer, "vae": vae, "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0),
        "text_encoder": text_encoder, "tokenizer": tokenizer,
        "image_encoder": image_encoder, "image_processor": image_processor, "transformer_2": None,
    }


def tiny_wan_pipeline(seed: int = 0):
    from diffusers import WanImageToVideoPipeline

    return WanImageToVideoPipeline(**tiny_wan_components(seed))


def generation_size(height: int, width: int, multiple: int, max_side: int | None = None,
                    max_area: int | None = None) -> tuple[int, int]:
    """(h, w) to generate at: the frame scaled down (never up) to a long side <= `max_side` and an
    area <= `max_area` pixels, keeping its aspect ratio, rounded to `multiple`."""
    s = 1.0
    if max_side:
        s = min(s, max_side / max(height, width))
    if max_area:
        s = min(s, math.sqrt(max_area / (height * width)))
    h = max(multiple, int(round(height * s / multiple)) * multiple)
    w = max(multiple, int(round(width * s / multiple)) * multiple)
    return h, w


def denoising_steps(steps: int, strength: float) -> tuple[int, int]:
    """(num_inference_steps to ask the pipeline for, denoising steps it then runs) for `steps` at
    `denoise_strength` `strength`: a pipeline started from a video runs int(steps * strength) of
    its schedule (LTXConditionPipeline.get_timesteps), which is none at all when steps * strength
    < 1 (the flow start would come back through the VAE, called generative); the schedule is
    lengthened until one step runs, as the keyframes' image-to-image repair does."""
    steps = int(steps)
    if strength >= 1.0:
        return steps, steps
    asked = max(steps, math.ceil(1.0 / max(float(strength), 1e-6) - 1e-9))
    return asked, max(1, min(int(asked * strength), asked))


def grid_frames(n_times: int, temporal_multiple: int, min_frames: int = 9, max_frames: int = 121) -> int:
    """Frames to generate (A and B included): temporal_multiple * k + 1, at least one per time."""
    need = max(min_frames, n_times + 2)
    k = math.ceil((need - 1) / temporal_multiple)
    return min(max_frames, k * temporal_multiple + 1)


class GenerativeInterpolator(CheckedInterpolator):
    """Keyframe-conditioned video diffusion between A and B, started from the flow in-betweens.

    Options: `family` ("ltx" or "wan"), `model` (folder, hub id or "tiny"), `pipeline` (an already
    loaded diffusers pipeline), `device`, `dtype`, `steps`, `denoise_strength` (how far from the
    flow start the model may go: 1.0 ignores it), `prompt`, `negative_prompt`, `guidance_scale`,
    `seed`, `max_side` (long side of the generation size; by default the frame is only scaled to
    the model's training area), `max_frames`, `flow_options` (for the flow start and for times
    that fall between generated frames), `offline` (True: never download the weights; None: as
    KEYRENDER_OFFLINE / HF_HUB_OFFLINE say), `cpu_offload` and `vae_tiling` (how the loaded
    pipeline is placed: `place_pipeline`; a given `pipeline` is used where it is). `steps`, `guidance_scale`, `negative_prompt` and
    `max_frames` default to the family's (`MODELS`); a guidance-distilled checkpoint wants
    guidance_scale=1 and fewer steps.
    """

    #: the keyword options the constructor takes (interpolate.backend_options; a test keeps it
    #: true): the pipeline asks for "flow_options" and "pipeline" (one set of weights shared by
    #: every variant it builds) before passing them
    OPTIONS = frozenset({"family", "model", "pipeline", "device", "dtype", "steps", "denoise_strength", "prompt",
                         "negative_prompt", "guidance_scale", "seed", "max_side", "max_frames", "flow_options",
                         "offline", "cpu_offload", "vae_tiling"})

    def __init__(
        self,
        family: str = "ltx",
        model: str | None = None,
        pipeline=None,
        device: str | None = None,
        dtype=None,
        steps: int | None = None,
        denoise_strength: float = 0.6,
        prompt: str = "",
        negative_prompt: str | None = None,
        guidance_scale: float | None = None,
        seed: int = 0,
        max_side: int | None = None,
        max_frames: int | None = None,
        flow_options: dict | None = None,
        offline: bool | None = None,
        cpu_offload: bool = False,
        vae_tiling: bool = False,
    ):
        spec = model_spec(family)
        if not 0.0 < denoise_strength <= 1.0:
            raise ValueError(f"denoise_strength: must be in (0, 1], got {denoise_strength}")
        steps = spec.steps if steps is None else steps
        if steps < 1:
            raise ValueError(f"steps: must be >= 1, got {steps}")
        max_frames = spec.max_frames if max_frames is None else max_frames
        if max_frames < 2 * spec.temporal_multiple + 1:
            raise ValueError(f"max_frames: must be at least {2 * spec.temporal_multiple + 1} for {family}, got {max_frames}")
        from keyrender.interpolate.flow import FlowInterpolator

        self.name = family
        self.spec = spec
        self.model, self.device, self.dtype = model, device, dtype
        self._pipe = pipeline
        self.steps, self.denoise_strength = int(steps), float(denoise_strength)
        self.prompt, self.seed = prompt, int(seed)
        self.negative_prompt = spec.negative_prompt if negative_prompt is None else negative_prompt
        self.guidance_scale = float(spec.guidance_scale if guidance_scale is None else guidance_scale)
        self.max_side = max_side
        self.max_frames = max_frames
        self.offline = offline
        self.cpu_offload, self.vae_tiling = bool(cpu_offload), bool(vae_tiling)
        self.flow = FlowInterpolator(**(flow_options or {}))

    @property
    def pipeline(self):
        if self._pipe is None:
            self._pipe = load_pipeline(self.spec.family, self.model, self.device, self.dtype, local_only=self.offline,
                                       cpu_offload=self.cpu_offload, vae_tiling=self.vae_tiling)
        return self._pipe

    def _generate(self, a, b, ts, info, hints=()) -> Iterator[np.ndarray]:
        if not ts:
            return
        # 1. the flow guard: a static pair faded (and with the flow's `detect_cuts`, a cut held), as
        # in the flow backend; the hints go to the flow start
        flow_info: dict = {}
        n = grid_frames(len(ts), self.spec.temporal_multiple, max_frames=self.max_frames)
        # ltx starts from the flow in-betweens on the grid; wan needs only the guard's verdict
        grid_t = [i / (n - 1) for i in range(1, n - 1)] if self.spec.family == "ltx" else [0.5]
        flow_frames = list(self.flow.inbetween(a, b, grid_t, info=flow_info, hints=hints))
        if flow_info.get("mode") in ("cut", "static"):
            if info is not None:
                info.update(flow_info, backend=self.name)
            yield from self.flow.inbetween(a, b, ts, hints=hints)
            return
        # 2. generate the whole grid A, ..., B in one call
        video = self._run(a, b, [a, *flow_frames, b], n)
        if info is not None:
            strength = self.denoise_strength if self.spec.family == "ltx" else 1.0  # wan starts from noise
            info.update(mode="generative", backend=self.name, num_frames=n, flow=flow_info.get("mode"),
                        denoise_strength=strength, steps=self.steps,
                        steps_run=denoising_steps(self.steps, strength)[1],
                        # the verdict of the flow start (what the model was started from, or, for
                        # wan, what its guard saw); the model's own frames are not judged here
                        explained=flow_info.get("explained"), trusted=flow_info.get("trusted"),
                        verdict=f"redrawn by the video model {self.name}; its flow start: {flow_info.get('verdict')}")
        # 3. the requested times: a generated frame, or flow between the two nearest ones
        for t in ts:
            p = t * (n - 1)
            i = int(math.floor(p))
            frac = p - i
            if frac < 1e-3 or frac > 1 - 1e-3:
                yield video[int(round(p))].copy()
            else:
                (f,) = self.flow.inbetween(video[i], video[i + 1], [frac])
                yield f

    def _run(self, a: np.ndarray, b: np.ndarray, start: list[np.ndarray], n: int) -> list[np.ndarray]:
        """Run the pipeline; returns n RGB uint8 frames at the input size, A and B in place."""
        import torch
        from PIL import Image

        pipe = self.pipeline
        pipe.set_progress_bar_config(disable=True)
        h, w = a.shape[:2]
        gh, gw = generation_size(h, w, self.spec.spatial_multiple, self.max_side, self.spec.max_area)
        to_pil = [Image.fromarray(cv2.resize(f, (gw, gh), interpolation=cv2.INTER_AREA)) for f in start]
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        with quiet_hf():
            out = self._call(pipe, to_pil, gh, gw, n, gen)
        raw = np.asarray(out, dtype=np.float32)
        if not np.isfinite(raw).all():
            # half precision overflowing inside the model: the uint8 cast would write black or
            # garbage frames without a word
            raise RuntimeError(f"{self.name}: the pipeline returned non-finite values ({self.dtype or 'default'} "
                               "precision overflow?); try dtype float32 or bfloat16")
        frames = np.clip(raw * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if frames.shape[0] != n:
            raise RuntimeError(f"{self.name}: pipeline returned {frames.shape[0]} frames, expected {n}")
        video = [cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC) if (gh, gw) != (h, w) else f for f in frames]
        video[0], video[-1] = a, b  # keyframes are exact
        return video

    def _call(self, pipe, to_pil: list, gh: int, gw: int, n: int, gen):
        """One pipeline call over the grid of n frames; returns its frames as floats in [0, 1]."""
        if self.spec.family == "ltx":
            from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

            latents = None
            strength = self.denoise_strength
            if strength < 1.0:
                latents = self._encode_start(pipe, to_pil, gh, gw, gen)
            num_steps, _ = denoising_steps(self.steps, strength)
            out = pipe(
                conditions=[
                    LTXVideoCondition(image=to_pil[0], frame_index=0, strength=1.0),
                    LTXVideoCondition(image=to_pil[-1], frame_index=n - 1, strength=1.0),
                ],
                prompt=self.prompt, negative_prompt=self.negative_prompt, height=gh, width=gw, num_frames=n,
                num_inference_steps=num_steps, guidance_scale=self.guidance_scale,
                denoise_strength=strength, latents=latents, generator=gen, output_type="np",
                **dict(self.spec.call_options),
            ).frames[0]
        else:
            # Wan 2.1 FLF2V: A and B are VAE-encoded into the condition latents (mask 1 on the first
            # and last frame) and their CLIP tokens go to the image cross-attention
            out = pipe(
                image=to_pil[0], last_image=to_pil[-1], prompt=self.prompt, negative_prompt=self.negative_prompt,
                height=gh, width=gw, num_frames=n, num_inference_steps=self.steps,
                guidance_scale=self.guidance_scale, generator=gen, output_type="np",
                max_sequence_length=WAN_TEXT_TOKENS,
            ).frames[0]
        return out

    @staticmethod
    def _encode_start(pipe, frames, gh: int, gw: int, gen):
        """Encode the flow start video with the pipeline's VAE into normalized LTX latents."""
        import torch
        from diffusers.pipelines.ltx.pipeline_ltx_condition import retrieve_latents

        vae = pipe.vae
        device = pipe._execution_device
        video = pipe.video_processor.preprocess_video(frames, gh, gw).to(device, dtype=vae.dtype)
        with torch.no_grad():
            lat = retrieve_latents(vae.encode(video), generator=gen)
        return pipe._normalize_latents(lat, vae.latents_mean, vae.latents_std).float()
