"""The generative path at its real size: every model keyrender names, built from its published
config with random weights, run through keyrender's own code.

No weights reach these machines; a model built from its real config has the real shapes, memory
and speed (its pictures are noise). The configs and their sources are in fullsize_models.py; this
script assembles the pipelines from them and runs the functions `keyrender run` calls:

  sdxl, sd15  keyframes.loading.generator_from_pipeline (the real loader's second half: FaceID and
              the style adapter through diffusers' load_ip_adapter, from adapter files of the
              published shapes), then DiffusersKeyframeGenerator.generate: a shot's keyframes in
              one joint call with FaceID (one region per character), the style adapter and joint
              attention, the scene's anchor keyframe and style image as context rows
              ("keyframes"); .regenerate: the repair loop's image-to-image with the two keyframes
              around the frame as context ("regenerate"); .generate with a canny control image
              through the ControlNet ("control")
  ltx, wan    interpolate.generative.GenerativeInterpolator(pipeline=...) .inbetween over a span
              between two keyframes ("span"): LTX-Video 0.9.5 started from the flow in-betweens,
              Wan 2.1 first-last-frame

    .venv/bin/python benchmarks/fullsize.py                      # every family; on a CPU: sized to fit
    .venv/bin/python benchmarks/fullsize.py --family ltx --layers text_encoder=2 --json
    .venv/bin/python benchmarks/fullsize.py --family sdxl --device cuda --dtype float16 \\
        --resolution 1024x1024 --steps 30 --cpu-offload

On a CPU the defaults are the reduced run of docs/fullsize.md (bfloat16, 1-2 steps, a small
resolution, `--layers auto`: the largest components' repeated blocks capped until the weights fit
`--weights-budget-gb`); on CUDA the defaults are each model's own (full resolution, frames and
steps, full depth). Memory: peak RSS of the process per stage on the CPU (psutil, sampled every
20 ms), torch.cuda.max_memory_allocated on CUDA. s_per_step: time in the denoiser per denoising
step (classifier-free guidance included). Prints a table; --json adds one JSON object per line.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import fullsize_models as fm  # noqa: E402

KEYFRAME_FAMILIES = ("sdxl", "sd15")
VIDEO_FAMILIES = ("ltx", "wan")
STAGES = {"sdxl": ("keyframes", "regenerate", "control"), "sd15": ("keyframes", "regenerate", "control"),
          "ltx": ("span",), "wan": ("span",)}
#: each model's own size (the presets' and keyrender's MODELS defaults)
FULL = {"sdxl": dict(resolution=(1024, 1024), steps=30, frames=None),
        "sd15": dict(resolution=(512, 512), steps=30, frames=None),
        "ltx": dict(resolution=(768, 512), steps=40, frames=121),
        "wan": dict(resolution=(1280, 720), steps=50, frames=81)}
#: the reduced run on a CPU (2 cores): real widths, a small picture, one or two steps
CPU = {"sdxl": dict(resolution=(256, 256), steps=2, frames=None),
       "sd15": dict(resolution=(256, 256), steps=2, frames=None),
       "ltx": dict(resolution=(256, 160), steps=2, frames=25),
       "wan": dict(resolution=(256, 160), steps=1, frames=17)}
PROMPTS = ["a woman in a red coat turns towards the camera, rain, night street",
           "the woman in the red coat smiles, close-up, rain, night street",
           "the woman in the red coat walks away, wide shot, rain, night street"]


# ------------------------------------------------------------------------------------------------
# measuring
# ------------------------------------------------------------------------------------------------


class Peak:
    """Peak memory over a `with` block: process RSS (sampled) on the CPU, the CUDA allocator's
    max_memory_allocated on CUDA. `.mb` after the block."""

    def __init__(self, device: str):
        self.cuda = str(device).startswith("cuda")
        self.mb = 0.0

    def __enter__(self):
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            import psutil

            proc = psutil.Process()
            self._stop = threading.Event()
            self._max = proc.memory_info().rss

            def sample():
                while not self._stop.wait(0.02):
                    self._max = max(self._max, proc.memory_info().rss)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            import psutil

            self._stop.set()
            self._thread.join()
            self.mb = max(self._max, psutil.Process().memory_info().rss) / 2**20
        return False


class Probe:
    """Times the denoiser's forward calls, counts scheduler steps and keeps the shapes it saw:
    the denoiser's input (latents / video latents) and, for a UNet, the query and key/value
    lengths of its self-attentions (the tokens joint attention lets each image attend to)."""

    def __init__(self, denoiser, scheduler, cuda: bool):
        import torch

        self.cuda = cuda
        self.calls = 0
        self.seconds = 0.0
        self.steps = 0
        self.step_seconds: list[float] = []  # denoiser time of each scheduler step
        self.step_cpu: list[float] = []  # and its process CPU time (all threads)
        self._since_step = 0.0
        self._cpu_since_step = 0.0
        self._c0 = 0.0
        self.inputs: list[tuple] = []
        self.attn: dict[str, tuple[int, int]] = {}
        self._handles = []
        self._t0 = 0.0

        def pre(module, args, kwargs):
            x = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
            if isinstance(x, torch.Tensor) and not self.inputs:
                self.inputs.append((tuple(x.shape), str(x.dtype).replace("torch.", "")))
            if self.cuda:
                torch.cuda.synchronize()
            self._t0, self._c0 = time.perf_counter(), time.process_time()

        def post(module, args, kwargs, out):
            if self.cuda:
                torch.cuda.synchronize()
            dt = time.perf_counter() - self._t0
            self.seconds += dt
            self._since_step += dt
            self._cpu_since_step += time.process_time() - self._c0
            self.calls += 1

        self._handles.append(denoiser.register_forward_pre_hook(pre, with_kwargs=True))
        self._handles.append(denoiser.register_forward_hook(post, with_kwargs=True))
        for name, mod in denoiser.named_modules():
            if name.endswith("attn1") and hasattr(mod, "to_k"):
                self._watch_attention(name, mod)
        self._scheduler = scheduler
        self._step = scheduler.step

        def step(*a, **k):
            self.steps += 1
            self.step_seconds.append(self._since_step)
            self.step_cpu.append(self._cpu_since_step)
            self._since_step = self._cpu_since_step = 0.0
            return self._step(*a, **k)

        scheduler.step = step

    def _watch_attention(self, name, mod):
        q_len = {}

        def q_pre(module, args, kwargs):
            x = args[0] if args else kwargs.get("hidden_states")
            q_len["n"] = int(x.shape[1])

        def k_pre(module, args):
            kv = int(args[0].shape[1])
            q = q_len.get("n", kv)
            old = self.attn.get(name, (0, 0))
            self.attn[name] = (max(old[0], q), max(old[1], kv))

        self._handles.append(mod.register_forward_pre_hook(q_pre, with_kwargs=True))
        self._handles.append(mod.to_k.register_forward_pre_hook(k_pre))

    def close(self):
        for h in self._handles:
            h.remove()
        self._scheduler.step = self._step

    def timing(self) -> dict:
        """s_per_step: the denoiser's mean time per step after the first (the first builds the
        CPU kernels for every new shape: seconds), or the first's when only one ran."""
        st = [t for t in self.step_seconds if t > 0] or [self.seconds]
        cpu = [c for t, c in zip(self.step_seconds, self.step_cpu) if t > 0] or [0.0]
        warm, warm_cpu = st[1:] or st, cpu[1:] or cpu
        return {"s_per_step": round(sum(warm) / len(warm), 3), "s_first_step": round(st[0], 3),
                "cpu_s_per_step": round(sum(warm_cpu) / len(warm_cpu), 3)}

    def joint_tokens(self) -> dict | None:
        """The self-attention where each image attends to the most tokens: its own (query) tokens
        and the key/value tokens it attends to (its own + the other rows' sample)."""
        if not self.attn:
            return None
        name, (q, kv) = max(self.attn.items(), key=lambda kv_: (kv_[1][1], kv_[1][0]))
        return {"layer": name, "own": q, "attended": kv}


