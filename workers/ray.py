"""The Ray executor: one Ray task per shot, each with its GPU(s).

Ray without a shared filesystem: the driver sends each task the bytes of the files its shot reads
(storyboard, style and control images, its characters' reference images); the worker renders into
a temporary folder of its own and returns {relative path: bytes} and the manifest; the driver
checks every file against the manifest's size and sha256, writes them into a staging folder under
the output folder and swaps it into place. A worker that dies (killed, out of memory, node lost)
is retried by Ray up to max_retries times; an error inside a shot is not retried, it fails that
shot with its reason like a local run does. A full or read-only output folder on the driver stops
the run with one OutputError (the running tasks are cancelled), as in a local run. Workers keep
their models loaded between tasks (a module-level cache per worker process).

The shots that wait on no scene anchor run in parallel; the driver ships the anchor's files (that
shot's manifest and keyframe 0) with the shots that need them. Nothing here imports ray at module
level.
"""


from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from keyrender.core.errors import OUTPUT_ERRNOS, InputError, KeyrenderError, OutputError, output_error
from keyrender.core.jobs import MANIFEST, Callback, Event, ShotJob, ShotResult
from keyrender.outputs.manifest import cached_result, Manifest, scene_anchor_path
from keyrender.outputs.staging import create_staging, swap_into_place
from keyrender.shot.models import RenderContext
from keyrender.shot.options import RenderOptions
from keyrender.shot.render import render_shot_safely


def scene_dependencies(jobs: list[ShotJob]) -> dict[str, str | None]:
    """shot id -> the id of the job whose written keyframe 0 it takes as its anchor
    (`ShotJob.anchor_from`), when that job is among these; else None."""
    by_out = {j.out_dir: j.shot.id for j in jobs}
    return {j.shot.id: by_out.get(j.anchor_from) if j.anchor_from is not None else None for j in jobs}


@dataclass
class RayExecutor:
    """One Ray task per shot. address: a cluster ("ray://host:10001", "auto"), or None to use
    the Ray already initialised in this process, else start a local one. num_gpus: GPUs per task
    (0 for CPU workers; fractions share a GPU). max_retries: re-runs of a task whose worker died."""

    address: str | None = None
    num_gpus: float = 1
    max_retries: int = 3
    num_cpus: float = 1
    name: str = "ray"
    _started: bool = field(default=False, init=False, repr=False, compare=False)  # ray.init was ours

    def _init(self):
        try:
            import ray
        except ImportError:
            raise InputError("--executor ray needs Ray: pip install 'keyrender[ray]'") from None
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
                self._started = True
            except Exception as exc:  # ConnectionError, RuntimeError... name the address
                raise KeyrenderError(f"cannot start or reach Ray at {self.address or 'a new local cluster'}: {exc}") from exc
        if self.num_gpus:
            have = ray.cluster_resources().get("GPU", 0)
            if have < self.num_gpus:
                raise InputError(
                    f"the Ray cluster at {self.address or 'local'} has {have:g} GPU(s); each shot asks for "
                    f"{self.num_gpus:g} (--num-gpus): use --num-gpus 0 for CPU workers, or add GPU nodes")
        return ray

    def close(self) -> None:
        """Shut down the Ray this executor started (a local cluster's processes, or the connection
        to a cluster), now rather than in Ray's own exit hook. A Ctrl-C during the shutdown does
        not cut it short (a half shut-down Ray crashes the interpreter on exit): it is held until
        the shutdown is done, then raised as the KeyboardInterrupt the CLI reports in one line
        (exit 130), instead of a traceback from an exit hook after the exit code was set. A Ray
        someone else initialised is left alone."""
        if not self._started:
            return
        import atexit
        import signal
        import threading

        import ray

        self._started = False
        atexit.unregister(ray.shutdown)  # shut down here, once
        pressed: list[int] = []
        held = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, lambda *a: pressed.append(1)) if held else None
        try:
            ray.shutdown()
        finally:
            if held:
                signal.signal(signal.SIGINT, previous)
        if pressed:
            raise KeyboardInterrupt

    def run(self, jobs: list[ShotJob], options: RenderOptions, cast_dir: Path, emit: Callback) -> list[ShotResult]:
        results: dict[str, ShotResult] = {}
        deps = scene_dependencies(jobs)
        for job in jobs:
            if job.done:
                results[job.shot.id] = cached_result(job)
                emit({"event": "shot_done", "shot": job.shot.id, "status": "cached"})
        todo = [j for j in jobs if not j.done]
        if not todo:
            return [results[j.shot.id] for j in jobs]

        ray = self._init()
        remote = ray.remote(_render_task).options(
            num_gpus=self.num_gpus, num_cpus=self.num_cpus, max_retries=self.max_retries,
            retry_exceptions=False)
        waiting = {j.shot.id for j in todo}
        running: dict[Any, Any] = {}                # object ref -> job
        started: dict[str, float] = {}
        warned: set[str] = set()

        def submit_ready():
            for j in todo:
                sid = j.shot.id
                dep = deps[sid]
                if sid not in waiting or (dep is not None and dep not in results):
                    continue
                waiting.discard(sid)
                payload = _payload(j, options, cast_dir)
                started[sid] = time.perf_counter()
                emit({"event": "shot_start", "shot": sid, "frames": j.frames, "executor": "ray"})
                running[remote.remote(payload)] = j

        submit_ready()
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            ref = ready[0]
            job = running.pop(ref)
            reply: dict = {}
            try:
                reply = ray.get(ref)
                for message in reply.get("warnings") or []:
                    if message not in warned:
                        warned.add(message)
                        emit({"event": "warning", "message": message})
            except KeyrenderError as exc:
                result = _failed(job, str(exc), started)
            except Exception as exc:  # the task's worker died max_retries + 1 times, or the reply was lost
                result = _failed(job, f"Ray task failed: {type(exc).__name__}: {_last_line(exc)}", started)
            else:
                try:
                    result = _receive(job, reply, options, time.perf_counter() - started[job.shot.id])
                except OutputError:  # the output folder is full or read-only: every shot would fail alike
                    _cancel(ray, running)
                    raise
                except KeyrenderError as exc:
                    result = _failed(job, str(exc), started)
            results[job.shot.id] = result
            emit({"event": "shot_done" if result.ok else "shot_failed", "shot": job.shot.id,
                  "status": result.status, "reason": result.reason, "flagged": len(result.flagged),
                  "done": len(results), "total": len(jobs)})
            submit_ready()
        return [results[j.shot.id] for j in jobs]


