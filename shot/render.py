"""One shot, from its keyframes to its manifest, as steps that hand values to each other:

    make_keyframes(job, context)          -> Keyframes         storyboard images + generated ones
    check_keyframes(job, context, kf)     -> CheckedKeyframes  identity check, failing ones re-rolled
    write_keyframes(staging, job, ...)    -> [KeyframeEntry]   the keyframe PNGs and their records
    fill_video(staging, job, ...)         -> FilledVideo       in-betweens checked/repaired span by
                                                               span, streamed into the encoder
    shot_manifest(job, context, ...)      -> Manifest          what the shot records

render_shot(job, context) runs them in a staging folder and swaps it into place (old output
replaced only when the new one is complete); render_shot_safely turns any failure into a failed
ShotResult naming the reason. A shot that is not its scene's first takes the scene's first
keyframe as its style anchor from that shot's written keyframe 0 (`ShotJob.anchor_from`), never
from state another shot left in the context.

Shot layer: models come from RenderContext (shot/models.py); the stages (`keyframes`, `identity`,
`interpolate`, and shot/refine.py's loop) are imported inside the steps, so importing this imports
no torch.
"""

from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

from keyrender.core.errors import OUTPUT_ERRNOS, InputError, KeyrenderError, ModelNotFoundError, OutputError, output_error
from keyrender.core.jobs import MANIFEST, VIDEO, Callback, InterpolationOptions, ShotJob, ShotResult
from keyrender.outputs.manifest import (
    BudgetRecord, FileRecord, FlowOptions, IdentityRecord, Inputs, Interpolation, Judge, KeyframeEntry, Manifest,
    flag_summary, scene_anchor_path, VideoInfo,
)
from keyrender.outputs.staging import create_staging, swap_into_place
from keyrender.shot.models import RenderContext

__all__ = ["render_shot", "render_shot_safely", "make_keyframes", "check_keyframes", "write_keyframes",
           "fill_video", "shot_manifest", "keyframe_request", "repair_function", "Keyframes",
           "CheckedKeyframes", "FilledVideo", "Warnings", "RenderContext", "MANIFEST", "VIDEO"]


class Warnings:
    """A shot's warnings: kept for its manifest, and (most of them) sent to the run's callback."""

    def __init__(self, emit: Callback):
        self.lines: list[str] = []
        self.emit = emit

    def add(self, line: str, emit: bool = True) -> None:
        self.lines.append(line)
        if emit:
            self.emit({"event": "warning", "message": line})


@dataclass
class Keyframes:
    """Step 1. images: keyframe index -> RGB uint8 image; generated: the indices generated (the
    rest are the storyboard's); identities: the judge's identities of the whole cast (a face is
    matched against every member, so another one is named; empty when checks are off);
    conditioned: whether generation was conditioned on faces."""

    images: dict[int, Any]
    generated: list[int]
    request: Any                       # keyframes.base.KeyframeRequest
    identities: dict[str, Any]
    conditioned: bool


@dataclass
class CheckedKeyframes:
    """Step 2. images after re-rolls; records: index -> attempts/final score
    (refine.IdentityLoop.keyframes); loop: the shot's identity loop, whose check (None with
    `why_not` when the checks are off) the in-betweens get too."""

    images: dict[int, Any]
    records: dict[int, dict]
    loop: Any                          # shot.refine.IdentityLoop
    why_not: str | None

    @property
    def checker(self) -> Callable | None:
        return self.loop.check


@dataclass
class FilledVideo:
    """Step 4. The encoded video's in-betweens: by which backend with which options, and the
    repair keyframes written (how each span was filled and checked is in the identity loop's
    record, `CheckedKeyframes.loop.rec`)."""

    backend: str
    flow: InterpolationOptions
    fallback: str | None
    judge: Judge | None
    repair_entries: list[KeyframeEntry] = field(default_factory=list)
    inbetweens: dict | None = None  # what the spans touching a generated keyframe got (manifest)


