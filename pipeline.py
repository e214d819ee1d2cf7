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

import errno
import hashlib
import json
import os
import re
import shutil
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable

from keyrender.errors import InputError, KeyrenderError, ModelNotFoundError, OutputError
from keyrender.fsutil import atomic_write_json, sha256_file
from keyrender.identity.cast import find_cast
from keyrender.shotlist import Scene, Shot, ShotList, load_shotlist

STAGE_VERSION = "4"  # bump when a stage's output for the same inputs changes
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
    # accept storyboard, style and control images outside the shot list's folder (absolute paths,
    # '..', symlinks out): they are copied into the outputs and the report, so off by default
    allow_outside_images: bool = False
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
    """The judge: the face model that checks frames. --face-model, else $KEYRENDER_FACE_MODEL,
    else the built-in dlib model (the tiny preset: its tiny pack). The model that conditions
    generation (IP-Adapter FaceID takes insightface embeddings) is the preset's `face_model`."""
    from keyrender.identity.backend import DEFAULT_FACE_MODEL

    return (options.face_model or os.environ.get("KEYRENDER_FACE_MODEL")
            or ("tiny" if preset.tiny else DEFAULT_FACE_MODEL))


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


def _backend_parameters(name: str) -> frozenset[str]:
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
    shotlist = load_shotlist(shotlist_path, cast=cast, allow_outside_images=options.allow_outside_images)
    _check_cast(shotlist, cast_dir, cast)
    jobs = plan(shotlist, options, cast, unselected)
    _check_outputs_are_ours(shotlist, jobs)
    return shotlist, jobs


