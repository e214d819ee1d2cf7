"""The run: prepare (read and check the shot list and cast), plan (one ShotJob per shot with its
cache key and scene anchor), render (the jobs through an executor, then the run's report and
timeline), under a lock on the output folder.

    prepare(shotlist_path, options)  -> (ShotList, [ShotJob])  torch-free: the dry run stops here
    plan(shotlist, options)          -> [ShotJob]
    render(shotlist_path, options)   -> RunResult               renders the jobs that are not done

The layers below (ARCHITECTURE.md, "The house"): workers/ runs the jobs (the only module
that imports it is this one); shot/render.py renders one shot (render_shot: keyframes -> checked
keyframes -> written keyframes -> filled video -> manifest) with the models of
shot.models.RenderContext; core/jobs.py holds ShotJob, ShotResult and RunResult,
outputs/manifest.py the typed manifest, outputs/staging.py the staging helpers, options.py
RenderOptions. Their public names are re-exported here for library users
(`from keyrender.pipeline import RenderOptions, render, render_shot, is_done, ...`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path
from typing import Any

from keyrender.core.errors import (
    OUTPUT_ERRNOS, InputError, KeyrenderError, OutputError, OutputFolderError, output_error,
)
from keyrender.core.fsutil import atomic_write_json, sha256_file
from keyrender.core.jobs import MANIFEST, VIDEO, Callback, Event, RunResult, ShotJob, ShotResult
from keyrender.core.shotlist import Scene, Shot, ShotList, load_shotlist
from keyrender.identity.cast import find_cast
from keyrender.identity.identity import JUDGE_RULES
from keyrender.outputs.manifest import cached_result, is_done, Manifest, read_manifest, SCHEMA as MANIFEST_SCHEMA
from keyrender.outputs.folder import (
    LOCK_FILE, LOCK_OWNER, REPORT, TIMELINE, claim, output_problems, owner_problem, temp_file_is_ours,
)
from keyrender.outputs.staging import clean_leftovers, written_by_keyrender
from keyrender.shot.models import RenderContext
from keyrender.shot.options import (
    DEFAULT_CAMERA_MOTION, DEFAULT_HEDGE, InterpolationOptions, RenderOptions, check_interpolation_options,
    face_model_name, interpolation_options, span_plan,
)
from keyrender.shot.render import render_shot, render_shot_safely
from keyrender.workers import Executor, LocalExecutor, RayExecutor, get_executor

__all__ = [
    "STAGE_VERSION", "MANIFEST_SCHEMA", "MANIFEST", "VIDEO", "DEFAULT_HEDGE", "DEFAULT_CAMERA_MOTION",
    "Event", "Callback", "RenderOptions", "InterpolationOptions", "interpolation_options", "ShotJob", "ShotResult",
    "RunResult", "Manifest", "RenderContext", "prepare", "plan", "render", "render_shot", "render_shot_safely",
    "is_done", "read_manifest", "written_by_keyrender", "output_error", "OutputLock", "Scene", "Shot",
    "Executor", "LocalExecutor", "RayExecutor", "get_executor",
]

STAGE_VERSION = "9"  # bump when a stage's output for the same inputs changes
# 2: a scene's style image conditions its shots through the style IP-Adapter; repairs attend to
#    the neighbouring keyframes, the scene's anchor and its style image; the flow interpolator
#    lets untrusted pixels follow the camera and mixes in the cross-fade where its warps disagree
# 3: the flow interpolator's occlusion and blend fields at half the flow resolution (faster; the
#    in-betweens differ by a level here and there)
# 4: the camera between keyframes solved from feature matches (interpolate.camera), H^t, residual flow;
#    cut / fallback guard
# 5: large motion: a second flow from feature matches where DIS misses it, and flow reversal
# 6: the flow backend skips the SIFT camera solve and the match hypothesis where DIS explains a
#    small motion (flow_suffices)
# 7: large motion: block matches and DIS refined from the match hypothesis
# 8: between keyframes no cut and no hold: spans that neither the camera nor the flow explains are
#    bridged as pose changes (interpolate.posechange), the flow backend's detect_cuts off by default
# 9: spans of at most 3 in-betweens (a 2-4 frame gap) with a still camera skip the SIFT matching:
#    their large-motion hypothesis comes from block matches alone (docs/interpolation-speed.md)


def _sha256_file(path: Path, cache: dict[Path, str]) -> str:
    if path not in cache:
        cache[path] = sha256_file(path)
    return cache[path]


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
    _check_output_folder(shotlist, jobs, options, cast_dir)
    return shotlist, jobs


def _check_output_folder(shotlist: ShotList, jobs: list[ShotJob], options: RenderOptions, cast_dir: Path) -> None:
    """Before anything is written (outputs.folder.output_problems): the output folder is not a
    symlink keyrender chose by default, nothing in it that the run would replace is the user's
    (a shot folder, report.html, timeline.otio), it holds no other shot list's renders (unless
    --force), and no input is an output or lies in one the run replaces. Every problem at once,
    exit 2."""
    problems = output_problems(shotlist, jobs, Path(options.out), cast_dir=cast_dir,
                               named=options.out_named, force=options.force)
    if problems:
        raise OutputFolderError(options.out, problems)


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

    check_interpolation_options(options)
    preset = get_preset(options.preset)
    if options.consistent is not None:  # in the key through the preset
        preset = preset.with_overrides(consistent=options.consistent.check())
    face_model = face_model_name(options, preset)
    if cast is None:
        cast = find_cast(options.cast_dir(shotlist.path))
    hashes: dict[Path, str] = {}
    selected = {s.id for s in shotlist.select(options.only)}
    scene_keys: dict[str, str] = {}
    scene_firsts: dict[str, Path] = {}
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
            "shot": {k: _jsonable(v) for k, v in asdict(shot).items()
                     if k not in ("line", "row", "notes", "hedge", "storyboard_repair")},
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
        if key_data["refine"]:
            # who-is-who: the shot's faces are judged against the whole cast, by these rules
            key_data["judge"] = {"rules": JUDGE_RULES, "cast": _cast_digest(cast, shot.characters, hashes)}
            if not options.follow_faces:
                key_data["judge"]["follow_faces"] = False
            if shot.storyboard_repair:
                key_data["storyboard_repair"] = True
        spans = span_plan(shot, options, preset, choices)
        if spans.flow.applied and not spans.flow.is_default:
            key_data["interpolation"] = spans.flow.flow
        if spans.video is not None:
            # the in-betweener of its generated keyframes: the video model when its weights are here
            key_data["inbetweens"] = spans.video.cache_record()
        key = hashlib.sha256(json.dumps(key_data, sort_keys=True, default=str).encode()).hexdigest()[:32]
        out_dir = Path(options.out) / shot.id
        if first:
            scene_keys[shot.scene] = key
            scene_firsts[shot.scene] = out_dir
        # the style anchor: the scene's first keyframe, as its first shot wrote it
        anchor = {} if key_data["anchor"] is None else {"anchor_from": scene_firsts.get(shot.scene),
                                                        "anchor_key": key_data["anchor"]}
        decided = dict(shot=shot, scene=scene, out_dir=out_dir, width=width, height=height, cache_key=key,
                       first_in_scene=first, judge=face_model, spans=spans, **anchor)
        if shot.id not in selected:
            if unselected is not None and is_done(out_dir, key):
                unselected.append(ShotJob(done=True, **decided))
            continue
        jobs.append(ShotJob(done=not options.force and is_done(out_dir, key), **decided))
    return jobs


def _cast_digest(cast: dict[str, list[Path]], characters, hashes: dict[Path, str]) -> str:
    """A hash of the references of the cast members a shot does not name (its own are in the
    key already): a face of any of them in the shot is named, so adding one re-judges it."""
    others = {name: [_sha256_file(p, hashes) for p in files] for name, files in sorted(cast.items())
              if name not in characters}
    return hashlib.sha256(json.dumps(others, sort_keys=True).encode()).hexdigest()


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
        from keyrender.outputs.media import image_size

        iw, ih = image_size(shot.keyframe_images[0])
        w, h = max(64, iw // 8 * 8), max(64, ih // 8 * 8)
    return shot.width or w, shot.height or h


def render(shotlist_path: str | Path, options: RenderOptions | None = None,
           callback: Callback | None = None, executor: "str | Executor | None" = None) -> RunResult:
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
        problem = None if options.force else owner_problem(out, shotlist.path)
        if problem:  # another run of another shot list may have claimed it since prepare()
            raise OutputFolderError(out, [problem])
        try:
            claim(out, shotlist.path)
        except OSError as exc:
            raise output_error(exc, out) from None
        _clean_leftovers(out)
        for job in [*jobs, *others]:
            if job.done:
                _refresh_manifest(job, emit)
        results: list[ShotResult] = get_executor(executor).run(jobs, options, cast_dir, emit)
        run = RunResult(results, out, strict=options.strict)
        _write_run_files(run, shotlist, emit, [cached_result(j) for j in others])
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
    from keyrender.outputs.report import write_report
    from keyrender.outputs.timeline import write_otio

    shown = run
    if unselected:
        order = {s.id: i for i, s in enumerate(shotlist.shots)}
        shots = sorted([*run.shots, *unselected], key=lambda r: order.get(r.shot, len(order)))
        shown = RunResult(shots, run.out, strict=run.strict)
    for attr, write, name in (("report", write_report, REPORT), ("timeline", write_otio, TIMELINE)):
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

        if (self.out / LOCK_FILE).is_symlink():  # filelock opens it with O_TRUNC: never through a link
            raise OutputFolderError(self.out, [f"{self.out / LOCK_FILE} is a symlink: keyrender does not "
                                               "write through it; remove it"])
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


def _clean_leftovers(out: Path) -> None:
    """What killed runs left (outputs.staging.clean_leftovers): only temporary folders and files
    that carry keyrender's marker; a user's `.old-photos-20240101` stays."""
    try:
        clean_leftovers(out, is_ours=temp_file_is_ours)
    except OSError as exc:
        if exc.errno in OUTPUT_ERRNOS:
            raise output_error(exc, out) from None
        raise


def _refresh_manifest(job: ShotJob, emit: Callback) -> None:
    """A done shot whose row changed only in what changes no pixel (its notes, its line, the raw
    row) keeps its render; its manifest's inputs are rewritten (atomically) to say the row as it
    is now, as the report and the timeline do."""
    m = Manifest.read(job.out_dir)
    if m is None:
        return
    shot = job.shot
    if (m.inputs.row, m.inputs.line, m.inputs.notes) == (shot.row, shot.line, shot.notes):
        return
    m.inputs.row, m.inputs.line, m.inputs.notes = shot.row, shot.line, shot.notes
    try:
        m.write(job.out_dir)
    except OSError as exc:
        if exc.errno in OUTPUT_ERRNOS:
            raise output_error(exc, job.out_dir.parent) from None
        emit({"event": "warning", "message": f"shot {job.shot.id}: cannot update {job.out_dir / MANIFEST}: {exc}"})
