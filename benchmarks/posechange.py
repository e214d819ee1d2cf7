"""Pose-change benchmark: keyframes that are two different photos of one person, framed alike.

The case of issue 19: a storyboard shot whose two keyframes are two photos of the same person (or
two generated keyframes): pose, expression, lighting and background differ, the framing is the
same. Each method makes the 23 in-betweens of every pair; each span is measured by
`../shared/tools/span_measures.py` (imported, never copied):

- tear: the share of an in-between's pixels whose colour is far outside what A and B show near
  that place (A and B also moved with the face's similarity); a span is torn when its worst
  in-between is over 0.2% of the frame;
- held: the largest step between neighbouring frames of the span over the mean step (a hold then
  a jump scores about 24 here; above 4 is a slideshow);
- face kept: at t = 1/4, 1/2, 3/4 exactly one face is found and its dlib descriptor lies within
  |A - B| / 2 + 0.10 of the mean of A's and B's.

Pairs: the photos of each person in `../shared/faces/people/` (real photos, evaluation only: they
are read from there, never copied; the strip picture is written outside the repository's
tracked files) taken in name order, each photo with the next: 42 pairs of 9 people. The
`john_*` folders are left out: they are 150 x 150 face chips, with nothing around the face to
frame at 640 x 360.

Framing (`frame_face`): the largest face keyrender's dlib detector finds is scaled to a box
`FACE_WIDTH` (150) px wide, its centre put at (320, 175) of a 640 x 360 frame: a close-up, the
same framing for every photo, as a storyboard would be. Where the photo does not reach the edge
of the frame, its edge pixels are repeated and blurred (sigma 12 px): a plain band, never a second
face.

Held-out honesty: the method's settings were chosen on the pairs of TUNE (angelina_jolie, biden,
jack, mark, obama: 20 pairs); HELD_OUT (deepface_g26, deepface_g29, jennifer, scarlett: 22 pairs)
were not looked at while tuning. The summary reports both.

Methods (all in the same run):
- keyrender: `keyrender interpolate A B --frames 23` as shipped: the flow backend, continuous, with
  the largest face of each keyframe as a hint (`shot.hints.largest_face_hints`, dlib's 5 landmarks);
- keyrender, no hints: the same without hints (what a library caller or `keyrender run` gets
  without face hints);
- keyrender before: the flow backend with cut detection (`detect_cuts=True`), which is exactly
  what every span got before issue 19 (a pair that nothing relates is held, then cut);
- aligned cross-fade: both keyframes moved along the face's similarity to t and cross-faded (no
  flow at all): the simplest answer that cannot tear;
- camera state + face: the face's similarity given to the camera-pair state as if it were the
  camera (the raw DIS residual on the pre-aligned pair, its consistency and hedge);
- cross-fade; minterpolate (ffmpeg, mi_mode=mci:mc_mode=aobmc:me_mode=bidir, as in
  benchmarks/interpolation.py).

    python benchmarks/posechange.py                      # every pair, every method, tables
    python benchmarks/posechange.py --json out/pose.json --strip out/posechange-strip.png
    python benchmarks/posechange.py --methods keyrender,cross-fade --people jack,mark
    python benchmarks/posechange.py --footage            # also: the performer footage, see below

Footage (`--footage`): Megamind.avi from Debian's opencv-doc (OpenCV's sample data, as
vtest.avi; `make bench-data` style: apt-get download opencv-doc), an animated (CG) scene of two
characters talking, turning and gesturing: keyframes 24 frames apart inside each of its four
shots, the 23 frames between compared with the real ones (PSNR), and the tear of each span.
It is not real footage of a performer: none was found in the packages at hand.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if __package__ in (None, ""):
    try:
        import keyrender  # noqa: F401
    except ImportError:  # pragma: no cover
        sys.path.insert(0, str(REPO.parent))
sys.path.insert(0, str(HERE))

FACES = REPO.parent / "shared" / "faces" / "people"
TOOLS = REPO.parent / "shared" / "tools"
MEGAMIND = [HERE / "data" / "Megamind.avi", Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")]
TUNE = ("angelina_jolie", "biden", "jack", "mark", "obama")
HELD_OUT = ("deepface_g26", "deepface_g29", "jennifer", "scarlett")
FRAME_W, FRAME_H, FACE_WIDTH, FACE_X, FACE_Y = 640, 360, 150, 320, 175
N_MID = 23
METHODS = ("keyrender", "keyrender, no hints", "keyrender before", "aligned cross-fade", "camera state + face",
           "cross-fade", "minterpolate")


def span_measures():
    """../shared/tools/span_measures.py, imported (one definition of the measures). Its face
    detector and descriptor are memoised per image here (each keyframe is measured once per
    method): the same results, fewer dlib passes."""
    sys.path.insert(0, str(TOOLS))
    import span_measures  # noqa: E402

    if not getattr(span_measures, "_memoised", False):
        for name in ("landmarks", "descriptor"):
            span_measures.__dict__[name] = _memo(span_measures.__dict__[name])
        span_measures._memoised = True
    return span_measures


def _memo(fn, size: int = 8):
    import hashlib
    from collections import OrderedDict

    cache: OrderedDict = OrderedDict()

    def wrapped(img):
        key = (hashlib.blake2b(np.ascontiguousarray(img).data, digest_size=16).digest(), img.shape)
        if key not in cache:
            cache[key] = fn(img)
            while len(cache) > size:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return cache[key]

    return wrapped


def frame_face(img: np.ndarray, box: tuple[float, float, float, float]) -> tuple[np.ndarray, float]:
    """The photo framed as a 640 x 360 close-up around the face `box` (x0, y0, x1, y1): the box
    scaled to FACE_WIDTH px wide, its centre at (FACE_X, FACE_Y); beyond the photo's edge, its edge
    pixels repeated and blurred. Returns (frame, share of the frame outside the photo)."""
    x0, y0, x1, y1 = box
    s = FACE_WIDTH / (x1 - x0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if s < 1:  # shrink with area averaging first, then place
        src = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        m = np.float32([[1, 0, FACE_X - s * cx], [0, 1, FACE_Y - s * cy]])
        flags = cv2.INTER_LINEAR
    else:
        src, flags = img, cv2.INTER_CUBIC
        m = np.float32([[s, 0, FACE_X - s * cx], [0, s, FACE_Y - s * cy]])
    out = cv2.warpAffine(src, m, (FRAME_W, FRAME_H), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(np.ones(src.shape[:2], np.uint8), m, (FRAME_W, FRAME_H), flags=cv2.INTER_NEAREST,
                            borderValue=0)
    if inside.min() == 0:
        out = np.where(inside[..., None] > 0, out, cv2.GaussianBlur(out, (0, 0), 12))
    return out, float(1 - inside.mean())


def load_pairs(people: list[str] | None = None) -> list[dict]:
    """The benchmark's pairs: each person's photos in name order, each with the next, framed."""
    from keyrender.identity.dlib_backend import DlibFaceEmbedder
    from keyrender.outputs.media import load_image

    emb = DlibFaceEmbedder()
    pairs = []
    for person in sorted(p.name for p in FACES.iterdir() if p.is_dir()):
        if person.startswith("john_") or (people and person not in people):
            continue
        frames = []
        for path in sorted(FACES.joinpath(person).iterdir()):
            img = load_image(path)
            faces = emb.faces(img)
            if not faces:
                print(f"{person}/{path.name}: no face found, left out", file=sys.stderr)
                continue
            frame, pad = frame_face(img, faces[0].box)
            frames.append((path.stem, frame, pad))
        for (na, a, pa), (nb, b, pb) in zip(frames, frames[1:]):
            split = "tune" if person in TUNE else "held-out" if person in HELD_OUT else "other"
            pairs.append({"person": person, "a": na, "b": nb, "A": a, "B": b, "split": split,
                          "padding": round(max(pa, pb), 3)})
    return pairs


def face_path(hint, t: float) -> tuple[np.ndarray, np.ndarray]:
    """The face's similarity carried to t from A and from B (2 x 3 each), as a camera path."""
    from keyrender.interpolate.camera import CameraPath
    from keyrender.interpolate.posechange import subject_similarity

    path = CameraPath(subject_similarity(hint))
    return path.at(t)[:2], path.at(t - 1.0)[:2]


