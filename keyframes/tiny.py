"""Tiny SDXL-shaped components with random weights, built in-process (the `tiny` preset).

The same diffusers / transformers classes as the real SDXL pipeline, from tiny configs (the shapes
diffusers' own SDXL tests use), so that tests and `--preset tiny` smoke runs go through the real
code paths without any download: the tokenizers are built from a byte-level vocabulary written to a
folder, the FaceID adapter is a FaceID-shaped state dict saved to a file, and the style adapter is
a plain IP-Adapter state dict saved beside a tiny CLIP vision encoder (laid out like
h94/IP-Adapter's `sdxl_models/`); both adapters load through diffusers' own `load_ip_adapter`.

Everything is seeded (under a forked RNG, so the caller's torch RNG is untouched): two builds give
the same weights, hence the same images.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..core.fsutil import cache_root

TINY_VERSION = "tiny-v1"
TINY_CROSS_ATTENTION_DIM = 64
TINY_ID_EMBED_DIM = 512
TINY_FACEID_TOKENS = 4
TINY_FACEID_WEIGHT = "ip-adapter-faceid_tiny.safetensors"
TINY_STYLE_WEIGHT = "ip-adapter_tiny.safetensors"
TINY_CLIP_PROJECTION_DIM = 32
TINY_CLIP_IMAGE_SIZE = 32


def default_tiny_dir() -> Path:
    """Where the tiny tokenizer and adapter files go: keyrender's cache (fsutil.cache_root, i.e.
    $KEYRENDER_CACHE, else $XDG_CACHE_HOME/keyrender, else ~/.cache/keyrender) / tiny-v1."""
    path = cache_root() / TINY_VERSION
    path.mkdir(parents=True, exist_ok=True)
    return path


def _bytes_to_unicode() -> list[str]:
    """GPT-2 / CLIP's reversible byte -> printable unicode mapping (256 symbols)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_tiny_tokenizer(folder: Path, vocab_size: int | None = None) -> Path:
    """A byte-level CLIP vocabulary (512 symbols + bos/eos, no merges) in `folder`.

    vocab_size: pad the vocabulary with unused entries to this many tokens, bos and eos last
    (49408: CLIP's own size, with its ids 49406 / 49407), for a text encoder of the real size."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    if not (vocab_path.exists() and merges_path.exists()):
        chars = _bytes_to_unicode()
        vocab: dict[str, int] = {}
        for c in chars:
            vocab[c] = len(vocab)
        for c in chars:
            vocab[c + "</w>"] = len(vocab)
        if vocab_size is not None:
            if vocab_size < len(vocab) + 2:
                raise ValueError(f"vocab_size {vocab_size} leaves no room for the {len(vocab)} byte symbols and bos/eos")
            while len(vocab) < vocab_size - 2:
                vocab[f"<|unused{len(vocab)}|>"] = len(vocab)
        vocab["<|startoftext|>"] = len(vocab)
        vocab["<|endoftext|>"] = len(vocab)
        _atomic_write(vocab_path, json.dumps(vocab))
        _atomic_write(merges_path, "#version: 0.2\n")
    return folder


def tiny_tokenizers(folder: Path, vocab_size: int | None = None):
    """SDXL's two CLIP tokenizers over the byte-level vocabulary (see write_tiny_tokenizer)."""
    from transformers import CLIPTokenizer

    sub = "tokenizer" if vocab_size is None else f"tokenizer-{int(vocab_size)}"
    folder = write_tiny_tokenizer(Path(folder) / sub, vocab_size)
    vocab, merges = str(folder / "vocab.json"), str(folder / "merges.txt")
    tok = CLIPTokenizer(vocab, merges, model_max_length=77)
    tok_2 = CLIPTokenizer(vocab, merges, model_max_length=77, pad_token="!")
    return tok, tok_2


def _text_config():
    from transformers import CLIPTextConfig

    # bos/eos are the last two vocabulary entries (512, 513) of the byte-level tokenizer.
    return CLIPTextConfig(
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        vocab_size=1000,
        hidden_act="gelu",
        projection_dim=32,
    )


