"""The generative backends (LTX, Wan): the real diffusers classes, built tiny from configs, random weights.

No weights are downloaded: the pipelines are `LTXConditionPipeline` and `WanImageToVideoPipeline`
(Wan 2.1 first-last-frame) assembled in-process (tiny transformer, tiny VAE, tiny T5 / UMT5
encoder, tiny CLIP vision encoder, a tokenizer built from a word list), as diffusers' own fast
tests do.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from keyrender.core.errors import ModelNotFoundError  # noqa: E402
from keyrender.interpolate import get_interpolator, inbetween  # noqa: E402
from keyrender.interpolate import generative as gen  # noqa: E402


def texture(h, w, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2.0)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # toy models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP workers
    # waiting on each other turn the Wan VAE's many small convolutions from 0.1 s into 10 s
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_pipe():
    return gen.tiny_ltx_pipeline(seed=0)


@pytest.fixture(scope="module")
def pair():
    big = texture(60, 80, seed=3)
    return big[4:44, 4:60].copy(), big[4:44, 10:66].copy()  # 40 x 56: not a multiple of 32


def test_tiny_ltx_condition_pipeline_interpolates_on_cpu(tiny_pipe, pair):
    a, b = pair
    interp = get_interpolator("ltx", pipeline=tiny_pipe, steps=2, denoise_strength=0.5, device="cpu")
    info: dict = {}
    outs = list(inbetween(a, b, [0.25, 0.5, 0.8], backend=interp, info=info))
    assert info["mode"] == "generative" and info["backend"] == "ltx" and info["num_frames"] == 9
    assert [f.shape for f in outs] == [a.shape] * 3 and all(f.dtype == np.uint8 for f in outs)
    assert isinstance(tiny_pipe, __import__("diffusers").LTXConditionPipeline)


def test_flow_start_changes_what_the_model_produces(tiny_pipe, pair):
    # denoise_strength < 1 starts from the VAE-encoded flow in-betweens; 1.0 starts from noise
    a, b = pair
    kw = dict(pipeline=tiny_pipe, steps=2, seed=7, device="cpu")
    (from_flow,) = gen.GenerativeInterpolator(denoise_strength=0.5, **kw).inbetween(a, b, [0.5])
    (from_noise,) = gen.GenerativeInterpolator(denoise_strength=1.0, **kw).inbetween(a, b, [0.5])
    (again,) = gen.GenerativeInterpolator(denoise_strength=0.5, **kw).inbetween(a, b, [0.5])
    assert np.array_equal(from_flow, again)  # seeded: reproducible
    assert not np.array_equal(from_flow, from_noise)


@pytest.mark.parametrize("family", ["ltx", "wan"])
def test_cut_pair_is_held_without_calling_the_model(family):
    class Boom:
        def __getattr__(self, name):
            raise AssertionError("the model was called for a cut")

    a = texture(40, 56, seed=1)
    # (frames this small have too few keypoints for matches to prove a cut: the colours must differ
    # too; B is darker and blue, its grey picture the same up to gain and offset)
    b = texture(40, 56, seed=2) // 3 + np.uint8([0, 0, 170])
    info: dict = {}
    interp = gen.GenerativeInterpolator(family=family, pipeline=Boom(), flow_options={"detect_cuts": True})
    outs = list(interp.inbetween(a, b, [0.2, 0.7], info=info))
    assert info["mode"] == "cut" and info["backend"] == family
    assert np.array_equal(outs[0], a) and np.array_equal(outs[1], b)


def test_grid_and_size_rules():
    assert gen.grid_frames(1, 8) == 9 and gen.grid_frames(8, 8) == 17 and gen.grid_frames(500, 8) == 121
    assert gen.generation_size(1080, 1920, 32, 768) == (448, 768)
    assert gen.generation_size(41, 57, 32, 768) == (32, 64)


def test_model_folder_from_env_var_round_trip(tiny_pipe, tmp_path, monkeypatch):
    tiny_pipe.save_pretrained(tmp_path / "ltx")
    monkeypatch.setenv("KEYRENDER_MODEL_LTX", str(tmp_path / "ltx"))
    pipe = gen.load_pipeline("ltx", device="cpu", dtype=torch.float32)
    assert type(pipe).__name__ == "LTXConditionPipeline"
    assert pipe.transformer.config.num_layers == 1


@pytest.mark.parametrize("family, var, repo", [
    ("ltx", "KEYRENDER_MODEL_LTX", "Lightricks/LTX-Video-0.9.5"),
    ("wan", "KEYRENDER_MODEL_WAN", "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers"),
])
def test_missing_model_names_the_folder_and_how_to_get_it(family, var, repo, tmp_path, monkeypatch):
    monkeypatch.setenv(var, str(tmp_path / "nowhere"))
    with pytest.raises(ModelNotFoundError, match=f"{var}.*nowhere"):
        gen.load_pipeline(family, device="cpu")
    # the default hub id, offline, empty cache: no network, a clear error
    monkeypatch.delenv(var)
    monkeypatch.setenv("KEYRENDER_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFoundError, match=f"hf download {repo}"):
        gen.load_pipeline(family, device="cpu")


def _hub_cache_copy(pipe, cache, repo_id: str) -> None:
    """Save `pipe` into `cache` laid out as huggingface_hub stores a downloaded repo
    (models--org--name/refs/main -> snapshots/<commit>/...)."""
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    pipe.save_pretrained(folder / "snapshots" / commit)
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)


@pytest.mark.parametrize("switch", ["offline=True", "KEYRENDER_OFFLINE=on", "HF_HUB_OFFLINE=1"])
def test_offline_switch_is_the_keyframe_models_one(tiny_pipe, tmp_path, monkeypatch, switch):
    """keyrender.core.weights.offline decides for interpolation as for keyframes: --offline, or
    KEYRENDER_OFFLINE / HF_HUB_OFFLINE set to 1/true/yes/on. Offline, the default hub id loads
    from the Hugging Face cache (the real from_pretrained on a cache laid out as the hub's), and a
    model missing from the cache fails before from_pretrained, naming the cache and the command."""
    from keyrender.core.weights import offline

    for var in ("KEYRENDER_OFFLINE", "HF_HUB_OFFLINE", "KEYRENDER_MODEL_LTX"):
        monkeypatch.delenv(var, raising=False)
    explicit = True if switch == "offline=True" else None
    if explicit is None:
        var, value = switch.split("=")
        monkeypatch.setenv(var, value)
    assert offline(explicit) is True
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with pytest.raises(ModelNotFoundError, match=r"in the Hugging Face cache .*hub \(offline mode\).*hf download Lightricks/LTX-Video-0.9.5"):
        gen.load_pipeline("ltx", device="cpu", local_only=explicit)
    _hub_cache_copy(tiny_pipe, cache, gen.MODELS["ltx"].repo_id)
    interp = get_interpolator("ltx", device="cpu", offline=explicit)
    assert type(interp.pipeline).__name__ == "LTXConditionPipeline"
    assert interp.pipeline.transformer.config.num_layers == 1  # the tiny one, from the cache


def test_online_lets_from_pretrained_download(monkeypatch, tmp_path):
    # no switch: from_pretrained may download (local_files_only False); its failure is the same message
    import diffusers

    for var in ("KEYRENDER_OFFLINE", "HF_HUB_OFFLINE", "KEYRENDER_MODEL_LTX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    seen = []

    def from_pretrained(cls, source, **kw):
        seen.append((source, kw["local_files_only"], kw["cache_dir"]))
        raise OSError(f"{source} is not reachable")

    monkeypatch.setattr(diffusers.LTXConditionPipeline, "from_pretrained", classmethod(from_pretrained))
    with pytest.raises(ModelNotFoundError, match="not loadable.*hf download Lightricks/LTX-Video"):
        get_interpolator("ltx", device="cpu", offline=False).pipeline
    assert seen == [("Lightricks/LTX-Video-0.9.5", False, str(tmp_path / "hub"))]


def test_family_defaults_reach_the_pipeline(tiny_pipe, tiny_wan, pair, monkeypatch):
    # each family samples with its makers' documented settings unless told otherwise
    a, b = pair
    calls = []
    for pipe in (tiny_pipe, tiny_wan):
        real = type(pipe).__call__

        def spy(self, *args, _real=real, **kw):
            calls.append(kw)
            return _real(self, *args, **{**kw, "num_inference_steps": 1})  # keep the test fast

        monkeypatch.setattr(type(pipe), "__call__", spy)
    for family, pipe in (("ltx", tiny_pipe), ("wan", tiny_wan)):
        list(gen.GenerativeInterpolator(family=family, pipeline=pipe).inbetween(a, b, [0.5]))
    spec = gen.MODELS
    ltx, wan = calls
    assert (ltx["num_inference_steps"], ltx["guidance_scale"]) == (spec["ltx"].steps, spec["ltx"].guidance_scale) == (40, 3.0)
    assert ltx["negative_prompt"] == spec["ltx"].negative_prompt and ltx["decode_timestep"] == 0.05
    assert (wan["num_inference_steps"], wan["guidance_scale"]) == (50, 5.0)
    assert wan["max_sequence_length"] == 512
    # sizes: scaled to the training area, never up; the frame count capped at the family's
    assert gen.generation_size(1080, 1920, 16, max_area=spec["wan"].max_area) == (720, 1280)
    assert gen.generation_size(1024, 1024, 16, max_area=spec["wan"].max_area) == (960, 960)
    assert gen.generation_size(1080, 1920, 32, max_area=spec["ltx"].max_area) == (480, 832)
    assert gen.generation_size(240, 320, 32, max_area=spec["ltx"].max_area) == (256, 320)  # rounded, not scaled
    assert gen.grid_frames(500, 4, max_frames=spec["wan"].max_frames) == 81


def test_bad_options_fail_fast():
    with pytest.raises(ValueError, match="denoise_strength"):
        gen.GenerativeInterpolator(denoise_strength=0.0)
    with pytest.raises(ValueError, match="family"):
        gen.GenerativeInterpolator(family="sora")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_tiny_ltx_on_cuda_half_precision(pair, dtype):
    a, b = pair
    pipe = gen.tiny_ltx_pipeline(seed=0).to("cuda", getattr(torch, dtype))
    info: dict = {}
    outs = list(gen.GenerativeInterpolator(pipeline=pipe, steps=2, denoise_strength=0.5).inbetween(a, b, [0.5], info=info))
    assert info["mode"] == "generative"
    assert outs[0].shape == a.shape and outs[0].dtype == np.uint8
    assert outs[0].std() > 0  # (non-finite model output raises in _run: test_non_finite_output_is_an_error)


def test_non_finite_output_is_an_error(tiny_pipe, pair):
    """A model that overflows (NaN/inf, as half precision can) raises instead of being cast to
    uint8 and written as black frames. The tiny pipeline with one NaN weight in its VAE decoder."""
    import copy

    a, b = pair
    broken = copy.deepcopy(tiny_pipe)
    with torch.no_grad():
        next(broken.vae.decoder.conv_out.parameters()).view(-1)[0] = float("nan")
    interp = gen.GenerativeInterpolator(pipeline=broken, steps=1, denoise_strength=0.5)
    with pytest.raises(RuntimeError, match="non-finite values"):
        list(interp.inbetween(a, b, [0.5]))


# --- wan: Wan 2.1 first-last-frame (WanImageToVideoPipeline with last_image), no flow start ---


@pytest.fixture(scope="module")
def tiny_wan():
    return gen.tiny_wan_pipeline(seed=0)


def test_tiny_wan_flf2v_pipeline_interpolates_on_cpu(tiny_wan, pair):
    a, b = pair
    seen = []
    hook = tiny_wan.transformer.register_forward_pre_hook(
        lambda mod, args, kw: seen.append((kw["hidden_states"].shape, kw["encoder_hidden_states"].shape,
                                           kw["encoder_hidden_states_image"].shape)),
        with_kwargs=True,
    )
    try:
        interp = get_interpolator("wan", pipeline=tiny_wan, steps=2, guidance_scale=1.0, device="cpu")
        info: dict = {}
        outs = list(inbetween(a, b, [0.25, 0.5, 0.8], backend=interp, info=info))
    finally:
        hook.remove()
    assert info["mode"] == "generative" and info["backend"] == "wan" and info["num_frames"] == 9
    assert info["denoise_strength"] == 1.0  # wan starts from noise, whatever denoise_strength says
    assert [f.shape for f in outs] == [a.shape] * 3 and all(f.dtype == np.uint8 for f in outs)
    assert isinstance(tiny_wan, __import__("diffusers").WanImageToVideoPipeline)
    # what reached the model, per step: 40 x 56 generated at 32 x 64 -> latents 3 frames of 4 x 8
    # with 16 noise + 4 mask + 16 condition channels; the full 512 text tokens; CLIP tokens of A and B
    assert len(seen) == 2
    hidden, text, image = seen[0]
    assert tuple(hidden) == (1, 36, 3, 4, 8)
    assert tuple(text) == (1, 512, 32)  # Wan's attention takes the last 512 context tokens as text
    assert tuple(image) == (2, 17, 16)


def test_wan_video_has_the_grid_frame_count_and_exact_keyframes(tiny_wan, pair):
    a, b = pair
    interp = gen.GenerativeInterpolator(family="wan", pipeline=tiny_wan, steps=2)
    video = interp._run(a, b, [a, b], 13)
    assert len(video) == 13 and all(f.shape == a.shape and f.dtype == np.uint8 for f in video)
    assert np.array_equal(video[0], a) and np.array_equal(video[-1], b)
    assert not np.array_equal(video[6], a) and video[6].std() > 0


def test_wan_is_seeded_and_the_prompt_reaches_the_model(tiny_wan, pair):
    a, b = pair
    kw = dict(family="wan", pipeline=tiny_wan, steps=2)
    (first,) = gen.GenerativeInterpolator(seed=7, **kw).inbetween(a, b, [0.5])
    (again,) = gen.GenerativeInterpolator(seed=7, **kw).inbetween(a, b, [0.5])
    (other_seed,) = gen.GenerativeInterpolator(seed=8, **kw).inbetween(a, b, [0.5])
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other_seed)
    # a prompt, with classifier-free guidance against the empty prompt (negative embeddings)
    (prompted,) = gen.GenerativeInterpolator(seed=7, prompt="a person walks", guidance_scale=3.0, **kw).inbetween(
        a, b, [0.5]
    )
    assert prompted.shape == a.shape and not np.array_equal(prompted, first)


def test_wan_grid_rules_match_the_pipeline(tiny_wan):
    spec = gen.MODELS["wan"]
    assert spec.spatial_multiple == tiny_wan.vae_scale_factor_spatial * tiny_wan.transformer.config.patch_size[1]
    assert spec.temporal_multiple == tiny_wan.vae_scale_factor_temporal
    assert gen.grid_frames(1, 4) == 9 and gen.grid_frames(10, 4) == 13 and gen.grid_frames(500, 4) == 121
    assert gen.generation_size(720, 1280, 16, 1280) == (720, 1280)
    assert gen.generation_size(41, 57, 16, 1280) == (48, 64)


@pytest.mark.parametrize("family, cls", [("wan", "WanImageToVideoPipeline"), ("ltx", "LTXConditionPipeline")])
def test_load_pipeline_tiny_builds_the_real_class(family, cls):
    pipe = gen.load_pipeline(family, "tiny", device="cpu")
    assert isinstance(pipe, getattr(__import__("diffusers"), cls))
    if family == "wan":
        assert pipe.transformer.config.pos_embed_seq_len == 2 * 17 and pipe.image_encoder is not None


def test_wan_model_tiny_runs_end_to_end(pair):
    a, b = pair
    info: dict = {}
    interp = gen.GenerativeInterpolator(family="wan", model="tiny", device="cpu", steps=1)
    outs = list(interp.inbetween(a, b, [0.3, 0.6], info=info))
    assert info["mode"] == "generative" and info["backend"] == "wan"
    assert [f.shape for f in outs] == [a.shape] * 2


def test_wan_model_folder_round_trip_keeps_vae_and_clip_in_float32(tiny_wan, pair, tmp_path, monkeypatch):
    tiny_wan.save_pretrained(tmp_path / "wan")
    monkeypatch.setenv("KEYRENDER_MODEL_WAN", str(tmp_path / "wan"))
    pipe = gen.load_pipeline("wan", device="cpu", dtype=torch.bfloat16)
    assert type(pipe).__name__ == "WanImageToVideoPipeline"
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.text_encoder.dtype == torch.bfloat16
    assert pipe.vae.dtype == torch.float32 and pipe.image_encoder.dtype == torch.float32
    a, b = pair
    (out,) = gen.GenerativeInterpolator(family="wan", pipeline=pipe, steps=1).inbetween(a, b, [0.5])
    assert out.shape == a.shape and out.dtype == np.uint8


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tiny_wan_on_cuda_bfloat16_with_float32_vae(pair):
    a, b = pair
    pipe = gen.tiny_wan_pipeline(seed=0)
    pipe.transformer.to(torch.bfloat16)
    pipe.text_encoder.to(torch.bfloat16)
    pipe.to("cuda")
    info: dict = {}
    outs = list(gen.GenerativeInterpolator(family="wan", pipeline=pipe, steps=2).inbetween(a, b, [0.5], info=info))
    assert info["mode"] == "generative"
    assert outs[0].shape == a.shape and outs[0].dtype == np.uint8
    assert outs[0].std() > 0  # finite: _run raises on non-finite model output


@pytest.mark.parametrize("name", ["flow", "ltx", "wan"])
def test_backends_declare_the_options_they_take(name):
    """The pipeline asks `backend_options` (not the constructor's signature) which options a
    backend takes; each backend's declaration must be its constructor's keywords."""
    import inspect

    from keyrender.interpolate import backend_options
    from keyrender.interpolate.flow import FlowInterpolator

    cls = FlowInterpolator if name == "flow" else gen.GenerativeInterpolator
    declared = set(inspect.signature(cls).parameters) - ({"family"} if name != "flow" else set())
    assert backend_options(name) == declared
    if name != "flow":
        assert {"flow_options", "pipeline", "device", "offline"} <= backend_options(name)
    from keyrender.core.errors import InputError

    with pytest.raises(InputError, match="unknown interpolator 'sora'"):
        backend_options("sora")


def test_ltx_runs_at_least_one_denoising_step(tiny_pipe, pair):
    """From the flow start LTX runs int(steps * denoise_strength) steps of its schedule: one step
    at strength 0.6 ran none, and the flow start came back through the VAE labelled generative."""
    a, b = pair
    calls = []
    handle = tiny_pipe.transformer.register_forward_hook(lambda *args: calls.append(1))
    try:
        info: dict = {}
        list(gen.GenerativeInterpolator(pipeline=tiny_pipe, steps=1, denoise_strength=0.6).inbetween(a, b, [0.5], info=info))
    finally:
        handle.remove()
    assert calls, "the video model was never called"
    assert info["mode"] == "generative" and info["steps"] == 1 and info["steps_run"] == 1
    assert gen.denoising_steps(40, 0.6) == (40, 24) and gen.denoising_steps(1, 0.6) == (2, 1)
    assert gen.denoising_steps(3, 1.0) == (3, 3) and gen.denoising_steps(2, 0.25) == (4, 1)


def test_offload_and_vae_tiling_options_reach_the_pipeline(pair):
    """cpu_offload / vae_tiling (the memory options a 24-48 GB card needs for Wan 14B) are backend
    options: the loaded pipeline's VAE tiles; offload applies on CUDA only (ignored on the CPU)."""
    from keyrender.interpolate import backend_options

    assert {"cpu_offload", "vae_tiling"} <= backend_options("wan")
    interp = gen.GenerativeInterpolator(family="ltx", model="tiny", device="cpu", steps=2, vae_tiling=True, cpu_offload=True)
    assert interp.pipeline.vae.use_tiling
    assert getattr(interp.pipeline, "_all_hooks", []) == []  # no accelerate offload hooks on the CPU
    a, b = pair
    info: dict = {}
    out = list(interp.inbetween(a, b, [0.5], info=info))
    assert info["mode"] == "generative" and out[0].shape == a.shape
    placed = gen.place_pipeline(gen.tiny_wan_pipeline(seed=0), "cpu", vae_tiling=True)
    assert placed.vae.use_tiling
