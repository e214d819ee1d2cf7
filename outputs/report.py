"""The run report: one self-contained HTML file per run (thumbnails and plots embedded).

    write_report(run_result, shotlist, path) -> path

Per shot: status, timings, the failure reason of a failed shot, a contact sheet of its keyframes
(small JPEG thumbnails, base64), the identity similarity of each character over time as an inline
SVG plot with each identity's threshold, the flagged frames, and every keyframe re-roll and
in-between repair the refine loop made. Everything comes from the run result and each shot's
manifest.json (see docs/manifest.md); every string that comes from the shot list or a manifest is
HTML-escaped. No torch, no matplotlib: OpenCV makes the thumbnails, the plots are drawn here.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

from keyrender.core.errors import KeyrenderError
from keyrender.core.fsutil import atomic_write_text
from keyrender.core.jobs import MANIFEST
from keyrender.outputs.folder import REPORT_MARKER, report_is_ours
from keyrender.outputs.manifest import Manifest, Repair, Score

THUMB_WIDTH = 192
THUMB_QUALITY = 70
PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f")
FLAG = "#d62728"
#: the camera models of a span (interpolate.camera.MODELS), in words: "similarity" is the
#: geometric name of shift + zoom + roll, not a face similarity
CAMERA_MODELS = {"translation": "shift", "similarity": "shift, zoom and roll", "affine": "affine",
                 "homography": "perspective"}


def esc(value: Any) -> str:
    """HTML-escape anything (quotes too: values also go into attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def write_report(run_result, shotlist, path: str | Path) -> Path:
    """Write the run's HTML report to `path` atomically and return the path. A file there that
    keyrender did not write (no marker: the user's own report.html, a link) is left as it is
    (KeyrenderError)."""
    import os

    path = Path(path)
    if os.path.lexists(path) and not report_is_ours(path):
        raise KeyrenderError(f"the run report was not written: {path} is not keyrender's (no keyrender "
                             "marker in it) and is left as it is; move it away to get the report")
    try:
        page = render_report(run_result, shotlist)
        atomic_write_text(path, page)
    except OSError as exc:
        raise KeyrenderError(f"cannot write the run report {path}: {exc}") from exc
    return path


def render_report(run_result, shotlist) -> str:
    """The report as one HTML string."""
    shots_by_id = {s.id: s for s in shotlist.shots} if shotlist is not None else {}
    counts = {k: sum(r.status == k for r in run_result.shots) for k in ("rendered", "cached", "failed")}
    flagged = sum(1 for r in run_result.shots if r.flagged)
    title = f"keyrender run: {Path(shotlist.path).name if shotlist is not None else run_result.out}"
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8">{REPORT_MARKER}',  # the marker: within the first bytes
        f"<title>{esc(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        '<p class="meta">',
        f"shot list <code>{esc(shotlist.path if shotlist is not None else '-')}</code> &middot; "
        f"output <code>{esc(run_result.out)}</code> &middot; "
        f"written {esc(_dt.datetime.now().astimezone().isoformat(timespec='seconds'))}</p>",
        f'<p class="summary">{counts["rendered"]} rendered, {counts["cached"]} cached, '
        f'{counts["failed"]} failed' + (f", {flagged} with flagged frames" if flagged else "")
        + (" (--strict: flagged shots count as failed)" if run_result.strict and flagged else "") + "</p>",
        _index(run_result),
    ]
    for result in run_result.shots:
        parts.append(_shot_section(result, shots_by_id.get(result.shot), run_result))
    parts.append("</body></html>\n")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------


def _index(run_result) -> str:
    rows = []
    for r in run_result.shots:
        cls = _status_class(r, run_result.strict)
        m = _read_manifest(r) if r.ok else None
        spans = [sp for sp in m.interpolation.span_records() if "split_at" not in sp.info] if m else []
        look = sum(sp.suspect for sp in spans)
        rows.append(
            f'<tr><td><a href="#shot-{esc(r.shot)}">{esc(r.shot)}</a></td>'
            f'<td class="{cls}">{esc(r.status)}</td><td>{len(r.flagged)}</td>'
            f'<td class="{"warn" if look else ""}">{f"{look} of {len(spans)}" if spans else ""}</td>'
            f'<td>{r.seconds:.1f}</td><td>{esc(r.reason or "")}</td></tr>')
    return ('<table class="index"><tr><th>shot</th><th>status</th><th>flagged frames</th>'
            '<th>spans to look at</th><th>seconds</th><th>reason</th></tr>' + "".join(rows) + "</table>")