def written_by_keyrender(out_dir: str | os.PathLike) -> bool:
    """Whether `out_dir` is a shot folder keyrender wrote: a real folder (no link) holding a
    manifest.json with keyrender's schema. The manifest's head is enough, so a shot whose
    manifest was damaged is still recognised (and rendered again)."""
    p = Path(out_dir)
    if p.is_symlink() or not p.is_dir():
        return False
    try:
        with open(p / MANIFEST, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return _MANIFEST_HEAD.search(head) is not None


_MANIFEST_HEAD = re.compile(rb'"schema"\s*:\s*"' + re.escape(MANIFEST_SCHEMA.split("/")[0].encode()) + rb"/")


def _check_outputs_are_ours(shotlist: ShotList, jobs: list[ShotJob]) -> None:
    """Every shot folder a job would replace is one keyrender wrote; anything else in the output
    folder under a shot's name (the cast, the storyboard, a user's file) is never touched: the
    run is refused, naming each such shot, before anything is written."""
    from keyrender.shotlist import Issue, ShotListError

    issues = [
        Issue(shotlist.path, j.shot.line, "shot",
              f"shot '{j.shot.id}' would replace {j.out_dir}, which was not written by keyrender "
              f"(no keyrender {MANIFEST} in it); rename the shot or choose another --out")
        for j in jobs if os.path.lexists(j.out_dir) and not written_by_keyrender(j.out_dir)
    ]
    if issues:
        raise ShotListError(issues)


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
    choices: dict = {}  # the in-betweener of generated keyframes, decided once per plan
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
            # what of the preset changes the pixels (not its description, licences, sizes)
            "preset": preset.cache_record() if not shot.storyboard else "storyboard",
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
        if not shot.storyboard and options.interpolator is None:
            # the in-betweener of its generated keyframes: the video model when its weights are here
            key_data["inbetweens"] = _inbetween_choice(preset, choices).cache_record()
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
        # why the face model is unavailable, as text: a stored exception would be re-raised for
        # every shot, its traceback growing by that shot's frames (and keeping them alive)
        self._embedder_error: str | None = None
        self._identities: dict[str, Any] = {}
        self._conditioner = None
        self._conditioning: dict[str, Any] = {}
        self._interpolators: dict[tuple, Any] = {}  # one per backend and distinct set of options
        self._inbetweens: dict = {}  # the in-betweener of generated keyframes, decided once per run
        self._said: set[str] = set()  # console lines given once per run
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
        # joint attention as this run asks goes in each request (KeyframeRequest.consistent): a
        # loaded generator may be shared with other runs and is never reconfigured
        return self._generator

    def _load_face_model(self, name: str):
        from keyrender.identity import load_face_model

        providers = None
        if self.options.device and self.options.device.startswith("cuda"):
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if name == "tiny":
            from keyrender.identity.testing import make_tiny_face_pack

            name = str(make_tiny_face_pack(self.cache_dir / "faces" / "tiny"))
        return load_face_model(name, providers=providers, allow_download=self.options.allow_download)

    def embedder(self):
        """The judge (the face model that checks frames), or None (and checks_off set) when it
        is not available."""
        if self._embedder is None and self.options.embedder is not None:
            self._embedder = self.options.embedder
        if self._embedder is None and self._embedder_error is None:
            try:
                self._embedder = self._load_face_model(_face_model_name(self.options, self.preset))
            except ModelNotFoundError as exc:
                self._embedder_error = str(exc)
                self.emit({"event": "warning", "message": f"identity checks are off: {exc}"})
        return self._embedder

    def conditioner(self):
        """The face model whose embeddings condition generation (IP-Adapter FaceID was trained
        on insightface's): the judge itself when it is an insightface pack or folder (named by
        --face-model) or an injected backend, else the preset's `face_model`. Raises
        ModelNotFoundError saying what to fetch."""
        from keyrender.identity.dlib_backend import DLIB_MODELS

        if self._conditioner is None:
            judge = _face_model_name(self.options, self.preset)
            name = judge if judge not in DLIB_MODELS else self.preset.face_model
            if self.options.embedder is not None or name == judge:
                self._conditioner = self.embedder()
                if self._conditioner is None:
                    raise self._embedder_error  # type: ignore[misc]
            else:
                try:
                    self._conditioner = self._load_face_model(name)
                except ModelNotFoundError as exc:
                    raise ModelNotFoundError(
                        f"generated keyframes are conditioned by IP-Adapter FaceID, which takes "
                        f"insightface embeddings (face model {name!r}; the identity checks use "
                        f"another model, but generation cannot): {exc}") from exc
        return self._conditioner

    @property
    def checks_off(self) -> str | None:
        return self._embedder_error

    def identities(self, names: Iterable[str]) -> dict[str, Any]:
        """The Identity of each name, from the store next to the cast (built if stale)."""
        names = [n for n in names if n not in self._identities]
        if names:
            embedder = self.embedder()
            from keyrender.identity import IdentityStore

            store = IdentityStore(self.cast_dir)
            if embedder is None:  # a fresh error per shot, no traceback carried from the last
                raise ModelNotFoundError(self._embedder_error or "no face model")
            self._identities.update(store.build(embedder, names=names))
        return self._identities

    def conditioning_identities(self, names: Iterable[str]) -> dict[str, Any]:
        """The identities of the conditioning model (`conditioner`), for IP-Adapter FaceID."""
        names = [n for n in names if n not in self._conditioning]
        if names:
            conditioner = self.conditioner()
            if conditioner is self.embedder():
                self._conditioning.update(self.identities(names))
            else:
                from keyrender.identity import IdentityStore

                self._conditioning.update(IdentityStore(self.cast_dir).build(conditioner, names=names))
        return self._conditioning

    def interpolator(self, flow: InterpolationOptions | None = None, backend: str | None = None,
                     model: str | None = None, prompt: str = "", seed: int = 0, **backend_options):
        """The interpolator for these options (None: the run's, as for a shot without a hedge),
        built on first use and reused by every shot with the same options. `backend`: another
        than the preset's interpolator (the video model of generated keyframes), with `model`
        (where its weights are: found on this machine, so never downloaded), the shot's `prompt`
        and `seed`, and `backend_options` (the preset's video_options). Every variant of a video
        backend shares one set of weights. An injected RenderOptions.interpolator is returned as it is, whatever the options."""
        if self.options.interpolator is not None:
            return self.options.interpolator
        name = backend or self.preset.interpolator
        if flow is None:
            flow = interpolation_options(None, self.options, name)
        extra = () if name == "flow" else (model, prompt, seed, tuple(sorted(backend_options.items())))
        key = (name, *extra, (flow.hedge, flow.camera_motion) if flow.applied else ())
        if key not in self._interpolators:
            from keyrender.interpolate import get_interpolator

            options: dict[str, Any] = {}
            if name != "flow":
                takes = _backend_parameters(name)
                options = {"device": self.options.device, "offline": self.options.offline}
                if model is not None:
                    options.update(model=model, offline=True)
                options.update({k: v for k, v in (("prompt", prompt), ("seed", seed)) if v and k in takes})
                options.update(backend_options)
                built = next((b for k, b in self._interpolators.items() if k[:2] == (name, model)), None)
                if built is not None and "pipeline" in takes:
                    options["pipeline"] = built.pipeline  # one set of weights for every variant
            if flow.applied == "flow":
                options.update(flow.flow)
            elif flow.applied == "flow_options":
                options["flow_options"] = flow.flow
            self._interpolators[key] = get_interpolator(name, **options)
        return self._interpolators[key]

    def inbetween_choice(self):
        """keyframes.presets.choose_inbetweener for this run's preset, decided once per run."""
        return _inbetween_choice(self.preset, self._inbetweens)

    def say_once(self, message: str, key: str | None = None, event: str = "warning") -> None:
        """A console line (a warning; `event` "load": what is loaded) given once per run (`key`:
        what makes it the same line; default the message)."""
        if (key or message) not in self._said:
            self._said.add(key or message)
            self.emit({"event": event, "what" if event == "load" else "message": message})


def _inbetween_choice(preset, memo: dict):
    """The in-betweener of spans that touch a generated keyframe (keyframes.presets.
    choose_inbetweener: the preset's video model when its weights are on this machine, else
    flow with the reason), decided once per `memo` (a plan, a run)."""
    if preset.name not in memo:
        from keyrender.keyframes.presets import choose_inbetweener

        memo[preset.name] = choose_inbetweener(preset)
    return memo[preset.name]


def _span_inbetweeners(job: "ShotJob", context: RenderContext, flow: InterpolationOptions,
                       generated: set[int], warnings: list[str]) -> tuple[list, dict | None, str | None]:
    """The interpolator of each keyframe span of a shot, what was chosen for its generated
    keyframes (manifest `interpolation.inbetweens`) and the fallback line (None: none).

    Spans between two real views (storyboard images) get the preset's interpolator; a span that
    touches a generated keyframe gets the preset's keyframe-conditioned video model when its
    weights are here, else flow, said once per run on the console and in every such shot's
    manifest. An injected RenderOptions.interpolator is used for every span."""
    shot = job.shot
    spans = len(shot.keyframe_frames) - 1
    base = context.interpolator(flow)
    if not generated or context.options.interpolator is not None:
        return [base] * spans, None, None
    choice = context.inbetween_choice()
    touches = [i in generated or i + 1 in generated for i in range(spans)]
    if choice.video:
        video = base
        if choice.backend != context.preset.interpolator:
            context.say_once(f"video model {choice.backend} ({choice.model}) for the in-betweens of generated "
                             "keyframes", event="load")
            video = context.interpolator(interpolation_options(shot, context.options, choice.backend),
                                         choice.backend, choice.model, prompt=shot.prompt, seed=shot.seed,
                                         **context.preset.video_options)
        return [video if t else base for t in touches], choice.manifest(), None
    fallback = (f"shot {shot.id}: generated keyframes in-betweened by optical flow (a morph between poses), "
                f"not by a keyframe-conditioned video model: {choice.fallback}")
    warnings.append(fallback)
    context.say_once(
        f"generated keyframes are in-betweened by optical flow (a morph between poses), not by the preset's "
        f"keyframe-conditioned video model: {choice.fallback} (each such shot's manifest and report.html say so)",
        key="inbetween-fallback")
    return [base] * spans, choice.manifest(), fallback


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
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, out) from None
    with OutputLock(out):
        _clean_leftovers(out)
        for job in [*jobs, *others]:
            if job.done:
                _refresh_manifest(job, emit)
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


