"""plan + render_shot: the stages called in order, the cache check, the manifest.

    plan(shotlist, options)          -> one ShotJob per shot, with its cache key and whether it is
                                        already rendered (torch-free: the dry run prints this)
    render(shotlist_path, options)   -> renders the jobs that are not done, returns a RunResult
    render_shot(job, context)        -> keyframes -> check/re-roll -> in-betweens (check/repair)
                                        -> encode; writes video.mp4, keyframes/, manifest.json

No model code lives here: models come from `keyframes`, `identity` and `interpolate`, loaded once
per run by RenderContext and reused across shots.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable

from keyrender.errors import InputError, KeyrenderError, ModelNotFoundError
from keyrender.fsutil import atomic_write_json, sha256_file
from keyrender.identity.cast import find_cast
from keyrender.shotlist import Scene, Shot, ShotList, load_shotlist

STAGE_VERSION = "5"  # bump when a stage's output for the same inputs changes
# 2: a scene's style image conditions its shots through the style IP-Adapter; repairs attend to
#    the neighbouring keyframes, the scene's anchor and its style image; the flow interpolator
#    lets untrusted pixels follow the camera and mixes in the cross-fade where its warps disagree
# 3: the flow interpolator's occlusion and blend fields at half the flow resolution (faster; the
#    in-betweens differ by a level here and there)
# 4: the camera between keyframes solved from feature matches (interpolate.camera), H^t, residual flow;
#    cut / fallback guard

# the flow interpolator's own defaults (interpolate.flow.FlowInterpolator; a test checks they agree).
# A shot interpolated with exactly these keeps the cache key it had before they were options.
DEFAULT_HEDGE = 0.5
DEFAULT_CAMERA_MOTION = True
MANIFEST_SCHEMA = "keyrender.manifest/1"
MANIFEST = "manifest.json"
VIDEO = "video.mp4"

Event = dict[str, Any]
Callback = Callable[[Event], None]


@dataclass
class RenderOptions:
    """What a run is asked to do. Library users build this; the CLI fills it from its flags."""

    out: Path = Path("renders")
    cast: Path | None = None           # default: <shot list folder>/cast
    preset: str = "sdxl"
    device: str | None = None          # "cpu", "cuda", "cuda:1"... None: cuda when present
    only: list[str] | None = None
    force: bool = False
    strict: bool = False               # shots still failing identity checks count as failed
    face_model: str | None = None      # overrides the preset's (pack name or folder)
    offline: bool | None = None        # None: HF_HUB_OFFLINE decides
    allow_download: bool = False       # face model packs
    refine: bool = True
    check_every: int | None = None
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


@dataclass
class ShotJob:
    """One shot to render: where it goes, its size, its cache key, and whether it is done."""

    shot: Shot
    scene: Scene
    out_dir: Path
    width: int
    height: int
    cache_key: str
    done: bool
    first_in_scene: bool

    @property
    def frames(self) -> int:
        return self.shot.frames


@dataclass
class ShotResult:
    shot: str
    status: str                        # "rendered" | "cached" | "failed"
    out_dir: Path
    video: Path | None = None
    manifest: Path | None = None
    flagged: list[int] = field(default_factory=list)
    reason: str | None = None
    seconds: float = 0.0
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("rendered", "cached")


@dataclass
class RunResult:
    shots: list[ShotResult]
    out: Path
    strict: bool = False
    report: Path | None = None         # out/report.html, once written
    timeline: Path | None = None       # out/timeline.otio, once written

    @property
    def failed(self) -> list[ShotResult]:
        return [s for s in self.shots if not s.ok or (self.strict and s.flagged)]

    @property
    def exit_code(self) -> int:
        from keyrender.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_SHOTS_FAILED

        if not self.failed:
            return EXIT_OK
        hard = [s for s in self.shots if not s.ok]
        if hard and len(hard) == len(self.shots) and all(s.error_type == "input" for s in hard):
            return EXIT_BAD_INPUT
        return EXIT_SHOTS_FAILED


# ---------------------------------------------------------------------------------------------
# planning (no torch)


def _sha256_file(path: Path, cache: dict[Path, str] | None = None) -> str:
    if cache is not None and path in cache:
        return cache[path]
    digest = sha256_file(path)
    if cache is not None:
        cache[path] = digest
    return digest


def _face_model_name(options: RenderOptions, preset) -> str:
    return options.face_model or os.environ.get("KEYRENDER_FACE_MODEL") or preset.face_model


@dataclass(frozen=True)
class InterpolationOptions:
    """The flow options one shot is interpolated with, where they come from, and whether the
    run's interpolator takes them.

    applied: "flow" (the flow backend's own options), "flow_options" (a backend that starts
    from the flow interpolator and takes its options as `flow_options`), or None with `why_not`
    (an injected RenderOptions.interpolator is used as built; a backend without flow options).
    """

    hedge: float
    camera_motion: bool
    hedge_from: str                    # "shot" (its hedge column) or "run" (RenderOptions.hedge)
    applied: str | None
    why_not: str | None = None

    @property
    def flow(self) -> dict[str, Any]:
        """The FlowInterpolator keyword arguments."""
        return {"hedge": self.hedge, "camera_motion": self.camera_motion}

    @property
    def is_default(self) -> bool:
        return self.hedge == DEFAULT_HEDGE and self.camera_motion == DEFAULT_CAMERA_MOTION

    def manifest(self) -> dict[str, Any]:
        out = {**self.flow, "hedge_from": self.hedge_from, "applied": self.applied is not None}
        if self.why_not:
            out["why_not"] = self.why_not
        return out


@functools.lru_cache(maxsize=None)
def _backend_parameters(name: str) -> frozenset[str]:
    """The keyword arguments the constructor of the generative interpolation backend `name`
    takes (names as in interpolate.get_interpolator); empty for any other name. Imports no torch."""
    if name in ("ltx", "wan"):
        import inspect

        from keyrender.interpolate.generative import GenerativeInterpolator

        return frozenset(inspect.signature(GenerativeInterpolator).parameters)
    return frozenset()


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
    if "flow_options" in _backend_parameters(backend):
        return InterpolationOptions(hedge, camera, source, "flow_options")
    return InterpolationOptions(hedge, camera, source, None, f"the {backend} interpolator takes no flow options")


def _check_interpolation_options(options: RenderOptions) -> None:
    hedge = options.hedge
    if isinstance(hedge, bool) or not isinstance(hedge, (int, float)) or not 0.0 <= hedge <= 1.0:
        raise InputError(f"hedge: must be a number between 0 and 1, got {hedge!r}")
    if not isinstance(options.camera_motion, bool):
        raise InputError(f"camera_motion: must be True or False, got {options.camera_motion!r}")


def prepare(shotlist_path: str | Path, options: RenderOptions,
            unselected: list[ShotJob] | None = None) -> tuple[ShotList, list[ShotJob]]:
    """Read and validate the shot list against the cast, then plan it. Writes nothing and
    imports no torch: the dry run and render() both start here. Raises InputError.
    `unselected`: see `plan`."""
    shotlist_path = Path(shotlist_path)
    cast_dir = options.cast_dir(shotlist_path)
    cast = find_cast(cast_dir)
    shotlist = load_shotlist(shotlist_path, cast=cast.keys())
    _check_cast(shotlist, cast_dir, cast)
    return shotlist, plan(shotlist, options, cast, unselected)


def plan(shotlist: ShotList, options: RenderOptions, cast: dict[str, list[Path]] | None = None,
         unselected: list[ShotJob] | None = None) -> list[ShotJob]:
    """One job per selected shot with its output folder, size and cache key. When `unselected`
    is a list, the shots left out by `options.only` whose render is done and current are
    appended to it (the run's report and timeline still show them).

    The key hashes everything that changes a shot's output: the row, the files it names, the
    references of its characters, the preset, the face model, the stage version, and for a
    shot that is not its scene's first, the key of that first shot (its style anchor), and the
    shot's interpolation options (`interpolation_options`) when they apply and are not the
    defaults (so renders from before they were options keep their keys).
    """
    from keyrender.keyframes.presets import get_preset

    _check_interpolation_options(options)
    preset = get_preset(options.preset)
    if options.consistent is not None:  # in the key through the preset
        preset = preset.with_overrides(consistent=options.consistent.check())
    face_model = _face_model_name(options, preset)
    if cast is None:
        cast = find_cast(options.cast_dir(shotlist.path))
    hashes: dict[Path, str] = {}
    selected = {s.id for s in shotlist.select(options.only)}
    scene_keys: dict[str, str] = {}
    jobs = []
    for shot in shotlist.shots:  # every shot: a later shot's key depends on its scene's first
        scene = shotlist.scene_of(shot)
        width, height = _shot_size(shot, preset)
        files = {
            "keyframe_images": [_sha256_file(p, hashes) if p else None for p in shot.keyframe_images],
            "style_image": _sha256_file(scene.style_image, hashes) if scene.style_image else None,
            "control_image": _sha256_file(shot.control_image, hashes) if shot.control_image else None,
        }
        identities = {
            name: hashlib.sha256("".join(_sha256_file(p, hashes) for p in cast.get(name, [])).encode()).hexdigest()
            for name in shot.characters
        }
        first = scene.shots[0].id == shot.id
        key_data = {
            "stage": STAGE_VERSION,
            # notes, the line number and the raw row change nothing in the pictures; hedge goes in
            # below as the effective value (a blank column and the run's default may agree)
            "shot": {k: _jsonable(v) for k, v in asdict(shot).items() if k not in ("line", "row", "notes", "hedge")},
            "size": [width, height],
            "scene_style": scene.style,
            "files": files,
            "identities": identities,
            "preset": _jsonable(asdict(preset)) if not shot.storyboard else "storyboard",
            "face_model": face_model if shot.characters else None,
            "backends": [getattr(b, "name", type(b).__name__) for b in
                         (options.generator, options.embedder, options.interpolator) if b is not None],
            "refine": [options.keyframe_attempts, options.shot_generations, options.repair_depth,
                       options.check_every] if options.refine and shot.refine and shot.characters else False,
            "anchor": None if first or shot.storyboard else scene_keys.get(shot.scene),
        }
        interp = interpolation_options(shot, options, preset.interpolator)
        if interp.applied and not interp.is_default:
            key_data["interpolation"] = interp.flow
        key = hashlib.sha256(json.dumps(key_data, sort_keys=True, default=str).encode()).hexdigest()[:32]
        if first:
            scene_keys[shot.scene] = key
        out_dir = Path(options.out) / shot.id
        if shot.id not in selected:
            if unselected is not None and is_done(out_dir, key):
                unselected.append(ShotJob(shot, scene, out_dir, width, height, key, True, first))
            continue
        done = not options.force and is_done(out_dir, key)
        jobs.append(ShotJob(shot, scene, out_dir, width, height, key, done, first))
    return jobs


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Path):
        return v.name
    if isinstance(v, Fraction):
        return f"{v.numerator}/{v.denominator}"
    return v


def _shot_size(shot: Shot, preset) -> tuple[int, int]:
    """The shot's width and height: its own, else the storyboard's (rounded down to /8), else the
    preset's."""
    if shot.width and shot.height:
        return shot.width, shot.height
    w, h = preset.width, preset.height
    if shot.storyboard:
        from keyrender.media import image_size

        iw, ih = image_size(shot.keyframe_images[0])
        w, h = max(64, iw // 8 * 8), max(64, ih // 8 * 8)
    return shot.width or w, shot.height or h


def read_manifest(out_dir: Path) -> dict | None:
    try:
        return json.loads((Path(out_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def is_done(out_dir: Path, key: str) -> bool:
    """The shot at out_dir was rendered with this key and its files are intact (size + sha256)."""
    m = read_manifest(out_dir)
    if not m or m.get("cache_key") != key or m.get("status") != "done":
        return False
    for rec in m.get("files", []):
        p = Path(out_dir) / rec["path"]
        try:
            if p.stat().st_size != rec["bytes"] or _sha256_file(p) != rec["sha256"]:
                return False
        except OSError:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# models, loaded once per run


class RenderContext:
    """The models of a run, loaded on first use and shared by every shot.

    A missing face model does not stop a storyboard render: checks are then off, and `checks_off`
    says why. A missing keyframe model fails the shots that need it, each with the reason.
    """

    def __init__(self, options: RenderOptions, cast_dir: Path, emit: Callback):
        from keyrender.keyframes.presets import get_preset

        self.options = options
        self.preset = get_preset(options.preset)
        self.cast_dir = cast_dir
        self.emit = emit
        self._generator = None
        self._embedder = None
        self._embedder_error: KeyrenderError | None = None
        self._identities: dict[str, Any] = {}
        self._interpolators: dict[tuple, Any] = {}  # one per distinct set of flow options
        self.anchors: dict[str, Any] = {}

    @property
    def cache_dir(self) -> Path:
        if self.options.cache_dir:
            return Path(self.options.cache_dir)
        from keyrender.fsutil import cache_root

        return cache_root()

    def generator(self, offline: bool | None = None):
        """The keyframe generator, loaded once. `offline` applies when --offline/--online was
        not given (repairs of storyboard shots pass True: no surprise multi-GB download)."""
        if self._generator is None and self.options.generator is not None:
            self._generator = self.options.generator
        if self._generator is None:
            from keyrender.keyframes import load_generator

            self.emit({"event": "load", "what": f"keyframe models ({self.preset.name})"})
            self._generator = load_generator(
                self.preset, device=self.options.device,
                offline=self.options.offline if self.options.offline is not None else offline)
        # joint attention as this run asks (a loaded generator may be shared with earlier runs)
        if self.options.consistent is not None or self.options.generator is None:
            want = self.options.consistent or self.preset.consistent
            if hasattr(self._generator, "set_consistent") and getattr(self._generator, "consistent", None) != want:
                self._generator.set_consistent(**asdict(want))
        return self._generator

    def embedder(self):
        """The face model, or None (and checks_off set) when it is not available."""
        if self._embedder is None and self.options.embedder is not None:
            self._embedder = self.options.embedder
        if self._embedder is None and self._embedder_error is None:
            from keyrender.identity import load_face_model

            name = _face_model_name(self.options, self.preset)
            providers = None
            if self.options.device and self.options.device.startswith("cuda"):
                providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            try:
                if name == "tiny":
                    from keyrender.identity.testing import make_tiny_face_pack

                    name = str(make_tiny_face_pack(self.cache_dir / "faces" / "tiny"))
                self._embedder = load_face_model(name, providers=providers, allow_download=self.options.allow_download)
            except ModelNotFoundError as exc:
                self._embedder_error = exc
                self.emit({"event": "warning", "message": f"identity checks are off: {exc}"})
        return self._embedder

    @property
    def checks_off(self) -> str | None:
        return None if self._embedder_error is None else str(self._embedder_error)

    def identities(self, names: Iterable[str]) -> dict[str, Any]:
        """The Identity of each name, from the store next to the cast (built if stale)."""
        names = [n for n in names if n not in self._identities]
        if names:
            embedder = self.embedder()
            from keyrender.identity import IdentityStore

            store = IdentityStore(self.cast_dir)
            if embedder is None:
                raise self._embedder_error  # type: ignore[misc]
            self._identities.update(store.build(embedder, names=names))
        return self._identities

    def interpolator(self, flow: InterpolationOptions | None = None):
        """The interpolator for these options (None: the run's, as for a shot without a hedge),
        built on first use and reused by every shot with the same options. An injected
        RenderOptions.interpolator is returned as it is, whatever the options."""
        if self.options.interpolator is not None:
            return self.options.interpolator
        name = self.preset.interpolator
        if flow is None:
            flow = interpolation_options(None, self.options, name)
        key = (flow.hedge, flow.camera_motion) if flow.applied else ()
        if key not in self._interpolators:
            from keyrender.interpolate import get_interpolator

            options: dict[str, Any] = {}
            if name != "flow":
                options = {"device": self.options.device, "offline": self.options.offline}
                built = next(iter(self._interpolators.values()), None)
                if built is not None and "pipeline" in _backend_parameters(name):
                    options["pipeline"] = built.pipeline  # one set of weights for every variant
            if flow.applied == "flow":
                options.update(flow.flow)
            elif flow.applied == "flow_options":
                options["flow_options"] = flow.flow
            self._interpolators[key] = get_interpolator(name, **options)
        return self._interpolators[key]


# ---------------------------------------------------------------------------------------------
# rendering


def render(shotlist_path: str | Path, options: RenderOptions | None = None,
           callback: Callback | None = None, executor: Any = None) -> RunResult:
    """Render every shot of a shot list that is not rendered already. The library entry point.

    Input errors (the shot list, the cast, --only) raise InputError before anything is written.
    A shot that fails is reported in the result and the others go on.
    """
    options = options or RenderOptions()
    emit = callback or (lambda e: None)
    shotlist_path = Path(shotlist_path)
    cast_dir = options.cast_dir(shotlist_path)
    others: list[ShotJob] = []
    shotlist, jobs = prepare(shotlist_path, options, others if options.only else None)
    emit({"event": "plan", "shots": [j.shot.id for j in jobs], "todo": [j.shot.id for j in jobs if not j.done]})

    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(out)
    from keyrender.executors import get_executor

    results: list[ShotResult] = get_executor(executor).run(jobs, options, cast_dir, emit)
    run = RunResult(results, out, strict=options.strict)
    _write_run_files(run, shotlist, emit, [_cached_result(j) for j in others])
    emit({"event": "run_done", "exit_code": run.exit_code,
          "rendered": sum(r.status == "rendered" for r in results),
          "cached": sum(r.status == "cached" for r in results),
          "failed": sum(r.status == "failed" for r in results)})
    return run


def _write_run_files(run: RunResult, shotlist: ShotList, emit: Callback,
                     unselected: list[ShotResult] = ()) -> None:
    """report.html and timeline.otio in the output folder (also when shots failed). A failure
    to write them is a warning: the shots are rendered and the exit code says how they went.
    `unselected`: finished shots that --only left out; the files show them too, in shot-list
    order, so a partial rerun does not shrink the report and the timeline to its own shots."""
    from keyrender.report import write_report
    from keyrender.timeline import write_otio

    shown = run
    if unselected:
        order = {s.id: i for i, s in enumerate(shotlist.shots)}
        shots = sorted([*run.shots, *unselected], key=lambda r: order.get(r.shot, len(order)))
        shown = RunResult(shots, run.out, strict=run.strict)
    for attr, write, name in (("report", write_report, "report.html"), ("timeline", write_otio, "timeline.otio")):
        try:
            setattr(run, attr, write(shown, shotlist, run.out / name))
        except KeyrenderError as exc:
            emit({"event": "warning", "message": str(exc)})
    emit({"event": "report", "report": str(run.report) if run.report else None,
          "timeline": str(run.timeline) if run.timeline else None})


def _check_cast(shotlist: ShotList, cast_dir: Path, cast: dict[str, list[Path]]) -> None:
    """Every character named by a shot has at least one reference image."""
    problems = []
    for shot in shotlist.shots:
        for name in shot.characters:
            if name in cast and not cast[name]:
                problems.append(f"{shotlist.path}:{shot.line}: shot {shot.id}: character '{name}' has no reference images in {cast_dir / name}")
    if problems:
        raise InputError("\n".join(dict.fromkeys(problems)))


def _clean_leftovers(out: Path) -> None:
    """Remove the staging folders of runs that were killed."""
    for d in out.glob(".staging-*"):
        shutil.rmtree(d, ignore_errors=True)
    for d in out.glob(".old-*"):
        shutil.rmtree(d, ignore_errors=True)


def _cached_result(job: ShotJob) -> ShotResult:
    m = read_manifest(job.out_dir) or {}
    flagged = m.get("identity", {}).get("flagged_frames", [])
    return ShotResult(job.shot.id, "cached", job.out_dir, job.out_dir / VIDEO, job.out_dir / MANIFEST, flagged)


def _load_anchor(job: ShotJob, context: RenderContext) -> None:
    m = read_manifest(job.out_dir) or {}
    kfs = m.get("keyframes") or []
    if kfs:
        from keyrender.media import load_image

        try:
            context.anchors[job.scene.id] = load_image(job.out_dir / kfs[0]["path"])
        except InputError:
            pass


def render_shot_safely(job: ShotJob, context: RenderContext) -> ShotResult:
    """render_shot, with any failure turned into a failed ShotResult naming the reason."""
    t0 = time.perf_counter()
    try:
        return render_shot(job, context)
    except KeyrenderError as exc:
        reason, kind = str(exc), ("input" if isinstance(exc, InputError) else "error")
    except MemoryError:
        reason, kind = "out of memory", "error"
    except Exception as exc:  # a shot's failure must not cost the others
        if type(exc).__name__ == "OutOfMemoryError":
            reason = "out of GPU memory (try --device cpu, a smaller size, or a lighter preset)"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        kind = "error"
        context.emit({"event": "debug", "shot": job.shot.id, "traceback": traceback.format_exc()})
    return ShotResult(job.shot.id, "failed", job.out_dir, reason=reason,
                      seconds=time.perf_counter() - t0, error_type=kind)


def render_shot(job: ShotJob, context: RenderContext) -> ShotResult:
    """Render one shot into a staging folder, then move it into place (old output replaced)."""
    from keyrender.media import VideoWriter, fit_image, load_image, save_image
    from keyrender.refine import Budget, RefineConfig, SpanRecorder, fill_span, refine_keyframes

    shot, opts = job.shot, context.options
    emit = context.emit
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    warnings: list[str] = []
    staging = Path(opts.out) / f".staging-{shot.id}-{uuid.uuid4().hex[:8]}"
    (staging / "keyframes").mkdir(parents=True)
    try:
        # 1. keyframes: the storyboard's, then the generated ones in one joint call
        t = time.perf_counter()
        kf_frames = list(shot.keyframe_frames)
        images: dict[int, Any] = {}
        for i, path in enumerate(shot.keyframe_images):
            if path is not None:
                images[i] = fit_image(load_image(path), job.width, job.height)
        to_generate = [i for i in range(len(kf_frames)) if i not in images]
        identities = {}
        if shot.characters and (to_generate or (opts.refine and shot.refine)):
            try:
                identities = context.identities(shot.characters)
            except ModelNotFoundError:
                if to_generate:
                    raise
        request = _keyframe_request(job, context, identities, images)
        if to_generate:
            emit({"event": "stage", "shot": shot.id, "stage": "keyframes", "count": len(to_generate)})
            generator = context.generator()
            images.update(generator.generate(request, indices=to_generate))
            for line in getattr(generator, "prompt_warnings", lambda *a: [])(request, to_generate):
                warnings.append(line)
                emit({"event": "warning", "message": line})
        timings["keyframes_s"] = time.perf_counter() - t

        # 2. identity check of each keyframe -> re-roll the failing ones
        t = time.perf_counter()
        checker, why_off = _checker(job, context, identities)
        config = RefineConfig(keyframe_attempts=opts.keyframe_attempts, shot_generations=opts.shot_generations,
                              repair_depth=opts.repair_depth, check_every=opts.check_every,
                              repair_strength=context.preset.regenerate_strength)
        budget = Budget(config.shot_generations)
        kf_records: dict[int, dict] = {}
        expected = list(shot.characters)
        if checker is not None:
            emit({"event": "stage", "shot": shot.id, "stage": "check keyframes"})
            outcome = refine_keyframes(request, images, to_generate, checker, expected,
                                       context.generator if to_generate else None, config, budget)
            images, kf_records = outcome.images, outcome.records
            if outcome.skipped:
                why_off, checker = outcome.skipped, None
        timings["check_keyframes_s"] = time.perf_counter() - t
        if job.first_in_scene and 0 in images:
            context.anchors[shot.scene] = images[0]

        kf_entries = []
        for i, f in enumerate(kf_frames):
            name = f"keyframes/kf{i:03d}_f{f:05d}.png"
            save_image(staging / name, images[i])
            kf_entries.append({
                "index": i, "frame": f, "time": float(Fraction(f) / shot.fps), "path": name,
                "source": "storyboard" if i not in to_generate else "generated",
                "prompt": request.prompts[i],
                "seed": None if i not in to_generate else _seed(shot.seed, i, kf_records.get(i, {}).get("chosen_attempt", 0)),
                **({"identity": kf_records[i]} if i in kf_records else {}),
            })

        # 3-5. in-betweens, checked and repaired span by span, streamed into the encoder
        t = time.perf_counter()
        rec = SpanRecorder()
        repair = _repair_fn(job, context, request, warnings, images) if checker is not None else None
        flow = interpolation_options(shot, opts, context.preset.interpolator)
        if flow.applied is None and (shot.hedge is not None or not flow.is_default):
            line = f"shot {shot.id}: hedge {flow.hedge:g} / camera motion {'on' if flow.camera_motion else 'off'} not applied: {flow.why_not}"
            warnings.append(line)
            emit({"event": "warning", "message": line})
        interp = context.interpolator(flow)
        # generated keyframes differ in pose and framing, not by a camera move: optical flow
        # between them is a morph. Say so when that is what the shot gets.
        inbetween_fallback = None
        if to_generate and getattr(interp, "name", "") == "flow":
            inbetween_fallback = (
                f"shot {shot.id}: generated keyframes in-betweened by optical flow (a morph between poses), "
                f"not by a keyframe-conditioned video model: preset {context.preset.name!r} uses the flow "
                f"interpolator; run `keyrender interpolate --backend ltx` (or wan) with its weights for that")
            warnings.append(inbetween_fallback)
            emit({"event": "warning", "message": inbetween_fallback})

        def interpolate(a, b, times, info):
            return interp.inbetween(a, b, times, info=info)

        stride = config.stride(shot.frames)
        written = 0
        video_path = staging / VIDEO
        emit({"event": "stage", "shot": shot.id, "stage": "interpolate", "frames": shot.frames})
        with VideoWriter(video_path, shot.fps, job.width, job.height) as writer:
            writer.write(images[0])
            written = 1
            emit({"event": "frame", "shot": shot.id, "done": written, "total": shot.frames})
            for i in range(len(kf_frames) - 1):
                fa, fb = kf_frames[i], kf_frames[i + 1]
                for f, img, source in fill_span(fa, images[i], fb, images[i + 1], interpolate,
                                                checker, expected, repair, config, budget, stride, rec):
                    if source == "repair":
                        name = f"keyframes/repair_f{f:05d}.png"
                        save_image(staging / name, img)
                        kf_entries.append({"index": None, "frame": f, "time": float(Fraction(f) / shot.fps),
                                           "path": name, "source": "repair"})
                    writer.write(img)
                    written += 1
                    emit({"event": "frame", "shot": shot.id, "done": written, "total": shot.frames})
                writer.write(images[i + 1])
                written += 1
                emit({"event": "frame", "shot": shot.id, "done": written, "total": shot.frames})
        if written != shot.frames:
            raise KeyrenderError(f"shot {shot.id}: wrote {written} frames, expected {shot.frames}")
        timings["interpolate_encode_s"] = time.perf_counter() - t

        # keyframe scores go into the per-frame record too
        for i, f in enumerate(kf_frames):
            if i in kf_records:
                rec.frame_scores[f] = kf_records[i]["final"]
                if not kf_records[i]["final"]["passed"]:
                    rec.flagged.add(f)
        flagged = sorted(rec.flagged)
        kf_entries.sort(key=lambda e: e["frame"])
        timings["total_s"] = time.perf_counter() - t_start

        manifest = {
            "schema": MANIFEST_SCHEMA,
            "shot": shot.id, "scene": shot.scene, "status": "done",
            "flagged": bool(flagged),
            "cache_key": job.cache_key,
            "inputs": {
                "row": shot.row, "line": shot.line, "prompt": shot.prompt,
                "negative_prompt": shot.negative_prompt, "characters": list(shot.characters),
                "preset": context.preset.name if to_generate else None,
                "seed": shot.seed, "notes": shot.notes,
            },
            "video": {"path": VIDEO, "frames": shot.frames, "fps": f"{shot.fps.numerator}/{shot.fps.denominator}",
                      "width": job.width, "height": job.height, "codec": "h264", "pix_fmt": "yuv420p"},
            "keyframes": kf_entries,
            "interpolation": {"backend": getattr(interp, "name", context.preset.interpolator),
                              "options": flow.manifest(), "spans": rec.spans,
                              "fallback": inbetween_fallback},
            "identity": {
                "checked": checker is not None,
                "why_not": why_off,
                "characters": list(shot.characters),
                "thresholds": {n: round(float(identities[n].threshold), 4) for n in shot.characters if n in identities},
                "check_every": stride,
                "budget": {"generations": config.shot_generations, "spent": budget.spent},
                "repairs": rec.repairs,
                "flagged_frames": flagged,
                "frames": {str(f): s for f, s in sorted(rec.frame_scores.items())},
            },
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "warnings": warnings,
        }
        manifest["files"] = [_file_record(staging, p) for p in [VIDEO] + [e["path"] for e in kf_entries]]
        atomic_write_json(staging / MANIFEST, manifest)
        _swap_into_place(staging, job.out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ShotResult(shot.id, "rendered", job.out_dir, job.out_dir / VIDEO, job.out_dir / MANIFEST,
                      flagged, seconds=time.perf_counter() - t_start)


def _seed(shot_seed: int, index: int, attempt: int) -> int:
    from keyrender.keyframes.base import derive_seed

    return derive_seed(shot_seed, index, attempt)


def _file_record(root: Path, rel: str) -> dict:
    p = root / rel
    return {"path": rel, "bytes": p.stat().st_size, "sha256": _sha256_file(p)}


def _swap_into_place(staging: Path, final: Path) -> None:
    """Replace `final` by `staging` with two renames; a crash between them loses only old output."""
    old = None
    if final.exists():
        old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _keyframe_request(job: ShotJob, context: RenderContext, identities: dict, images: dict):
    from keyrender.keyframes.base import CharacterCondition, KeyframeRequest, StyleAnchor
    from keyrender.media import fit_image, load_image

    shot, scene = job.shot, job.scene
    characters = [
        CharacterCondition(name=n, embedding=identities[n].centroid, region=shot.layout.get(n),
                           reference_embeddings=identities[n].embeddings)
        for n in shot.characters if n in identities
    ]
    style_image = fit_image(load_image(scene.style_image), job.width, job.height) if scene.style_image else None
    style = StyleAnchor(scene=scene.id, text=scene.style, image=style_image,
                        anchor_keyframe=None if job.first_in_scene else context.anchors.get(scene.id))
    control = fit_image(load_image(shot.control_image), job.width, job.height) if shot.control_image else None
    prompts = [", ".join(p for p in (prompt, scene.style) if p) for prompt in shot.keyframe_prompts()]
    return KeyframeRequest(
        shot=shot.id, scene=scene.id, prompts=prompts, times=list(shot.keyframe_times),
        negative_prompt=shot.negative_prompt, width=job.width, height=job.height, seed=shot.seed,
        characters=characters,
        identity_strength=shot.identity_strength if shot.identity_strength is not None else context.preset.identity_strength,
        style=style, control_image=control, control_type=shot.control_type if control is not None else None,
        fixed=dict(images),
    )


def _checker(job: ShotJob, context: RenderContext, identities: dict):
    """A check(image, expected) callable, or None with the reason it is off."""
    shot = job.shot
    if not shot.characters:
        return None, "no characters in this shot"
    if not context.options.refine:
        return None, "turned off (--no-refine)"
    if not shot.refine:
        return None, "turned off for this shot (refine=off)"
    embedder = context.embedder()
    if embedder is None:
        return None, f"no face model: {context.checks_off}"
    from keyrender.identity import FaceChecker

    fc = FaceChecker(embedder, identities)
    return fc.check, None


def _repair_fn(job: ShotJob, context: RenderContext, request, warnings: list[str], keyframes: dict):
    """repair(frame, image, attempt) -> (image, seed), or None when no generator can be loaded
    (the reason goes into the shot's warnings once). The generator gets the two keyframes around
    the frame as joint-attention context."""
    from dataclasses import replace

    from keyrender.refine import REPAIR_INDEX_BASE

    shot = job.shot
    prompts = shot.keyframe_prompts()
    kf = shot.keyframe_frames
    unavailable: list[str] = []

    def repair(frame: int, image, attempt: int):
        if unavailable:
            return None
        try:
            # a storyboard shot never asked for a keyframe model: use one only if it is local
            generator = context.generator(offline=True if job.shot.storyboard else None)
        except KeyrenderError as exc:
            unavailable.append(str(exc))
            warnings.append(f"in-between repair unavailable: {exc}")
            return None
        # the prompt of the nearest keyframe (beats follow the shot's time)
        nearest = min(range(len(kf)), key=lambda i: abs(kf[i] - frame))
        before = max([i for i in range(len(kf)) if kf[i] <= frame], default=0)
        around = {i: keyframes[i] for i in (before, min(before + 1, len(kf) - 1)) if i in keyframes}
        index = REPAIR_INDEX_BASE + frame
        new = generator.regenerate(
            replace(request, fixed=around), index=index, init_image=image, prompt=prompts[nearest],
            strength=context.preset.regenerate_strength, attempt=attempt,
            identity_strength=min(1.5, request.identity_strength + 0.15 * attempt))
        return new, _seed(shot.seed, index, attempt)

    return repair