def _status_class(r, strict: bool) -> str:
    if r.status == "failed" or (strict and r.flagged):
        return "bad"
    return "warn" if r.flagged else "ok"


def _read_manifest(result) -> Manifest | None:
    p = result.manifest or (Path(result.out_dir) / MANIFEST)
    return Manifest.read(Path(p).parent, p)


def _spans(m: Manifest, out_dir: Path) -> str:
    """How each span between keyframes was filled, as a filmstrip under the keyframes: the
    span's middle in-between, its frames and its verdict (the backend's words, how much of the
    picture its warp explains). A span that is not trusted (manifest.Span.suspect) is framed in
    red, so a torn or ghosted span is never hidden behind "rendered"."""
    interp = m.interpolation
    spans = [sp for sp in interp.span_records() if "split_at" not in sp.info]
    choice = interp.inbetweens or {}
    if not spans and not interp.fallback and not choice:
        return ""
    cells = []
    for sp in spans:
        cam = sp.camera
        extra = []
        if sp.mode == "camera" and cam:
            fit = sp.info.get("similarity")  # the flow's word: how well the pair agrees once aligned
            extra.append(f"camera fit: {esc(CAMERA_MODELS.get(cam.get('model'), cam.get('model')))}, "
                         f"pan {100 * float(cam.get('pan_x', 0)):+.0f}%/"
                         f"{100 * float(cam.get('pan_y', 0)):+.0f}%, zoom {float(cam.get('zoom', 1)):.2f}x, "
                         f"roll {float(cam.get('roll_deg', 0)):+.1f}&deg;"
                         + (f"; aligned frames agree {float(fit):.2f}" if isinstance(fit, (int, float)) else ""))
        if sp.mode == "generative":
            extra.append(f'{esc(sp.info.get("backend"))}, {esc(sp.info.get("steps"))} steps')
        if sp.explained is not None and not sp.verdict:
            extra.append(f"{100 * sp.explained:.0f}% of the picture explained by the warp")
        src = _thumbnail(out_dir / sp.middle) if sp.middle else None
        img = (f'<img src="{src}" alt="frame {(sp.start + sp.end) // 2}">' if src
               else '<div class="missing">no middle frame</div>')
        cls = "bad" if sp.suspect else "ok"
        cells.append(f'<figure class="span {cls}">{img}<figcaption>frames {esc(sp.start)}&ndash;{esc(sp.end)}: '
                     f'<span class="{cls}">{esc(sp.says)}</span>'
                     + "".join(f"<br>{x}" for x in extra) + "</figcaption></figure>")
    note = ""
    if interp.fallback:
        note = f'<p class="reason bad">in-betweens: {esc(interp.fallback)}</p>'
    elif choice.get("backend") not in (None, "flow"):
        note = (f'<p class="meta">generated keyframes in-betweened by the keyframe-conditioned video model '
                f'<b>{esc(choice["backend"])}</b> (weights: {esc(choice.get("model"))})</p>')
    return (f'{note}<h3>in-betweens</h3><p class="meta">by <b>{esc(interp.backend)}</b>; the middle frame of '
            f'every span:</p><div class="sheet">{"".join(cells)}</div>')


def _player(m: Manifest, href: str, out_dir: Path) -> str:
    """The shot's video in a player (linked, not embedded: the report stays small), its first
    keyframe as the poster."""
    width = min(480, int(m.video.width or 480))
    poster = _thumbnail(out_dir / m.keyframes[0].path, width) if m.keyframes else None
    return (f'<video class="player" controls preload="metadata" width="{width}" src="{esc(href)}"'
            + (f' poster="{poster}"' if poster else "") + f'><a href="{esc(href)}">video</a></video>')


