"""keyrender's command line: parse options, call the library, print, map errors to exit codes.

Nothing here imports torch at module level: `keyrender --help` and `keyrender run --dry-run`
stay fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from keyrender.core.errors import KeyrenderError, output_errors
from keyrender.keyframes.presets import LAYER_GROUPS  # no numpy, no torch: --help stays light


class _Group(click.Group):
    """Maps keyrender's errors to exit codes with a one-line message instead of a traceback."""

    def invoke(self, ctx: click.Context):
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except KeyrenderError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """keyrender's own warnings (an unknown shot-list column ...) as one `warning:` line each, not
    Python's file:line and source line; anything else as Python shows it."""
    import warnings

    if getattr(category, "__module__", "").startswith("keyrender."):
        click.echo(f"warning: {message}", err=True)
    else:
        click.echo(warnings.formatwarning(message, category, filename, lineno, line).rstrip("\n"), err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keyrender")
def main() -> None:
    """Render a shot list into video, keeping every character the same person."""


# ---- run -------------------------------------------------------------------------------------


def _step_range(ctx, param, value):
    """--joint-steps START:END, fractions of the denoising schedule, 0 <= START <= END <= 1."""
    if value is None:
        return None
    parts = value.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, end = float(parts[0]), float(parts[1])
    except ValueError:
        raise click.BadParameter(f"{value!r} is not START:END (two numbers, e.g. 0:0.5)") from None
    if not 0.0 <= start <= end <= 1.0:
        raise click.BadParameter(f"{value!r}: START and END are fractions of the denoising schedule, "
                                 "0 <= START <= END <= 1")
    return start, end


@main.command()
@click.argument("shotlist", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: renders/ next to the shot list).")
@click.option("--only", default=None, help="Render only these shots: SHOT[,SHOT...].")
@click.option("--preset", default="sdxl", show_default=True, help="Keyframe model preset (sdxl, sd15, tiny).")
@click.option("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when present).")
@click.option("--cast", "cast", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cast folder, one sub-folder of reference images per character (default: cast/ next to the shot list).")
@click.option("--dry-run", is_flag=True, help="Print the plan and exit; renders nothing, loads no model.")
@click.option("--allow-outside-images", is_flag=True,
              help="Accept storyboard, style and control images outside the shot list's folder "
                   "(absolute paths, '..', symlinks out); they are copied into the outputs and the report.")
@click.option("--force", is_flag=True, help="Render again even the shots that are done.")
@click.option("--strict", is_flag=True, help="Shots still failing identity checks count as failed (exit 3).")
@click.option("--face-model", default=None, help="Face model pack name or folder (default: the preset's).")
@click.option("--allow-download", is_flag=True, help="Let insightface download a missing face model pack.")
@click.option("--offline/--online", default=None, help="Never / may look up the Hugging Face hub (default: HF_HUB_OFFLINE).")
@click.option("--no-refine", is_flag=True, help="Skip the identity check-and-repair loop.")
@click.option("--check-every", type=click.IntRange(min=1), default=None, help="Check every N-th in-between (default: every 3rd, and about 240 checks at most per shot; keyframes are always checked).")
@click.option("--follow-faces/--no-follow-faces", "follow_faces", default=True, show_default=True,
              help="Checked in-betweens follow the faces of their keyframes and are embedded afresh only when "
                   "they do not match them; --no-follow-faces embeds every checked frame (slower).")
@click.option("--keyframe-attempts", type=click.IntRange(min=0), default=3, show_default=True,
              help="Re-rolls of a keyframe that fails identity checks.")
@click.option("--budget", "shot_generations", type=click.IntRange(min=0), default=12, show_default=True,
              help="Most generations (re-rolls and repairs) the identity loop may spend on one shot.")
@click.option("--repair-depth", type=click.IntRange(min=0), default=3, show_default=True,
              help="How many times a drifting span may be split by a new keyframe.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable progress and summary (JSON lines).")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors and the summary line.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Run shots in this process, or as Ray tasks (one GPU each) on a cluster.")
@click.option("--address", default=None, help="Ray cluster address (ray://host:10001, auto); default: start a local Ray.")
@click.option("--num-gpus", type=click.FloatRange(min=0), default=1, show_default=True,
              help="GPUs per Ray task (0: CPU workers).")
@click.option("--joint-attention/--no-joint-attention", "joint", default=None,
              help="Share self-attention across a shot's keyframes (default: on). Off: each keyframe "
                   "is generated on its own, and no kept keyframe, scene anchor or style image is context.")
@click.option("--joint-rate", type=click.FloatRange(0, 1), default=None, metavar="R",
              help="Joint attention: the fraction of the other keyframes' tokens each keyframe attends to "
                   "(default: the preset's, 0.5).")
@click.option("--joint-layers", type=click.Choice(list(LAYER_GROUPS)), default=None,
              help="Joint attention in the UNet's up blocks (the preset's default), mid and up blocks, or all.")
@click.option("--joint-steps", callback=_step_range, default=None, metavar="START:END",
              help="Joint attention only in this part of the denoising schedule, as fractions "
                   "(default: the preset's, 0:1; e.g. 0:0.5 for the first half).")
@click.option("--hedge", type=click.FloatRange(0, 1), default=None, metavar="H",
              help="Flow in-betweens: where A and B warped to a frame still disagree, mix in up to this share "
                   "of the plain cross-fade (0: crisp warping everywhere, may tear on fast crossing motion). "
                   "For the shots whose 'hedge' column is blank (default: 0.5).")
@click.option("--camera-motion/--no-camera-motion", "camera_motion", default=None,
              help="Flow in-betweens: pixels without a trusted flow follow the fitted camera motion (default: on).")
def run(shotlist, out, only, preset, device, cast, dry_run, allow_outside_images, force, strict, face_model, allow_download,
        offline, no_refine, check_every, follow_faces, keyframe_attempts, shot_generations, repair_depth, as_json, quiet,
        executor, address, num_gpus, joint, joint_rate, joint_layers, joint_steps, hedge, camera_motion):
    """Render every shot of SHOTLIST (a CSV) into video."""
    from keyrender.pipeline import RenderOptions

    flow = {k: v for k, v in (("hedge", hedge), ("camera_motion", camera_motion)) if v is not None}
    options = RenderOptions(
        out=out or shotlist.parent / "renders", out_named=out is not None, cast=cast, preset=preset, device=device,
        only=[s for s in only.split(",")] if only else None, force=force, strict=strict,
        face_model=face_model, offline=offline, allow_download=allow_download,
        allow_outside_images=allow_outside_images, refine=not no_refine, check_every=check_every,
        follow_faces=follow_faces, keyframe_attempts=keyframe_attempts,
        shot_generations=shot_generations, repair_depth=repair_depth,
        consistent=_joint_options(preset, joint, joint_rate, joint_layers, joint_steps), **flow,
    )
    if dry_run:
        _dry_run(shotlist, options, as_json)
        return
    from keyrender.pipeline import get_executor, render

    if executor != "ray" and (address or num_gpus != 1):
        raise click.UsageError("--address and --num-gpus need --executor ray")
    runner = get_executor(executor, **({"address": address, "num_gpus": num_gpus} if executor == "ray" else {}))
    try:
        with _Progress(as_json=as_json, quiet=quiet) as progress:
            result = render(shotlist, options, callback=progress, executor=runner)
    finally:  # Ray shut down here, where a Ctrl-C is one line and exit 130
        close = getattr(runner, "close", None)
        if close is not None:
            close()
    _late_warnings(result, progress, as_json=as_json, quiet=quiet)
    _summary(result, as_json=as_json, quiet=quiet)
    if result.report and not as_json:
        click.echo(f"report: {result.report}" + (f"; timeline: {result.timeline}" if result.timeline else ""))
    sys.exit(result.exit_code)


def _joint_options(preset: str, enabled, rate, layers, steps):
    """The preset's joint-attention options with the --joint-* flags given; None when none is."""
    changes = {}
    if enabled is not None:
        changes["enabled"] = enabled
    if rate is not None:
        changes["sampling_rate"] = rate
    if layers is not None:
        changes["layers"] = layers
    if steps is not None:
        changes["start"], changes["end"] = steps
    if not changes:
        return None
    from dataclasses import replace

    from keyrender.keyframes.presets import get_preset

    return replace(get_preset(preset).consistent, **changes).check()


def _dry_run(shotlist: Path, options, as_json: bool) -> None:
    from keyrender.pipeline import prepare

    sl, jobs = prepare(shotlist, options)
    # what the plan decided: each shot's flow options, and what generated keyframes get (the video
    # model when its weights are here; the same choice for every shot of the run)
    flows = {j.shot.id: j.spans.flow for j in jobs}
    inbetweens = next((j.spans.video for j in jobs if j.spans.video is not None), None)
    if as_json:
        for j in jobs:
            click.echo(json.dumps({
                "shot": j.shot.id, "scene": j.scene.id, "frames": j.frames,
                "fps": f"{j.shot.fps.numerator}/{j.shot.fps.denominator}", "size": [j.width, j.height],
                "keyframe_frames": list(j.shot.keyframe_frames), "keyframe_times": list(j.shot.keyframe_times),
                "characters": list(j.shot.characters), "storyboard": j.shot.storyboard,
                "interpolation": flows[j.shot.id].manifest(),
                "inbetweens": j.spans.video.manifest() if j.spans.video else None,
                "done": j.done, "cache_key": j.cache_key, "out": str(j.out_dir),
            }))
        return
    click.echo(f"{sl.path}: {len(sl.shots)} shots in {len(sl.scenes)} scenes; preset {options.preset}; out {options.out}")
    if options.consistent is not None:
        c = options.consistent
        click.echo("joint attention: " + (f"on, rate {c.sampling_rate:g}, layers {c.layers}, steps {c.start:g}:{c.end:g}"
                                          if c.enabled else "off"))
    if inbetweens is not None:
        click.echo(f"in-betweens that flow cannot make (generated keyframes, storyboard pictures that are not one "
                   f"camera move): video model {inbetweens.backend} ({inbetweens.model})" if inbetweens.video
                   else f"in-betweens of generated keyframes: optical flow (a morph between poses): {inbetweens.fallback}")
    for j in jobs:
        s = j.shot
        times = ", ".join(f"{t:g}" for t in s.keyframe_times)
        source = "storyboard" if s.storyboard else (
            "generate" if not any(s.keyframe_images) else f"{sum(p is not None for p in s.keyframe_images)} given + generate")
        state = "done (cached)" if j.done else "to render"
        flow = flows[s.id]
        flow_text = "" if flow.is_default else (
            f"  hedge {flow.hedge:g}, camera motion {'on' if flow.camera_motion else 'off'}"
            + ("" if flow.applied else " (not applied)"))
        click.echo(
            f"  {s.id:<10} scene {j.scene.id:<6} {s.frames:>5} frames @ {float(s.fps):g} fps  {j.width}x{j.height}  "
            f"keyframes [{times}] s ({source})  characters: {', '.join(s.characters) or '-'}{flow_text}  -> {state}")
    todo = sum(not j.done for j in jobs)
    click.echo(f"{todo} of {len(jobs)} shots to render.")


class _Progress:
    """Turns the library's progress events into tqdm bars (TTY only), lines, or JSON lines."""

    def __init__(self, as_json: bool, quiet: bool):
        self.as_json, self.quiet = as_json, quiet
        self.tty = sys.stderr.isatty() and not quiet and not as_json
        self.bar = None
        self.warned: set[str] = set()  # the warnings printed (or sent as JSON) during the run

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._close_bar()

    def _close_bar(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __call__(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "warning":
            self.warned.add(str(event.get("message")))
        if self.as_json:
            if kind not in ("frame", "debug") or event.get("done") == event.get("total"):
                click.echo(json.dumps(event, default=str))
            return
        if kind == "debug":
            if os.environ.get("KEYRENDER_DEBUG"):
                click.echo(event.get("traceback", ""), err=True)
            return
        if kind == "warning":
            click.echo(f"warning: {event['message']}", err=True)
            return
        if self.quiet:
            return
        if kind == "frame" and self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=event["total"], desc=event["shot"], unit="frame", leave=False)
            self.bar.n = event["done"]
            self.bar.refresh()
        elif kind == "shot_start":
            click.echo(f"{event['shot']}: rendering {event['frames']} frames", err=True)
        elif kind == "stage" and not self.tty:
            click.echo(f"{event['shot']}: {event['stage']}", err=True)
        elif kind in ("shot_done", "shot_failed"):
            self._close_bar()
            if event["status"] == "failed":
                click.echo(f"{event['shot']}: FAILED: {event['reason']}", err=True)
            elif event["status"] == "rendered":
                flag = ""
                if event.get("flagged"):
                    why = f": {event['reason']}" if event.get("reason") else ""
                    flag = f" ({event['flagged']} frames flagged by identity checks{why})"
                click.echo(f"{event['shot']}: done{flag}", err=True)
        elif kind == "load":
            click.echo(f"loading {event['what']}...", err=True)


def _late_warnings(result, progress: "_Progress", as_json: bool, quiet: bool) -> None:
    """The warnings of the shots rendered in this run that did not reach the console while it
    ran (a shot's manifest keeps some without sending them: an unavailable repair, each shot's
    copy of a line said once per run), each once: the same line of several shots is one line
    naming them. --json: as warning events; -q: one line counting them."""
    import re

    from keyrender.outputs.manifest import Manifest

    lines: dict[str, list[str]] = {}
    for r in result.shots:
        if r.status != "rendered" or r.out_dir is None:
            continue
        m = Manifest.read(r.out_dir)
        for w in (m.warnings if m else []):
            if w in progress.warned:
                continue
            text = re.sub(rf"^shot {re.escape(r.shot)}: ", "", w)
            if text in progress.warned:
                continue
            shots = lines.setdefault(text, [])
            if r.shot not in shots:
                shots.append(r.shot)
    if not lines:
        return
    if as_json:
        for text, shots in lines.items():
            click.echo(json.dumps({"event": "warning", "message": text, "shots": shots}))
        return
    if quiet:
        click.echo(f"{len(lines)} more warning(s) in the shots' manifests and report.html", err=True)
        return
    click.echo("warnings of this run not shown above (each shot's manifest and report.html keep them):", err=True)
    for text, shots in lines.items():
        click.echo(f"warning: {', '.join(shots)}: {text}", err=True)


def _summary(result, as_json: bool, quiet: bool) -> None:
    if as_json:
        click.echo(json.dumps({"event": "summary", "exit_code": result.exit_code, "out": str(result.out),
                               "report": str(result.report) if getattr(result, "report", None) else None,
                               "timeline": str(result.timeline) if getattr(result, "timeline", None) else None, "shots": [
            {"shot": r.shot, "status": r.status, "video": str(r.video) if r.video else None,
             "flagged_frames": r.flagged, "reason": r.reason, "wrong_person": _wrong_person(r),
             "seconds": round(r.seconds, 2)}
            for r in result.shots]}))
        return
    if not quiet:
        for r in result.shots:
            flag = f"  [{len(r.flagged)} frames flagged" + (f": {r.reason}]" if r.reason else "]") if r.flagged else ""
            detail = r.reason if r.status == "failed" else str(r.video) + flag
            click.echo(f"  {r.shot:<10} {r.status:<9} {detail}")
    counts = {k: sum(r.status == k for r in result.shots) for k in ("rendered", "cached", "failed")}
    flagged = sum(1 for r in result.shots if r.flagged)
    line = f"{counts['rendered']} rendered, {counts['cached']} cached, {counts['failed']} failed"
    if flagged:
        line += f", {flagged} with flagged frames" + (" (counted as failed: --strict)" if result.strict else "")
    click.echo(line + f"; output in {result.out}")


def _wrong_person(r) -> list[dict]:
    """Who-is-who of a shot (its manifest's identity.wrong_person): each character shown as
    another cast member, with the frames and the similarity."""
    if not r.ok or r.out_dir is None:
        return []
    from keyrender.outputs.manifest import Manifest

    m = Manifest.read(r.out_dir)
    return list(m.identity.wrong_person) if m else []

# ---- identity, check --------------------------------------------------------------------------
def _identity_model_options(fn):
    """--face-model, --recognizer, --allow-download: shared by `identity` and `check`."""
    fn = click.option("--allow-download", is_flag=True, default=False,
                      help="Let insightface download a missing model pack (off by default).")(fn)
    fn = click.option("--recognizer", type=click.Path(dir_okay=False), default=None,
                      help="Any ArcFace-style ONNX to use instead of an insightface pack's recognizer.")(fn)
    fn = click.option("--face-model", "face_model", default=None, metavar="NAME_OR_DIR",
                      help="dlib (built in, the default; also $KEYRENDER_FACE_MODEL), dlib-cnn, an "
                           "insightface pack name (buffalo_l, antelopev2, under $INSIGHTFACE_HOME or "
                           "~/.insightface/models) or a folder of ONNX files.")(fn)
    return fn


def _identity_load_model(face_model, recognizer, allow_download, lazy=False):
    from keyrender.identity import load_face_model

    return load_face_model(face_model, recognizer=recognizer, allow_download=allow_download,
                           lazy=lazy)


def _identity_echo_json(obj) -> None:
    import json

    from keyrender.core.fsutil import json_default

    click.echo(json.dumps(obj, indent=2, default=json_default))


def _identity_build_progress(as_json: bool, done: dict | None = None):
    """The store's build events on the console: skipped references as warnings at once; each
    character's outcome ("built", "cached") into `done` (printed with its threshold after the
    build, `_identity_built_lines`), or at once when no `done` is given."""
    def report(event) -> None:
        if event.action == "skipped-reference":
            click.echo(f"warning: {event.name}: skipped {event.detail}", err=True)
        elif event.action in ("built", "cached"):
            if done is not None:
                done[event.name] = event.action
            elif not as_json:
                click.echo(f"{event.name}: {event.action}" + (f" ({event.detail})" if event.detail else ""))
    return report


def _identity_built_lines(ids: dict, done: dict) -> None:
    """One line per character: built or cached, its threshold and what the threshold rests on
    ("1 reference: the model's default threshold; add photos for a calibrated one")."""
    for name, ident in ids.items():
        click.echo(f"{name}: {done.get(name, 'loaded')}, threshold {ident.threshold:.3f} "
                   f"({ident.calibration_note})")


@main.group()
def identity() -> None:
    """Build, list, show and compare the cast's face identities."""


@identity.command("build")
@click.argument("cast_dir", required=False, type=click.Path(file_okay=False))
@click.option("--cast", "cast_opt", type=click.Path(file_okay=False), default=None,
              help="The cast folder (cast/<name>/*.jpg); same as CAST_DIR.")
@click.option("--characters", default=None, help="Only these characters (comma separated).")
@_identity_model_options
@click.option("--json", "as_json", is_flag=True, help="Print the identities as JSON.")
def identity_build(cast_dir, cast_opt, characters, face_model, recognizer, allow_download, as_json):
    """Embed the reference faces of each character; only changed ones are rebuilt."""
    from keyrender.identity import IdentityStore

    cast_dir = cast_dir or cast_opt or "cast"
    store = IdentityStore(cast_dir)
    store.cast()  # a missing or empty cast folder is an input error before any model loads
    embedder = _identity_load_model(face_model, recognizer, allow_download, lazy=True)
    names = [c.strip() for c in characters.split(",") if c.strip()] if characters else None
    done: dict[str, str] = {}
    ids = store.build(embedder, names=names, progress=_identity_build_progress(as_json, done))
    if as_json:
        _identity_echo_json({n: i.to_json() for n, i in ids.items()})
    else:
        _identity_built_lines(ids, done)


@identity.command("list")
@click.option("--cast", "cast_dir", type=click.Path(file_okay=False), default="cast",
              show_default=True, help="The cast folder.")
@_identity_model_options
@click.option("--json", "as_json", is_flag=True)
def identity_list(cast_dir, face_model, recognizer, allow_download, as_json):
    """The cast's characters with their identity status (built, stale and why, not built)."""
    from keyrender.core.errors import InputError
    from keyrender.identity import IdentityStore

    store = IdentityStore(cast_dir)
    cast = store.cast()
    model_name = None
    if face_model or recognizer:
        model_name = _identity_load_model(face_model, recognizer, allow_download, lazy=True).name
    rows = []
    for name, files in cast.items():
        why = store.why_stale(name, model_name)
        row = {"name": name, "references": len(files), "status": "ok" if why is None else "stale",
               "reason": why}
        try:  # a stale identity that is saved still shows its numbers; a damaged one has none
            ident = store.load(name, model_name) if why != "not built" else None
        except InputError:
            ident = None
        if ident is not None:
            row.update(model=ident.model, threshold=ident.threshold, used=len(ident.references),
                       skipped=len(ident.skipped), calibration=ident.calibration,
                       calibration_note=ident.calibration_note)
        rows.append(row)
    if as_json:
        _identity_echo_json(rows)
        return
    for r in rows:
        extra = (f" threshold={r['threshold']:.3f} used={r['used']}/{r['references']} ({r['calibration_note']})"
                 if "model" in r else "")
        why = f" ({r['reason']})" if r["reason"] else ""
        click.echo(f"{r['name']}: {r['status']}{why}{extra}")


@identity.command("show")
@click.argument("name")
@click.option("--cast", "cast_dir", type=click.Path(file_okay=False), default="cast",
              show_default=True, help="The cast folder.")
@click.option("--json", "as_json", is_flag=True)
def identity_show(name, cast_dir, as_json):
    """A saved identity: model, threshold, spread, references and skipped files."""
    import numpy as np

    from keyrender.identity import IdentityStore

    ident = IdentityStore(cast_dir).load(name)
    info = ident.to_json()
    sims = np.atleast_1d(ident.similarity(ident.embeddings))
    for ref, sim in zip(info["references"], sims):
        ref["similarity"] = round(float(sim), 4)  # to the centroid, on compare's scale
    if as_json:
        _identity_echo_json(info)
        return
    from keyrender.identity import get_metric

    click.echo(f"{ident.name}: model {ident.model}")
    click.echo(f"  threshold {ident.threshold:.3f}: {ident.calibration_note}")
    click.echo(f"  spread {ident.spread:.3f}, dim {info['dim']}, digest {ident.digest[:16]}")
    click.echo(f"  similarity of each reference ({get_metric(ident.metric).description}, as `identity compare`):")
    for ref, sim in zip(ident.references, sims):
        click.echo(f"  {ref.file}  similarity {float(sim):.3f}  sha256 {ref.sha256[:16]}")
    for f, why in ident.skipped:
        click.echo(f"  {f}  skipped: {why}")


@identity.command("compare")
@click.argument("a", metavar="NAME_OR_IMAGE")
@click.argument("b", metavar="NAME_OR_IMAGE")
@click.option("--cast", "cast_dir", type=click.Path(file_okay=False), default="cast",
              show_default=True, help="The cast folder.")
@_identity_model_options
@click.option("--threshold", type=float, default=None,
              help="Verdict threshold (default: the identities' own; for two images the face "
                   "model's pair threshold: dlib 0.45 (distance 0.55), ArcFace cosine 0.35).")
@click.option("--json", "as_json", is_flag=True)
def identity_compare(a, b, cast_dir, face_model, recognizer, allow_download, threshold, as_json):
    """Similarity between two characters, two images, or one of each, and a verdict."""
    from keyrender.identity import IdentityStore, compare, get_metric

    got = compare(a, b, IdentityStore(cast_dir),
                  lambda: _identity_load_model(face_model, recognizer, allow_download),
                  threshold=threshold, warn=lambda line: click.echo(f"warning: {line}", err=True),
                  progress=_identity_build_progress(True))
    if as_json:
        _identity_echo_json(got.to_json())
    else:
        verdict = "same person" if got.same else "different people"
        click.echo(f"similarity {got.similarity:.3f} ({get_metric(got.metric).description}; "
                   f"threshold {got.threshold:.3f}): {verdict}")


@main.command("check")
@click.argument("video", type=click.Path(dir_okay=False))
@click.option("--cast", "cast_dir", type=click.Path(file_okay=False), required=True,
              help="The cast folder (identities are built or refreshed as needed).")
@click.option("--characters", default=None,
              help="Characters expected in every frame (comma separated). Without it every cast "
                   "member is 'expected if seen': judged only once recognised in the video.")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Check every N-th frame.")
@click.option("--threshold", type=float, default=None,
              help="Force one acceptance threshold for every character.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG plot of similarity over time.")
@click.option("--worst", type=int, default=5, show_default=True, help="How many worst frames to list.")
@_identity_model_options
@click.option("--json", "as_json", is_flag=True, help="Print the full audit as JSON.")
def check(video, cast_dir, characters, every, threshold, plot, worst, face_model, recognizer,
          allow_download, as_json):
    """Audit a video (from keyrender or any tool) for identity drift.

    Exit codes: 0 no drift, 3 drift found, 2 bad input (missing video, cast or face model; a
    truncated video where the part that decodes shows no drift: it is audited up to the cut and
    said to be truncated, but "no drift" cannot be said of the whole).
    """
    from keyrender.core.errors import EXIT_BAD_INPUT, EXIT_SHOTS_FAILED
    from keyrender.core.fsutil import check_output_path
    from keyrender.identity import FaceChecker, IdentityStore, audit_video, write_plot
    from keyrender.outputs.media import check_video_file

    check_video_file(video)  # missing, a folder, a FIFO: said as it is
    if plot:  # before the audit: a plot over the video, into the cast, or where no file can go
        check_output_path(plot, inputs=[video], not_inside=[("the cast folder", cast_dir)], what="--plot")
    store = IdentityStore(cast_dir, threshold=threshold)
    store.cast()
    embedder = _identity_load_model(face_model, recognizer, allow_download)
    ids = store.build(embedder, progress=_identity_build_progress(True))
    expected = [c.strip() for c in characters.split(",") if c.strip()] if characters else None
    checker = FaceChecker(embedder, ids)
    result = audit_video(video, checker, expected, every=every)
    if plot:
        with output_errors(plot, advice="Free space or choose another --plot"):
            write_plot(result, plot)
    if as_json:
        _identity_echo_json(result.to_json(worst))
    else:
        click.echo(f"{video}: {len(result.frames)} frame(s) checked of {result.frames_decoded} "
                   f"(every {every}), mode {result.mode}")
        for name, s in result.stats().items():
            mean = "-" if s["mean_similarity"] is None else f"{s['mean_similarity']:.3f}"
            low = "-" if s["min_similarity"] is None else f"{s['min_similarity']:.3f}"
            click.echo(f"  {name}: found {s['frames_found']}, pass {s['frames_passed']}, "
                       f"drift {s['frames_drift']}, wrong person {s['frames_wrong_person']}, "
                       f"missing {s['frames_missing']}; mean {mean}, min {low} "
                       f"(threshold {s['threshold']:.3f})")
        if result.drift:
            click.echo("  worst frames:")
            for r in result.worst_frames(worst):
                desc = ", ".join(f"{n} {st}" + ("" if r.similarity[n] is None else f" {r.similarity[n]:.3f}")
                                 for n, st in r.status.items() if st != "absent")
                t = "" if r.time is None else f" t={r.time:.2f}s"
                click.echo(f"    frame {r.index}{t}: {desc}")
        if result.truncated:
            click.echo(f"  {video}: {result.truncated}")
        click.echo("drift found" if result.drift else
                   "no drift in the part that decodes; the video is truncated" if result.truncated else "no drift")
        if plot:
            click.echo(f"plot: {plot}")
    if result.drift:
        click.get_current_context().exit(EXIT_SHOTS_FAILED)
    if result.truncated:
        click.get_current_context().exit(EXIT_BAD_INPUT)

# ---- interpolate ------------------------------------------------------------------------------
@main.command("interpolate")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--frames", "n_frames", type=click.IntRange(min=1), help="In-betweens between two images.")
@click.option("--factor", type=click.IntRange(min=2), help="Retime a video: K times the frame rate.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Folder for the frames of an image pair; file (.mp4) for a video.")
@click.option("--backend", type=click.Choice(["flow", "ltx", "wan"]), default="flow", show_default=True)
@click.option("--model", default=None, help="Generative backends: local folder, hub id or 'tiny'.")
@click.option("--preset", type=click.Choice(["ultrafast", "fast", "medium"]), default=None,
              help="DIS preset of the flow backend (default: medium).")
@click.option("--hedge", type=click.FloatRange(0, 1), default=None, metavar="H",
              help="Flow: where A and B warped to a frame still disagree, mix in up to this share of the plain "
                   "cross-fade (default: 0.5; 0: crisp warping everywhere, may tear on fast crossing motion).")
@click.option("--camera-motion/--no-camera-motion", "camera_motion", default=None,
              help="Flow: pixels without a trusted flow follow the fitted camera motion (default: on).")
@click.option("--face-hints/--no-face-hints", "face_hints", default=True, show_default=True,
              help="Image pairs: find the largest face in each image (dlib, built in) and let the in-betweens "
                   "follow it when the images differ by more than a camera move.")
def interpolate_cmd(inputs, n_frames, factor, out, backend, model, preset, hedge, camera_motion, face_hints):
    """In-betweens for A.png B.png (--frames N --out DIR), or retime VIDEO (--factor K --out FILE).

    Image pairs write DIR/frame_0000.png (A) ... frame_{N+1}.png (B): always a continuous
    transition (a pose change follows the face; what nothing relates dissolves), never a cut.
    Videos are written as H.264 yuv420p at exactly K times the input rate; a cut in the footage
    stays a cut.
    """
    from keyrender.interpolate import get_interpolator

    # the flow backend's options; ltx and wan start from the flow in-betweens and take them as flow_options
    flow = {k: v for k, v in (("preset", preset), ("hedge", hedge), ("camera_motion", camera_motion)) if v is not None}
    if len(inputs) == 1:
        flow["detect_cuts"] = True  # footage may contain cuts; between two keyframes there are none
    if backend == "flow":
        options = flow
    else:
        options = {"model": model, "flow_options": flow or None}
    _check_interpolate_paths(inputs, out)  # before any model loads or frame is made
    interp = get_interpolator(backend, **options)
    bar = _interp_progress()
    with output_errors(out, advice="Free space or choose another --out, then run again"):
        summary = _interpolate(inputs, n_frames, factor, out, interp, bar, face_hints=face_hints)
    if bar is not None:
        bar.close()
    click.echo(json.dumps({"out": str(out), **summary}))


def _check_interpolate_paths(inputs, out) -> None:
    """--out can be written and is no input: a video's output file is not the video and not a
    folder; an image pair's folder is not a file (interpolate_pair checks the frames' names)."""
    from keyrender.core.fsutil import check_output_path

    if len(inputs) == 1:
        from keyrender.outputs.media import check_video_file

        check_video_file(inputs[0])
        check_output_path(out, inputs=inputs)
    elif len(inputs) == 2:
        check_output_path(out, folder=True)


def _interpolate(inputs, n_frames, factor, out, interp, bar, *, face_hints=True) -> dict:
    from keyrender.core.errors import InputError

    if len(inputs) == 2:
        if n_frames is None or factor is not None:
            raise InputError("two images: give --frames N (and no --factor)")
        from keyrender.interpolate.retime import interpolate_pair
        from keyrender.shot.hints import largest_face_hints

        summary = interpolate_pair(inputs[0], inputs[1], n_frames, out, interp, progress=_bar_progress(bar),
                                   find_hints=largest_face_hints if face_hints else None)
    elif len(inputs) == 1:
        if factor is None or n_frames is not None:
            raise InputError(f"{inputs[0]}: a video takes --factor K (and no --frames)")
        from keyrender.interpolate.retime import retime_video

        summary = retime_video(inputs[0], out, factor, interp, progress=_bar_progress(bar))
        summary = {**summary, "fps_in": str(summary["fps_in"]), "fps_out": str(summary["fps_out"])}
    else:
        raise InputError(f"interpolate takes two images or one video, got {len(inputs)} inputs")
    return summary


def _bar_progress(bar):
    """progress(done, total) for the library, drawn on a tqdm bar (None: not a terminal)."""
    def progress(done, total):
        if bar is not None:
            bar.total = total or None
            bar.update(done - bar.n)

    return progress


def _interp_progress():
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(unit="frame", file=sys.stderr, leave=False)




if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
