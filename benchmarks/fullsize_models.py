"""The models keyrender names, at their published configs, built with random weights.

No weights reach these machines, so every generative row of keyrender had only ever run on tiny
random models. A model built from its *published* config has the real shapes, memory and speed
(only its pictures are noise). This module holds those configs, each with where it was published,
and builds them: on the `meta` device for free (parameter counts), or materialised with small
random weights on a device (benchmarks/fullsize.py). `layers` caps the repeated blocks of a
component (real widths, fewer blocks) for what does not fit.

Importing this module does not import torch (the registry is plain data); `build` and the
adapter state dicts do.

    from fullsize_models import FAMILIES, build, count_params
    unet = build(FAMILIES["sdxl"]["unet"])          # on meta: no memory
    count_params(unet)                              # 2.567e9

Sources: the configs are diffusers' model configs as the conversion scripts and model repos write
them; `Component.source` names the file each one comes from (a repository and a path), and
docs/fullsize.md tabulates them with the counts.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

# --------------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    """One model of a family at its published config.

    library: "diffusers" or "transformers" (the class is `cls` there, built from `config`),
    "faceid" or "ip-adapter" (an IP-Adapter state dict sized for the family's UNet from
    `config`). depth: the config keys the `layers` cap applies to (the repeated blocks).
    published: the published parameter count this config must reproduce (None: none published,
    the count is reported), with where that figure comes from."""

    family: str
    name: str
    library: str
    cls: str
    config: Mapping[str, Any]
    source: str
    depth: tuple[str, ...] = ()
    published: float | None = None
    published_source: str = ""
    config_cls: str | None = None  # transformers: the config class

    def capped(self, layers: int | None) -> dict:
        """The config with its repeated blocks capped at `layers` (None: as published)."""
        cfg = json.loads(json.dumps(dict(self.config)))
        if layers is None:
            return cfg
        if layers < 1:
            raise ValueError(f"{self.family} {self.name}: layers must be >= 1, got {layers}")
        for key in self.depth:
            value = cfg[key]
            cfg[key] = [min(int(v), layers) for v in value] if isinstance(value, (list, tuple)) else min(int(value), layers)
        return cfg

    def layers_as_run(self, layers: int | None) -> Any:
        """What the cap leaves of the depth keys (for the table): an int, a list, or None."""
        cfg = self.capped(layers)
        if not self.depth:
            return None
        values = [cfg[k] for k in self.depth]
        return values[0] if len(values) == 1 else values


_DIFFUSERS = "huggingface/diffusers"

# -- SDXL base 1.0 ----------------------------------------------------------------------------
# The UNet: Stability-AI/generative-models configs/inference/sd_xl_base.yaml (model_channels 320,
# channel_mult [1, 2, 4], transformer_depth [1, 2, 10], num_head_channels 64, context_dim 2048,
# adm_in_channels 2816), as diffusers' unet/config.json of stabilityai/stable-diffusion-xl-base-1.0
# writes it.
SDXL_UNET = {
    "sample_size": 128, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": [5, 10, 20], "transformer_layers_per_block": [1, 2, 10],
    "cross_attention_dim": 2048, "use_linear_projection": True, "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816, "norm_num_groups": 32,
}
# first_stage_config of the same yaml: ch 128, ch_mult [1, 2, 4, 4], 2 res blocks, z 4
SD_VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
    "block_out_channels": [128, 256, 512, 512], "norm_num_groups": 32,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
}
SDXL_VAE = {**SD_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}
SD15_VAE = {**SD_VAE, "sample_size": 512, "scaling_factor": 0.18215}
# OpenAI CLIP ViT-L/14's text tower (mlfoundations/open_clip src/open_clip/model_configs/
# ViT-L-14.json text_cfg: width 768, heads 12, layers 12); eos 2 as the SD repos' configs write it
# (transformers then pools at the highest token id, the end-of-text token)
CLIP_L_TEXT = {
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
    "projection_dim": 768, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}
# OpenCLIP ViT-bigG/14's text tower (open_clip model_configs/ViT-bigG-14.json text_cfg: width 1280,
# heads 20, layers 32, embed_dim 1280), as SDXL's text_encoder_2
CLIP_BIGG_TEXT = {
    "vocab_size": 49408, "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
    "num_attention_heads": 20, "max_position_embeddings": 77, "hidden_act": "gelu",
    "projection_dim": 1280, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}
# OpenCLIP ViT-bigG/14's vision tower (open_clip ViT-bigG-14.json vision_cfg: width 1664, layers
# 48, head_width 104 -> 16 heads, mlp_ratio 4.9231 -> 8192, patch 14, 224 px, embed_dim 1280):
# h94/IP-Adapter sdxl_models/image_encoder, the style adapter's CLIP image encoder
CLIP_BIGG_VISION = {
    "hidden_size": 1664, "intermediate_size": 8192, "num_hidden_layers": 48, "num_attention_heads": 16,
    "patch_size": 14, "image_size": 224, "projection_dim": 1280, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
}
# OpenCLIP ViT-H/14's vision tower (open_clip ViT-H-14.json vision_cfg: width 1280, layers 32,
# head_width 80 -> 16 heads, mlp 4x, patch 14, 224 px, embed_dim 1024): h94/IP-Adapter
# models/image_encoder (SD1.5's style adapter) and Wan 2.1's CLIP (the ViT-H/14 of
# open-clip-xlm-roberta-large-vit-huge-14, Wan-Video/Wan2.1 wan/modules/clip.py)
CLIP_H_VISION = {
    "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 16,
    "patch_size": 14, "image_size": 224, "projection_dim": 1024, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
}
# IP-Adapter FaceID (tencent-ailab/IP-Adapter ip_adapter/ip_adapter_faceid.py): MLPProjModel
# (512-d ArcFace embedding -> 1024 -> num_tokens x cross_attention_dim, LayerNorm), LoRA of rank 128
# on every attention processor (to_q/k/v/out), and to_k_ip / to_v_ip on every cross-attention
# (IPAdapterFaceID(..., lora_rank=128, num_tokens=4)); SDXL and SD1.5 the same, sized by the UNet
FACEID = {"id_embed_dim": 512, "mult": 2, "num_tokens": 4, "lora_rank": 128}
# the plain IP-Adapter (tencent-ailab/IP-Adapter ip_adapter/ip_adapter.py ImageProjModel:
# clip_extra_context_tokens 4 from the image encoder's projection; to_k_ip / to_v_ip per
# cross-attention): h94/IP-Adapter sdxl_models/ip-adapter_sdxl (bigG, 1280) and models/ip-adapter_sd15
# (ViT-H, 1024)
STYLE_SDXL = {"clip_embed_dim": 1280, "num_tokens": 4}
STYLE_SD15 = {"clip_embed_dim": 1024, "num_tokens": 4}
# SD1.5: CompVis/stable-diffusion configs/stable-diffusion/v1-inference.yaml (model_channels 320,
# channel_mult [1, 2, 4, 4], attention_resolutions [4, 2, 1], num_heads 8, context_dim 768)
SD15_UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "attention_head_dim": 8, "cross_attention_dim": 768, "norm_num_groups": 32,
    "transformer_layers_per_block": 1,
}
# ControlNet: the UNet's encoder and mid block plus the hint encoder (16, 32, 96, 256):
# diffusers/controlnet-*-sdxl-1.0 were trained from ControlNetModel.from_unet(unet) (diffusers
# examples/controlnet/train_controlnet_sdxl.py); lllyasviel/control_v11p_sd15_* from
# lllyasviel/ControlNet models/cldm_v15.yaml (the SD1.5 UNet's encoder, hint_channels 3)
_CN_KEYS = ("in_channels", "down_block_types", "block_out_channels", "layers_per_block", "attention_head_dim",
            "cross_attention_dim", "transformer_layers_per_block", "use_linear_projection", "addition_embed_type",
            "addition_time_embed_dim", "projection_class_embeddings_input_dim", "norm_num_groups")
SDXL_CONTROLNET = {**{k: SDXL_UNET[k] for k in _CN_KEYS if k in SDXL_UNET},
                   "conditioning_embedding_out_channels": [16, 32, 96, 256]}
SD15_CONTROLNET = {**{k: SD15_UNET[k] for k in _CN_KEYS if k in SD15_UNET},
                   "conditioning_embedding_out_channels": [16, 32, 96, 256]}

# -- LTX-Video 0.9.5 ----------------------------------------------------------------------------
# diffusers scripts/convert_ltx_to_diffusers.py, get_transformer_config (every version before 0.9.7)
# and get_vae_config("0.9.5"); the text encoder is google/t5-v1_1-xxl's encoder (the same script)
LTX_TRANSFORMER = {
    "in_channels": 128, "out_channels": 128, "patch_size": 1, "patch_size_t": 1, "num_attention_heads": 32,
    "attention_head_dim": 64, "cross_attention_dim": 2048, "num_layers": 28, "activation_fn": "gelu-approximate",
    "qk_norm": "rms_norm_across_heads", "norm_elementwise_affine": False, "norm_eps": 1e-6,
    "caption_channels": 4096, "attention_bias": True, "attention_out_bias": True,
}
LTX_VAE_095 = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 128,
    "block_out_channels": [128, 256, 512, 1024, 2048], "down_block_types": ["LTXVideo095DownBlock3D"] * 4,
    "decoder_block_out_channels": [256, 512, 1024], "layers_per_block": [4, 6, 6, 2, 2],
    "decoder_layers_per_block": [5, 5, 5, 5], "spatio_temporal_scaling": [True, True, True, True],
    "decoder_spatio_temporal_scaling": [True, True, True], "decoder_inject_noise": [False, False, False, False],
    "downsample_type": ["spatial", "temporal", "spatiotemporal", "spatiotemporal"],
    "upsample_residual": [True, True, True], "upsample_factor": [2, 2, 2], "timestep_conditioning": True,
    "patch_size": 4, "patch_size_t": 1, "resnet_norm_eps": 1e-6, "scaling_factor": 1.0, "encoder_causal": True,
    "decoder_causal": False, "spatial_compression_ratio": 32, "temporal_compression_ratio": 8,
}
# google/t5-v1_1-xxl: d_model 4096, d_ff 10240, 64 heads of 64, 24 layers, 32128 tokens, gated GELU
T5_XXL = {
    "vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64,
    "feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
    "tie_word_embeddings": False,
}

# -- Wan 2.1 FLF2V 14B 720P --------------------------------------------------------------------
# diffusers scripts/convert_wan_to_diffusers.py get_transformer_config("Wan-FLF2V-14B-720P"); the
# VAE is AutoencoderKLWan() with its defaults (the script's convert_vae; Wan-Video/Wan2.1
# wan/modules/vae.py: dim 96, z 16, dim_mult [1, 2, 4, 4], 2 res blocks, temporal down [F, T, T]);
# UMT5-XXL: Wan-Video/Wan2.1 wan/modules/t5.py umt5_xxl (vocab 256384, dim 4096, ffn 10240,
# 64 heads, 24 encoder layers, 32 buckets, a position bias per layer)
WAN_TRANSFORMER = {
    "patch_size": [1, 2, 2], "num_attention_heads": 40, "attention_head_dim": 128, "in_channels": 36,
    "out_channels": 16, "text_dim": 4096, "freq_dim": 256, "ffn_dim": 13824, "num_layers": 40,
    "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "image_dim": 1280,
    "added_kv_proj_dim": 5120, "rope_max_seq_len": 1024, "pos_embed_seq_len": 2 * 257,
}
WAN_VAE = {
    "base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
    "temperal_downsample": [False, True, True],
}
UMT5_XXL = {
    "vocab_size": 256384, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64,
    "feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
    "tie_word_embeddings": False,
}

_SGM = "Stability-AI/generative-models configs/inference/sd_xl_base.yaml"
_OPENCLIP = "mlfoundations/open_clip src/open_clip/model_configs/"
_IPA = "tencent-ailab/IP-Adapter "
_SD15 = "CompVis/stable-diffusion configs/stable-diffusion/v1-inference.yaml"

#: family -> component -> Component, in the order a family's pipeline is built
FAMILIES: dict[str, dict[str, Component]] = {
    "sdxl": {
        "unet": Component("sdxl", "unet", "diffusers", "UNet2DConditionModel", SDXL_UNET, _SGM + " (network_config)",
                          depth=("transformer_layers_per_block",), published=2.6e9,
                          published_source="the SDXL report (Podell et al. 2023): a 2.6B-parameter UNet"),
        "vae": Component("sdxl", "vae", "diffusers", "AutoencoderKL", SDXL_VAE, _SGM + " (first_stage_config)"),
        "text_encoder": Component("sdxl", "text_encoder", "transformers", "CLIPTextModel", CLIP_L_TEXT,
                                  _OPENCLIP + "ViT-L-14.json (text_cfg; OpenAI's ViT-L/14)",
                                  depth=("num_hidden_layers",), config_cls="CLIPTextConfig"),
        "text_encoder_2": Component("sdxl", "text_encoder_2", "transformers", "CLIPTextModelWithProjection",
                                    CLIP_BIGG_TEXT, _OPENCLIP + "ViT-bigG-14.json (text_cfg)",
                                    depth=("num_hidden_layers",), config_cls="CLIPTextConfig"),
        "faceid": Component("sdxl", "faceid", "faceid", "ip-adapter-faceid_sdxl", FACEID,
                            _IPA + "ip_adapter/ip_adapter_faceid.py (MLPProjModel, lora_rank 128, num_tokens 4)"),
        "style": Component("sdxl", "style", "ip-adapter", "ip-adapter_sdxl", STYLE_SDXL,
                           _IPA + "ip_adapter/ip_adapter.py (ImageProjModel, 4 tokens)"),
        "image_encoder": Component("sdxl", "image_encoder", "transformers", "CLIPVisionModelWithProjection",
                                   CLIP_BIGG_VISION, _OPENCLIP + "ViT-bigG-14.json (vision_cfg)",
                                   depth=("num_hidden_layers",), config_cls="CLIPVisionConfig"),
        "controlnet": Component("sdxl", "controlnet", "diffusers", "ControlNetModel", SDXL_CONTROLNET,
                                _DIFFUSERS + " examples/controlnet/train_controlnet_sdxl.py (ControlNetModel.from_unet)",
                                depth=("transformer_layers_per_block",)),
    },
    "sd15": {
        "unet": Component("sd15", "unet", "diffusers", "UNet2DConditionModel", SD15_UNET, _SD15,
                          depth=("transformer_layers_per_block",)),
        "vae": Component("sd15", "vae", "diffusers", "AutoencoderKL", SD15_VAE, _SD15 + " (first_stage_config)"),
        "text_encoder": Component("sd15", "text_encoder", "transformers", "CLIPTextModel", CLIP_L_TEXT,
                                  _OPENCLIP + "ViT-L-14.json (text_cfg; OpenAI's ViT-L/14)",
                                  depth=("num_hidden_layers",), config_cls="CLIPTextConfig"),
        "faceid": Component("sd15", "faceid", "faceid", "ip-adapter-faceid_sd15", FACEID,
                            _IPA + "ip_adapter/ip_adapter_faceid.py (MLPProjModel, lora_rank 128, num_tokens 4)"),
        "style": Component("sd15", "style", "ip-adapter", "ip-adapter_sd15", STYLE_SD15,
                           _IPA + "ip_adapter/ip_adapter.py (ImageProjModel, 4 tokens)"),
        "image_encoder": Component("sd15", "image_encoder", "transformers", "CLIPVisionModelWithProjection",
                                   CLIP_H_VISION, _OPENCLIP + "ViT-H-14.json (vision_cfg)",
                                   depth=("num_hidden_layers",), config_cls="CLIPVisionConfig"),
        "controlnet": Component("sd15", "controlnet", "diffusers", "ControlNetModel", SD15_CONTROLNET,
                                "lllyasviel/ControlNet models/cldm_v15.yaml", depth=("transformer_layers_per_block",)),
    },
    "ltx": {
        "transformer": Component("ltx", "transformer", "diffusers", "LTXVideoTransformer3DModel", LTX_TRANSFORMER,
                                 _DIFFUSERS + " scripts/convert_ltx_to_diffusers.py (get_transformer_config)",
                                 depth=("num_layers",), published=2.0e9,
                                 published_source="huggingface/diffusers docs/source/en/api/pipelines/ltx_video.md: 'LTX Video 2B 0.9.x'"),
        "vae": Component("ltx", "vae", "diffusers", "AutoencoderKLLTXVideo", LTX_VAE_095,
                         _DIFFUSERS + " scripts/convert_ltx_to_diffusers.py (get_vae_config('0.9.5'))"),
        "text_encoder": Component("ltx", "text_encoder", "transformers", "T5EncoderModel", T5_XXL,
                                  "google/t5-v1_1-xxl config.json (the text encoder convert_ltx_to_diffusers.py saves)",
                                  depth=("num_layers",), config_cls="T5Config"),
    },
    "wan": {
        "transformer": Component("wan", "transformer", "diffusers", "WanTransformer3DModel", WAN_TRANSFORMER,
                                 _DIFFUSERS + " scripts/convert_wan_to_diffusers.py "
                                 "(get_transformer_config('Wan-FLF2V-14B-720P'))",
                                 depth=("num_layers",), published=14.0e9,
                                 published_source="Wan 2.1 (Wan-Video/Wan2.1): the 14B model, i.e. its backbone; the "
                                                  "image cross-attention's k/v projections come on top"),
        "vae": Component("wan", "vae", "diffusers", "AutoencoderKLWan", WAN_VAE,
                         _DIFFUSERS + " scripts/convert_wan_to_diffusers.py (convert_vae: AutoencoderKLWan())"),
        "image_encoder": Component("wan", "image_encoder", "transformers", "CLIPVisionModel", CLIP_H_VISION,
                                   "Wan-Video/Wan2.1 wan/modules/clip.py (clip_xlm_roberta_vit_h_14, vision tower)",
                                   depth=("num_hidden_layers",), config_cls="CLIPVisionConfig"),
        "text_encoder": Component("wan", "text_encoder", "transformers", "UMT5EncoderModel", UMT5_XXL,
                                  "Wan-Video/Wan2.1 wan/modules/t5.py (umt5_xxl)", depth=("num_layers",),
                                  config_cls="UMT5Config"),
    },
}

#: the denoiser of each family (what `--layers` is mostly for, and whose steps are timed)
DENOISER = {"sdxl": "unet", "sd15": "unet", "ltx": "transformer", "wan": "transformer"}


def parse_layers(text: str | None, family: str | None = None) -> dict[str, int]:
    """`--layers N` (every capped component) or `--layers name=N,name=N` (those components) ->
    {component: N}; "*" stands for every component."""
    if not text:
        return {}
    out: dict[str, int] = {}
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        name, _, value = part.rpartition("=")
        key = name.strip() or "*"
        if family is not None and key != "*" and key not in FAMILIES[family]:
            raise ValueError(f"--layers: {family} has no component {key!r} (it has {', '.join(FAMILIES[family])})")
        out[key] = int(value)
        if out[key] < 1:
            raise ValueError(f"--layers: {part!r}: at least 1 block")
    return out


def layers_for(component: Component, caps: Mapping[str, int]) -> int | None:
    if not component.depth:
        return None
    return caps.get(component.name, caps.get("*"))


# --------------------------------------------------------------------------------------------
# building (imports torch)
# --------------------------------------------------------------------------------------------


def _class(component: Component):
    if component.library == "diffusers":
        import diffusers

        return getattr(diffusers, component.cls)
    import transformers

    return getattr(transformers, component.cls)


def build(component: Component, layers: int | None = None, device: str = "meta", dtype=None, seed: int = 0):
    """The model of `component` (a diffusers / transformers model), its repeated blocks capped at
    `layers`. On "meta" (default) nothing is allocated: parameter counts and shapes only. On a
    real device its parameters are materialised one by one in `dtype` (default float32) with
    small random values (`random_init`): a 14B model does not pass through a float32 copy nor
    through its classes' (slow) initialisers. Buffers computed at construction (position ids,
    rotary tables) are kept; they follow `dtype` only where floating and persistent."""
    if component.library not in ("diffusers", "transformers"):
        raise ValueError(f"{component.family} {component.name} is an adapter state dict: use adapter_state_dict")
    import torch
    from accelerate import init_empty_weights

    cls = _class(component)
    cfg = component.capped(layers)
    with init_empty_weights(include_buffers=False):
        if component.library == "diffusers":
            model = cls.from_config(cfg)
        else:
            import transformers

            model = cls(getattr(transformers, component.config_cls)(**cfg))
    if hasattr(model, "tie_weights"):
        model.tie_weights()  # T5's encoder.embed_tokens is its `shared` embedding
    model.eval().requires_grad_(False)
    if str(device) == "meta":
        return model
    random_init(model, device=device, dtype=dtype or torch.float32, seed=seed)
    return model


def random_init(model, device, dtype, seed: int = 0) -> None:
    """Materialise every parameter of `model` on `device` in `dtype`: weights (2-D and up) normal
    with std 1/sqrt(fan in), so that activations keep their scale through the real depth (in
    bfloat16 too; nothing overflows into the non-finite pixels keyrender refuses); biases zero;
    norm scales one; other vectors (embeddings of one row, modulation tables) normal 0.02.
    Tied parameters stay tied. Floating buffers move to `device` (and `dtype`, except rotary and
    statistics tables, which stay float32 as the models keep them)."""
    import torch

    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(seed)  # drawn where the weights live: a 14B model
    made: dict[int, torch.nn.Parameter] = {}
    for mod_name, module in model.named_modules():
        for pname, param in list(module._parameters.items()):
            if param is None:
                continue
            key = id(param)
            if key not in made:
                made[key] = torch.nn.Parameter(_random(f"{mod_name}.{pname}", param.shape, device, dtype, gen),
                                               requires_grad=False)
            module._parameters[pname] = made[key]
        for bname, buf in list(module._buffers.items()):
            if buf is None:
                continue
            if buf.device.type == "meta":  # a persistent buffer made under init_empty_weights
                buf = _random_buffer(bname, buf.shape, buf.dtype)
            keep32 = buf.is_floating_point() and any(s in bname for s in ("freqs", "latents_", "mean", "std"))
            if buf.is_floating_point() and not keep32:
                buf = buf.to(dtype)
            module._buffers[bname] = buf.to(device)


def _random(name: str, shape, device, dtype, gen):
    import torch

    leaf = name.rsplit(".", 1)[-1]
    shape = tuple(shape)
    if leaf == "bias" or leaf.endswith("_bias"):
        return torch.zeros(shape, device=device, dtype=dtype)
    lname = name.lower()
    if len(shape) <= 1 and ("norm" in lname or leaf in ("gamma", "weight", "scale")):
        return torch.ones(shape, device=device, dtype=dtype)
    if "norm" in lname and leaf == "gamma":  # Wan's RMS norms: (dim, 1, 1[, 1])
        return torch.ones(shape, device=device, dtype=dtype)
    numel = math.prod(shape) if shape else 1
    if len(shape) >= 2 and not ("scale_shift_table" in lname or "embedding" in leaf):
        std = 1.0 / math.sqrt(max(1, numel // shape[0]))
    else:
        std = 0.02
    # drawn on `gen`'s device in float32 chunks: no float32 copy of the whole tensor at once
    out = torch.empty(shape, device=device, dtype=dtype)
    flat = out.view(-1)
    chunk = 1 << 24
    for start in range(0, numel, chunk):
        n = min(chunk, numel - start)
        flat[start:start + n] = torch.randn(n, generator=gen, device=gen.device).mul_(std).to(device=device, dtype=dtype)
    return out


def _random_buffer(name: str, shape, dtype):
    import torch

    if "std" in name:
        return torch.ones(shape, dtype=dtype)
    return torch.zeros(shape, dtype=dtype)


def count_params(model) -> int:
    """Parameters of `model`, each tied tensor once (works on meta)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