# ------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------


def texture(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random RGB texture (uint8): something for flow to match and CLIP to read."""
    import cv2

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), max(2.0, min(h, w) / 64))
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


def span_pair(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Two keyframes of one textured scene, the second panned by 3% of the width: a pair the flow
    guard takes for motion (neither a cut nor a static pair), so the video model runs."""
    dx = max(2, w // 32)
    big = texture(h + 8, w + dx + 8, seed=7)
    return big[4:4 + h, 4:4 + w].copy(), big[4:4 + h, 4 + dx:4 + dx + w].copy()


# ------------------------------------------------------------------------------------------------
# building
# ------------------------------------------------------------------------------------------------


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
            "float16": torch.float16, "fp16": torch.float16}[name]


def auto_caps(family: str, dtype, budget_gb: float, explicit: dict[str, int]) -> dict[str, int]:
    """Layer caps so that the family's weights fit `budget_gb` in `dtype`. The denoiser keeps
    its real depth as long as it can (its depth is what a run costs): the other components are
    halved first, the largest first, down to a quarter of their depth; then the denoiser; then
    the others again down to one block. Explicit caps are kept as given."""
    import torch

    nbytes = torch.empty((), dtype=dtype).element_size()
    caps = dict(explicit)
    comps = fm.FAMILIES[family]
    denoiser = fm.DENOISER[family]
    full = {n: int(max(np.atleast_1d(c.layers_as_run(None)))) for n, c in comps.items() if c.depth and n not in explicit}

    def sizes() -> dict[str, int]:
        return fm.meta_family(family, caps).params

    def over() -> bool:
        return sum(sizes().values()) * nbytes / 2**30 > budget_gb

    def halve(names, floor) -> bool:
        params = sizes()
        pick = [n for n in names if caps.get(n, full[n]) > floor(n)]
        if not pick:
            return False
        name = max(pick, key=lambda n: params[n])
        caps[name] = max(floor(name), caps.get(name, full[name]) // 2)
        return True

    others = [n for n in full if n != denoiser]
    while over():
        if halve(others, lambda n: max(1, full[n] // 4)):
            continue
        if denoiser in full and halve([denoiser], lambda n: 1):
            continue
        if not halve(others, lambda n: 1):
            break
    return caps


def build_component(comp: fm.Component, caps, device, dtype, rows: list, cpu_offload: bool, seed: int = 0):
    """Build one component on `device` (materialised there: on CUDA under offload it then moves
    to the CPU, where from_pretrained would leave it) and record a build row."""
    import torch

    layers = fm.layers_for(comp, caps)
    t0 = time.perf_counter()
    model = fm.build(comp, layers, device=device, dtype=dtype, seed=seed)
    if cpu_offload and str(device).startswith("cuda"):
        model.to("cpu")
        torch.cuda.empty_cache()
    rows.append({"family": comp.family, "component": comp.name, "stage": "build", "params": fm.count_params(model),
                 "layers": comp.layers_as_run(layers), "full_layers": comp.layers_as_run(None),
                 "dtype": str(dtype).replace("torch.", ""),
                 "seconds": round(time.perf_counter() - t0, 2), "published": comp.published})
    return model


def run_keyframe_family(family: str, args, rows: list) -> None:
    """Build the family's pipeline and run its stages (the adapter files live in a temporary
    folder for the run: ~1.8 GB for SDXL in float16)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"keyrender-fullsize-{family}-"))
    try:
        _run_keyframe_family(family, args, rows, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_keyframe_family(family: str, args, rows: list, tmp: Path) -> None:
    from diffusers import EulerDiscreteScheduler, PNDMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPImageProcessor

    from keyrender.keyframes import get_preset
    from keyrender.keyframes.adapters import AdapterFiles
    from keyrender.keyframes.base import CharacterCondition, KeyframeRequest, StyleAnchor
    from keyrender.keyframes.loading import generator_from_pipeline
    from keyrender.keyframes.tiny import tiny_tokenizers

    device, dtype, caps = args.device, torch_dtype(args.dtype[family]), args.caps[family]
    comps = fm.FAMILIES[family]
    xl = family == "sdxl"
    build = lambda name: build_component(comps[name], caps, device, dtype, rows, args.cpu_offload)  # noqa: E731
    with Peak(device) as peak:
        unet = build("unet")
        vae = build("vae")
        text_encoder = build("text_encoder")
        tok, tok_2 = tiny_tokenizers(tmp, vocab_size=comps["text_encoder"].config["vocab_size"])
        sched_cfg = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                         num_train_timesteps=1000)
        if xl:
            # stabilityai/stable-diffusion-xl-base-1.0 scheduler/scheduler_config.json
            scheduler = EulerDiscreteScheduler(**sched_cfg, timestep_spacing="leading", interpolation_type="linear")
            pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=build("text_encoder_2"),
                                             tokenizer=tok, tokenizer_2=tok_2, unet=unet, scheduler=scheduler,
                                             add_watermarker=False)
        else:
            # stable-diffusion-v1-5 scheduler/scheduler_config.json
            scheduler = PNDMScheduler(**sched_cfg, skip_prk_steps=True, set_alpha_to_one=False)
            pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet,
                                           scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                           requires_safety_checker=False)
        # the adapter files, at their published shapes for this UNet, in the run's dtype
        faceid_dir, faceid_name = fm.write_adapter(comps["faceid"], unet, tmp / "faceid", dtype, seed=1)
        style_dir, style_name = fm.write_adapter(comps["style"], unet, tmp / "style", dtype, seed=2)
        for name, d in (("faceid", faceid_dir / faceid_name), ("style", style_dir / style_name)):
            rows.append({"family": family, "component": name, "stage": "build",
                         "params": fm.adapter_params(comps[name], unet), "layers": None,
                         "dtype": str(dtype).replace("torch.", ""), "file_mb": round(d.stat().st_size / 2**20, 1),
                         "published": None})

    rows.append({"family": family, "component": "pipeline", "stage": "build", "peak_mb": round(peak.mb)})
    built: dict[str, object] = {}

    def style(p):
        # what load_ip_adapters does with the image encoder beside a style adapter, with the
        # encoder built here instead of read from <source>/image_encoder
        if getattr(p, "image_encoder", None) is None:
            enc = build("image_encoder")
            size = int(enc.config.image_size)
            p.register_modules(image_encoder=enc, feature_extractor=CLIPImageProcessor(size=size, crop_size=size))
            built["image_encoder"] = enc
        return AdapterFiles(str(style_dir), None, style_name)

    def controlnet(kind):
        built["controlnet"] = build("controlnet")
        return built["controlnet"]

    W, H = args.resolution[family]
    steps = args.steps[family]
    preset = get_preset(family).with_overrides(width=W, height=H, steps=steps, dtype=args.dtype[family])
    with Peak(device) as peak:
        gen = generator_from_pipeline(preset, pipe, AdapterFiles(str(faceid_dir), None, faceid_name),
                                      name=f"fullsize:{family}", device=device, dtype=dtype, style=style,
                                      controlnet_loader=controlnet, cpu_offload=args.cpu_offload,
                                      vae_tiling=args.vae_tiling)
    rows.append({"family": family, "component": "faceid", "stage": "load_adapters", "peak_mb": round(peak.mb)})
    rng = np.random.default_rng(0)
    chars = [CharacterCondition(f"char{k}", rng.standard_normal(gen.id_dim).astype(np.float32))
             for k in range(args.characters)]
    request = KeyframeRequest(
        shot="FS1", scene="S1", prompts=[PROMPTS[i % len(PROMPTS)] for i in range(args.keyframes)],
        times=list(np.linspace(0, 1, args.keyframes)), negative_prompt="blurry, low quality", width=W, height=H,
        seed=11, characters=chars,
        style=StyleAnchor("S1", text="film still, teal and orange", image=texture(H, W, 1),
                          anchor_keyframe=texture(H, W, 2)))
    keyframes: dict[int, np.ndarray] = {}
    for stage in args.stages:
        if stage not in STAGES[family]:
            continue
        probe = Probe(pipe.unet, pipe.scheduler, str(device).startswith("cuda"))
        t0, c0 = time.perf_counter(), time.process_time()
        with Peak(device) as peak:
            if stage == "keyframes":
                keyframes = gen.generate(request)
                out = [keyframes[i] for i in sorted(keyframes)]
            elif stage == "regenerate":
                if not keyframes:
                    keyframes = {i: texture(H, W, 20 + i) for i in range(request.count)}
                around = {0: keyframes[0], request.count - 1: keyframes[request.count - 1]}
                out = [gen.regenerate(replace(request, fixed=around), index=10_012, init_image=keyframes[1],
                                      prompt=request.prompts[1], strength=preset.regenerate_strength, attempt=0)]
            else:
                out = list(gen.generate(replace(request, control_image=texture(H, W, 3), control_type="canny")).values())
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        probe.close()
        for img in out:
            assert img.shape == (H, W, 3) and img.dtype == np.uint8, (stage, img.shape, img.dtype)
        assert probe.steps >= 1, f"{family} {stage}: the denoiser took no step"
        latents = probe.inputs[0] if probe.inputs else None
        rows_expected = 2 * (request.count + 2) if stage != "regenerate" else 2 * (1 + 2 + 2)  # + anchor, style
        assert latents and latents[0] == (rows_expected, 4, H // 8, W // 8), (stage, latents)
        assert latents[1] == str(dtype).replace("torch.", ""), (stage, latents)
        rows_in_batch = latents[0][0] if latents else None
        rows.append({
            "family": family, "component": "unet", "stage": stage, "device": str(device),
            "dtype": str(dtype).replace("torch.", ""), "resolution": f"{W}x{H}", "steps": probe.steps,
            "params": loaded_params(rows, family),
            "layers": {r["component"]: r["layers"] for r in rows if r.get("family") == family
                       and r.get("stage") == "build" and r.get("layers") is not None},
            "shapes": {"latents": list(latents[0]) if latents else None, "latents_dtype": latents[1] if latents else None,
                       "batch_rows": rows_in_batch, "joint_attention": probe.joint_tokens(),
                       "images": [list(out[0].shape), len(out)]},
            "peak_mb": round(peak.mb), **probe.timing(),
            "denoiser_calls": probe.calls, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
            "cpu_offload": bool(args.cpu_offload), "vae_tiling": bool(args.vae_tiling),
        })
    built.clear()
    del gen, pipe, unet, vae, text_encoder
    release(device)


def run_video_family(family: str, args, rows: list) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXConditionPipeline, WanImageToVideoPipeline
    from transformers import CLIPImageProcessor

    from keyrender.interpolate.generative import (
        WAN_TEXT_TOKENS,
        GenerativeInterpolator,
        generation_size,
        grid_frames,
        load_dtype,
        model_spec,
        place_pipeline,
        tiny_t5_tokenizer,
    )

    device, dtype, caps = args.device, torch_dtype(args.dtype[family]), args.caps[family]
    comps = fm.FAMILIES[family]
    spec = model_spec(family)
    dtypes = load_dtype(family, dtype)
    dt = (lambda name: dtypes.get(name, dtypes["default"])) if isinstance(dtypes, dict) else (lambda name: dtypes)
    build = lambda name: build_component(comps[name], caps, device, dt(name), rows, args.cpu_offload)  # noqa: E731
    with Peak(device) as peak:
        transformer = build("transformer")
        vae = build("vae")
        text_encoder = build("text_encoder")
        if family == "ltx":
            vae.use_framewise_encoding = False
            # the tokenizer: T5's special ids (pad 0, eos 1, unk 2) in-process, as the tiny model's;
            # LTX's tokenizer reads 128 tokens (convert_ltx_to_diffusers.py TOKENIZER_MAX_LENGTH)
            pipe = LTXConditionPipeline(transformer=transformer, vae=vae, text_encoder=text_encoder,
                                        tokenizer=tiny_t5_tokenizer(max_length=128),
                                        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False))
        else:
            image_encoder = build("image_encoder")
            size = int(image_encoder.config.image_size)
            pipe = WanImageToVideoPipeline(
                transformer=transformer, vae=vae, text_encoder=text_encoder,
                tokenizer=tiny_t5_tokenizer(max_length=WAN_TEXT_TOKENS), image_encoder=image_encoder,
                image_processor=CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
                scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), transformer_2=None)
        place_pipeline(pipe, device, cpu_offload=args.cpu_offload, vae_tiling=args.vae_tiling)
    rows.append({"family": family, "component": "pipeline", "stage": "build", "peak_mb": round(peak.mb)})

    W, H = args.resolution[family]
    frames = args.frames[family]
    a, b = span_pair(W, H)
    times = [k / (frames - 1) for k in range(1, frames - 1)]
    interp = GenerativeInterpolator(family, pipeline=pipe, device=device, dtype=dtype, steps=args.steps[family],
                                    prompt="a woman in a red coat walks through the rain", seed=0,
                                    max_frames=max(frames, spec.max_frames))
    gh, gw = generation_size(H, W, spec.spatial_multiple, None, spec.max_area)
    n = grid_frames(len(times), spec.temporal_multiple, max_frames=max(frames, spec.max_frames))
    probe = Probe(transformer, pipe.scheduler, str(device).startswith("cuda"))
    info: dict = {}
    t0, c0 = time.perf_counter(), time.process_time()
    with Peak(device) as peak:
        out = list(interp.inbetween(a, b, times, info=info))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    probe.close()
    assert info.get("mode") == "generative", f"{family}: the span was not generated ({info})"
    assert len(out) == len(times) and all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in out)
    assert probe.steps >= 1 and probe.inputs and probe.inputs[0][1] == str(dtype).replace("torch.", ""), probe.inputs
    if family == "ltx":
        lat = [int(transformer.config.in_channels), (n - 1) // spec.temporal_multiple + 1, gh // 32, gw // 32]
        # the sequence the transformer attends over: the video latents' tokens, plus the tokens of
        # the keyframe conditions not at frame 0 (LTXConditionPipeline appends B's latent frame)
        tokens = probe.inputs[0][0][1] if probe.inputs else lat[1] * lat[2] * lat[3]
    else:
        # the denoiser's input is the noise latents and the condition (mask + A, zeros, B) stacked
        lat = [int(transformer.config.out_channels), *probe.inputs[0][0][2:]] if probe.inputs else None
        p = transformer.config.patch_size
        tokens = lat[1] // p[0] * (lat[2] // p[1]) * (lat[3] // p[2]) if lat else None
    rows.append({
        "family": family, "component": "transformer", "stage": "span", "device": str(device),
        "dtype": str(dtype).replace("torch.", ""), "resolution": f"{W}x{H}", "generated": f"{gw}x{gh}x{n}",
        "frames": frames, "steps": probe.steps,
        "params": sum(r["params"] for r in rows if r.get("family") == family and r.get("stage") == "build" and "params" in r),
        "layers": {r["component"]: r["layers"] for r in rows if r.get("family") == family
                   and r.get("stage") == "build" and r.get("layers") is not None},
        "shapes": {"video_latents": lat, "tokens": tokens, "denoiser_input": list(probe.inputs[0][0]) if probe.inputs else None,
                   "denoiser_dtype": probe.inputs[0][1] if probe.inputs else None,
                   "frames_out": [list(out[0].shape), len(out)]},
        "peak_mb": round(peak.mb), **probe.timing(),
        "denoiser_calls": probe.calls, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
        "cpu_offload": bool(args.cpu_offload), "vae_tiling": bool(args.vae_tiling),
    })
    del interp, pipe, transformer, vae, text_encoder
    release(device)


def loaded_params(rows: list, family: str) -> int:
    """Parameters of every component of `family` built so far (what a stage runs with: the style
    encoder joins at the first style image, the ControlNet at the first control image)."""
    return sum(r["params"] for r in rows if r.get("family") == family and r.get("stage") == "build" and "params" in r)


class Rows(list):
    """The result rows; with --json each is printed as it is made."""

    def __init__(self, json_lines: bool):
        super().__init__()
        self.json_lines = json_lines

    def append(self, row: dict) -> None:
        super().append(row)
        if self.json_lines:
            print(json.dumps(row), flush=True)


def release(device: str) -> None:
    gc.collect()
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------
# the table
# ------------------------------------------------------------------------------------------------


def _fmt_layers(layers) -> str:
    if not layers:
        return "full"
    return ", ".join(f"{k} {v}" for k, v in layers.items())


def table(rows: list[dict]) -> str:
    out = ["| family | component | params (B) | layers as run | dtype | build s |",
           "| --- | --- | ---: | --- | --- | ---: |"]
    for r in rows:
        if r.get("stage") == "build" and "params" in r:
            layers = "-" if r["layers"] is None else (
                f"{r['layers']} (full)" if r["layers"] == r.get("full_layers") else f"{r['layers']} of {r.get('full_layers')}")
            out.append(f"| {r['family']} | {r['component']} | {r['params'] / 1e9:.3f} | {layers} "
                       f"| {r['dtype']} | {r.get('seconds', '-')} |")
    out += ["", "| family | stage | resolution | steps | s/step (first) | CPU s/step | stage s (CPU s) | peak MB | shapes |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        if r.get("stage") in ("keyframes", "regenerate", "control", "span"):
            sh = r["shapes"]
            if "latents" in sh:
                j = sh.get("joint_attention") or {}
                shapes = (f"latents {sh['latents']}; joint attention {j.get('own')} -> {j.get('attended')} tokens"
                          if j else f"latents {sh['latents']}")
            else:
                shapes = f"video latents {sh['video_latents']}, {sh['tokens']} tokens"
            res = r["resolution"] + (f" ({r['frames']} frames)" if r.get("frames") else "")
            out.append(f"| {r['family']} | {r['stage']} | {res} | {r['steps']} | {r['s_per_step']} ({r['s_first_step']}) "
                       f"| {r['cpu_s_per_step']} | {r['seconds']} ({r['cpu_seconds']}) | {r['peak_mb']} | {shapes} |")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", action="append", choices=list(fm.FAMILIES), help="repeatable; default: all")
    ap.add_argument("--device", default=None, help="default: cuda when there is one, else cpu")
    ap.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                    help="default: bfloat16 (on CUDA float16 for sdxl / sd15, as their presets)")
    ap.add_argument("--resolution", default=None, help="WxH (default: the model's own on CUDA, reduced on a CPU)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--frames", type=int, default=None, help="frames of a span, keyframes included (ltx, wan)")
    ap.add_argument("--layers", default="auto",
                    help="cap the repeated blocks: N (every component), name=N[,name=N] (those), 'auto' (CPU: "
                         "fit --weights-budget-gb; CUDA: full depth), 'full'")
    ap.add_argument("--weights-budget-gb", type=float, default=9.0, help="for --layers auto on a CPU")
    ap.add_argument("--stages", default=None, help="comma-separated: keyframes,regenerate,control,span (default all)")
    ap.add_argument("--keyframes", type=int, default=3)
    ap.add_argument("--characters", type=int, default=3)
    ap.add_argument("--cpu-offload", action="store_true", help="diffusers' model CPU offload (CUDA only)")
    ap.add_argument("--vae-tiling", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--json", action="store_true", help="one JSON object per line as rows are made")
    ap.add_argument("--configs", action="store_true",
                    help="print the configs table (counts on the meta device, weights by dtype) and exit")
    args = ap.parse_args(argv)
    if args.configs:
        return args

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = args.device.startswith("cuda")
    families = args.family or list(fm.FAMILIES)
    args.families = list(dict.fromkeys(families))
    args.stages = tuple(s.strip() for s in args.stages.split(",")) if args.stages else ("keyframes", "regenerate", "control", "span")
    defaults = FULL if cuda else CPU
    if args.resolution:
        w, h = (int(v) for v in args.resolution.lower().split("x"))
        args.resolution = {f: (w, h) for f in fm.FAMILIES}
    else:
        args.resolution = {f: defaults[f]["resolution"] for f in fm.FAMILIES}
    args.steps = {f: args.steps or defaults[f]["steps"] for f in fm.FAMILIES}
    args.frames = {f: args.frames or defaults[f]["frames"] for f in fm.FAMILIES}
    # default: the presets' float16 for the keyframe models and keyrender's bfloat16 for the video
    # models on CUDA (load_generator, load_pipeline); bfloat16 on a CPU
    args.dtype = {f: args.dtype or ("float16" if cuda and f in KEYFRAME_FAMILIES else "bfloat16") for f in fm.FAMILIES}
    args.caps = {}
    for f in args.families:
        if args.layers == "full":
            args.caps[f] = {}
        elif args.layers == "auto":
            args.caps[f] = {} if cuda else auto_caps(f, torch_dtype(args.dtype[f]), args.weights_budget_gb, {})
        else:
            args.caps[f] = fm.parse_layers(args.layers, f)
    return args


def configs_table() -> str:
    """Every component at its published config: parameters counted on the meta device, the bytes
    of its weights in the dtype keyrender loads it in on CUDA, and where the config comes from."""
    from keyrender.interpolate.generative import load_dtype

    import torch

    out = ["| family | component | class | params | weights on CUDA | published size | config from |",
           "| --- | --- | --- | ---: | ---: | --- | --- |"]
    for family, comps in fm.FAMILIES.items():
        built = fm.meta_family(family)
        default = torch.float16 if family in KEYFRAME_FAMILIES else torch.bfloat16
        dts = load_dtype(family, default) if family in VIDEO_FAMILIES else default
        for name, comp in comps.items():
            dt = dts.get(name, dts["default"]) if isinstance(dts, dict) else dts
            nbytes = built.params[name] * torch.empty((), dtype=dt).element_size()
            published = (f"{comp.published / 1e9:g}B ({comp.published_source})" if comp.published else "")
            out.append(f"| {family} | {name} | {comp.cls} | {built.params[name] / 1e9:.3f}B | "
                       f"{nbytes / 1e9:.2f} GB {str(dt).replace('torch.', '')} | {published} | {comp.source} |")
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.configs:
        print(configs_table())
        return 0
    rows = Rows(args.json)
    for family in args.families:
        if not any(s in STAGES[family] for s in args.stages):
            continue
        print(f"# {family}: {args.device} {args.dtype[family]}, {args.resolution[family][0]}x{args.resolution[family][1]}, "
              f"{args.steps[family]} steps, layer caps {args.caps[family] or 'none'}", file=sys.stderr, flush=True)
        if family in KEYFRAME_FAMILIES:
            run_keyframe_family(family, args, rows)
        else:
            run_video_family(family, args, rows)
    print(table(rows), file=sys.stdout if not args.json else sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