def _shot_section(result, shot, run_result) -> str:
    out = [f'<section id="shot-{esc(result.shot)}">',
           f'<h2>{esc(result.shot)} <span class="{_status_class(result, run_result.strict)}">'
           f'{esc(result.status)}</span></h2>']
    if shot is not None:
        fps = shot.fps
        out.append(
            f'<p class="meta">scene {esc(shot.scene)} &middot; line {shot.line} &middot; {shot.frames} frames @ '
            f'{esc(_fps_text(fps))} fps ({float(shot.duration):.2f} s) &middot; characters: '
            f'{esc(", ".join(shot.characters) or "-")} &middot; seed {shot.seed}</p>')
        out.append(f'<p class="prompt">{esc(shot.prompt)}</p>')
        if shot.notes:
            out.append(f'<p class="notes">notes: {esc(shot.notes)}</p>')
    if result.status == "failed":
        out.append(f'<p class="reason bad">failed ({esc(result.error_type or "error")}): {esc(result.reason)}</p>')
        if (Path(result.out_dir) / MANIFEST).is_file():
            out.append(f'<p class="meta">an earlier render of this shot is still in '
                       f'<code>{esc(result.out_dir)}</code> and is not shown here.</p>')
        out.append(f'<p class="meta">{result.seconds:.1f} s</p></section>')
        return "\n".join(out)

    m = _read_manifest(result)
    if m is None:
        out.append(f'<p class="reason bad">manifest missing or unreadable: {esc(result.manifest)}</p></section>')
        return "\n".join(out)
    video = m.video
    href = _rel_href(result.out_dir, run_result.out, video.path)
    out.append(_player(m, href, Path(result.out_dir)))
    out.append(
        f'<p class="meta">video <a href="{esc(href)}">'
        f'{esc(Path(result.out_dir).name)}/{esc(video.path)}</a> &middot; '
        f'{esc(video.width)}x{esc(video.height)} &middot; {esc(video.codec)} &middot; '
        f'cache key <code>{esc(m.cache_key)}</code></p>')
    out.append(_timings(m, result))
    out.append(_contact_sheet(m, Path(result.out_dir)))
    out.append(_spans(m, Path(result.out_dir)))
    out.append(_identity(m))
    warnings = m.warnings
    if warnings:
        out.append("<h3>warnings</h3><ul>" + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul>")
    out.append("</section>")
    return "\n".join(out)


def _fps_text(fps) -> str:
    fps = Fraction(fps)
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator} ({float(fps):.3f})"


def _rel_href(out_dir, run_out, rel: str) -> str:
    try:
        return (Path(out_dir).resolve().relative_to(Path(run_out).resolve()) / rel).as_posix()
    except ValueError:
        return (Path(out_dir).resolve() / rel).as_uri()


def _timings(m: Manifest, result) -> str:
    t = m.timings
    cells = "".join(f"<td>{esc(k.removesuffix('_s'))}</td><td>{float(v):.2f} s</td>" for k, v in t.items())
    note = " (cached: times of the run that rendered it)" if result.status == "cached" else ""
    return f'<h3>timings{esc(note)}</h3><table class="timings"><tr>{cells}</tr></table>' if cells else ""


def _thumbnail(path: Path, width: int = THUMB_WIDTH) -> str | None:
    """A data: URL of a small JPEG (at most `width` wide) of the image at path, or None if it
    cannot be read."""
    import cv2
    import numpy as np

    from keyrender.core.errors import InputError
    from keyrender.outputs.media import load_image

    try:
        img = np.ascontiguousarray(load_image(path)[:, :, ::-1])  # BGR for the encoder below
    except InputError:
        return None
    h, w = img.shape[:2]
    if w > width:
        img = cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY])
    if not ok:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _contact_sheet(m: Manifest, out_dir: Path) -> str:
    fps = Fraction(m.video.fps)
    flagged = set(m.identity.flagged_frames)
    cells = []
    for kf in m.keyframes:
        src = _thumbnail(out_dir / kf.path)
        img = (f'<img src="{src}" alt="{esc(kf.path)}">' if src
               else f'<div class="missing">cannot read {esc(kf.path)}</div>')
        attempts = kf.attempts()
        final = kf.final_score()
        badge = ""
        if final is not None:
            badge = (f'<span class="{"ok" if final.passed else "bad"}">'
                     f'{"pass" if final.passed else "FLAGGED"}</span> ')
        elif kf.frame in flagged:
            badge = '<span class="bad">FLAGGED</span> '
        verdict = (kf.identity or {}).get("verdict")
        caption = (f'{badge}frame {kf.frame} &middot; {float(Fraction(kf.frame) / fps):.2f} s &middot; '
                   f'{esc(kf.source)}' + (f' &middot; seed {esc(kf.seed)}' if kf.seed is not None else "")
                   + (f' &middot; {len(attempts) - 1} re-roll(s)' if len(attempts) > 1 else "")
                   + (f'<br><span class="bad">{esc(verdict)}</span>' if verdict else ""))
        title = esc(kf.prompt or "")
        cells.append(f'<figure title="{title}">{img}<figcaption>{caption}</figcaption></figure>')
    return '<h3>keyframes</h3><div class="sheet">' + "".join(cells) + "</div>"