def _cancel(ray, refs) -> None:
    """Cancel the tasks still running (the run stops); a task that cannot be cancelled ends alone."""
    for ref in list(refs):
        try:
            ray.cancel(ref)
        except Exception:
            pass


def _last_line(exc: BaseException) -> str:
    """The error itself: a RayTaskError's text is the worker's traceback, its last line the error."""
    text = str(exc).strip().splitlines()
    return text[-1] if text else ""


def _failed(job: ShotJob, reason: str, started: dict[str, float]) -> ShotResult:
    return ShotResult.failed(job, reason, time.perf_counter() - started.get(job.shot.id, time.perf_counter()))


# ---- driver -> worker: the job with the bytes of every file it reads --------------------------


def _payload(job: ShotJob, options: RenderOptions, cast_dir: Path) -> dict:
    from keyrender.identity.cast import find_cast

    shot, scene = job.shot, job.scene
    files: dict[str, bytes] = {}

    def ship(p: Path | None, kind: str) -> str | None:
        if p is None:
            return None
        data = Path(p).read_bytes()
        rel = f"inputs/{kind}/{hashlib.sha256(data).hexdigest()[:16]}{Path(p).suffix.lower()}"
        files[rel] = data
        return rel

    kf_images = tuple(ship(p, "keyframes") for p in shot.keyframe_images)
    style = ship(scene.style_image, "style")
    control = ship(shot.control_image, "control")
    cast = find_cast(cast_dir)
    # a checked shot's faces are matched against the whole cast (who-is-who): every member's
    # references travel, and the identities saved beside them, so the worker loads rather than
    # embeds them again (the store reads them as current: same files, same sha256)
    checked = bool(shot.characters) and options.refine and shot.refine
    for name in (cast if checked else shot.characters):
        for p in cast.get(name, []):
            files[f"cast/{name}/{Path(p).name}"] = Path(p).read_bytes()
    if checked:
        files.update(_saved_identities(cast_dir))
    # the anchor as the worker's render_shot reads it: the first shot's manifest and keyframe 0
    anchor = scene_anchor_path(job)
    if anchor is not None:
        files[f"{ANCHOR_DIR}/{MANIFEST}"] = (job.anchor_from / MANIFEST).read_bytes()
        files[f"{ANCHOR_DIR}/{anchor.relative_to(job.anchor_from).as_posix()}"] = anchor.read_bytes()
    return {
        "job": job, "options": options, "files": files, "anchor": anchor is not None,
        "paths": {"keyframe_images": kf_images, "style_image": style, "control_image": control},
    }


def _saved_identities(cast_dir: Path) -> dict[str, bytes]:
    """The identity store's files (every face model's), as `cast/.keyrender/identities/...` of a
    task's folder; nothing when none is saved or it cannot be read."""
    from keyrender.identity.store import STORE_DIR, IdentityStore

    out: dict[str, bytes] = {}
    try:
        store = IdentityStore(cast_dir).dir
        for p in sorted(store.glob("*/*")):
            if p.suffix in (".json", ".npz") and p.is_file() and not p.name.startswith("."):
                out[(Path("cast") / STORE_DIR / p.parent.name / p.name).as_posix()] = p.read_bytes()
    except OSError:
        return {}
    return out


ANCHOR_DIR = "anchor"   # in a task's folder: the anchor's files, as under the scene's first shot


# ---- worker -----------------------------------------------------------------------------------