def tiny_sdxl_components(folder: Path | None = None) -> dict:
    """The components of a StableDiffusionXLPipeline, tiny and seeded (64x64 images, 32x32 latents)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    folder = Path(folder) if folder else default_tiny_dir()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=80,  # 6 * 8 + 32
            cross_attention_dim=TINY_CROSS_ATTENTION_DIM,
            norm_num_groups=1,
        )
        torch.manual_seed(0)
        vae = AutoencoderKL(
            block_out_channels=[32, 64],
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
            up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
            latent_channels=4,
            sample_size=128,
        )
        torch.manual_seed(0)
        text_encoder = CLIPTextModel(_text_config())
        torch.manual_seed(0)
        text_encoder_2 = CLIPTextModelWithProjection(_text_config())
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    tok, tok_2 = tiny_tokenizers(folder)
    for module in (unet, vae, text_encoder, text_encoder_2):
        module.eval()
    return {
        "unet": unet,
        "scheduler": scheduler,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tok,
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": tok_2,
        "image_encoder": None,
        "feature_extractor": None,
    }


def tiny_faceid_state_dict(unet, id_dim: int = TINY_ID_EMBED_DIM, num_tokens: int = TINY_FACEID_TOKENS) -> dict:
    """A state dict shaped like h94/IP-Adapter-FaceID's (image_proj: proj.0/proj.2/norm; ip_adapter:
    `{k}.to_k_ip.weight` / `{k}.to_v_ip.weight` for the k-th cross-attention layer, k = 1, 3, 5, ...),
    sized for `unet`, seeded. Keys are flattened with the `image_proj.` / `ip_adapter.` prefixes of
    the safetensors layout that diffusers' `load_ip_adapter` reads."""
    cross = unet.config.cross_attention_dim
    out: dict[str, torch.Tensor] = {}
    g = torch.Generator().manual_seed(1234)

    def rnd(*shape, std):
        return (torch.randn(*shape, generator=g) * std).contiguous()

    out["image_proj.proj.0.weight"] = rnd(id_dim, id_dim, std=id_dim**-0.5 * 2)
    out["image_proj.proj.0.bias"] = torch.zeros(id_dim)
    out["image_proj.proj.2.weight"] = rnd(cross * num_tokens, id_dim, std=id_dim**-0.5 * 2)
    out["image_proj.proj.2.bias"] = torch.zeros(cross * num_tokens)
    out["image_proj.norm.weight"] = torch.ones(cross)
    out["image_proj.norm.bias"] = torch.zeros(cross)
    out.update(_ip_attention_weights(unet, rnd))
    return out


def _ip_attention_weights(unet, rnd) -> dict:
    """The `ip_adapter.{k}.to_k_ip` / `to_v_ip` weights every IP-Adapter file holds, one pair per
    cross-attention layer of `unet` (k = 1, 3, 5, ...), drawn with `rnd(*shape, std=...)`."""
    cross = unet.config.cross_attention_dim
    out: dict = {}
    for k, (_, hidden, is_cross) in enumerate(attention_layers(unet)):
        if is_cross:
            out[f"ip_adapter.{k}.to_k_ip.weight"] = rnd(hidden, cross, std=cross**-0.5 * 2)
            out[f"ip_adapter.{k}.to_v_ip.weight"] = rnd(hidden, cross, std=cross**-0.5 * 2)
    return out


def attention_layers(unet) -> list[tuple[str, int, bool]]:
    """(processor name, hidden size, is cross-attention) of every attention processor of `unet`,
    in `unet.attn_processors` order: the k of an IP-Adapter file's `ip_adapter.{k}.*` keys
    (benchmarks/fullsize_models.py sizes the real files by it too)."""
    blocks = list(unet.config.block_out_channels)
    out = []
    for name in unet.attn_processors.keys():
        if name.startswith("mid_block"):
            hidden = blocks[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(blocks))[int(name[len("up_blocks.")])]
        else:
            hidden = blocks[int(name[len("down_blocks.")])]
        out.append((name, hidden, not name.endswith("attn1.processor")))
    return out