# the names render_shot and _swap_into_place give their folders: .staging-<shot>-<8 hex>
_LEFTOVER = re.compile(r"^\.(staging|old)-[A-Za-z0-9][A-Za-z0-9_.\-]*-[0-9a-f]{8}$")


_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
LOCK_FILE = ".keyrender.lock"
LOCK_OWNER = ".keyrender.lock.owner"


def output_error(exc: OSError, out: str | os.PathLike, advice: str | None = None) -> OutputError:
    """One message for an output folder that cannot be written, naming the cause plainly.
    `advice`: what the user does next (default: a run's)."""
    what = {errno.ENOSPC: "the disk is full (no space left on device)",
            errno.EDQUOT: "the disk quota is exhausted",
            errno.EROFS: "it is on a read-only file system",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied"}.get(exc.errno or 0)
    what = what or (exc.strerror or str(exc))
    where = f" ({exc.filename})" if exc.filename else ""
    advice = advice or ("Finished shots are kept; free space or choose another --out, then run again "
                        "(done shots are not rendered twice)")
    return OutputError(f"cannot write into {out}: {what}{where}. {advice}")


class OutputLock:
    """An exclusive lock on an output folder while a run writes into it (filelock: flock on
    POSIX, msvcrt on Windows; released by the OS if the process dies). A second run on the same
    folder stops with an OutputError saying who holds it (pid, host, since when) instead of
    deleting the first one's staging folders."""

    def __init__(self, out: Path):
        from filelock import FileLock

        self.out = Path(out)
        self._lock = FileLock(str(self.out / LOCK_FILE), timeout=0)
        self._owner = self.out / LOCK_OWNER

    def __enter__(self) -> "OutputLock":
        import socket
        from datetime import datetime

        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            try:
                who = json.loads(self._owner.read_text())
                holder = f"pid {who['pid']} on {who['host']}, since {who['since']}"
            except (OSError, ValueError, KeyError, TypeError):
                holder = "another process"
            raise OutputError(f"{self.out} is in use by another keyrender run ({holder}); wait for it to "
                              "finish or choose another --out") from None
        except OSError as exc:
            raise output_error(exc, self.out) from None
        try:
            atomic_write_json(self._owner, {"pid": os.getpid(), "host": socket.gethostname(),
                                            "since": datetime.now().astimezone().isoformat(timespec="seconds")})
        except OSError as exc:
            self._lock.release()
            raise output_error(exc, self.out) from None
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._owner.unlink(missing_ok=True)
        except OSError:
            pass
        self._lock.release()


_LEFTOVER_TMP = re.compile(r"^\.(report|timeline)\.[A-Za-z0-9_]{8}\.tmp\.(html|otio)$")


def _clean_leftovers(out: Path) -> None:
    """Remove the staging folders of runs that were killed: only folders named exactly as
    keyrender names them (a user's `.old-photos` stays)."""
    for d in out.iterdir():
        if _LEFTOVER.match(d.name) and d.is_dir() and not d.is_symlink():
            shutil.rmtree(d, ignore_errors=True)
        elif _LEFTOVER_TMP.match(d.name) and d.is_file() and not d.is_symlink():
            d.unlink(missing_ok=True)  # a report or timeline write that was killed (fsutil.atomic_path)


def _refresh_manifest(job: ShotJob, emit: Callback) -> None:
    """A done shot whose row changed only in what changes no pixel (its notes, its line, the raw
    row) keeps its render; its manifest's inputs are rewritten (atomically) to say the row as it
    is now, as the report and the timeline do."""
    m = read_manifest(job.out_dir)
    if not m or not isinstance(m.get("inputs"), dict):
        return
    now = {"row": job.shot.row, "line": job.shot.line, "notes": job.shot.notes}
    if all(m["inputs"].get(k) == v for k, v in now.items()):
        return
    m["inputs"].update(now)
    try:
        atomic_write_json(job.out_dir / MANIFEST, m)
    except OSError as exc:
        if exc.errno in _OUTPUT_ERRNOS:
            raise output_error(exc, job.out_dir.parent) from None
        emit({"event": "warning", "message": f"shot {job.shot.id}: cannot update {job.out_dir / MANIFEST}: {exc}"})


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
    except OutputError:
        raise
    except KeyrenderError as exc:
        reason, kind = str(exc), ("input" if isinstance(exc, InputError) else "error")
    except OSError as exc:
        if exc.errno in _OUTPUT_ERRNOS:  # the output is full or read-only: every shot would fail alike
            raise output_error(exc, context.options.out) from None
        reason, kind = f"{type(exc).__name__}: {exc}", "error"
        context.emit({"event": "debug", "shot": job.shot.id, "traceback": traceback.format_exc()})
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
        identities = {}  # the judge's (checks)
        if shot.characters and opts.refine and shot.refine:
            try:
                identities = context.identities(shot.characters)
            except ModelNotFoundError:
                pass  # checks off: the warning is out, `_checker` says why in the manifest
        # the conditioning model's (IP-Adapter FaceID): only a generated keyframe needs them
        conditioning = context.conditioning_identities(shot.characters) if shot.characters and to_generate else {}
        request = _keyframe_request(job, context, conditioning, images)
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
        repair = _repair_fn(job, context, request, warnings, images, config) if checker is not None else None
        judge = None
        if checker is not None:
            from keyrender.identity import get_metric

            judged_by = context.embedder()
            metric = getattr(judged_by, "metric", "cosine")
            judge = {"model": getattr(judged_by, "name", type(judged_by).__name__), "metric": metric,
                     "similarity": get_metric(metric).description}
        flow = interpolation_options(shot, opts, context.preset.interpolator)
        if flow.applied is None and (shot.hedge is not None or not flow.is_default):
            line = f"shot {shot.id}: hedge {flow.hedge:g} / camera motion {'on' if flow.camera_motion else 'off'} not applied: {flow.why_not}"
            warnings.append(line)
            emit({"event": "warning", "message": line})
        span_interps, inbetweens, inbetween_fallback = _span_inbetweeners(job, context, flow, set(to_generate), warnings)
        interp = next((x for x in span_interps if getattr(x, "name", "") != "flow"), span_interps[0])
        span_index = 0

        def interpolate(a, b, times, info):
            return span_interps[span_index].inbetween(a, b, times, info=info)

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
                span_index = i
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
                              "fallback": inbetween_fallback, "inbetweens": inbetweens},
            "identity": {
                "checked": checker is not None,
                "why_not": why_off,
                "judge": judge,
                "conditioning_model": getattr(context.conditioner(), "name", None) if conditioning else None,
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
    """Replace `final` by `staging` with two renames; a crash between them loses only old output.
    Only a shot folder keyrender wrote is ever replaced (checked again here: the folder may have
    appeared since the run was planned)."""
    old = None
    if os.path.lexists(final) and not written_by_keyrender(final):
        raise InputError(f"{final} exists and was not written by keyrender; it is left as it is "
                         "(rename the shot or choose another --out)")
    if os.path.lexists(final):
        old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _keyframe_request(job: ShotJob, context: RenderContext, identities: dict, images: dict):
    from keyrender.keyframes.base import KeyframeRequest, StyleAnchor
    from keyrender.media import fit_image, load_image

    shot, scene = job.shot, job.scene
    characters = _character_conditions(shot, identities)
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
        fixed=dict(images), consistent=context.options.consistent,
    )