def _identity(m: Manifest) -> str:
    ident = m.identity
    out = ["<h3>identity</h3>"]
    if not ident.checked:
        out.append(f'<p class="meta">not checked: {esc(ident.why_not or "no reason recorded")}</p>')
    fps = Fraction(m.video.fps)
    frames_total = int(m.video.frames or 1)
    scores = ident.scores()
    if scores:
        out.append(identity_svg(scores, ident.thresholds, frames_total, fps, keyframes=[k.frame for k in m.keyframes]))
    flagged = ident.flagged_frames
    if ident.checked:
        if ident.flag_reason:
            out.append(f'<p class="bad">flagged: {esc(ident.flag_reason)}</p>')
        how = ident.checks
        followed = (f' &middot; {esc(how.get("embedded"))} frame(s) embedded, {esc(how.get("followed"))} in-between(s) '
                    'followed from their keyframes (hollow points: similarity interpolated)') if how.get("followed") else ""
        out.append(f'<p class="meta">checked every {esc(ident.check_every)} frame(s) &middot; '
                   f'generation budget {esc(ident.budget.spent)} of {esc(ident.budget.generations)} spent{followed}</p>')
        if flagged:
            out.append(f'<p class="bad">flagged frames ({len(flagged)}): '
                       + ", ".join(f"{f} ({float(Fraction(f) / fps):.2f} s): {esc(_why(scores.get(f)))}" for f in flagged)
                       + "</p>")
        else:
            out.append('<p class="ok">no flagged frames</p>')
    out.append(_attempts_table(m))
    out.append(_repairs_table(ident.repair_records()))
    return "\n".join(out)


def _why(score: Score | None) -> str:
    return score.why() if score is not None else "failed"


def _sims(score: Score) -> str:
    return ", ".join(
        f"{esc(n)} {'-' if c.similarity is None else format(c.similarity, '.3f')}"
        f"{'' if c.passed else ' ✗'}" for n, c in score.characters.items()) or "-"


def _attempts_table(m: Manifest) -> str:
    rows = []
    for kf in m.keyframes:
        attempts = kf.attempts()
        for a in attempts:
            if len(attempts) < 2:
                continue
            mark = " (kept)" if a.attempt == kf.chosen_attempt else ""
            rows.append(f'<tr><td>{kf.index}</td><td>{kf.frame}</td><td>{esc(a.attempt)}{mark}</td>'
                        f'<td>{esc(a.seed)}</td><td>{esc(a.identity_strength)}</td>'
                        f'<td class="{"ok" if a.passed else "bad"}">{"pass" if a.passed else "fail"}</td>'
                        f'<td>{_sims(a)}</td></tr>')
    if not rows:
        return '<p class="meta">keyframe re-rolls: none</p>'
    return ('<h4>keyframe re-rolls</h4><table><tr><th>keyframe</th><th>frame</th><th>attempt</th><th>seed</th>'
            '<th>identity strength</th><th>result</th><th>similarity</th></tr>' + "".join(rows) + "</table>")


