"""Keyframe stage on the tiny preset: the real diffusers classes from tiny configs, the real
IP-Adapter loader, no weights, no network."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from keyframe_requests import diff as _diff, emb as _emb, request as _request
from keyrender.core.errors import InputError, ModelNotFoundError, ShotFailedError
from keyrender.keyframes import (
    CharacterCondition,
    ConsistentAttentionOptions,
    KeyframeGenerator,
    StyleAnchor,
    get_preset,
    list_presets,
    load_generator,
)


OFF = ConsistentAttentionOptions(enabled=False)
ALL = ConsistentAttentionOptions(enabled=True, sampling_rate=1.0, layers="all")


@pytest.fixture
def gen(tiny_generator):
    """The session's tiny generator (conftest): joint-attention options go in each request, and
    the generator's own defaults must stay the preset's whatever a test asks for."""
    yield tiny_generator
    assert tiny_generator.consistent == get_preset("tiny").consistent


# -- presets, loading, errors ------------------------------------------------------------------


def test_import_does_not_pull_torch():
    code = "import sys, keyrender.keyframes, keyrender.keyframes.presets; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_presets_registry():
    assert {"sdxl", "sd15", "tiny"} <= set(list_presets())
    sdxl = get_preset(None)
    assert sdxl.name == "sdxl" and sdxl.base.repo_id == "stabilityai/stable-diffusion-xl-base-1.0"
    assert sdxl.faceid.repo_id == "h94/IP-Adapter-FaceID" and sdxl.faceid.weight_name.endswith("sdxl.bin")
    assert get_preset("tiny").width == 64 and get_preset("tiny").steps <= 4
    assert get_preset("sd15").face_model == "buffalo_l"


def test_unknown_preset_lists_known():
    with pytest.raises(InputError, match=r"unknown keyframe preset 'nope'.*sd15, sdxl, tiny"):
        get_preset("nope")
    with pytest.raises(InputError, match="known presets"):
        load_generator("nope")


def test_sdxl_missing_weights_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("KEYRENDER_MODEL_BASE", raising=False)
    with pytest.raises(ModelNotFoundError) as err:
        load_generator("sdxl", device="cpu", use_cache=False)
    msg = str(err.value)
    assert "stabilityai/stable-diffusion-xl-base-1.0" in msg
    assert "hf download stabilityai/stable-diffusion-xl-base-1.0" in msg
    assert "GB" in msg and "KEYRENDER_MODEL_BASE" in msg and str(tmp_path / "hf") in msg
    assert err.value.exit_code == 2


def test_local_folder_override_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    folder = tmp_path / "my-sdxl"
    monkeypatch.setenv("KEYRENDER_MODEL_BASE", str(folder))
    with pytest.raises(ModelNotFoundError, match="my-sdxl"):
        load_generator("sdxl", device="cpu", use_cache=False)
    folder.mkdir()
    with pytest.raises(ModelNotFoundError, match="model_index.json"):
        load_generator("sdxl", device="cpu", use_cache=False)


def test_load_generator_caches(tmp_path):
    a = load_generator("tiny", device="cpu", tiny_dir=tmp_path)
    b = load_generator("tiny", device="cpu", tiny_dir=tmp_path)
    assert a is b
    assert isinstance(a, KeyframeGenerator)


# -- generation ----------------------------------------------------------------------------------


def test_generate_shapes_and_determinism(gen):
    req = _request()
    a = gen.generate(req)
    b = gen.generate(req)
    assert sorted(a) == [0, 1, 2]
    for i in a:
        assert a[i].shape == (64, 64, 3) and a[i].dtype == np.uint8
        assert np.array_equal(a[i], b[i])
    assert _diff(a[0], a[1]) > 0  # per-keyframe seeds and prompts


def test_joint_attention_changes_batch_and_off_is_independent(gen):
    off_req, on_req = _request(consistent=OFF), _request(consistent=ALL)
    off = gen.generate(off_req)
    single = {i: gen.generate(off_req, indices=[i])[i] for i in range(3)}
    for i in range(3):  # batched == one by one, up to float rounding
        assert np.abs(off[i].astype(int) - single[i].astype(int)).max() <= 1
    on = gen.generate(on_req)
    assert max(_diff(on[i], off[i]) for i in range(3)) > 0.1
    # a batch of one has nobody to share with: exactly the independent result
    alone = gen.generate(on_req, indices=[1])
    assert np.array_equal(alone[1], single[1])
    # outside its step window it is exactly off
    window = _request(consistent=replace(ALL, start=1.0, end=1.0))
    assert all(np.array_equal(gen.generate(window)[i], off[i]) for i in range(3))
    # no options in the request: the generator's defaults (the preset's: on, rate 0.5, up blocks)
    default = gen.generate(_request())
    assert np.array_equal(default[0], gen.generate(_request(consistent=get_preset("tiny").consistent))[0])
    assert _diff(default[0], off[0]) > 0.1


def test_identity_reaches_attention(gen):
    a = gen.generate(_request(), indices=[0])[0]
    b = gen.generate(_request(characters=[CharacterCondition("ana", _emb(2))]), indices=[0])[0]
    assert _diff(a, b) > 0.1
    plain = gen.generate(_request(characters=[]), indices=[0])[0]
    zero = gen.generate(_request(), indices=[0], identity_strength=0.0)[0]
    assert np.array_equal(plain, zero)
    assert _diff(plain, a) > 0.1


def test_masks_route_identities_to_regions(gen):
    left, right = (0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0)
    ab = _request(characters=[CharacterCondition("a", _emb(1), left), CharacterCondition("b", _emb(2), right)],
                  consistent=OFF)
    ac = _request(characters=[CharacterCondition("a", _emb(1), left), CharacterCondition("c", _emb(3), right)],
                  consistent=OFF)
    x = gen.generate(ab, indices=[0], identity_strength=1.0)[0]
    y = gen.generate(ac, indices=[0], identity_strength=1.0)[0]
    d_left, d_right = _diff(x[:, :24], y[:, :24]), _diff(x[:, 40:], y[:, 40:])
    assert d_right > 0.1 and d_right > 2 * d_left, (d_left, d_right)
    # default regions: side by side, same as the explicit split
    auto = _request(characters=[CharacterCondition("a", _emb(1)), CharacterCondition("b", _emb(2))], consistent=OFF)
    assert np.array_equal(gen.generate(auto, indices=[0], identity_strength=1.0)[0], x)


def test_reroll_one_keyframe_keeps_others(gen):
    req = _request()
    first = gen.generate(req)
    kept = _request(fixed={0: first[0], 2: first[2]})
    again = gen.generate(kept, indices=[1], attempts={1: 1})
    assert list(again) == [1]
    assert _diff(again[1], first[1]) > 0.1
    assert np.array_equal(gen.generate(kept, indices=[1], attempts={1: 1})[1], again[1])
    # the default indices skip the fixed keyframes
    assert list(gen.generate(kept)) == [1]


def test_style_anchor_scene_context(gen):
    req = _request()
    base = gen.generate(req, indices=[0])[0]
    anchor_img = np.full((64, 64, 3), 200, np.uint8)
    anchor_img[:, :32] = 30
    styled = _request(style=StyleAnchor(scene="sc1", anchor_keyframe=anchor_img))
    with_anchor = gen.generate(styled, indices=[0])[0]
    assert _diff(with_anchor, base) > 0.1
    other_scene = _request(scene="sc2", style=StyleAnchor(scene="sc2"))
    assert np.array_equal(gen.generate(other_scene, indices=[0])[0], base)
    text = _request(style=StyleAnchor(scene="sc1", text="film noir, high contrast"))
    assert _diff(gen.generate(text, indices=[0])[0], base) > 0.1


def test_rows_are_decoded_one_at_a_time(gen):
    """A call decodes every row, context rows included (3 keyframes + the scene's anchor keyframe
    here): one at a time, as a batch the float32 SDXL VAE peaks near 17 GB at
    1024 x 1024 (docs/fullsize.md). Same pictures either way: decoding is per image."""
    anchor_img = np.full((64, 64, 3), 90, np.uint8)
    batches: list[int] = []
    handle = gen.pipe.vae.decoder.register_forward_pre_hook(lambda m, a: batches.append(int(a[0].shape[0])))
    try:
        out = gen.generate(_request(style=StyleAnchor(scene="sc1", anchor_keyframe=anchor_img)))
    finally:
        handle.remove()
    assert sorted(out) == [0, 1, 2]
    assert batches and set(batches) == {1} and len(batches) == 4, batches


def test_controlnet_canny_and_missing_annotator(gen):
    ctrl = np.zeros((64, 64, 3), np.uint8)
    ctrl[16:48, 16:48] = 255
    base = gen.generate(_request(), indices=[0])[0]
    canny = gen.generate(_request(control_image=ctrl, control_type="canny"), indices=[0])[0]
    assert canny.shape == (64, 64, 3) and _diff(canny, base) > 0.1
    with pytest.raises(ModelNotFoundError, match="Annotators"):
        gen.generate(_request(control_image=ctrl, control_type="openpose"), indices=[0])
    with pytest.raises(InputError, match="control type 'sketch' unknown"):
        gen.generate(_request(control_image=ctrl, control_type="sketch"), indices=[0])


def test_control_type_none_uses_the_image_as_a_ready_pose_map(gen):
    """The shot list documents control_type `none` as "the image is already a control map": the
    user's pose map goes to the openpose ControlNet as is (it used to be dropped: control off)."""
    pose = np.zeros((64, 64, 3), np.uint8)
    pose[8:56, 30:34] = (255, 0, 0)  # a stick figure's spine and arms, as a rendered pose map draws them
    pose[20:24, 16:48] = (0, 255, 0)
    base = gen.generate(_request(), indices=[0])[0]
    ready = gen.generate(_request(control_image=pose, control_type="none"), indices=[0])[0]
    assert _diff(ready, base) > 0.1
    as_is = gen.generate(_request(control_image=pose, control_type="openpose-preprocessed"), indices=[0])[0]
    assert np.array_equal(ready, as_is)
    # "off" is control off
    assert np.array_equal(gen.generate(_request(control_image=pose, control_type="off"), indices=[0])[0], base)


