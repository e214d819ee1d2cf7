"""The records that travel between the plan, the workers and the outputs: a shot to render
(ShotJob) with everything the plan decided for it (SpanPlan: how its spans are filled; the judge),
how it went (ShotResult), how the run went (RunResult), and the run's events.

The plan (pipeline.plan, with the decision functions of options.py) fills these once; a worker,
local or Ray, reads them and never decides again.

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

# the flow interpolator's own defaults (interpolate.flow.FlowInterpolator; a test checks they agree).
# A shot interpolated with exactly these keeps the cache key it had before they were options.
DEFAULT_HEDGE = 0.5
DEFAULT_CAMERA_MOTION = True

#: progress and warnings of a run, as {"event": ..., ...} dicts (the CLI prints them)
Event = dict[str, Any]
Callback = Callable[[Event], None]


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


@dataclass(frozen=True)
class InbetweenChoice:
    """Which in-betweener the spans that touch a generated keyframe get, and why.

    backend: "flow", "ltx" or "wan"; model: where the video model's weights are (a local folder,
    a hub id found in the Hugging Face cache, or "tiny"), None for flow; wanted: the preset's
    video backend; fallback: why flow was chosen instead of `wanted` (what to fetch, which
    variable points elsewhere), None when there is no fallback."""

    backend: str
    model: str | None = None
    wanted: str | None = None
    fallback: str | None = None

    @property
    def video(self) -> bool:
        return self.backend != "flow"

    def cache_record(self) -> dict:
        """For the cache keys of shots with generated keyframes: the backend and where its weights
        are (fetching the weights, or pointing the variable elsewhere, renders those shots again)."""
        return {"backend": self.backend, "model": self.model}

    def manifest(self) -> dict:
        return {"backend": self.backend, "model": self.model, "wanted": self.wanted, "fallback": self.fallback}


@dataclass(frozen=True)
class SpanPlan:
    """How the spans of one shot are filled, as the plan decided it.

    flow: the shot's flow options for the preset's interpolator (every span, or the spans between
    two storyboard images). video: for a shot with generated keyframes, the in-betweener of the
    spans that touch one (the video model where its weights are, else flow with the reason); None
    when no span touches a generated keyframe or an Interpolator was injected. video_flow: the
    flow options as that video backend takes them (None without a video backend)."""

    flow: InterpolationOptions
    video: InbetweenChoice | None = None
    video_flow: InterpolationOptions | None = None


@dataclass(kw_only=True)
class ShotJob:
    """One shot to render: where it goes, its size, its cache key, and whether it is done.

    anchor_from: the output folder of the scene's first shot, for a shot that generates keyframes
    and is not its scene's first: its keyframe 0, as written there, is this shot's style anchor.
    anchor_key: the cache key that first shot must have been rendered with (this job's own key is
    built on it), so an old render left by a failed run is never taken as the anchor.
    judge: the face model that checks the shot's frames (options.face_model_name).
    spans: how its spans are filled (SpanPlan)."""

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
    judge: str | None = None
    spans: SpanPlan | None = None

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
