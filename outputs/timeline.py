"""The editorial timeline: an OpenTimelineIO (.otio) file of the run's shots, in shot-list order.

    write_otio(run_result, shotlist, path, relative=False) -> path

One video track; one clip per shot that has a video (rendered or cached), named by the shot id,
its media reference the shot's video.mp4 with the exact frame count and rate as its available
range, and its metadata (under "keyrender") the prompt, seed, scene, cache key, status and the
identity scores (mean/min similarity per character, flagged frames). Flagged frames are also
markers (red) on the clip, so an editor sees them on the timeline. A shot that failed is a gap of
its planned length (named by the shot id, with the reason in its metadata), so the cut keeps its
timing.

Media references are absolute `file://` URLs by default (what Resolve, Premiere via the OTIO
adapters and Avid's importers resolve without a base folder); with relative=True they are
paths relative to the .otio file's folder (the render folder can then be moved as a whole).

Rates: OTIO stores a rate as a double; 23.976 fps is written as 24000/1001 = 23.976023976023978
(the nearest double to the exact rate), never as 23.976, and the exact fraction is kept in the
clip metadata ("fps": "24000/1001").

The JSON is written here (schemas Timeline.1, Stack.1, Track.1, Clip.2, Gap.1,
ExternalReference.1, Marker.2, TimeRange.1, RationalTime.1), so keyrender needs no OTIO
dependency; the tests load it with the real `opentimelineio` package.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

from keyrender.core.errors import KeyrenderError
from keyrender.core.fsutil import atomic_write_text
from keyrender.outputs.folder import timeline_is_ours
from keyrender.outputs.manifest import IdentityRecord, Manifest, Score


def rational_time(value: int | float, rate: Fraction) -> dict:
    return {"OTIO_SCHEMA": "RationalTime.1", "rate": float(rate), "value": float(value)}


def time_range(start: int, duration: int, rate: Fraction) -> dict:
    return {"OTIO_SCHEMA": "TimeRange.1", "duration": rational_time(duration, rate),
            "start_time": rational_time(start, rate)}


def _item(schema: str, name: str, metadata: dict, source_range: dict | None) -> dict:
    return {"OTIO_SCHEMA": schema, "metadata": metadata, "name": name, "source_range": source_range,
            "effects": [], "markers": [], "enabled": True}


def write_otio(run_result, shotlist, path: str | Path, relative: bool = False) -> Path:
    """Write the run's timeline to `path` (atomically) and return the path. A file there that
    keyrender did not write (not a keyrender timeline: the user's own, a link) is left as it is
    (KeyrenderError)."""
    path = Path(path)
    if os.path.lexists(path) and not timeline_is_ours(path):
        raise KeyrenderError(f"the timeline was not written: {path} is not keyrender's (not a keyrender "
                             "timeline) and is left as it is; move it away to get the timeline")
    timeline = build_timeline(run_result, shotlist, path.parent if relative else None)
    try:
        atomic_write_text(path, json.dumps(timeline, indent=4) + "\n")
    except OSError as exc:
        raise KeyrenderError(f"cannot write the timeline {path}: {exc}") from exc
    return path


def build_timeline(run_result, shotlist, relative_to: Path | None = None) -> dict:
    """The OTIO Timeline.1 object as plain JSON-able dicts."""
    results = {r.shot: r for r in run_result.shots}
    order = [s for s in shotlist.shots if s.id in results] if shotlist is not None else []
    children = []
    for shot in order:
        r = results[shot.id]
        children.append(_clip(shot, r, relative_to) if r.ok and r.video else _gap(shot, r))
    track = _item("Track.1", "keyrender", {}, None)
    track.update(children=children, kind="Video")
    stack = _item("Stack.1", "tracks", {}, None)
    stack["children"] = [track]
    name = Path(shotlist.path).stem if shotlist is not None else Path(run_result.out).name
    # "metadata" with "keyrender" first is the head outputs.folder.timeline_is_ours recognises
    return {"OTIO_SCHEMA": "Timeline.1",
            "metadata": {"keyrender": {"shotlist": str(shotlist.path) if shotlist is not None else None,
                                       "out": str(run_result.out)}},
            "name": name, "global_start_time": None, "tracks": stack}


def _read_manifest(result) -> Manifest | None:
    if result.manifest is None:
        return None
    return Manifest.read(Path(result.manifest).parent, result.manifest)


def _clip(shot, result, relative_to: Path | None) -> dict:
    m = _read_manifest(result)
    video = m.video if m is not None else None
    frames = int(video.frames if video is not None and video.frames else shot.frames)
    fps = Fraction(video.fps) if video is not None and video.fps else Fraction(shot.fps)
    rng = time_range(0, frames, fps)
    ident = m.identity if m is not None else IdentityRecord()
    meta = {"keyrender": {
        "shot": shot.id, "scene": shot.scene, "status": result.status, "prompt": shot.prompt,
        "negative_prompt": shot.negative_prompt, "seed": shot.seed, "characters": list(shot.characters),
        "fps": f"{fps.numerator}/{fps.denominator}", "frames": frames,
        "width": video.width if video is not None else None, "height": video.height if video is not None else None,
        "cache_key": m.cache_key if m is not None else None, "notes": shot.notes,
        "identity": {"checked": ident.checked, "why_not": ident.why_not,
                     "thresholds": dict(ident.thresholds),
                     "scores": identity_summary(ident), "flagged_frames": list(result.flagged)},
    }}
    clip = _item("Clip.2", shot.id, meta, rng)
    clip["markers"] = [_marker(f, fps, ident) for f in result.flagged]
    clip["media_references"] = {"DEFAULT_MEDIA": {
        "OTIO_SCHEMA": "ExternalReference.1", "metadata": {}, "name": f"{shot.id}/video.mp4",
        "available_range": rng, "available_image_bounds": None,
        "target_url": _url(Path(result.video), relative_to),
    }}
    clip["active_media_reference_key"] = "DEFAULT_MEDIA"
    return clip


def _gap(shot, result) -> dict:
    meta = {"keyrender": {"shot": shot.id, "scene": shot.scene, "status": result.status,
                          "reason": result.reason, "prompt": shot.prompt, "seed": shot.seed}}
    return _item("Gap.1", f"{shot.id} (failed)", meta, time_range(0, shot.frames, Fraction(shot.fps)))


def _marker(frame: int, fps: Fraction, ident: IdentityRecord) -> dict:
    score = ident.scores().get(frame) or Score()
    sims = {n: c.similarity for n, c in score.characters.items()}
    return {"OTIO_SCHEMA": "Marker.2", "metadata": {"keyrender": {"frame": frame, "similarity": sims}},
            "name": f"identity flagged: frame {frame}", "color": "RED",
            "marked_range": time_range(frame, 1, fps),
            "comment": ", ".join(f"{n} {'missing' if s is None else f'{s:.3f}'}" for n, s in sims.items())}


def identity_summary(ident: IdentityRecord) -> dict[str, dict[str, Any]]:
    """Per character: mean and min similarity over the checked frames, frames checked, frames passed."""
    out: dict[str, dict[str, Any]] = {}
    for score in ident.scores().values():
        for name, c in score.characters.items():
            d = out.setdefault(name, {"checked": 0, "passed": 0, "found": 0, "_sims": []})
            d["checked"] += 1
            d["passed"] += bool(c.passed)
            if c.similarity is not None:
                d["found"] += 1
                d["_sims"].append(float(c.similarity))
    for d in out.values():
        sims = d.pop("_sims")
        d["mean_similarity"] = round(sum(sims) / len(sims), 4) if sims else None
        d["min_similarity"] = round(min(sims), 4) if sims else None
    return out


def _url(video: Path, relative_to: Path | None) -> str:
    if relative_to is None:
        return video.resolve().as_uri()
    return Path(os.path.relpath(video.resolve(), Path(relative_to).resolve())).as_posix()
