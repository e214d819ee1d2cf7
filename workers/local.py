"""The local executor: every shot in this process, one after the other."""

from __future__ import annotations

from pathlib import Path

from keyrender.core.jobs import Callback, ShotJob, ShotResult
from keyrender.outputs.manifest import cached_result
from keyrender.shot.models import RenderContext
from keyrender.shot.options import RenderOptions
from keyrender.shot.render import render_shot_safely


class LocalExecutor:
    """Every shot in this process, in shot-list order (a scene's first shot comes first)."""

    name = "local"

    def run(self, jobs: list[ShotJob], options: RenderOptions, cast_dir: Path, emit: Callback) -> list[ShotResult]:
        context = RenderContext(options, cast_dir, emit, judge=next((j.judge for j in jobs), None))
        results = []
        for job in jobs:
            if job.done:
                results.append(cached_result(job))
                emit({"event": "shot_done", "shot": job.shot.id, "status": "cached"})
                continue
            emit({"event": "shot_start", "shot": job.shot.id, "frames": job.frames})
            result = render_shot_safely(job, context)
            results.append(result)
            emit({"event": "shot_done" if result.ok else "shot_failed", "shot": job.shot.id,
                  "status": result.status, "reason": result.reason, "flagged": len(result.flagged)})
        return results