# ---------------------------------------------------------------------------------------------


def render_shot(job: ShotJob, context: RenderContext) -> ShotResult:
    """Render one shot into a staging folder, then move it into place (old output replaced)."""
    from keyrender.shot.refine import Budget, IdentityLoop, RefineConfig

    opts = context.options
    if job.spans is None:
        raise KeyrenderError(f"shot {job.shot.id}: its job carries no plan (build jobs with keyrender.plan)")
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    warnings = Warnings(context.emit)
    config = RefineConfig(keyframe_attempts=opts.keyframe_attempts, shot_generations=opts.shot_generations,
                          repair_depth=opts.repair_depth, check_every=opts.check_every,
                          repair_strength=context.preset.regenerate_strength)
    loop = IdentityLoop(check=None, expected=list(job.shot.characters), config=config,
                        budget=Budget(config.shot_generations))
    staging = create_staging(Path(opts.out), job.shot.id)
    try:
        t = time.perf_counter()
        kf = make_keyframes(job, context, warnings)
        timings["keyframes_s"] = time.perf_counter() - t
        t = time.perf_counter()
        checked = check_keyframes(job, context, kf, loop)
        for line in storyboard_verdicts(job, kf, checked):
            warnings.add(line)
        timings["check_keyframes_s"] = time.perf_counter() - t
        entries = write_keyframes(staging, job, kf, checked)
        t = time.perf_counter()
        video = fill_video(staging, job, context, kf, checked, warnings)
        timings["interpolate_encode_s"] = time.perf_counter() - t
        timings["total_s"] = time.perf_counter() - t_start
        manifest = shot_manifest(job, context, keyframes=kf, checked=checked, entries=entries, video=video,
                                 timings=timings, warnings=warnings.lines)
        middles = [sp.middle for sp in manifest.interpolation.span_records() if sp.middle]
        manifest.files = [FileRecord.of(staging, p) for p in [VIDEO, *(e.path for e in manifest.keyframes), *middles]]
        manifest.write(staging)
        swap_into_place(staging, job.out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ShotResult.rendered(job, manifest.identity.flagged_frames, time.perf_counter() - t_start,
                               manifest.identity.flag_reason)


def render_shot_safely(job: ShotJob, context: RenderContext) -> ShotResult:
    """render_shot, with any failure turned into a failed ShotResult naming the reason. A full or
    read-only output folder is raised as one OutputError (every shot would fail alike)."""
    t0 = time.perf_counter()
    try:
        return render_shot(job, context)
    except OutputError:
        raise
    except KeyrenderError as exc:
        reason, kind = str(exc), ("input" if isinstance(exc, InputError) else "error")
    except OSError as exc:
        if exc.errno in OUTPUT_ERRNOS:
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
    return ShotResult.failed(job, reason, time.perf_counter() - t0, kind)


# ---- 1. keyframes -----------------------------------------------------------------------------


def make_keyframes(job: ShotJob, context: RenderContext, warnings: Warnings) -> Keyframes:
    """The storyboard's keyframes (fitted to the shot's size), then the others generated in one
    joint call, conditioned on the characters' faces, the scene's style and its anchor."""
    from keyrender.outputs.media import fit_image, load_image

    shot, opts = job.shot, context.options
    images: dict[int, Any] = {}
    for i, path in enumerate(shot.keyframe_images):
        if path is not None:
            images[i] = fit_image(load_image(path), job.width, job.height)
    generated = [i for i in range(len(shot.keyframe_frames)) if i not in images]
    identities: dict[str, Any] = {}  # the judge's (checks): the whole cast's, for who-is-who
    if shot.characters and opts.refine and shot.refine:
        try:
            identities = context.cast_identities(shot.characters)
        except ModelNotFoundError:
            pass  # checks off: the warning is out, `checker_for` says why in the manifest
    # the conditioning model's (IP-Adapter FaceID): only a generated keyframe needs them
    conditioning = context.conditioning_identities(shot.characters) if shot.characters and generated else {}
    request = keyframe_request(job, context, conditioning, images)
    if generated:
        context.emit({"event": "stage", "shot": shot.id, "stage": "keyframes", "count": len(generated)})
        generator = context.generator()
        images.update(generator.generate(request, indices=generated))
        for line in getattr(generator, "prompt_warnings", lambda *a: [])(request, generated):
            warnings.add(line)
    return Keyframes(images, generated, request, identities, bool(conditioning))


def scene_anchor_image(job: ShotJob):
    """The scene's first keyframe as written by the scene's first shot (PNG: the pixels it was
    rendered with), or None (see manifest.scene_anchor_path)."""
    from keyrender.outputs.media import load_image

    path = scene_anchor_path(job)
    if path is None:
        return None
    try:
        return load_image(path)
    except InputError:
        return None


def keyframe_request(job: ShotJob, context: RenderContext, identities: dict, images: dict):
    """The KeyframeRequest of a shot: prompts with the scene's style, the storyboard images fixed
    (`images`), the characters' FaceID conditions (`identities`: the conditioning model's), the
    scene's style image and anchor, the control image, the run's joint-attention options."""
    from keyrender.keyframes.base import KeyframeRequest, StyleAnchor
    from keyrender.outputs.media import fit_image, load_image

    shot, scene = job.shot, job.scene
    style_image = fit_image(load_image(scene.style_image), job.width, job.height) if scene.style_image else None
    style = StyleAnchor(scene=scene.id, text=scene.style, image=style_image, anchor_keyframe=scene_anchor_image(job))
    control = fit_image(load_image(shot.control_image), job.width, job.height) if shot.control_image else None
    prompts = [", ".join(p for p in (prompt, scene.style) if p) for prompt in shot.keyframe_prompts()]
    return KeyframeRequest(
        shot=shot.id, scene=scene.id, prompts=prompts, times=list(shot.keyframe_times),
        negative_prompt=shot.negative_prompt, width=job.width, height=job.height, seed=shot.seed,
        characters=character_conditions(shot, identities),
        identity_strength=shot.identity_strength if shot.identity_strength is not None else context.preset.identity_strength,
        style=style, control_image=control, control_type=shot.control_type if control is not None else None,
        fixed=dict(images), consistent=context.options.consistent,
    )


def character_conditions(shot, identities: dict) -> list:
    """The FaceID conditions of a shot's characters, from the conditioning model's identities."""
    from keyrender.keyframes.base import CharacterCondition

    return [CharacterCondition(name=n, embedding=identities[n].centroid, region=shot.layout.get(n),
                               reference_embeddings=identities[n].embeddings)
            for n in shot.characters if n in identities]


# ---- 2. checked keyframes -----------------------------------------------------------------------


def checker_for(job: ShotJob, context: RenderContext, identities: dict):
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
    from keyrender.identity.follow import FollowingChecker

    # check(image, expected); it follows the keyframes' faces into the in-betweens (fill_video)
    return FollowingChecker(FaceChecker(embedder, identities), enabled=context.options.follow_faces), None


def check_keyframes(job: ShotJob, context: RenderContext, kf: Keyframes, loop) -> CheckedKeyframes:
    """Each keyframe checked against the cast; a failing generated one re-rolled
    (`loop`: the shot's refine.IdentityLoop, whose check this step sets, or leaves None)."""
    loop.check, why_not = checker_for(job, context, kf.identities)
    images, records = kf.images, {}
    if loop.check is not None:
        context.emit({"event": "stage", "shot": job.shot.id, "stage": "check keyframes"})
        outcome = loop.keyframes(kf.request, images, kf.generated, context.generator if kf.generated else None)
        images, records = outcome.images, outcome.records
        if outcome.skipped:
            why_not, loop.check = outcome.skipped, None
    return CheckedKeyframes(images, records, loop, why_not)


def storyboard_verdicts(job: ShotJob, kf: Keyframes, checked: CheckedKeyframes) -> list[str]:
    """A line for each storyboard keyframe that fails its check, saying what the picture shows
    ("shows scarlett, not angelina"); the same words go into its record (`verdict`). A storyboard
    picture is the user's: it is never replaced, and no model would be the fix."""
    from keyrender.outputs.manifest import Score

    lines = []
    for i, path in enumerate(job.shot.keyframe_images):
        record = checked.records.get(i)
        if path is None or i in kf.generated or not record or record["final"]["passed"]:
            continue
        shows = Score.from_dict(record["final"]).shows()
        record["verdict"] = shows
        lines.append(f"shot {job.shot.id}: storyboard keyframe {i} ({Path(path).name}) {shows}; keyrender "
                     "does not repaint your pictures: fix the picture or the shot's characters")
    return lines


# ---- 3. written keyframes -----------------------------------------------------------------------


def _time(frame: int, fps: Fraction) -> float:
    return float(Fraction(frame) / fps)


def write_keyframes(staging: Path, job: ShotJob, kf: Keyframes, checked: CheckedKeyframes) -> list[KeyframeEntry]:
    """keyframes/kfNNN_fNNNNN.png (lossless) for each keyframe, and its manifest entry."""
    from keyrender.outputs.media import save_image

    shot = job.shot
    entries = []
    for i, f in enumerate(shot.keyframe_frames):
        path = f"keyframes/kf{i:03d}_f{f:05d}.png"
        save_image(staging / path, checked.images[i])
        generated = i in kf.generated
        record = checked.records.get(i)
        entries.append(KeyframeEntry(
            index=i, frame=f, time=_time(f, shot.fps), path=path,
            source="generated" if generated else "storyboard", prompt=kf.request.prompts[i],
            seed=kf.request.seed_for(i, (record or {}).get("chosen_attempt", 0)) if generated else None,
            identity=record))
    return entries


# ---- 4. filled video ------------------------------------------------------------------------------


def _judge(context: RenderContext) -> Judge:
    from keyrender.identity import get_metric

    judged_by = context.embedder()
    metric = getattr(judged_by, "metric", "cosine")
    return Judge(model=getattr(judged_by, "name", type(judged_by).__name__), metric=metric,
                 similarity=get_metric(metric).description)


def fill_video(staging: Path, job: ShotJob, context: RenderContext, kf: Keyframes, checked: CheckedKeyframes,
               warnings: Warnings) -> FilledVideo:
    """The in-betweens of every keyframe pair, checked and repaired span by span (the shot's
    refine.IdentityLoop), streamed into staging/video.mp4 with the keyframes; repair keyframes
    written as PNGs."""
    from keyrender.outputs.media import VideoWriter, save_image, save_thumbnail

    shot, emit = job.shot, context.emit
    loop, images = checked.loop, checked.images
    repair = None
    if loop.check is not None:
        repair = repair_function(job, context, kf.request, warnings.lines, images, loop.config)
    follow = getattr(loop.check, "follow", None)  # the keyframes' faces followed into the in-betweens
    hints_for = span_hints(shot, context, loop)
    loop.stride = loop.config.stride(shot.frames)
    judge = _judge(context) if loop.check is not None else None
    flow = job.spans.flow
    if flow.applied is None and (shot.hedge is not None or not flow.is_default):
        warnings.add(f"shot {shot.id}: hedge {flow.hedge:g} / camera motion {'on' if flow.camera_motion else 'off'} "
                     f"not applied: {flow.why_not}")
    span_interps, inbetweens, fallback = span_inbetweeners(job, context, set(kf.generated), warnings)
    kf_frames = list(shot.keyframe_frames)
    repairs: list[KeyframeEntry] = []
    written = 0

    def wrote() -> None:
        nonlocal written
        written += 1
        emit({"event": "frame", "shot": shot.id, "done": written, "total": shot.frames})

    emit({"event": "stage", "shot": shot.id, "stage": "interpolate", "frames": shot.frames})
    with VideoWriter(staging / VIDEO, shot.fps, job.width, job.height) as writer:
        writer.write(images[0])
        wrote()
        for i, span_interp in enumerate(span_interps):
            fa, fb = kf_frames[i], kf_frames[i + 1]
            loop.repair = span_repair(job, kf, i, repair)
            interpolate = _inbetween(span_interp, follow, hints_for)
            for f, img, source in loop.fill_span(fa, images[i], fb, images[i + 1], interpolate):
                if source == "repair":
                    path = f"keyframes/repair_f{f:05d}.png"
                    save_image(staging / path, img)
                    repairs.append(KeyframeEntry(index=None, frame=f, time=_time(f, shot.fps), path=path,
                                                 source="repair"))
                else:  # the span being yielded is the last one recorded: its middle in-between
                    span = loop.rec.spans[-1]
                    if f == (span["from"] + span["to"]) // 2:
                        span["middle"] = f"spans/mid_f{f:05d}.jpg"
                        save_thumbnail(staging / span["middle"], img)
                writer.write(img)
                wrote()
            writer.write(images[i + 1])
            wrote()
    if written != shot.frames:
        raise KeyrenderError(f"shot {shot.id}: wrote {written} frames, expected {shot.frames}")
    for line in untrusted_spans(shot.id, loop.rec.spans):
        warnings.add(line)
    # the backend that drew the frames: a video model if any span used one, else the first span's
    video_drew = next((sp["backend"] for sp in loop.rec.spans if sp.get("backend") not in (None, "flow")), None)
    backend = video_drew or getattr(span_interps[0], "name", context.preset.interpolator)
    return FilledVideo(backend, flow, fallback, judge, repairs, inbetweens)


def untrusted_spans(shot_id: str, spans: list[dict]) -> list[str]:
    """One line per span whose in-betweens are worth a look (manifest.Span.suspect: the backend
    does not trust its warp, or nothing explained the pair), for the console and the manifest."""
    from keyrender.outputs.manifest import Span

    lines = []
    for record in spans:
        span = Span.from_dict(record)
        if "split_at" not in record and span.suspect:
            lines.append(f"shot {shot_id} frames {span.start}-{span.end}: {span.says}; look at it in report.html")
    return lines


def _inbetween(interpolator, follow: Callable | None, hints_for: Callable) -> Callable:
    """An Interpolator's `inbetween` as the identity loop calls it: (a, b, times, info), with the
    subjects of the two keyframes as hints (`hints_for(a, b)`; an interpolator that takes none is
    called without them), its frames passed through `follow` (the checker's: the keyframes' faces
    followed) when given."""
    from keyrender.interpolate import inbetween

    def interpolate(a, b, times, info):
        frames = inbetween(a, b, times, backend=interpolator, info=info, hints=hints_for(a, b))
        return follow(a, b, times, frames) if follow is not None else frames

    return interpolate


def span_hints(shot, context: RenderContext, loop) -> Callable:
    """hints_for(a, b): where the subject is in the two keyframes of a span, for the in-betweener
    (shot.hints): the faces the identity check assigned to the shot's characters; with the checks
    off for a shot with characters, the largest face of each keyframe as the judge finds it (none
    without a face model); none for a shot without characters (nobody to follow)."""
    from keyrender.shot.hints import character_hints, largest_face_hints

    if loop.check is not None:
        return lambda a, b: character_hints(loop.check, a, b, list(shot.characters))
    embedder = context.embedder() if shot.characters else None
    if embedder is None or not callable(getattr(embedder, "faces", None)):
        return lambda a, b: []
    seen = _FacesOnce(embedder)  # a keyframe inside the shot ends one span and starts the next
    return lambda a, b: largest_face_hints(a, b, seen)


class _FacesOnce:
    """An embedder's `faces`, found once per image (by identity) for one shot's keyframes."""

    def __init__(self, embedder):
        self.embedder, self._seen = embedder, {}

    def faces(self, image):
        hit = self._seen.get(id(image))
        if hit is None or hit[0] is not image:
            hit = self._seen[id(image)] = (image, self.embedder.faces(image))
        return hit[1]


def span_repair(job: ShotJob, kf: Keyframes, span: int, repair):
    """The repair of keyframe span `span` (keyframes span and span + 1): `repair`, except for a
    span between two storyboard images, which is the user's picture and only checked (its
    failing frames flagged) unless the shot asks for it (`storyboard_repair` on)."""
    touches_generated = span in kf.generated or span + 1 in kf.generated
    return repair if touches_generated or job.shot.storyboard_repair else None


def span_inbetweeners(job: ShotJob, context: RenderContext, generated: set[int],
                      warnings: Warnings) -> tuple[list, dict | None, str | None]:
    """The interpolator of each keyframe span of a shot, what was chosen for the spans flow cannot
    make (manifest `interpolation.inbetweens`) and the fallback line (None: none).

    Generated keyframes differ in pose and framing, not by a camera move: optical flow between
    them is a morph. A span that touches a generated keyframe gets the preset's keyframe-
    conditioned video model when its weights are here, else flow, said once per run on the console
    and in every such shot's manifest. A span between two storyboard pictures gets flow where the
    pictures are one camera move (exact), and the video model, when its weights are here, where
    they differ by more (`FlowFirst`). An injected RenderOptions.interpolator is used for every
    span. What each span may get was decided by the plan (`job.spans`)."""
    shot, plan = job.shot, job.spans
    spans = len(shot.keyframe_frames) - 1
    base = context.interpolator(plan.flow)
    choice = plan.video
    if choice is None:
        return [base] * spans, None, None
    touches = [i in generated or i + 1 in generated for i in range(spans)]
    if choice.video:
        video = base
        if choice.backend != context.preset.interpolator:
            context.say_once(f"video model {choice.backend} ({choice.model}) for the in-betweens that flow cannot "
                             "make (generated keyframes, storyboard pictures that are not one camera move)",
                             event="load")
            video = context.interpolator(plan.video_flow, choice.backend, model=choice.model, prompt=shot.prompt,
                                         seed=shot.seed, **context.preset.video_options)
        pictures = base if video is base else FlowFirst(base, video)
        return [video if t else pictures for t in touches], choice.manifest(), None
    fallback = (f"shot {shot.id}: generated keyframes in-betweened by optical flow (a morph between poses), "
                f"not by a keyframe-conditioned video model: {choice.fallback}")
    warnings.add(fallback, emit=False)
    context.say_once(
        f"generated keyframes are in-betweened by optical flow (a morph between poses), not by the preset's "
        f"keyframe-conditioned video model: {choice.fallback} (each such shot's manifest and report.html say so)",
        key="inbetween-fallback")
    return [base] * spans, choice.manifest(), fallback


class FlowFirst:
    """The in-betweener of a span between two storyboard pictures when a video model is here:
    flow where its pair analysis finds one camera move (or nothing moving), which it renders
    exactly; else the video model, started from flow's continuous in-betweens. `info` is the
    backend's that made the frames; a span given to the video model keeps flow's verdict under
    `flow_verdict`."""

    FLOW_MODES = ("camera", "static")

    def __init__(self, flow, video):
        self.flow, self.video = flow, video
        self.name = getattr(flow, "name", "flow")  # what it is unless a span turns out to need the video model

    def inbetween(self, a, b, times, info: dict | None = None, hints=()):
        from keyrender.interpolate import inbetween

        info = {} if info is None else info
        frames = inbetween(a, b, list(times), backend=self.flow, info=info, hints=hints)
        first = next(frames)  # the pair is analysed before the first frame
        if info.get("mode") in self.FLOW_MODES:
            yield first
            yield from frames
            return
        frames.close()
        verdict = {k: info[k] for k in ("mode", "explained", "trusted", "verdict") if k in info}
        info.clear()
        info["flow_verdict"] = verdict
        yield from inbetween(a, b, list(times), backend=self.video, info=info, hints=hints)


def repair_function(job: ShotJob, context: RenderContext, request, warnings: list[str], keyframes: dict, config):
    """repair(frame, image, attempt) -> (image, seed), or None when no generator can be loaded
    (the reason goes into `warnings` once). The generator gets the two keyframes around the
    frame as joint-attention context; strengths follow `config` (refine.RefineConfig)."""
    from keyrender.shot.refine import REPAIR_INDEX_BASE

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
            request = replace(request, characters=character_conditions(shot, cond))
        # the prompt of the nearest keyframe (beats follow the shot's time)
        nearest = min(range(len(kf)), key=lambda i: abs(kf[i] - frame))
        before = max([i for i in range(len(kf)) if kf[i] <= frame], default=0)
        around = {i: keyframes[i] for i in (before, min(before + 1, len(kf) - 1)) if i in keyframes}
        index = REPAIR_INDEX_BASE + frame
        new = generator.regenerate(
            replace(request, fixed=around), index=index, init_image=image, prompt=prompts[nearest],
            strength=config.repair_strength, attempt=attempt,
            identity_strength=config.identity_strength(request.identity_strength, attempt))
        return new, request.seed_for(index, attempt)

    return repair


# ---- 5. manifest ----------------------------------------------------------------------------------


def shot_manifest(job: ShotJob, context: RenderContext, *, keyframes: Keyframes, checked: CheckedKeyframes,
                  entries: list[KeyframeEntry], video: FilledVideo, timings: dict[str, float],
                  warnings: list[str]) -> Manifest:
    """The shot's manifest from what the steps returned (files added by the caller once
    everything is written). Each checked keyframe's final score joins the in-betweens' scores."""
    shot, kf, loop = job.shot, keyframes, checked.loop
    rec = loop.rec
    scores = dict(rec.frame_scores)
    flagged = set(rec.flagged)
    for i, f in enumerate(shot.keyframe_frames):
        if i in checked.records:
            scores[f] = checked.records[i]["final"]
            if not checked.records[i]["final"]["passed"]:
                flagged.add(f)
    identities = kf.identities
    frames = {str(f): s for f, s in sorted(scores.items())}
    wrong, reason = flag_summary(frames, sorted(flagged))
    return Manifest(
        shot=shot.id, scene=shot.scene, cache_key=job.cache_key, flagged=bool(flagged),
        inputs=Inputs(row=shot.row, line=shot.line, prompt=shot.prompt, negative_prompt=shot.negative_prompt,
                      characters=list(shot.characters), preset=context.preset.name if kf.generated else None,
                      seed=shot.seed, notes=shot.notes),
        video=VideoInfo(path=VIDEO, frames=shot.frames, fps=f"{shot.fps.numerator}/{shot.fps.denominator}",
                        width=job.width, height=job.height),
        keyframes=sorted([*entries, *video.repair_entries], key=lambda e: e.frame),
        interpolation=Interpolation(backend=video.backend, options=FlowOptions(**video.flow.manifest()),
                                    spans=rec.spans, fallback=video.fallback,
                                    inbetweens=video.inbetweens),
        identity=IdentityRecord(
            checked=checked.checker is not None, why_not=checked.why_not, judge=video.judge,
            conditioning_model=getattr(context.conditioner(), "name", None) if kf.conditioned else None,
            characters=list(shot.characters),
            thresholds={n: round(float(identities[n].threshold), 4) for n in shot.characters if n in identities},
            check_every=loop.stride,
            budget=BudgetRecord(generations=loop.config.shot_generations, spent=loop.budget.spent),
            repairs=rec.repairs, flagged_frames=sorted(flagged), flag_reason=reason, wrong_person=wrong,
            checks=dict(getattr(loop.check, "counts", {})), frames=frames),
        timings={k: round(v, 3) for k, v in timings.items()},
        warnings=warnings,
    )