def _repairs_table(repairs: list[Repair]) -> str:
    if not repairs:
        return '<p class="meta">in-between repairs: none</p>'
    rows = []
    for r in repairs:
        tries = "; ".join(f"#{esc(a.attempt)} seed {esc(a.seed)}: "
                          f"{'pass' if a.passed else 'fail'} ({_sims(a)})" for a in r.attempts)
        rows.append(f'<tr><td>{esc(r.frame)}</td><td>{esc(r.depth)}</td><td>{esc(r.reason)}</td>'
                    f'<td class="{"ok" if r.result == "passed" else "bad"}">{esc(r.result)}'
                    f'{" (" + esc(r.stopped) + ")" if r.stopped else ""}</td><td>{tries or "-"}</td></tr>')
    return ('<h4>in-between repairs</h4><table><tr><th>frame</th><th>depth</th><th>why</th><th>result</th>'
            '<th>attempts</th></tr>' + "".join(rows) + "</table>")


# ---------------------------------------------------------------------------------------------
# the similarity plot


def identity_svg(scores: dict[int, Score | dict], thresholds: dict[str, float], frames: int, fps: Fraction, *,
                 keyframes: list[int] = (), width: int = 720, height: int = 200) -> str:
    """An inline SVG: similarity of each character per checked frame (x: seconds), each
    identity's threshold as a labelled dashed line of its colour, keyframes as grey ticks, failing
    frames in red (a face that is another cast member: a red diamond at its similarity to that
    member), frames whose face was followed from the keyframes as hollow points, frames where a
    character was not found as red crosses on the bottom axis. `scores`:
    frame -> Score (a manifest's score dicts are read as Scores)."""
    scores = {f: s if isinstance(s, Score) else Score.from_dict(s) for f, s in scores.items()}
    names: list[str] = []
    for s in scores.values():
        for n in s.characters:
            if n not in names:
                names.append(n)
    for n in thresholds:
        if n not in names:
            names.append(n)
    thr = dict(thresholds)
    for s in scores.values():
        for n, c in s.characters.items():
            thr.setdefault(n, c.threshold)
    values = [c.similarity for s in scores.values() for c in s.characters.values()
              if c.similarity is not None] + [t for t in thr.values() if t is not None]
    lo = min([0.0] + values)
    hi = max([1.0] + values)
    step = 0.2 if hi - lo <= 1.2 else 0.5
    lo, hi = math.floor(lo / step - 1e-9) * step, math.ceil(hi / step - 1e-9) * step  # whole ticks
    left, right, top, bottom = 44, 12, 10, 28
    pw, ph = width - left - right, height - top - bottom
    last = max(frames - 1, 1)

    def x(f: int) -> float:
        return left + pw * f / last

    def y(v: float) -> float:
        return top + ph * (hi - v) / (hi - lo)

    el = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{height}" '
          f'viewBox="0 0 {width} {height}" role="img" aria-label="identity similarity over time">',
          f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#bbb"/>']
    for v in _ticks(lo, hi, step):
        el.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e5e5e5"/>'
                  f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end" class="ax">{v:.1f}</text>')
    seconds = float(Fraction(last) / fps)
    tstep = _nice_step(seconds)
    t = 0.0
    while t <= seconds + 1e-9:
        fx = x(round(t * float(fps)))
        el.append(f'<text x="{fx:.1f}" y="{top + ph + 16}" text-anchor="middle" class="ax">{t:g}s</text>')
        t += tstep
    for f in keyframes:
        el.append(f'<line x1="{x(f):.1f}" x2="{x(f):.1f}" y1="{top}" y2="{top + ph}" stroke="#ccc" '
                  f'stroke-dasharray="2,3"><title>keyframe at frame {f}</title></line>')
    labels: list[float] = []  # the threshold labels' y, so that equal thresholds do not overprint
    wrong_seen: set[str] = set()  # cast members the faces turned out to be
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)]
        if thr.get(name) is not None:
            ty = y(float(thr[name]))
            el.append(f'<line x1="{left}" x2="{left + pw}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="{color}" '
                      f'stroke-dasharray="6,4"><title>{esc(name)} threshold {float(thr[name]):.3f}</title></line>')
            ly = ty - 3
            while any(abs(ly - v) < 11 for v in labels):  # equal thresholds: stacked above the line
                ly -= 11
            labels.append(ly)
            el.append(f'<text x="{left + pw - 4}" y="{ly:.1f}" text-anchor="end" fill="{color}" class="th">'
                      f'{esc(name)} threshold {float(thr[name]):.3f}</text>')
        pts, marks = [], []
        for f in sorted(scores):
            c = scores[f].characters.get(name)
            if c is None:
                continue
            tt = float(Fraction(f) / fps)
            if c.similarity is None:
                bx, by = x(f), top + ph - 4
                marks.append(f'<path d="M{bx - 3:.1f},{by - 3:.1f}l6,6m0,-6l-6,6" stroke="{FLAG}" stroke-width="1.5">'
                             f'<title>{esc(name)} not found at frame {f} ({tt:.2f} s)</title></path>')
                continue
            px, py = x(f), y(float(c.similarity))
            pts.append(f"{px:.1f},{py:.1f}")
            paint = f'fill="{color if c.passed else FLAG}"'
            r = 2.2 if c.passed else 3.5
            what = f"{float(c.similarity):.3f}{'' if c.passed else ' FAILED'}"
            if c.wrong_person:
                what += f": looks like {esc(c.wrong_person)}" + (
                    f" ({c.wrong_similarity:.3f})" if c.wrong_similarity is not None else "")
            if c.followed is not None:  # not embedded: followed from the keyframes, similarity interpolated
                paint = f'fill="#fff" stroke="{color}"'
                what += f" (followed from the keyframes, match {c.followed:.3f}; similarity interpolated)"
            marks.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{r}" {paint}><title>{esc(name)} frame {f} '
                         f'({tt:.2f} s): {what}</title></circle>')
            if c.wrong_person and c.wrong_similarity is not None:  # who the face is: a red diamond
                wy = y(float(c.wrong_similarity))
                marks.append(f'<path d="M{px:.1f},{wy - 4:.1f}l4,4l-4,4l-4,-4z" fill="none" stroke="{FLAG}" '
                             f'stroke-width="1.5"><title>{esc(name)} frame {f} ({tt:.2f} s) looks like '
                             f'{esc(c.wrong_person)}: {c.wrong_similarity:.3f}</title></path>')
                wrong_seen.add(c.wrong_person)
        if len(pts) > 1:
            el.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{color}" stroke-width="1.2"/>')
        el.extend(marks)
        el.append(f'<text x="{left + 6 + 110 * i}" y="{top + 12}" fill="{color}" class="lg">&#9632; {esc(name)}</text>')
    if wrong_seen:
        el.append(f'<text x="{left + 6 + 110 * len(names)}" y="{top + 12}" fill="{FLAG}" class="lg">&#9671; similarity '
                  f'to who the face is: {esc(", ".join(sorted(wrong_seen)))}</text>')
    el.append("</svg>")
    return "".join(el)


