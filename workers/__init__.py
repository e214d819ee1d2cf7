"""Workers: who runs render_shot for the jobs of a run.

    LocalExecutor()                                   in this process, one shot after the other
    RayExecutor(address=None, num_gpus=1, max_retries=3)
                                                      one Ray task per shot, each with its GPU(s)

An executor's `run(jobs, options, cast_dir, emit)` returns one ShotResult per job, in job order,
and leaves every finished shot in place under options.out (video.mp4, keyframes/, manifest.json),
swapped in atomically as shot.render.render_shot does.

Scene order: a shot that generates keyframes and is not its scene's first takes the keyframe 0
that its scene's first shot wrote as its style anchor (`ShotJob.anchor_from`, set by the plan).
Both executors therefore finish that shot before the shots anchored on it; the Ray executor runs
the shots that wait on no anchor (other scenes' first shots, storyboard shots) in parallel.

Workers layer: imports the shot layer, options and the layers below; never pipeline. Nothing here
imports torch or ray at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from keyrender.core.errors import InputError
from keyrender.core.jobs import Callback, ShotJob, ShotResult
from keyrender.shot.options import RenderOptions
from keyrender.workers.local import LocalExecutor
from keyrender.workers.ray import RayExecutor, scene_dependencies

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "get_executor", "scene_dependencies"]


class Executor(Protocol):
    name: str

    def run(self, jobs: list[ShotJob], options: RenderOptions, cast_dir: Path, emit: Callback) -> list[ShotResult]:
        """Render the jobs that are not done; one ShotResult per job, in job order."""
        ...


def get_executor(executor: "str | Executor | None", **kwargs) -> Executor:
    """An executor from a name ("local", "ray"), an executor instance, or None (local)."""
    if executor is None or executor == "local":
        return LocalExecutor()
    if executor == "ray":
        return RayExecutor(**kwargs)
    if isinstance(executor, str):
        raise InputError(f"unknown executor '{executor}' (known: local, ray)")
    if not callable(getattr(executor, "run", None)):
        raise InputError(f"executor {executor!r} has no run(jobs, options, cast_dir, emit) method")
    return executor