def test_regenerate_repairs_one_frame(gen):
    req = _request()
    init = gen.generate(req, indices=[1])[1]
    a = gen.regenerate(req, 1, init, req.prompts[1], strength=0.3, attempt=1)
    b = gen.regenerate(req, 1, init, req.prompts[1], strength=0.3, attempt=1)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    c = gen.regenerate(req, 1, init, req.prompts[1], strength=0.3, attempt=2)
    assert _diff(a, c) > 0
    with pytest.raises(InputError, match="strength"):
        gen.regenerate(req, 1, init, req.prompts[1], strength=0.0, attempt=0)


def test_bad_requests_name_the_shot(gen):
    with pytest.raises(InputError, match="shot s1.*multiples"):
        gen.generate(_request(width=60))
    with pytest.raises(InputError, match="shot s1.*'ana'"):
        gen.generate(_request(characters=[CharacterCondition("ana", np.ones(128, np.float32))]))


def test_non_finite_pixels_fail_the_shot_instead_of_black_keyframes(gen):
    # a float16 overflow in the VAE gives NaN pixels, which uint8 would turn into black keyframes:
    # poison the real VAE decoder's last layer and the shot must fail, naming itself and the cause
    import torch

    conv = gen.pipe.vae.decoder.conv_out
    saved = conv.bias.detach().clone()
    with torch.no_grad():
        conv.bias[0] = float("nan")
    try:
        with pytest.raises(ShotFailedError, match=r"shot s1: the keyframe model returned non-finite pixels.*image\(s\) \[0\]"):
            gen.generate(_request(), indices=[0])
    finally:
        with torch.no_grad():
            conv.bias.copy_(saved)
    assert np.isfinite(gen.generate(_request(), indices=[0])[0]).all()


