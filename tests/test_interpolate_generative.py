"""The generative (LTX) backend: the real diffusers classes, built tiny from configs, random weights.

No weights are downloaded: the pipeline is `LTXConditionPipeline` assembled in-process (tiny
transformer, tiny VAE, tiny T5 encoder, a tokenizer built from a word list), as diffusers' own
fast tests do.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from keyrender.errors import ModelNotFoundError  # noqa: E402
from keyrender.interpolate import get_interpolator, inbetween  # noqa: E402
from keyrender.interpolate import generative as gen  # noqa: E402


def texture(h, w, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2.0)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


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


def test_cut_pair_is_held_without_calling_the_model(pair):
    class Boom:
        def __getattr__(self, name):
            raise AssertionError("the model was called for a cut")

    a = texture(40, 56, seed=1)
    b = texture(40, 56, seed=2)
    info: dict = {}
    outs = list(gen.GenerativeInterpolator(pipeline=Boom()).inbetween(a, b, [0.2, 0.7], info=info))
    assert info["mode"] == "cut"
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


def test_missing_model_names_the_folder_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KEYRENDER_MODEL_LTX", str(tmp_path / "nowhere"))
    with pytest.raises(ModelNotFoundError, match="nowhere"):
        gen.load_pipeline("ltx", device="cpu")
    # hub id, offline, empty cache: no network, a clear error
    monkeypatch.delenv("KEYRENDER_MODEL_LTX")
    monkeypatch.setenv("KEYRENDER_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFoundError, match="hf download Lightricks/LTX-Video"):
        gen.load_pipeline("ltx", model="Lightricks/LTX-Video-0.9.5", device="cpu")


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
    assert np.isfinite(outs[0].astype(np.float32)).all() and outs[0].std() > 0
