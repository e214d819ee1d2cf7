"""The records that travel between the plan, the workers and the outputs: a shot to render
(ShotJob), how it went (ShotResult), how the run went (RunResult), and the run's events.

Base layer: no torch, nothing but the shot list's types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from keyrender.core.shotlist import Scene, Shot

#: the files every rendered shot folder holds
MANIFEST = "manifest.json"
VIDEO = "video.mp4"

#: progress and warnings of a run, as {"event": ..., ...} dicts (the CLI prints them)
Event = dict[str, Any]
Callback = Callable[[Event], None]


@dataclass
class ShotJob:
    """One shot to render: where it goes, its size, its cache key, and whether it is done.

    anchor_from: the output folder of the scene's first shot, for a shot that generates keyframes
    and is not its scene's first: its keyframe 0, as written there, is this shot's style anchor.
    anchor_key: the cache key that first shot must have been rendered with (this job's own key is
    built on it), so an old render left by a failed run is never taken as the anchor."""

    shot: Shot
    scene: Scene
    out_dir: Path
    width: int
    height: int
    cache_key: str
    done: bool
    first_in_scene: bool
    anchor_from: Path | None = None
    anchor_key: str | None = None

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
    reason: str | None = None          # a failed shot: why; a shot with flagged frames: what they show
    seconds: float = 0.0
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("rendered", "cached")

    @classmethod
    def rendered(cls, job: ShotJob, flagged: list[int], seconds: float, reason: str | None = None) -> "ShotResult":
        """A rendered shot; `reason`: why its flagged frames are flagged (None when none is)."""
        return cls(job.shot.id, "rendered", job.out_dir, job.out_dir / VIDEO, job.out_dir / MANIFEST,
                   list(flagged), reason=reason if flagged else None, seconds=seconds)

    @classmethod
    def failed(cls, job: ShotJob, reason: str, seconds: float, error_type: str = "error") -> "ShotResult":
        return cls(job.shot.id, "failed", job.out_dir, reason=reason, seconds=seconds, error_type=error_type)


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
        from keyrender.core.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_SHOTS_FAILED

        if not self.failed:
            return EXIT_OK
        hard = [s for s in self.shots if not s.ok]
        if hard and len(hard) == len(self.shots) and all(s.error_type == "input" for s in hard):
            return EXIT_BAD_INPUT
        return EXIT_SHOTS_FAILED