# --------------------------------------------------------------------------------------------
# IP-Adapter state dicts, sized for a UNet (as the files h94/IP-Adapter* hold them)
# --------------------------------------------------------------------------------------------


def adapter_shapes(component: Component, unet) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the adapter file of `component` (FaceID or the plain IP-Adapter) for
    `unet` (works on meta): `image_proj.*` (the projection) and `ip_adapter.{k}.*` (k: the
    attention processor's index; FaceID: a LoRA on every one, to_k_ip / to_v_ip on the
    cross-attentions)."""
    cfg = component.config
    cross = int(unet.config.cross_attention_dim)
    tokens = int(cfg["num_tokens"])
    shapes: dict[str, tuple[int, ...]] = {}
    if component.library == "faceid":
        d, hid = int(cfg["id_embed_dim"]), int(cfg["id_embed_dim"]) * int(cfg["mult"])
        shapes.update({"image_proj.proj.0.weight": (hid, d), "image_proj.proj.0.bias": (hid,),
                       "image_proj.proj.2.weight": (cross * tokens, hid), "image_proj.proj.2.bias": (cross * tokens,),
                       "image_proj.norm.weight": (cross,), "image_proj.norm.bias": (cross,)})
    elif component.library == "ip-adapter":
        clip = int(cfg["clip_embed_dim"])
        shapes.update({"image_proj.proj.weight": (cross * tokens, clip), "image_proj.proj.bias": (cross * tokens,),
                       "image_proj.norm.weight": (cross,), "image_proj.norm.bias": (cross,)})
    else:
        raise ValueError(f"{component.name} is not an adapter")
    rank = int(cfg.get("lora_rank") or 0)
    from keyrender.keyframes.tiny import attention_layers

    for k, (_, hidden, is_cross) in enumerate(attention_layers(unet)):
        kv_in = cross if is_cross else hidden
        if rank:
            for proj, fan_in in (("to_q", hidden), ("to_k", kv_in), ("to_v", kv_in), ("to_out", hidden)):
                shapes[f"ip_adapter.{k}.{proj}_lora.down.weight"] = (rank, fan_in)
                shapes[f"ip_adapter.{k}.{proj}_lora.up.weight"] = (hidden, rank)
        if is_cross:
            shapes[f"ip_adapter.{k}.to_k_ip.weight"] = (hidden, cross)
            shapes[f"ip_adapter.{k}.to_v_ip.weight"] = (hidden, cross)
    return shapes


def adapter_state_dict(component: Component, unet, dtype, seed: int = 0) -> dict:
    """The adapter file's tensors (random, `dtype`, on the CPU) for `unet`. LoRA `up` weights are
    small, not zero (a trained LoRA is not a no-op)."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = {}
    for key, shape in adapter_shapes(component, unet).items():
        out[key] = _random(key, shape, "cpu", dtype, gen).contiguous()
    return out


