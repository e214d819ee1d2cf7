"""The video models at toy size: LTX-Video's condition pipeline and Wan 2.1 first-last-frame, the
same diffusers classes and wiring as the real models, from tiny configs with random weights.
`--preset tiny` (the model name "tiny", see `generative.load_pipeline`) runs them, so they live
with their stage; tests and benchmarks/fullsize.py build on them. torch, diffusers and
transformers are imported inside the functions."""

from __future__ import annotations

from keyrender.interpolate.generative import WAN_TEXT_TOKENS


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