def write_tiny_faceid(unet, folder: Path | None = None) -> tuple[Path, str]:
    """Save the tiny FaceID adapter as safetensors; returns (folder, weight_name) for load_ip_adapter."""
    from safetensors.torch import save_file

    folder = Path(folder) if folder else default_tiny_dir()
    target = folder / "faceid"
    target.mkdir(parents=True, exist_ok=True)
    path = target / TINY_FACEID_WEIGHT
    if not path.exists():
        tmp = path.with_name(f"tmp{os.getpid()}-{path.name}")
        save_file(tiny_faceid_state_dict(unet), str(tmp))
        os.replace(tmp, path)
    return target, TINY_FACEID_WEIGHT


def tiny_image_encoder():
    """A tiny CLIPVisionModelWithProjection (32x32 input, 8x8 patches, 32-d image embeds), seeded:
    the class diffusers loads as a plain IP-Adapter's `image_encoder`."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=32,
        projection_dim=TINY_CLIP_PROJECTION_DIM,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=TINY_CLIP_IMAGE_SIZE,
        patch_size=8,
        num_channels=3,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPVisionModelWithProjection(config)
    return model.eval()


def tiny_style_state_dict(unet, clip_dim: int = TINY_CLIP_PROJECTION_DIM, num_tokens: int = 4) -> dict:
    """A state dict shaped like h94/IP-Adapter's plain `ip-adapter_sdxl.safetensors` (image_proj:
    `proj` (num_tokens * cross_attention_dim, clip_dim) + `norm`; ip_adapter: `{k}.to_k_ip.weight` /
    `{k}.to_v_ip.weight` for the k-th cross-attention layer, k = 1, 3, 5, ...), sized for `unet`, seeded."""
    cross = unet.config.cross_attention_dim
    out: dict[str, torch.Tensor] = {}
    g = torch.Generator().manual_seed(4321)

    def rnd(*shape, std):
        return (torch.randn(*shape, generator=g) * std).contiguous()

    out["image_proj.proj.weight"] = rnd(cross * num_tokens, clip_dim, std=clip_dim**-0.5 * 4)
    out["image_proj.proj.bias"] = torch.zeros(cross * num_tokens)
    out["image_proj.norm.weight"] = torch.ones(cross)
    out["image_proj.norm.bias"] = torch.zeros(cross)
    out.update(_ip_attention_weights(unet, rnd))
    return out


def write_tiny_style(unet, folder: Path | None = None) -> tuple[Path, str]:
    """Save the tiny style IP-Adapter and its CLIP image encoder as h94/IP-Adapter lays them out
    (`<dir>/ip-adapter_tiny.safetensors`, `<dir>/image_encoder/{config.json,model.safetensors}`);
    returns (dir, weight_name) for load_ip_adapter."""
    import shutil

    from safetensors.torch import save_file

    folder = Path(folder) if folder else default_tiny_dir()
    target = folder / "style"
    target.mkdir(parents=True, exist_ok=True)
    encoder = target / "image_encoder"
    if not (encoder / "config.json").exists():
        tmp = target / f"tmp{os.getpid()}-image_encoder"
        tiny_image_encoder().save_pretrained(tmp, safe_serialization=True)
        try:
            os.rename(tmp, encoder)
        except OSError:  # another process got there first
            shutil.rmtree(tmp, ignore_errors=True)
    path = target / TINY_STYLE_WEIGHT
    if not path.exists():
        tmp = path.with_name(f"tmp{os.getpid()}-{path.name}")
        save_file(tiny_style_state_dict(unet), str(tmp))
        os.replace(tmp, path)
    return target, TINY_STYLE_WEIGHT


def tiny_controlnet(unet):
    """A tiny ControlNetModel from the tiny UNet (conditioning embedding downsamples 64 -> 32)."""
    from diffusers import ControlNetModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
        # from_unet copies the UNet's weights, whose zero convs make it a no-op; give the tiny
        # model a visible effect (seeded) so that tests can see the control reach the UNet.
        for p in list(cn.controlnet_down_blocks.parameters()) + list(cn.controlnet_mid_block.parameters()):
            torch.nn.init.normal_(p, std=0.05)
        torch.nn.init.normal_(cn.controlnet_cond_embedding.conv_out.weight, std=0.05)
    return cn.eval()