def write_adapter(component: Component, unet, folder: Path, dtype, seed: int = 0) -> tuple[Path, str]:
    """Save the adapter as safetensors in `folder` (as h94/IP-Adapter* files are laid out);
    returns (folder, weight name) for keyframes.adapters.AdapterFiles."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{component.cls}.safetensors"
    tmp = folder / f"tmp{os.getpid()}-{name}"
    save_file(adapter_state_dict(component, unet, dtype, seed), str(tmp))
    os.replace(tmp, folder / name)
    return folder, name


def adapter_params(component: Component, unet) -> int:
    return sum(math.prod(s) for s in adapter_shapes(component, unet).values())


@dataclass
class BuiltFamily:
    """What `build_family` made: the models by component, their parameter counts and layers as
    built (None: the component has no repeated blocks, or was not built)."""

    family: str
    models: dict[str, Any] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)
    layers: dict[str, Any] = field(default_factory=dict)


def meta_family(family: str, caps: Mapping[str, int] | None = None) -> BuiltFamily:
    """Every component of `family` on the meta device (no memory): counts and layers."""
    caps = dict(caps or {})
    out = BuiltFamily(family)
    unet = None
    for name, comp in FAMILIES[family].items():
        if comp.library in ("faceid", "ip-adapter"):
            out.params[name] = adapter_params(comp, unet)
            out.layers[name] = None
            continue
        layers = layers_for(comp, caps)
        model = build(comp, layers)
        out.models[name] = model
        out.params[name] = count_params(model)
        out.layers[name] = comp.layers_as_run(layers)
        if name == "unet":
            unet = model
    return out
