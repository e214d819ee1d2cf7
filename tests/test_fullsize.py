"""The generative models at their published configs (benchmarks/fullsize_models.py) and the
benchmark that runs them through keyrender's own code (benchmarks/fullsize.py).

The parameter counts come from models built on the `meta` device (no memory): a config that is
not the published one shows up as a count that is not the published size. The slow test runs the
cheapest family end to end at real widths (one block per stack, a tiny picture).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import fullsize_models as fm  # noqa: E402


def within(count: float, published: float, tolerance: float) -> bool:
    return abs(count - published) <= tolerance * published


def test_registry_is_importable_without_torch():
    code = (f"import sys; sys.path.insert(0, {str(BENCH)!r}); import fullsize_models as fm; "
            "assert fm.FAMILIES['wan']['transformer'].config['num_layers'] == 40; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_component_names_its_source():
    for family, comps in fm.FAMILIES.items():
        assert set(comps) >= {"vae"} and fm.DENOISER[family] in comps
        for name, comp in comps.items():
            assert comp.family == family and comp.name == name
            assert re.search(r"\w+/[\w.-]+ ", comp.source + " "), comp.source  # "owner/repo path"


@pytest.mark.parametrize("family, component", [("sdxl", "unet"), ("ltx", "transformer")])
def test_denoisers_have_their_published_size(family, component):
    """SDXL's UNet is 2.6B, LTX-Video 0.9.5's transformer 2B: within 5%."""
    comp = fm.FAMILIES[family][component]
    count = fm.count_params(fm.build(comp))
    assert within(count, comp.published, 0.05), (family, component, count)


def test_wan_flf2v_is_the_14b_model_plus_its_image_attention():
    """Wan 2.1 FLF2V's transformer: the 14B backbone (within 5%) plus, in every block, the image
    cross-attention's key/value projections (2 x 5120^2 x 40) and the CLIP-token embedder."""
    comp = fm.FAMILIES["wan"]["transformer"]
    model = fm.build(comp)
    total = fm.count_params(model)
    image = sum(p.numel() for n, p in model.named_parameters()
                if ".add_k_proj." in n or ".add_v_proj." in n or ".norm_added_k." in n or "image_embedder" in n)
    assert image >= 2 * 5120 * 5120 * 40
    assert within(total - image, comp.published, 0.05), (total, image)
    assert 16.0e9 < total < 16.8e9


# the presets' download sizes (GB) against the counts: component(s) -> bytes per parameter of the
# files the size describes (fp16 unless the repo ships float32 only)
PRESET_SIZES = [
    ("sdxl", "base", ("unet", "vae", "text_encoder", "text_encoder_2"), 2),
    ("sdxl", "faceid", ("faceid",), 2),
    ("sdxl", "style", ("style",), 2),
    ("sdxl", "controlnet_canny", ("controlnet",), 4),
    ("sd15", "faceid", ("faceid",), 2),
    ("sd15", "controlnet_canny", ("controlnet",), 4),
]


@pytest.mark.parametrize("family, spec, components, nbytes", PRESET_SIZES)
def test_counts_match_the_presets_download_sizes(family, spec, components, nbytes):
    """The keyframe presets state each download's size (rounded, "~7 GB"); the published configs
    give the same within 10%."""
    from keyrender.keyframes import get_preset

    size = get_preset(family).spec(spec).size
    gb = float(re.search(r"~?([\d.]+) GB", size).group(1))
    built = fm.meta_family(family)
    count = sum(built.params[c] for c in components)
    assert within(count * nbytes / 1e9, gb, 0.10), (family, spec, count, size)


def test_style_image_encoder_matches_the_presets_size():
    from keyrender.keyframes import get_preset

    size = get_preset("sdxl").spec("style").size  # "... image encoder (OpenCLIP ViT-bigG/14, fp16) ~3.7 GB"
    gb = float(re.findall(r"~([\d.]+) GB", size)[-1])
    count = fm.count_params(fm.build(fm.FAMILIES["sdxl"]["image_encoder"]))
    assert within(count * 2 / 1e9, gb, 0.05)


def test_layer_cap_keeps_the_widths():
    unet_comp = fm.FAMILIES["sdxl"]["unet"]
    full, capped = fm.build(unet_comp), fm.build(unet_comp, layers=1)
    assert list(capped.config.transformer_layers_per_block) == [1, 1, 1]
    assert list(capped.config.block_out_channels) == [320, 640, 1280]
    assert capped.config.cross_attention_dim == 2048
    assert fm.count_params(capped) < 0.3 * fm.count_params(full)
    wan = fm.build(fm.FAMILIES["wan"]["transformer"], layers=2)
    assert len(wan.blocks) == 2 and wan.blocks[0].attn1.to_q.weight.shape == (5120, 5120)
    assert fm.FAMILIES["ltx"]["vae"].capped(1) == dict(fm.FAMILIES["ltx"]["vae"].config)  # no depth keys
    assert fm.parse_layers("text_encoder=2,transformer=4", "wan") == {"text_encoder": 2, "transformer": 4}
    assert fm.parse_layers("3") == {"*": 3}
    with pytest.raises(ValueError, match="no component"):
        fm.parse_layers("unet=2", "wan")