_WORKER_CONTEXTS: dict[tuple, Any] = {}   # models stay loaded in a worker between its tasks


def _worker_context(options: RenderOptions, cast_dir: Path, emit: Callback, judge: str | None) -> RenderContext:
    """This worker's RenderContext for these model options and the plan's judge, reused across
    tasks; the per-task parts (options, cast folder, callback, identities) are reset."""
    # the preset by its repr: RenderOptions.preset may be a Preset record (unhashable: it holds dicts)
    key = (repr(options.preset), options.device, judge, options.offline, options.allow_download,
           str(options.cache_dir))
    ctx = _WORKER_CONTEXTS.get(key)
    if ctx is None:
        ctx = _WORKER_CONTEXTS[key] = RenderContext(options, cast_dir, emit, judge=judge)
    else:
        ctx.start_task(options, cast_dir, emit)   # the cast is shipped per task: identities are rebuilt
    return ctx


def _render_task(payload: dict) -> dict:
    """Runs on a Ray worker: render one shot in a temporary folder and send back its files."""
    job, options = payload["job"], payload["options"]
    events: list[Event] = []
    with tempfile.TemporaryDirectory(prefix=f"keyrender-{job.shot.id}-") as tmp:
        root = Path(tmp)
        for rel, data in payload["files"].items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        p = payload["paths"]
        shot = replace(job.shot,
                       keyframe_images=tuple(root / x if x else None for x in p["keyframe_images"]),
                       control_image=root / p["control_image"] if p["control_image"] else None)
        scene = replace(job.scene, style_image=root / p["style_image"] if p["style_image"] else None)
        out = root / "out"
        job = replace(job, shot=shot, scene=scene, out_dir=out / shot.id,
                      anchor_from=root / ANCHOR_DIR if payload["anchor"] else None)
        opts = replace(options, out=out, cast=root / "cast")
        (root / "cast").mkdir(exist_ok=True)
        ctx = _worker_context(opts, root / "cast", events.append, job.judge)
        result = render_shot_safely(job, ctx)
        reply: dict[str, Any] = {"status": result.status, "reason": result.reason, "error_type": result.error_type,
                                 "flagged": list(result.flagged), "seconds": result.seconds,
                                 "warnings": [e["message"] for e in events if e.get("event") == "warning"],
                                 "host": os.uname().nodename, "pid": os.getpid()}
        if result.ok:
            files = {}
            for f in sorted((out / shot.id).rglob("*")):
                if f.is_file():
                    files[f.relative_to(out / shot.id).as_posix()] = f.read_bytes()
            reply["files"] = files
        return reply


# ---- worker -> driver: files into staging, checked, swapped into place -----------------------


def _receive(job: ShotJob, reply: dict, options: RenderOptions, seconds: float) -> ShotResult:
    """Write a worker's reply for `job` into place (staging, check, swap); the ShotResult."""
    from keyrender.core.fsutil import atomic_write_bytes

    if reply["status"] != "rendered":
        return ShotResult.failed(job, reply["reason"], seconds, reply.get("error_type") or "error")
    files: dict[str, bytes] = reply["files"]
    if MANIFEST not in files:
        raise KeyrenderError(f"shot {job.shot.id}: the Ray worker sent no {MANIFEST}")
    try:
        manifest = Manifest.from_dict(json.loads(files[MANIFEST]))
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyrenderError(f"shot {job.shot.id}: the Ray worker's {MANIFEST} is unreadable: {exc}") from None
    listed = {rec.path: rec for rec in manifest.files}
    extra = set(files) - set(listed) - {MANIFEST}
    missing = set(listed) - set(files)
    if missing or extra:
        raise KeyrenderError(f"shot {job.shot.id}: the worker's files do not match its manifest "
                             f"(missing {sorted(missing)}, unlisted {sorted(extra)})")
    for rel in listed:
        if not _safe_rel(rel):
            raise KeyrenderError(f"shot {job.shot.id}: unsafe path in the worker's manifest: {rel!r}")
    out = Path(options.out)
    staging = None
    try:
        staging = create_staging(out, job.shot.id)
        for rel, data in files.items():
            if rel != MANIFEST:
                atomic_write_bytes(staging / rel, data)
        for rel, rec in listed.items():                     # what landed on disk is what was rendered
            if not rec.verifies(staging):
                raise KeyrenderError(f"shot {job.shot.id}: {rel} arrived damaged from the Ray worker "
                                     f"({(staging / rel).stat().st_size} bytes, expected {rec.bytes})")
        atomic_write_bytes(staging / MANIFEST, files[MANIFEST])   # the manifest last: it marks done
        swap_into_place(staging, job.out_dir)
    except BaseException as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in OUTPUT_ERRNOS:  # as shot.render_shot_safely
            raise output_error(exc, out) from None
        raise
    return ShotResult.rendered(job, list(reply.get("flagged") or []), seconds, reply.get("reason"))


def _safe_rel(rel: str) -> bool:
    p = Path(rel)
    return not p.is_absolute() and ".." not in p.parts and rel not in ("", ".")