@pytest.mark.gpu
def test_tiny_on_cuda_fp16(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    g = load_generator("tiny", device="cuda", dtype="float16", tiny_dir=tmp_path, use_cache=False)
    out = g.generate(_request())
    again = g.generate(_request())
    assert sorted(out) == [0, 1, 2]
    for i in out:
        assert out[i].shape == (64, 64, 3) and out[i].dtype == np.uint8
        assert np.array_equal(out[i], again[i])
        assert 0 < out[i].mean() < 255


@pytest.mark.gpu
def test_offloaded_generator_runs_its_derived_pipelines_on_cuda(tmp_path):
    """Under model CPU offload the ControlNet (loaded on first use) and the img2img pipeline are
    offloaded with the base pipeline: none of their modules is left on the CPU while the UNet runs
    on CUDA (generator_from_pipeline, the real presets' loader)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from diffusers import StableDiffusionXLPipeline

    from keyrender.keyframes import get_preset
    from keyrender.keyframes.adapters import AdapterFiles
    from keyrender.keyframes.loading import generator_from_pipeline
    from keyrender.keyframes.tiny import tiny_controlnet, tiny_sdxl_components, write_tiny_faceid

    comps = tiny_sdxl_components(tmp_path)
    controlnet = tiny_controlnet(comps["unet"])
    pipe = StableDiffusionXLPipeline(**comps, add_watermarker=False)
    folder, name = write_tiny_faceid(pipe.unet, tmp_path)
    preset = get_preset("tiny").with_overrides(tiny=False)
    g = generator_from_pipeline(preset, pipe, AdapterFiles(str(folder), None, name), name="offload", device="cuda",
                                dtype=torch.float32, controlnet_loader=lambda kind: controlnet, cpu_offload=True)
    out = g.generate(_request(control_image=np.full((64, 64, 3), 128, np.uint8), control_type="canny"))
    assert sorted(out) == [0, 1, 2]
    fixed = g.regenerate(_request(fixed={0: out[0], 2: out[2]}), index=1, init_image=out[1], prompt="a woman",
                         strength=0.5, attempt=0)
    assert fixed.shape == (64, 64, 3)


def test_consistent_processor_shares_within_cfg_half_only():
    import torch
    from diffusers.models.attention_processor import Attention

    from keyrender.keyframes.attention import ConsistentAttentionState, ConsistentSelfAttnProcessor

    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8)
    st = ConsistentAttentionState(active=True, rows=3, sampling_rate=1.0, layers="all", seed=5)
    proc = ConsistentSelfAttnProcessor(st, "up")
    x = torch.randn(6, 10, 16)  # [uncond x3, cond x3]
    y = x.clone()
    y[3:] += 1.0  # change the cond half only
    with torch.no_grad():
        st.calls = 0
        ox = proc(attn, x)
        st.calls = 0
        oy = proc(attn, y)
        plain = proc.plain(attn, x)
    assert torch.equal(ox[:3], oy[:3])  # the uncond half never saw the cond half
    assert not torch.allclose(ox, plain)  # but rows do see each other
    st.active = False
    with torch.no_grad():
        assert torch.equal(proc(attn, x), plain)


def test_real_loader_from_local_folders(tmp_path, monkeypatch, gen):
    """The sdxl preset's loading code (from_pretrained + load_ip_adapter) on local folders."""
    from diffusers import StableDiffusionXLPipeline

    from keyrender.keyframes.tiny import tiny_sdxl_components, write_tiny_faceid

    base = tmp_path / "base"
    tiny = StableDiffusionXLPipeline(**tiny_sdxl_components(tmp_path / "t"), add_watermarker=False)
    tiny.save_pretrained(base)
    folder, weight = write_tiny_faceid(tiny.unet, tmp_path / "t")
    monkeypatch.setenv("KEYRENDER_MODEL_BASE", str(base))
    monkeypatch.setenv("KEYRENDER_MODEL_FACEID", str(folder / weight))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    real = load_generator("sdxl", device="cpu", use_cache=False)
    assert str(base) in real.name
    req = _request()
    out = real.generate(req, indices=[0], steps=2)
    assert out[0].shape == (64, 64, 3)
    # same weights, same adapter: the same image as the tiny preset
    assert np.array_equal(out[0], gen.generate(req, indices=[0])[0])


# -- joint attention options: keyrender run flags, RenderOptions, the cache key ------------------


def _dry_json(shotlist, *flags):
    from click.testing import CliRunner

    from keyrender.cli import main

    r = CliRunner().invoke(main, ["run", str(shotlist), "--preset", "tiny", "--dry-run", "--json", *flags],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    import json

    return {d["shot"]: d["cache_key"] for d in map(json.loads, r.output.strip().splitlines())}


def test_run_joint_attention_flags_are_in_the_cache_key(project):
    csv = project / "generate.csv"
    base = _dry_json(csv)
    assert _dry_json(csv, "--joint-attention", "--joint-rate", "0.5", "--joint-layers", "up",
                     "--joint-steps", "0:1") == base  # the preset's defaults, spelled out
    seen = [base]
    for flags in (["--no-joint-attention"], ["--joint-rate", "0.8"], ["--joint-layers", "all"],
                  ["--joint-steps", "0:0.5"]):
        keys = _dry_json(csv, *flags)
        for prev in seen:
            assert all(keys[s] != prev[s] for s in keys), flags
        seen.append(keys)
    # storyboard shots do not use the keyframe model's options (as with the preset)
    sb = project / "shotlist.csv"
    assert _dry_json(sb, "--joint-rate", "0.8") == _dry_json(sb)


def test_run_joint_attention_flags_are_validated(project):
    from click.testing import CliRunner

    from keyrender.cli import main

    csv = str(project / "generate.csv")
    for flags, words in (
        (["--joint-rate", "1.5"], ["--joint-rate", "0<=x<=1"]),
        (["--joint-rate", "x"], ["--joint-rate"]),
        (["--joint-layers", "down"], ["--joint-layers", "'up', 'mid_up', 'all'"]),
        (["--joint-steps", "0.8:0.2"], ["--joint-steps", "0 <= START <= END <= 1"]),
        (["--joint-steps", "0.5"], ["--joint-steps", "START:END"]),
        (["--joint-steps", "-1:0.5"], ["--joint-steps"]),
    ):
        r = CliRunner().invoke(main, ["run", csv, "--preset", "tiny", "--dry-run", *flags])
        assert r.exit_code == 2, (flags, r.output)
        assert all(w in r.output for w in words), (flags, r.output)
    r = CliRunner().invoke(main, ["run", csv, "--preset", "tiny", "--dry-run", "--no-joint-attention"])
    assert r.exit_code == 0 and "joint attention: off" in r.output
    r = CliRunner().invoke(main, ["run", csv, "--preset", "tiny", "--dry-run", "--joint-rate", "0.25",
                                  "--joint-steps", "0.1:0.6"])
    assert r.exit_code == 0 and "joint attention: on, rate 0.25, layers up, steps 0.1:0.6" in r.output


def test_run_joint_flags_keep_the_dry_run_torch_free(project):
    code = ("import sys\nfrom keyrender.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\nassert 'torch' not in sys.modules\n")
    args = ["run", str(project / "generate.csv"), "--dry-run", "--joint-rate", "0.7", "--joint-layers", "all",
            "--joint-steps", "0:0.5", "--no-joint-attention"]
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_joint_options_reach_the_generator_per_request(tmp_path, monkeypatch):
    """The run's joint-attention options travel in each request; the (cached, shared) generator
    is never reconfigured, so a later run without the flags gets the preset's again."""
    from pathlib import Path

    from keyrender.keyframes import ConsistentAttentionOptions
    from keyrender.pipeline import RenderContext, RenderOptions, prepare
    from keyrender.shot.render import keyframe_request

    monkeypatch.setenv("KEYRENDER_CACHE", str(tmp_path / "cache"))
    samples = Path(__file__).resolve().parent.parent / "samples"
    wanted = ConsistentAttentionOptions(enabled=True, sampling_rate=0.25, layers="mid_up", start=0.1, end=0.6)
    requests = []
    for consistent in (wanted, None):
        options = RenderOptions(out=tmp_path / "out", preset="tiny", device="cpu", consistent=consistent)
        _, jobs = prepare(samples / "generate.csv", options)
        ctx = RenderContext(options, samples / "cast", lambda e: None)
        requests.append((ctx.generator(), keyframe_request(jobs[0], ctx, {}, {})))
    (g, with_flags), (again, without) = requests
    assert again is g and g.consistent == get_preset("tiny").consistent  # never mutated
    assert with_flags.consistent == wanted and g.options(with_flags) == wanted
    assert without.consistent is None and g.options(without) == get_preset("tiny").consistent


def test_joint_options_are_checked():
    from keyrender.keyframes import ConsistentAttentionOptions
    from keyrender.pipeline import RenderOptions, prepare

    for bad, word in ((dict(sampling_rate=1.5), "sampling rate"), (dict(layers="down"), "layers 'down'"),
                      (dict(start=0.7, end=0.2), "step range 0.7..0.2")):
        with pytest.raises(InputError, match=word):
            ConsistentAttentionOptions(**bad).check()
    from pathlib import Path

    samples = Path(__file__).resolve().parent.parent / "samples"
    with pytest.raises(InputError, match="joint attention: sampling rate"):
        prepare(samples / "generate.csv", RenderOptions(preset="tiny", consistent=ConsistentAttentionOptions(sampling_rate=2)))


def test_set_consistent_rejects_bad_values(gen):
    before = gen.consistent
    with pytest.raises(InputError, match="layers 'sideways'"):
        gen.set_consistent(layers="sideways")
    assert gen.consistent == before


def test_prompts_longer_than_the_text_encoder_reads_are_reported(gen):
    # the tiny preset skips this (its tokenizer makes a token of every character); the same real
    # CLIPTokenizer counts here as a non-tiny preset
    import copy
    from dataclasses import replace

    assert gen.prompt_warnings(_request()) == []
    g = copy.copy(gen)
    g.preset = replace(gen.preset, tiny=False)
    tail = "and then she stops"
    long = "a woman walks in the rain under a red umbrella while neon signs flicker behind her " + tail
    lines = g.prompt_warnings(_request(prompts=[long, "short", "short"], negative_prompt="x" * 200), [0, 1])
    assert len(lines) == 2, lines
    assert lines[0].startswith("shot s1: keyframe 0 prompt is") and "reads 77" in lines[0]
    assert lines[0].split("ignored: ")[1].strip("'") in tail  # names the words that are dropped
    assert "negative prompt" in lines[1]
    assert g.prompt_warnings(_request(prompts=["short"] * 3)) == []


def test_cache_key_holds_what_changes_the_pixels_only(monkeypatch):
    """Editing a preset's description, licences or download notes re-renders nothing; its
    sampling settings, or pointing a component at other weights, re-render its generated shots.
    Storyboard shots do not use the preset."""
    from dataclasses import replace
    from pathlib import Path

    from keyrender.keyframes.presets import PRESETS
    from keyrender.pipeline import RenderOptions, prepare

    samples = Path(__file__).resolve().parent.parent / "samples"
    monkeypatch.delenv("KEYRENDER_MODEL_BASE", raising=False)

    def keys(csv):
        _, jobs = prepare(samples / csv, RenderOptions(preset="sdxl"))
        return {j.shot.id: j.cache_key for j in jobs}

    base, story = keys("generate.csv"), keys("shotlist.csv")
    sdxl = PRESETS["sdxl"]
    for same in (replace(sdxl, description="edited"),
                 replace(sdxl, base=replace(sdxl.base, license="x", size="8 GB", include=("*.json",)))):
        monkeypatch.setitem(PRESETS, "sdxl", same)
        assert keys("generate.csv") == base
    for other in (replace(sdxl, steps=31), replace(sdxl, faceid=replace(sdxl.faceid, weight_name="other.bin"))):
        monkeypatch.setitem(PRESETS, "sdxl", other)
        changed = keys("generate.csv")
        assert all(changed[s] != base[s] for s in base)
        assert keys("shotlist.csv") == story
    monkeypatch.setitem(PRESETS, "sdxl", sdxl)
    monkeypatch.setenv("KEYRENDER_MODEL_BASE", "/models/my-sdxl")
    assert all(keys("generate.csv")[s] != base[s] for s in base)
    assert keys("shotlist.csv") == story


def test_real_loader_from_the_hub_cache_by_repo_id_offline(tmp_path, monkeypatch, gen):
    """The sdxl preset by its hub ids, offline, from a Hugging Face cache laid out as the hub
    stores downloads (models--org--name/refs/main -> snapshots/<commit>): the base pipeline saved
    from the tiny components, FaceID as the .bin file h94/IP-Adapter-FaceID ships (nested
    image_proj / ip_adapter dicts). No override, no network: the real from_pretrained and
    load_ip_adapter find them where `hf download` would have put them."""
    import torch
    from diffusers import StableDiffusionXLPipeline

    from keyrender.keyframes.tiny import tiny_faceid_state_dict, tiny_sdxl_components

    sdxl = get_preset("sdxl")
    cache = tmp_path / "hub"

    def snapshot(repo_id: str):
        folder = cache / ("models--" + repo_id.replace("/", "--"))
        (folder / "refs").mkdir(parents=True)
        (folder / "refs" / "main").write_text("1" * 40)
        return folder / "snapshots" / ("1" * 40)

    tiny = StableDiffusionXLPipeline(**tiny_sdxl_components(tmp_path / "t"), add_watermarker=False)
    tiny.save_pretrained(snapshot(sdxl.base.repo_id))
    flat = tiny_faceid_state_dict(tiny.unet)
    nested = {part: {k[len(part) + 1:]: v for k, v in flat.items() if k.startswith(part + ".")}
              for part in ("image_proj", "ip_adapter")}
    faceid = snapshot(sdxl.faceid.repo_id)
    faceid.mkdir(parents=True)
    torch.save(nested, faceid / sdxl.faceid.weight_name)
    for var in ("KEYRENDER_MODEL_BASE", "KEYRENDER_MODEL_FACEID", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KEYRENDER_OFFLINE", "on")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    real = load_generator("sdxl", device="cpu", use_cache=False)
    assert real.name.startswith("sdxl:stabilityai/stable-diffusion-xl-base-1.0+h94/IP-Adapter-FaceID/")
    req = _request(consistent=OFF)
    # the same weights as the tiny preset: the same image
    assert np.array_equal(real.generate(req, indices=[0], steps=2)[0], gen.generate(req, indices=[0])[0])