def test_random_init_materialises_every_tensor_finite_and_keeps_ties_and_tables():
    """Random weights are drawn per parameter on the target device; a tied embedding stays tied,
    and buffers computed at construction (Wan's rotary tables) are the constructed ones."""
    t5 = fm.Component("x", "text_encoder", "transformers", "T5EncoderModel",
                      {**fm.T5_XXL, "d_model": 64, "d_kv": 8, "d_ff": 96, "num_heads": 8, "num_layers": 2,
                       "vocab_size": 300}, "test", depth=("num_layers",), config_cls="T5Config")
    model = fm.build(t5, device="cpu", dtype=torch.bfloat16)
    assert model.encoder.embed_tokens.weight is model.shared.weight
    assert all(p.device.type == "cpu" and p.dtype == torch.bfloat16 for p in model.parameters())
    out = model(input_ids=torch.tensor([[5, 6, 7, 1]])).last_hidden_state
    assert torch.isfinite(out.float()).all() and out.float().std() > 0

    from diffusers import WanTransformer3DModel

    small = {**fm.WAN_TRANSFORMER, "num_attention_heads": 2, "attention_head_dim": 16, "ffn_dim": 32,
             "num_layers": 1, "text_dim": 16, "image_dim": 16, "added_kv_proj_dim": 32, "freq_dim": 16}
    wan = fm.build(fm.Component("x", "transformer", "diffusers", "WanTransformer3DModel", small, "test"),
                   device="cpu", dtype=torch.float32)
    reference = WanTransformer3DModel(**small)
    for name, buf in reference.named_buffers():
        assert torch.equal(dict(wan.named_buffers())[name], buf), name


def test_adapter_files_have_the_layout_diffusers_loads():
    """The FaceID file (projection 512 -> 1024 -> tokens, a rank-128 LoRA on every attention,
    to_k_ip / to_v_ip on the cross-attentions) loads through keyrender's load_ip_adapters
    (diffusers' load_ip_adapter) into the tiny SDXL UNet: projection, processors and LoRA."""
    from diffusers import StableDiffusionXLPipeline

    from keyrender.keyframes.adapters import AdapterFiles, load_ip_adapters
    from keyrender.keyframes.tiny import tiny_sdxl_components

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        pipe = StableDiffusionXLPipeline(**tiny_sdxl_components(Path(tmp)), add_watermarker=False)
        unet = pipe.unet
        cross_layers = sum(1 for n in unet.attn_processors if not n.endswith("attn1.processor"))
        comp = fm.FAMILIES["sdxl"]["faceid"]
        shapes = fm.adapter_shapes(comp, unet)
        assert shapes["image_proj.proj.0.weight"] == (1024, 512)
        assert shapes["image_proj.proj.2.weight"] == (4 * unet.config.cross_attention_dim, 1024)
        assert sum(k.endswith("to_k_ip.weight") for k in shapes) == cross_layers
        assert sum(k.endswith("to_q_lora.down.weight") for k in shapes) == len(unet.attn_processors)
        folder, name = fm.write_adapter(comp, unet, Path(tmp) / "faceid", torch.float32)
        load_ip_adapters(pipe, AdapterFiles(str(folder), None, name))
        proj = pipe.unet.encoder_hid_proj.image_projection_layers[0]
        assert proj.ff.net[0].proj.in_features == 512 and proj.ff.net[0].proj.out_features == 1024
        assert "faceid_0" in getattr(pipe.unet, "peft_config", {})


def test_auto_caps_fit_the_budget_and_keep_the_denoiser_first():
    import fullsize

    caps = fullsize.auto_caps("ltx", torch.bfloat16, 9.0, {})
    assert "transformer" not in caps and caps["text_encoder"] < 24  # T5 goes first
    assert sum(fm.meta_family("ltx", caps).params.values()) * 2 / 2**30 <= 9.0
    wan = fullsize.auto_caps("wan", torch.bfloat16, 9.0, {})
    assert 1 <= wan["transformer"] < 40


@pytest.mark.slow
def test_benchmark_runs_sd15_through_keyrenders_generator(tmp_path):
    """The cheapest real-width run: SD1.5 (one transformer block per stack, its widths as
    published), a 128 x 128 shot of 3 keyframes with FaceID for 3 characters, the style adapter
    and joint attention, then the repair's image-to-image: shapes and dtypes as the real model's."""
    cmd = [sys.executable, str(BENCH / "fullsize.py"), "--family", "sd15", "--layers", "1", "--resolution",
           "128x128", "--steps", "1", "--stages", "keyframes,regenerate", "--device", "cpu", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    build = {r["component"]: r for r in rows if r["stage"] == "build" and "params" in r}
    assert build["unet"]["params"] == fm.count_params(fm.build(fm.FAMILIES["sd15"]["unet"]))  # SD1.5: one block already
    assert build["text_encoder"]["layers"] == 1 and build["image_encoder"]["layers"] == 1
    assert build["faceid"]["params"] == 48_354_816
    stages = {r["stage"]: r for r in rows if r["stage"] in ("keyframes", "regenerate")}
    kf = stages["keyframes"]
    # 3 keyframes + the anchor keyframe + the style image, twice (classifier-free guidance)
    assert kf["shapes"]["latents"] == [10, 4, 16, 16] and kf["shapes"]["latents_dtype"] == "bfloat16"
    assert kf["shapes"]["images"] == [[128, 128, 3], 3]
    joint = kf["shapes"]["joint_attention"]
    assert joint["own"] == 16 * 16 and joint["attended"] == 16 * 16 + round(0.5 * 4 * 16 * 16)
    assert stages["regenerate"]["shapes"]["images"] == [[128, 128, 3], 1]
    assert all(r["peak_mb"] > 0 and r["s_per_step"] > 0 for r in stages.values())