def _ticks(lo: float, hi: float, step: float) -> list[float]:
    start = step * round(lo / step)
    out, v = [], start
    while v <= hi + 1e-9:
        if v >= lo - 1e-9:
            out.append(round(v, 6))
        v += step
    return out


def _nice_step(seconds: float) -> float:
    for s in (0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120):
        if seconds / s <= 10:
            return float(s)
    return 300.0


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:20px}h2{font-size:17px;margin-top:28px;border-top:1px solid #ddd;padding-top:14px}
h3{font-size:14px;margin:14px 0 6px}h4{font-size:13px;margin:10px 0 4px}
.meta{color:#666;font-size:12px}.prompt{font-style:italic}.notes{color:#555}
.ok{color:#2a7d2a}.warn{color:#b8860b}.bad{color:#c62828;font-weight:600}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}
.sheet{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;width:192px}
figure img{width:192px;display:block;border:1px solid #ccc}figcaption{font-size:11px;color:#444}
.missing{width:192px;height:108px;background:#eee;font-size:11px}
figure.span.bad img{border:3px solid #c62828}figure.span.ok img{border:1px solid #9c9}
video.player{display:block;margin:8px 0;background:#000}
svg.plot .ax{font-size:10px;fill:#666}svg.plot .lg{font-size:11px}svg.plot .th{font-size:10px}
code{font-size:12px}
"""
