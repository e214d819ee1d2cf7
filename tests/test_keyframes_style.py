"""The style IP-Adapter and the repair path (regenerate) on the tiny preset: a tiny plain
IP-Adapter and a tiny CLIP vision encoder written to disk and loaded, together with FaceID,
through diffusers' own `load_ip_adapter` (the same `load_ip_adapters` the sdxl preset uses)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from keyframe_requests import diff as _diff, emb as _emb, request as _any_request
from keyrender.core.errors import InputError, ModelNotFoundError
from keyrender.keyframes import (
    CharacterCondition,
    ConsistentAttentionOptions,
    KeyframeRequest,
    StyleAnchor,
    get_preset,
    load_generator,
)

OFF = ConsistentAttentionOptions(enabled=False)
ALL = ConsistentAttentionOptions(enabled=True, sampling_rate=1.0, layers="all")


def _request(**kw) -> KeyframeRequest:
    """A test request with joint attention off unless asked: the style image then acts through
    the style adapter alone."""
    kw.setdefault("consistent", OFF)
    return _any_request(**kw)


def _style_image(kind: int = 0) -> np.ndarray:
    img = np.zeros((64, 64, 3), np.uint8)
    if kind == 0:
        img[:, :32] = (250, 30, 30)
        img[:, 32:] = (20, 20, 220)
    else:
        img[:] = np.linspace(0, 255, 64, dtype=np.uint8)[:, None, None]
    return img


def _styled(kind: int = 0, **kw) -> KeyframeRequest:
    return _request(style=StyleAnchor(scene="sc1", text="", image=_style_image(kind)), **kw)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny")


def _fresh(tiny_dir):
    """A tiny generator of its own (the style adapter not loaded yet)."""
    return load_generator("tiny", device="cpu", tiny_dir=tiny_dir, use_cache=False)


@pytest.fixture
def gen(tiny_generator):
    """The session's tiny generator (conftest); `style_strength` is put back after each test."""
    saved = tiny_generator.style_strength
    yield tiny_generator
    tiny_generator.style_strength = saved
    assert tiny_generator.consistent == get_preset("tiny").consistent


def test_style_adapter_loads_on_first_style_image_only(tiny_dir):
    g = _fresh(tiny_dir)
    plain = g.generate(_request(), indices=[0])[0]
    other_scene = _request(scene="sc2", style=StyleAnchor(scene="sc2", text=""))
    assert np.array_equal(g.generate(other_scene, indices=[0])[0], plain)
    # a style image at scale 0 needs no adapter either
    assert np.array_equal(g.generate(_styled(), indices=[0], style_strength=0.0)[0], plain)
    assert not g.style_loaded
    styled = g.generate(_styled(), indices=[0])[0]
    assert g.style_loaded
    assert _diff(styled, plain) > 0.5
    # both adapters are in the UNet now: FaceID first, the plain IP-Adapter (ImageProjection) second
    from diffusers.models.embeddings import ImageProjection, IPAdapterFaceIDImageProjection

    layers = g.pipe.unet.encoder_hid_proj.image_projection_layers
    assert [type(x) for x in layers] == [IPAdapterFaceIDImageProjection, ImageProjection]
    # a shot of another scene (no style image) is exactly what it was before the adapter loaded
    assert np.array_equal(g.generate(other_scene, indices=[0])[0], plain)
    assert np.array_equal(g.generate(_request(), indices=[0])[0], plain)


