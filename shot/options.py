"""What a run is asked to do: RenderOptions (library users build it; the CLI fills it from its
flags), and the decisions the plan makes from it for each shot: the judge (`face_model_name`), the
flow options (`interpolation_options`) and the in-betweener of generated keyframes
(`choose_inbetweener`), together `span_plan`. The plan (pipeline.plan) calls these once and the
job carries the answers (core.jobs); nothing below the plan calls them again.

Shot layer, torch-free: the planner, the executors and the shot renderer all read RenderOptions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyrender.core.errors import InputError
from keyrender.core.jobs import (  # noqa: F401  (the decisions' records; importable from here)
    DEFAULT_CAMERA_MOTION, DEFAULT_HEDGE, InbetweenChoice, InterpolationOptions, SpanPlan,
)
from keyrender.core.shotlist import Shot



@dataclass
class RenderOptions:
    """What a run is asked to do. Library users build this; the CLI fills it from its flags."""

    out: Path = Path("renders")
    # False: `out` is keyrender's default, not named by the user (the CLI without --out); a
    # symlink there is refused (a project from someone else may ship `renders -> /anywhere`)
    out_named: bool = True
    cast: Path | None = None           # default: <shot list folder>/cast
    preset: str = "sdxl"
    device: str | None = None          # "cpu", "cuda", "cuda:1"... None: cuda when present
    only: list[str] | None = None
    force: bool = False
    strict: bool = False               # shots still failing identity checks count as failed
    face_model: str | None = None      # overrides the preset's (pack name or folder)
    offline: bool | None = None        # None: HF_HUB_OFFLINE decides
    allow_download: bool = False       # face model packs
    # accept storyboard, style and control images outside the shot list's folder (absolute paths,
    # '..', symlinks out): they are copied into the outputs and the report, so off by default
    allow_outside_images: bool = False
    refine: bool = True
    check_every: int | None = None
    # checked in-betweens follow the faces of the keyframes around them (identity.follow) and are
    # embedded afresh only when they do not match; False embeds every checked frame (slower; the
    # method before issue 20, kept to measure against). False is part of the cache keys.
    follow_faces: bool = True
    keyframe_attempts: int = 3
    shot_generations: int = 12
    repair_depth: int = 3
    cache_dir: Path | None = None      # models built or fetched by keyrender (tiny face pack ...)
    # joint attention across a shot's keyframes (keyframes.presets.ConsistentAttentionOptions);
    # None: the preset's. Part of the shots' cache keys.
    consistent: Any = None
    # the flow interpolator's options (see interpolate.flow.FlowInterpolator): `hedge` (0..1) is
    # the run's default for the shots whose `hedge` column is blank; `camera_motion` applies to
    # every shot. A backend other than flow gets them as its `flow_options` when it takes those.
    # Part of the shots' cache keys. Not applied to an injected `interpolator` (used as built).
    hedge: float = DEFAULT_HEDGE
    camera_motion: bool = DEFAULT_CAMERA_MOTION
    # the stages' backends, to swap any of them (Protocols: KeyframeGenerator, FaceEmbedder,
    # Interpolator); None loads the preset's. Their `name` goes into the cache keys.
    generator: Any = field(default=None, repr=False)
    embedder: Any = field(default=None, repr=False)
    interpolator: Any = field(default=None, repr=False)

    def cast_dir(self, shotlist_path: Path) -> Path:
        return Path(self.cast) if self.cast else Path(shotlist_path).parent / "cast"


def face_model_name(options: RenderOptions, preset) -> str:
    """The judge: the face model that checks frames. --face-model, else $KEYRENDER_FACE_MODEL,
    else the built-in dlib model (the tiny preset: its tiny pack). The model that conditions
    generation (IP-Adapter FaceID takes insightface embeddings) is the preset's `face_model`."""
    from keyrender.identity.backend import DEFAULT_FACE_MODEL

    return (options.face_model or os.environ.get("KEYRENDER_FACE_MODEL")
            or ("tiny" if preset.tiny else DEFAULT_FACE_MODEL))


def backend_parameters(name: str) -> frozenset[str]:
    """The keyword options of the generative interpolation backend `name`, as it declares them
    (interpolate.backend_options); empty for the flow backend. Imports no torch."""
    if name == "flow":
        return frozenset()
    from keyrender.interpolate import backend_options

    return backend_options(name)