def _character_conditions(shot, identities: dict) -> list:
    """The FaceID conditions of a shot's characters, from the conditioning model's identities."""
    from keyrender.keyframes.base import CharacterCondition

    return [CharacterCondition(name=n, embedding=identities[n].centroid, region=shot.layout.get(n),
                               reference_embeddings=identities[n].embeddings)
            for n in shot.characters if n in identities]


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


def _repair_fn(job: ShotJob, context: RenderContext, request, warnings: list[str], keyframes: dict, config):
    """repair(frame, image, attempt) -> (image, seed), or None when no generator can be loaded
    (the reason goes into the shot's warnings once). The generator gets the two keyframes around
    the frame as joint-attention context; strengths follow `config` (refine.RefineConfig)."""
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
        nonlocal request
        if shot.characters and not request.characters:  # a storyboard shot: condition it now
            try:
                cond = context.conditioning_identities(shot.characters)
            except KeyrenderError as exc:
                unavailable.append(str(exc))
                warnings.append(f"in-between repair unavailable: {exc}")
                return None
            request = replace(request, characters=_character_conditions(shot, cond))
        # the prompt of the nearest keyframe (beats follow the shot's time)
        nearest = min(range(len(kf)), key=lambda i: abs(kf[i] - frame))
        before = max([i for i in range(len(kf)) if kf[i] <= frame], default=0)
        around = {i: keyframes[i] for i in (before, min(before + 1, len(kf) - 1)) if i in keyframes}
        index = REPAIR_INDEX_BASE + frame
        new = generator.regenerate(
            replace(request, fixed=around), index=index, init_image=image, prompt=prompts[nearest],
            strength=config.repair_strength, attempt=attempt,
            identity_strength=config.identity_strength(request.identity_strength, attempt))
        return new, _seed(shot.seed, index, attempt)

    return repair