def test_style_image_reaches_attention(gen):
    plain = gen.generate(_request(), indices=[0])[0]
    a = gen.generate(_styled(0), indices=[0])[0]
    b = gen.generate(_styled(1), indices=[0])[0]
    assert _diff(a, plain) > 0.5 and _diff(b, plain) > 0.5
    assert _diff(a, b) > 0.5  # the image's content matters, not just its presence
    # scale 0: exactly the plain result
    assert np.array_equal(gen.generate(_styled(0), indices=[0], style_strength=0.0)[0], plain)
    # the preset's strength is the default, and a stronger scale moves further
    gen.style_strength = 0.0
    assert np.array_equal(gen.generate(_styled(0), indices=[0])[0], plain)
    gen.style_strength = 0.4
    strong = gen.generate(_styled(0), indices=[0], style_strength=1.5)[0]
    assert _diff(strong, plain) > _diff(a, plain)
    # deterministic
    assert np.array_equal(gen.generate(_styled(0), indices=[0])[0], a)


def test_identity_works_with_the_style_adapter(gen):
    styled = _styled()
    a = gen.generate(styled, indices=[0])[0]
    gen.generate(styled, indices=[0])
    assert gen.style_loaded
    b = gen.generate(_styled(characters=[CharacterCondition("ana", _emb(2))]), indices=[0])[0]
    assert _diff(a, b) > 0.1  # different identities, same style: different images
    # identity strength 0 with the style on == no characters with the style on
    none = gen.generate(_styled(characters=[]), indices=[0])[0]
    zero = gen.generate(styled, indices=[0], identity_strength=0.0)[0]
    assert np.array_equal(none, zero)
    assert _diff(none, a) > 0.1
    # masks (two characters, FaceID only) still route each identity to its region
    left, right = (0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0)
    ab = _styled(characters=[CharacterCondition("a", _emb(1), left), CharacterCondition("b", _emb(2), right)])
    ac = _styled(characters=[CharacterCondition("a", _emb(1), left), CharacterCondition("c", _emb(3), right)])
    x = gen.generate(ab, indices=[0], identity_strength=1.0)[0]
    y = gen.generate(ac, indices=[0], identity_strength=1.0)[0]
    d_left, d_right = _diff(x[:, :24], y[:, :24]), _diff(x[:, 40:], y[:, 40:])
    # unmasked, changing b would change both halves alike; the tiny model's self-attention
    # spreads some of it (about 2.2x without the style adapter, 1.9x with it here)
    assert d_right > 0.1 and d_right > 1.5 * d_left, (d_left, d_right)


def test_style_with_joint_attention_and_bad_image(gen):
    out = gen.generate(_styled(consistent=ALL))
    assert sorted(out) == [0, 1, 2] and all(v.shape == (64, 64, 3) for v in out.values())
    with pytest.raises(InputError, match="shot s1: the scene's style image"):
        gen.generate(_request(style=StyleAnchor(scene="sc1", image=np.zeros((64, 64), np.uint8))), indices=[0])


# -- regenerate: context rows and the style adapter ---------------------------------------------