def interpolation_options(shot: Shot | None, options: RenderOptions, backend: str = "flow") -> InterpolationOptions:
    """A shot's effective flow options: its `hedge` column, else the run's (RenderOptions.hedge);
    the run's camera_motion. `backend`: the preset's interpolator name. shot None: the run's."""
    own = shot is not None and shot.hedge is not None
    hedge = float(shot.hedge if own else options.hedge)  # type: ignore[union-attr]
    source, camera = ("shot" if own else "run"), bool(options.camera_motion)
    if options.interpolator is not None:
        why = (f"an Interpolator instance was given (RenderOptions.interpolator, "
               f"{getattr(options.interpolator, 'name', type(options.interpolator).__name__)}): used as built")
        return InterpolationOptions(hedge, camera, source, None, why)
    if backend == "flow":
        return InterpolationOptions(hedge, camera, source, "flow")
    if "flow_options" in backend_parameters(backend):
        return InterpolationOptions(hedge, camera, source, "flow_options")
    return InterpolationOptions(hedge, camera, source, None, f"the {backend} interpolator takes no flow options")


def check_interpolation_options(options: RenderOptions) -> None:
    hedge = options.hedge
    if isinstance(hedge, bool) or not isinstance(hedge, (int, float)) or not 0.0 <= hedge <= 1.0:
        raise InputError(f"hedge: must be a number between 0 and 1, got {hedge!r}")
    if not isinstance(options.camera_motion, bool):
        raise InputError(f"camera_motion: must be True or False, got {options.camera_motion!r}")


def choose_inbetweener(preset, cache_dir: str | None = None) -> InbetweenChoice:
    """The in-betweener for spans that touch a generated keyframe (two generated keyframes a
    second apart differ in pose and framing, not by a camera move: flow between them is a morph).

    A preset whose `interpolator` is not flow uses it everywhere (its loader reports missing
    weights). Else its `video_interpolator` when its weights are on this machine: `video_model`,
    else the backend's KEYRENDER_MODEL_* variable (a local folder), else its hub id in the
    Hugging Face cache (`cache_dir`, default `weights.hub_cache_dir`). Nothing is downloaded: the
    check is `weights.resolve` offline (no network, no torch). Otherwise flow, with the reason."""
    from keyrender.core import weights
    from keyrender.core.errors import ModelNotFoundError

    if preset.interpolator != "flow":
        return InbetweenChoice(preset.interpolator, None, preset.interpolator)
    family = preset.video_interpolator
    if family is None:
        return InbetweenChoice("flow", None, None, f"preset {preset.name!r} names no keyframe-conditioned video model")
    from keyrender.interpolate.generative import model_spec

    spec = model_spec(family)
    location = weights.source(spec.weights, spec.env_var, preset.video_model)
    if location == "tiny":
        return InbetweenChoice(family, "tiny", family)
    what, cache = f"interpolation model {family!r}", weights.hub_cache_dir(cache_dir)
    try:
        found = weights.resolve(what, location, spec.weights, offline=True, cache_dir=cache,
                                probe_file="model_index.json", env_var=spec.env_var)
    except ModelNotFoundError as exc:
        why = str(exc)
        if not weights.looks_local(location):  # not "offline mode": a run never downloads it
            why = str(weights.missing_weights(
                what, location, spec.weights, f"in the Hugging Face cache {cache} (keyrender run uses a video "
                "model whose weights are on this machine and never downloads one)", spec.env_var))
        return InbetweenChoice("flow", None, family, why)
    return InbetweenChoice(family, found, family)


def span_plan(shot: Shot, options: RenderOptions, preset, memo: dict) -> SpanPlan:
    """How a shot's spans are filled: its flow options for the preset's interpolator, and the
    keyframe-conditioned video model (`choose_inbetweener`: the preset's, when its weights are on
    this machine, else flow with the reason) for the spans flow cannot make: those that touch a
    generated keyframe, and, when the weights are here, the spans between two storyboard pictures
    that turn out not to be a camera move. Decided once per `memo` (a plan) and carried by the
    shot's job. Imports no torch."""
    flow = interpolation_options(shot, options, preset.interpolator)
    if options.interpolator is not None:
        return SpanPlan(flow)
    if preset.name not in memo:
        memo[preset.name] = choose_inbetweener(preset)
    video = memo[preset.name]
    if shot.storyboard and not video.video:
        return SpanPlan(flow)  # storyboard pictures without a video model here: flow, nothing to say
    video_flow = interpolation_options(shot, options, video.backend) if video.video else None
    return SpanPlan(flow, video, video_flow)