def run_method(name: str, a: np.ndarray, b: np.ndarray, hints: list, tmp: Path,
               n: int = N_MID) -> tuple[list[np.ndarray], dict]:
    """The `n` in-betweens (at t = 1/(n+1) ... n/(n+1)) of one method, and what it said about the span."""
    from keyrender.interpolate import inbetween
    from keyrender.interpolate.camerapair import CameraPairState
    from keyrender.interpolate.flow import FlowInterpolator, cross_fade, render_time

    times = [i / (n + 1) for i in range(1, n + 1)]
    info: dict = {}
    h, w = a.shape[:2]
    if name == "keyrender":
        return list(inbetween(a, b, times, info=info, hints=hints or None)), info
    if name == "keyrender, no hints":
        return list(inbetween(a, b, times, info=info)), info
    if name == "keyrender before":
        return list(FlowInterpolator(detect_cuts=True).inbetween(a, b, times, info=info)), info
    if name == "cross-fade":
        return [cross_fade(a, b, t) for t in times], {"mode": "cross-fade"}
    if name == "minterpolate":
        from interpolation import minterpolate  # benchmarks/interpolation.py: the same peer settings

        out, _, _ = minterpolate([a, b], n + 1, tmp)
        return [np.ascontiguousarray(f) for f in out[1 : n + 1]], {"mode": "minterpolate"}
    if not hints:
        return [cross_fade(a, b, t) for t in times], {"mode": "cross-fade (no face)"}
    if name == "aligned cross-fade":
        out = []
        for t in times:
            ma, mb = face_path(hints[0], t)
            wa = cv2.warpAffine(a, ma, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            wb = cv2.warpAffine(b, mb, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            out.append(cross_fade(wa, wb, t))
        return out, {"mode": "aligned cross-fade"}
    if name == "camera state + face":
        from keyrender.interpolate.posechange import subject_similarity

        state = CameraPairState(a, b, subject_similarity(hints[0]), max_side=640, preset="medium", variational=1)
        return [render_time(a, b, state, t, strip_rows=256, hedge=0.5, hedge_level=50.0) for t in times], {"mode": "camera state + face"}
    raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")


def summarize(rows: list[dict], methods: list[str], split: str | None) -> list[dict]:
    out = []
    for m in methods:
        rs = [r for r in rows if r["method"] == m and (split is None or r["split"] == split)]
        if not rs:
            continue
        kept = [r["face_kept"] for r in rs if r["face_kept"] is not None]
        out.append({"method": m, "pairs": len(rs), "torn": sum(r["torn"] for r in rs),
                     "worst_tear": max(r["tear"] for r in rs), "held": sum(r["held"] > 4 for r in rs),
                     "max_held": max(r["held"] for r in rs), "face_kept": sum(kept), "face_pairs": len(kept),
                     "seconds": float(np.mean([r["seconds"] for r in rs]))})
    return out


def print_summary(summary: list[dict], title: str) -> None:
    print(f"\n### {title}\n")
    print("| method | pairs | torn (worst > 0.2%) | worst tear | held (> 4) | largest held | face kept | s / span |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in summary:
        share = s["face_kept"] / max(1, s["face_pairs"])
        print(f"| {s['method']} | {s['pairs']} | {s['torn']} | {100 * s['worst_tear']:.2f}% | {s['held']} | "
              f"{s['max_held']:.1f} | {s['face_kept']}/{s['face_pairs']} ({100 * share:.0f}%) | {s['seconds']:.2f} |")


def strip(pairs: list[dict], frames: dict, methods: list[str], path: Path) -> None:
    """A, t = 1/4, 1/2, 3/4, B of each method (rows) for each pair: 256 x 144 px tiles."""
    tw, th = 256, 144
    rows = []
    for p in pairs:
        for m in methods:
            mids = frames[(p["person"], p["a"], m)]
            picks = [p["A"], mids[5], mids[11], mids[17], p["B"]]
            tiles = [cv2.resize(x, (tw, th), interpolation=cv2.INTER_AREA) for x in picks]
            label = np.full((th, 150, 3), 255, np.uint8)
            for i, line in enumerate([p["person"][:14], f"{p['a'][:9]}-{p['b'][:9]}", m]):
                cv2.putText(label, line, (4, 30 + 28 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
            rows.append(np.hstack([label, *tiles]))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", help=f"comma separated, of: {', '.join(METHODS)} (default: all)")
    ap.add_argument("--people", help="comma separated folder names under ../shared/faces/people (default: all)")
    ap.add_argument("--json", type=Path, help="write every pair's measures here")
    ap.add_argument("--strip", type=Path, default=REPO / "out" / "posechange-strip.png",
                    help="the strip picture (default: out/posechange-strip.png, not tracked: the photos are "
                         "evaluation-only and stay out of the repository); '' for none")
    ap.add_argument("--strip-pairs", default="jennifer:img53,scarlett:img50,deepface_g29:img29",
                    help="person:photo of A for the strip's pairs")
    ap.add_argument("--footage", action="store_true", help="also the performer footage (Megamind.avi)")
    args = ap.parse_args(argv)
    if not FACES.is_dir():
        print(f"{FACES}: not present (the benchmark reads the shared evaluation photos)", file=sys.stderr)
        return 2
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else list(METHODS)
    for m in methods:
        if m not in METHODS:
            ap.error(f"--methods: unknown {m!r}; known: {', '.join(METHODS)}")
    if "minterpolate" in methods and shutil.which("ffmpeg") is None:
        print("ffmpeg not found: apt-get install -y ffmpeg", file=sys.stderr)
        return 2
    sm = span_measures()
    from keyrender.shot.hints import largest_face_hints
    from keyrender.identity.dlib_backend import DlibFaceEmbedder

    emb = DlibFaceEmbedder()
    people = [p.strip() for p in args.people.split(",")] if args.people else None
    pairs = load_pairs(people)
    print(f"# Pose-change benchmark: {len(pairs)} pairs of {len({p['person'] for p in pairs})} people, "
          f"{FRAME_W}x{FRAME_H}, {N_MID} in-betweens per pair\n")
    strip_keys = {tuple(s.split(":")) for s in args.strip_pairs.split(",") if ":" in s}
    keep: dict = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="kr-pose-") as td:
        tmp = Path(td)
        for p in pairs:
            a, b = p["A"], p["B"]
            hints = largest_face_hints(a, b, emb)
            for m in methods:
                t0 = time.perf_counter()
                mids, info = run_method(m, a, b, hints, tmp)
                dt = time.perf_counter() - t0
                res = sm.measure(a, b, mids)
                row = {"person": p["person"], "a": p["a"], "b": p["b"], "split": p["split"], "method": m,
                       "padding": p["padding"], "tear": float(res["tear"]), "torn": bool(res["torn"]),
                       "held": float(res["held"]), "face_kept": res["face_kept"], "seconds": dt,
                       "mode": info.get("mode"), "explained": info.get("explained"), "trusted": info.get("trusted"),
                       "verdict": info.get("verdict")}
                rows.append(row)
                print(f"{p['person']:15s} {p['a'][:18]:18s} {p['b'][:18]:18s} {m:20s} {str(info.get('mode')):12s} "
                      f"tear {100 * row['tear']:5.2f}% held {row['held']:5.1f} face {row['face_kept']!s:5s} "
                      f"{dt:5.1f}s", flush=True)
                if (p["person"], p["a"]) in strip_keys:
                    keep[(p["person"], p["a"], m)] = mids
        foot = footage_suite(methods, tmp, emb) if args.footage else []
    print("\n| person | A | B | split | " + " | ".join(methods) + " |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in methods) + " |")
    for p in pairs:
        cells = []
        for m in methods:
            r = next(r for r in rows if r["person"] == p["person"] and r["a"] == p["a"] and r["method"] == m)
            cells.append(f"{100 * r['tear']:.2f}% / {r['held']:.1f} / {'kept' if r['face_kept'] else 'lost'}")
        print(f"| {p['person']} | {p['a']} | {p['b']} | {p['split']} | " + " | ".join(cells) + " |")
    print("\n(each cell: worst tear / held / face kept or lost)")
    summaries = {}
    for split, title in ((None, "All pairs"), ("tune", "Tuning pairs (the settings were chosen on these)"),
                         ("held-out", "Held-out pairs (never looked at while tuning)")):
        summaries[split or "all"] = summarize(rows, methods, split)
        print_summary(summaries[split or "all"], f"{title}: {sum(1 for p in pairs if split in (None, p['split']))} pairs")
    ours = [r for r in rows if r["method"] == "keyrender"]
    if ours:
        print("\nkeyrender's span verdicts: " + ", ".join(
            f"{m} {sum(r['mode'] == m for r in ours)}" for m in sorted({str(r['mode']) for r in ours}))
            + f"; explained {min(r['explained'] for r in ours):.2f}..{max(r['explained'] for r in ours):.2f}, "
            f"trusted {sum(bool(r['trusted']) for r in ours)} of {len(ours)}")
    if foot:
        print_footage(foot, methods)
    if args.strip and str(args.strip) and keep:
        chosen = [p for p in pairs if (p["person"], p["a"]) in strip_keys]
        shown = [m for m in ("keyrender", "cross-fade", "minterpolate") if m in methods]
        strip(chosen, keep, shown, args.strip)
        print(f"\nstrip: {args.strip}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"pairs": rows, "summary": summaries, "footage": foot}, indent=1))
        print(f"json: {args.json}")
    return 0


# ---- performer footage -----------------------------------------------------------------------------

#: Megamind.avi's shots (first frame of each; frame 0 is black): keyframes are taken inside them
MEGAMIND_SHOTS = (1, 98, 154, 200, 270)
FOOTAGE_METHODS = ("keyrender", "keyrender, no hints", "keyrender before", "cross-fade", "minterpolate")


def footage_suite(methods: list[str], tmp: Path, emb, k: int = 24) -> list[dict]:
    """Keyframes k frames apart inside each shot of Megamind.avi: per span and method, the PSNR of
    the k - 1 in-betweens against the real frames and the span's worst tear."""
    import av
    from skimage.metrics import peak_signal_noise_ratio

    from keyrender.shot.hints import largest_face_hints

    src = next((p for p in MEGAMIND if p.is_file()), None)
    if src is None:
        print("\nfootage: Megamind.avi not found (apt-get download opencv-doc; see the Makefile's bench-data)")
        return []
    sm = span_measures()
    with av.open(str(src)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    out = []
    for s0, s1 in zip(MEGAMIND_SHOTS, MEGAMIND_SHOTS[1:]):
        for i in range(s0, s1 - k, k):
            a, b, truth = frames[i], frames[i + k], frames[i + 1 : i + k]
            hints = largest_face_hints(a, b, emb)
            la, lb = (hints[0].points_a, hints[0].points_b) if hints else (None, None)
            for m in [m for m in methods if m in FOOTAGE_METHODS]:
                mids, info = run_method(m, a, b, hints, tmp, n=k - 1)
                ps = [float(peak_signal_noise_ratio(t_, f, data_range=255)) for t_, f in zip(truth, mids)]
                tear = max(sm.tear(a, b, f, (j + 1) / k, la, lb) for j, f in enumerate(mids))
                out.append({"span": f"{i}-{i + k}", "method": m, "psnr": float(np.mean(ps)), "tear": float(tear),
                            "torn": bool(tear > 0.002), "mode": info.get("mode"), "face_hint": bool(hints)})
                print(f"Megamind {i:3d}-{i + k:3d} {m:20s} {str(info.get('mode')):12s} PSNR {np.mean(ps):6.2f} "
                      f"tear {100 * tear:5.2f}%", flush=True)
    return out


def print_footage(rows: list[dict], methods: list[str]) -> None:
    shown = [m for m in methods if m in FOOTAGE_METHODS]
    spans = list(dict.fromkeys(r["span"] for r in rows))
    print(f"\n### Performer footage: Megamind.avi (CG), keyframes 24 frames apart, {len(spans)} spans\n")
    print("| method | mean PSNR (dB) | vs cross-fade | spans torn | worst tear | modes |")
    print("| --- | --- | --- | --- | --- | --- |")
    fade = np.mean([r["psnr"] for r in rows if r["method"] == "cross-fade"]) if "cross-fade" in shown else None
    for m in shown:
        rs = [r for r in rows if r["method"] == m]
        modes = ", ".join(f"{x} {sum(r['mode'] == x for r in rs)}" for x in sorted({str(r['mode']) for r in rs}))
        vs = f"{np.mean([r['psnr'] for r in rs]) - fade:+.2f}" if fade is not None else ""
        print(f"| {m} | {np.mean([r['psnr'] for r in rs]):.2f} | {vs} | {sum(r['torn'] for r in rs)} | "
              f"{100 * max(r['tear'] for r in rs):.2f}% | {modes} |")


if __name__ == "__main__":
    sys.exit(main())