def test_regenerate_uses_neighbouring_keyframes_as_context(gen):
    kf = gen.generate(_request(prompts=["a woman walks", "a woman turns"], times=[0.0, 1.0]))
    init = ((kf[0].astype(np.int16) + kf[1].astype(np.int16)) // 2).astype(np.uint8)
    lone = _request(prompts=["a woman walks", "a woman turns"], times=[0.0, 1.0])
    around = _request(prompts=["a woman walks", "a woman turns"], times=[0.0, 1.0], fixed={0: kf[0], 1: kf[1]})
    plain = gen.regenerate(lone, 1000, init, "a woman", strength=0.5, attempt=0)
    # joint attention off: the context is not used, exactly the plain img2img result
    assert np.array_equal(gen.regenerate(around, 1000, init, "a woman", strength=0.5, attempt=0), plain)
    lone, around = replace(lone, consistent=ALL), replace(around, consistent=ALL)
    # nothing to attend to: the plain result too
    assert np.array_equal(gen.regenerate(lone, 1000, init, "a woman", strength=0.5, attempt=0), plain)
    ctx = gen.regenerate(around, 1000, init, "a woman", strength=0.5, attempt=0)
    assert ctx.shape == (64, 64, 3) and ctx.dtype == np.uint8
    assert _diff(ctx, plain) > 0.1
    assert np.array_equal(gen.regenerate(around, 1000, init, "a woman", strength=0.5, attempt=0), ctx)
    # the context rows ride along in the batch, but outside the step window nobody shares tokens:
    # the frame is the plain img2img result (up to batched float rounding)
    windowed = gen.regenerate(replace(around, consistent=replace(ALL, start=1.0, end=1.0)), 1000, init, "a woman", strength=0.5, attempt=0)
    assert np.abs(windowed.astype(int) - plain.astype(int)).max() <= 1
    # the scene's anchor keyframe is context too
    anchored = _request(prompts=["a woman walks", "a woman turns"], times=[0.0, 1.0],
                        style=StyleAnchor(scene="sc1", anchor_keyframe=kf[1]), consistent=ALL)
    assert _diff(gen.regenerate(anchored, 1000, init, "a woman", strength=0.5, attempt=0), plain) > 0.1


def test_regenerate_uses_the_style_adapter(gen):
    init = gen.generate(_request(), indices=[1])[1]
    plain = gen.regenerate(_request(), 1000, init, "a woman", strength=0.6, attempt=0)
    styled = gen.regenerate(_styled(), 1000, init, "a woman", strength=0.6, attempt=0)
    assert _diff(styled, plain) > 0.5
    assert np.array_equal(gen.regenerate(_styled(), 1000, init, "a woman", strength=0.6, attempt=0,
                                         style_strength=0.0), plain)


# -- the sdxl preset's loader on local files; missing weights -----------------------------------


def test_real_loader_style_adapter_lazy_and_missing(tmp_path, monkeypatch, gen):
    """The sdxl preset's code path (from_pretrained + load_ip_adapters + resolve_style) on local
    folders; the style weights are looked for only when a style image comes."""
    from diffusers import StableDiffusionXLPipeline

    from keyrender.keyframes.tiny import tiny_sdxl_components, write_tiny_faceid, write_tiny_style

    base = tmp_path / "base"
    tiny = StableDiffusionXLPipeline(**tiny_sdxl_components(tmp_path / "t"), add_watermarker=False)
    tiny.save_pretrained(base)
    folder, weight = write_tiny_faceid(tiny.unet, tmp_path / "t")
    style_dir, style_weight = write_tiny_style(tiny.unet, tmp_path / "t")
    monkeypatch.setenv("KEYRENDER_MODEL_BASE", str(base))
    monkeypatch.setenv("KEYRENDER_MODEL_FACEID", str(folder / weight))
    monkeypatch.delenv("KEYRENDER_MODEL_STYLE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    real = load_generator("sdxl", device="cpu", use_cache=False)
    # no style image: no style weights needed
    plain = real.generate(_request(), indices=[0], steps=2)[0]
    assert not real.style_loaded
    # a style image, no weights offline: a clear error naming the component and how to fetch it
    with pytest.raises(ModelNotFoundError) as err:
        real.generate(_styled(), indices=[0], steps=2)
    msg = str(err.value)
    assert "style weights 'h94/IP-Adapter'" in msg
    assert ("hf download h94/IP-Adapter sdxl_models/ip-adapter_sdxl.safetensors "
            "sdxl_models/image_encoder/config.json sdxl_models/image_encoder/model.safetensors") in msg
    assert "KEYRENDER_MODEL_STYLE" in msg and "GB" in msg and err.value.exit_code == 2
    # the failed load left the generator as it was
    assert np.array_equal(real.generate(_request(), indices=[0], steps=2)[0], plain)
    # a weight file without its image encoder beside it
    lonely = tmp_path / "lonely" / style_weight
    lonely.parent.mkdir()
    lonely.write_bytes((style_dir / style_weight).read_bytes())
    monkeypatch.setenv("KEYRENDER_MODEL_STYLE", str(lonely))
    with pytest.raises(ModelNotFoundError, match="image_encoder/config.json"):
        real.generate(_styled(), indices=[0], steps=2)
    # the weight file beside its image encoder (h94/IP-Adapter's layout): loads, and gives the
    # same images as the tiny preset (same weights, same loader)
    monkeypatch.setenv("KEYRENDER_MODEL_STYLE", str(style_dir / style_weight))
    styled = real.generate(_styled(), indices=[0], steps=2)[0]
    assert real.style_loaded
    assert np.array_equal(styled, gen.generate(_styled(), indices=[0])[0])
    assert np.array_equal(real.generate(_request(), indices=[0], steps=2)[0], plain)


def test_style_fetch_command_lists_the_image_encoder():
    from keyrender.keyframes import get_preset

    sdxl, sd15 = get_preset("sdxl").style, get_preset("sd15").style
    assert sdxl.fetch_command() == (
        "hf download h94/IP-Adapter sdxl_models/ip-adapter_sdxl.safetensors "
        "sdxl_models/image_encoder/config.json sdxl_models/image_encoder/model.safetensors")
    assert sd15.fetch_command() == (
        "hf download h94/IP-Adapter models/ip-adapter_sd15.safetensors "
        "models/image_encoder/config.json models/image_encoder/model.safetensors")
    assert sdxl.license == sd15.license == "Apache-2.0"
    base = get_preset("sdxl").base.fetch_command()
    assert base == ('hf download stabilityai/stable-diffusion-xl-base-1.0 --include "*.json" '
                    '--include "*.txt" --include "*fp16.safetensors"')


# -- through keyrender run -----------------------------------------------------------------------


def _with_style_image(proj) -> None:
    """generate.csv with a style image for scene 1 (on its first row)."""
    import csv

    from PIL import Image

    Image.fromarray(_style_image(0)).save(proj / "style.png")
    path = proj / "generate.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0]) + ["style_image"]
    rows[0]["style_image"] = "style.png"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


@pytest.mark.slow
def test_run_with_a_style_image_tiny(tmp_path, monkeypatch, copy_sample):
    from click.testing import CliRunner

    from keyrender.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("KEYRENDER_CACHE", str(tmp_path / "cache"))
    from keyrender.outputs.media import load_image

    kf = {}
    for name, styled in (("plain", False), ("styled", True)):
        proj = copy_sample(tmp_path / name)
        if styled:
            _with_style_image(proj)
        # joint attention off: the style image acts through the style adapter alone
        args = ["run", str(proj / "generate.csv"), "--preset", "tiny", "--device", "cpu",
                "--out", str(tmp_path / name / "out"), "--no-refine", "--only", "G1", "--no-joint-attention"]
        r = CliRunner().invoke(main, args, catch_exceptions=False)
        assert r.exit_code == 0, r.output
        shot = tmp_path / name / "out" / "G1"
        assert (shot / "video.mp4").exists()
        kf[name] = load_image(next((shot / "keyframes").glob("kf000_*.png")))
    assert _diff(kf["plain"], kf["styled"]) > 0.5


def test_run_style_image_without_style_weights_is_exit_2(tmp_path, monkeypatch, copy_sample):
    """sdxl preset on local tiny base + FaceID files, offline, no style weights: the shots of the
    scene with a style image fail with the message naming the style weights; exit 2."""
    from click.testing import CliRunner
    from diffusers import StableDiffusionXLPipeline

    from keyrender.cli import main
    from keyrender.keyframes import clear_generator_cache
    from keyrender.keyframes.tiny import tiny_sdxl_components, write_tiny_faceid

    tiny = StableDiffusionXLPipeline(**tiny_sdxl_components(tmp_path / "t"), add_watermarker=False)
    tiny.save_pretrained(tmp_path / "base")
    folder, weight = write_tiny_faceid(tiny.unet, tmp_path / "t")
    monkeypatch.setenv("KEYRENDER_MODEL_BASE", str(tmp_path / "base"))
    monkeypatch.setenv("KEYRENDER_MODEL_FACEID", str(folder / weight))
    monkeypatch.delenv("KEYRENDER_MODEL_STYLE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("KEYRENDER_CACHE", str(tmp_path / "cache"))
    proj = copy_sample(tmp_path / "proj")
    _with_style_image(proj)
    args = ["run", str(proj / "generate.csv"), "--device", "cpu", "--out", str(tmp_path / "out"),
            "--offline", "--face-model", "tiny", "--no-refine", "--only", "G1"]
    try:
        r = CliRunner().invoke(main, args, catch_exceptions=False)
    finally:
        clear_generator_cache()
    assert r.exit_code == 2, r.output
    assert "G1" in r.output and "failed" in r.output
    assert "style weights 'h94/IP-Adapter'" in r.output and "hf download h94/IP-Adapter" in r.output
    assert not (tmp_path / "out" / "G1").exists()


def test_repair_passes_the_keyframes_around_the_frame(tmp_path, monkeypatch, gen):
    """pipeline's repair callback hands regenerate() the two keyframes around the frame (and the
    scene's style anchor) as context; the generator here is the real tiny one, wrapped to record."""
    from pathlib import Path

    from keyrender.pipeline import RenderContext, RenderOptions, prepare
    from keyrender.shot.render import keyframe_request, repair_function
    from keyrender.shot.refine import RefineConfig

    monkeypatch.setenv("KEYRENDER_CACHE", str(tmp_path / "cache"))
    seen = []

    class Recording:
        name = gen.name

        def generate(self, *a, **kw):
            return gen.generate(*a, **kw)

        def regenerate(self, request, index, init_image, prompt, *, strength, attempt, identity_strength=None):
            seen.append((sorted(request.fixed), request.style is not None and request.style.scene))
            return gen.regenerate(request, index, init_image, prompt, strength=strength, attempt=attempt,
                                  identity_strength=identity_strength)

    samples = Path(__file__).resolve().parent.parent / "samples"
    options = RenderOptions(out=tmp_path / "out", preset="tiny", device="cpu", generator=Recording())
    _, jobs = prepare(samples / "generate.csv", options)
    job = next(j for j in jobs if j.shot.id == "G1")
    assert list(job.shot.keyframe_frames) == [0, 12, 23]
    context = RenderContext(options, samples / "cast", lambda e: None)
    request = keyframe_request(job, context, {}, {})
    keyframes = {i: np.full((64, 64, 3), 40 * (i + 1), np.uint8) for i in range(3)}
    repair = repair_function(job, context, request, [], keyframes, RefineConfig(repair_strength=0.35))
    image, seed = repair(17, np.full((64, 64, 3), 90, np.uint8), 0)
    assert image.shape == (64, 64, 3) and isinstance(seed, int)
    repair(5, np.full((64, 64, 3), 90, np.uint8), 1)
    assert seen == [([1, 2], "1"), ([0, 1], "1")]


@pytest.mark.gpu
def test_style_and_regenerate_context_on_cuda_fp16(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    g = load_generator("tiny", device="cuda", dtype="float16", tiny_dir=tmp_path, use_cache=False)
    plain = g.generate(_request(), indices=[0])[0]
    styled = g.generate(_styled(), indices=[0])[0]
    assert g.style_loaded and g.pipe.image_encoder.dtype == torch.float16
    assert _diff(styled, plain) > 0.5
    assert np.array_equal(g.generate(_request(), indices=[0])[0], plain)
    assert np.array_equal(g.generate(_styled(), indices=[0], style_strength=0.0, identity_strength=0.7)[0],
                          g.generate(_styled(), indices=[0], style_strength=0.0)[0])
    kf = g.generate(_styled())
    out = g.regenerate(_styled(fixed={0: kf[0], 2: kf[2]}), 1000, kf[1], "a woman", strength=0.5, attempt=0)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8 and 0 < out.mean() < 255
