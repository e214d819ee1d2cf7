"""The identity checks' share of `make sample`'s CPU time, before and after following faces, in one
run; and that following loses nothing the checks caught.

Cost. `make sample` is `keyrender run samples/shotlist.csv --out renders/sample` (3 storyboard
shots, 132 frames at 512x288; every keyframe and every third in-between checked). Each variant
runs that whole command in a fresh process (python start, torch import, model loads, encoding,
the report) with --force, on a copy of samples/ whose identity store is built once first;
`--rounds` rounds, the variants interleaved; CPU time = user + sys of the child process, the
median over the rounds. The checks' share of a variant is (its CPU - the run without checks) /
its CPU.

    off            --no-refine: no identity checks
    default        this checkout: in-betweens follow the keyframes' faces (identity.follow)
    no-follow      --no-follow-faces: every checked frame detected and embedded afresh
    cold cache     default with an empty keyrender cache (the first run on a machine: dlib's
                   frontal detector is built and saved once)
    before (opt.)  `--before DIR`: another checkout's keyrender (DIR/.venv), e.g. main before
                   issue 20, in the same run

Match. How the aligned-face match that following rests on separates people (`matches`).

Catch. The same sample with one checked in-between per shot showing another cast member (a real
face from ../shared/faces: scarlett, added to the cast, pasted over eileen's face), rendered with
and without following: the flagged frames and the wrong person named must be the same.

    python benchmarks/check_cost.py [--rounds 5] [--before /work/main]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
FACES = REPO.parent / "shared" / "faces"
if __package__ in (None, ""):
    try:
        import keyrender  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO.parent))


def cpu_of(cmd: list[str], env: dict) -> float:
    """User + sys CPU seconds of one child process running `cmd`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cost(work: Path, rounds: int, before: Path | None) -> list[tuple]:
    proj = work / "sample"
    shutil.copytree(SAMPLES, proj, ignore=shutil.ignore_patterns("renders", ".keyrender"))
    csv = str(proj / "shotlist.csv")
    python = sys.executable
    env = {**os.environ, "KEYRENDER_CACHE": str(work / "cache"), "KEYRENDER_FACE_MODEL": ""}
    run = [python, "-m", "keyrender.cli", "run", csv, "--force", "-q"]
    variants = {
        "off (--no-refine)": (run + ["--out", str(work / "o1"), "--no-refine"], env),
        "default: in-betweens follow the keyframes' faces": (run + ["--out", str(work / "o2")], env),
        "--no-follow-faces: every checked frame embedded": (run + ["--out", str(work / "o3"), "--no-follow-faces"], env),
    }
    cold = {**env}
    if before is not None:
        bpy = before / ".venv" / "bin" / "python"
        variants[f"before: {before} (default)"] = ([str(bpy), "-m", "keyrender.cli", "run", csv, "--force", "-q",
                                                    "--out", str(work / "o4")], {**env, "PYTHONPATH": ""})
    # build the identity store and the detector cache once (each variant's first run would)
    subprocess.run(run + ["--out", str(work / "o0")], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    times: dict[str, list[float]] = {k: [] for k in variants}
    times["default, cold cache (a machine's first run)"] = []
    for r in range(rounds):
        for name, (cmd, e) in variants.items():
            times[name].append(cpu_of(cmd, e))
        cold["KEYRENDER_CACHE"] = str(work / f"cold{r}")
        shutil.copytree(work / "cache", work / f"cold{r}", ignore=shutil.ignore_patterns("dlib"))
        times["default, cold cache (a machine's first run)"].append(
            cpu_of(run + ["--out", str(work / "o5")], cold))
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{v[-1]:.2f}" for v in times.values()), flush=True)
    base = statistics.median(times["off (--no-refine)"])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        share = "" if name.startswith("off") else f"{100 * (med - base) / med:.0f}%"
        rows.append((name, f"{med:.2f} s", f"{min(ts):.2f}-{max(ts):.2f} s", share))
    return rows


class PlantedFace:
    """The flow in-betweener; the three in-betweens nearest the middle of each span (so that the
    default stride, every third frame, checks one of them) show `face` over the expected face."""

    def __init__(self, face, embedder, at: float = 0.5):
        from keyrender.interpolate import get_interpolator

        self.inner = get_interpolator("flow")
        self.name = "planted-" + self.inner.name
        self.face, self.embedder, self.at = face, embedder, at
        self.planted: list[float] = []

    def inbetween(self, a, b, times, info=None):
        import cv2

        targets = sorted(times, key=lambda t: abs(t - self.at))[:3]
        for t, img in zip(times, self.inner.inbetween(a, b, times, info=info)):
            if t in targets:
                found = self.embedder.faces(img)
                if found:
                    x0, y0, x1, y1 = (int(round(v)) for v in found[0].box)
                    img = img.copy()
                    img[y0:y1, x0:x1] = cv2.resize(self.face, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
                    self.planted.append(t)
            yield img


def catch(work: Path) -> list[tuple]:
    """Flagged frames with and without following, a wrong face planted mid-span (3 in-betweens:
    one of them is checked at the default stride)."""
    from keyrender.identity import load_face_model, read_image
    from keyrender.pipeline import RenderOptions, render

    proj = work / "catch"
    shutil.copytree(SAMPLES, proj, ignore=shutil.ignore_patterns("renders", ".keyrender"))
    (proj / "cast" / "scarlett").mkdir()
    for f in ("img47.jpg", "img48.jpg", "img8.jpg"):
        shutil.copy(FACES / "people" / "scarlett" / f, proj / "cast" / "scarlett" / f)
    emb = load_face_model("dlib")
    photo = read_image(FACES / "people" / "scarlett" / "img9.jpg")
    x0, y0, x1, y1 = (int(v) for v in emb.faces(photo)[0].box)
    face = photo[y0:y1, x0:x1]
    rows = []
    for follow in (True, False):
        out = work / f"catch-{follow}"
        interp = PlantedFace(face, emb, at=0.5)
        render(proj / "shotlist.csv", RenderOptions(out=out, follow_faces=follow, interpolator=interp))
        for shot in ("1A", "1B", "2A"):
            m = json.loads((out / shot / "manifest.json").read_text())["identity"]
            named = sorted({c.get("wrong_person") or ("under threshold" if not c["passed"] else "")
                            for f in m["flagged_frames"] for c in m["frames"][str(f)]["characters"].values()} - {""})
            rows.append(("follow" if follow else "no-follow", shot, m["flagged_frames"], ", ".join(named) or "-",
                         f"{m['checks'].get('embedded')} / {m['checks'].get('followed')}"))
    return rows


def matches(seed: int = 0) -> list[tuple]:
    """The aligned-face match identity.follow uses (`face_chips` on the face's landmarks, grey,
    blurred, normalised cross-correlation over the visible part), between: photos of two
    different people (every pair of the 105 photos of ../shared/faces), two photos of the same
    person, and one photo against itself moved, zoomed (0.75-1.3x) and re-encoded as JPEG (q 80)
    at the landmarks carried by the same move (what following an in-between of a camera move
    compares)."""
    import cv2
    import numpy as np

    from keyrender.identity import load_face_model, read_image
    from keyrender.identity.follow import FOLLOW_MATCH, _grey, match

    emb = load_face_model("dlib")
    rng = np.random.default_rng(seed)
    faces, moved = {}, []
    for person in sorted((FACES / "people").iterdir()):
        for f in sorted(person.glob("*.jpg")):
            img = read_image(f)
            found = emb.faces(img)
            if not found:
                continue
            lm = found[0].landmarks
            g = _grey(*emb.face_chips(img, [lm])[0])
            faces.setdefault(person.name, []).append(g)
            h, w = img.shape[:2]
            for _ in range(3):
                z = rng.uniform(0.75, 1.3)
                dx, dy = rng.uniform(-0.1, 0.1, 2) * (w, h)
                M = np.float32([[z, 0, dx + (1 - z) * w / 2], [0, z, dy + (1 - z) * h / 2]])
                im2 = cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                ok, buf = cv2.imencode(".jpg", im2[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
                im2 = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
                lm2 = lm @ M[:, :2].T + M[:, 2]
                g2 = _grey(*emb.face_chips(im2, [lm2])[0])
                moved.append(match(g2[0], g[0], g2[1] & g[1]))
    same, other = [], []
    names = list(faces)
    for i, a in enumerate(names):
        for j, b in enumerate(names[i:], i):
            for x, ga in enumerate(faces[a]):
                for y, gb in enumerate(faces[b]):
                    if (i, x) >= (j, y):
                        continue
                    (same if a == b else other).append(match(ga[0], gb[0], ga[1] & gb[1]))

    def row(label, v):
        v = np.asarray(v)
        return (label, len(v), f"{v.min():.3f}", f"{np.median(v):.3f}", f"{v.max():.3f}",
                f"{100 * (v >= FOLLOW_MATCH).mean():.1f}%")
    return [row("two different people", other), row("the same person, two photos", same),
            row("one photo moved, zoomed, re-encoded", moved)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--before", type=Path, default=None, help="another checkout with its own .venv")
    ap.add_argument("--skip-cost", action="store_true")
    ap.add_argument("--skip-catch", action="store_true")
    ap.add_argument("--skip-match", action="store_true")
    args = ap.parse_args(argv)
    print(f"CPU threads: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="keyrender-check-cost-") as tmp:
        work = Path(tmp)
        if not args.skip_cost:
            t = time.perf_counter()
            rows = cost(work, args.rounds, args.before)
            print(f"\n`make sample` (--force), CPU time per run (user + sys), median of {args.rounds} rounds "
                  f"({time.perf_counter() - t:.0f} s wall in all; load average now {os.getloadavg()[0]:.1f})\n")
            print("| identity checks | CPU time | range | checks' share of the run |")
            print("| --- | ---: | ---: | ---: |")
            for r in rows:
                print("| " + " | ".join(r) + " |")
        if not args.skip_match and (FACES / "people").is_dir():
            print("\nAligned-face match (identity.follow) on the real photos of ../shared/faces:\n")
            print("| pairs | n | min | median | max | at or above the follow threshold |")
            print("| --- | ---: | ---: | ---: | ---: | ---: |")
            for r in matches():
                print("| " + " | ".join(map(str, r)) + " |")
        if not args.skip_catch:
            if not (FACES / "people").is_dir():
                print(f"\nno real faces at {FACES}: the catch table needs them")
            else:
                rows = catch(work)
                print("\nA wrong face (scarlett, in the cast) planted on the 3 middle in-betweens of every span:\n")
                print("| checks | shot | flagged frames | named | frames embedded / followed |")
                print("| --- | --- | --- | --- | --- |")
                for r in rows:
                    print("| " + " | ".join(map(str, r)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
