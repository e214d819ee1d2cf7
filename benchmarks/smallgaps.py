"""Small gaps before and after a change, in one run: the 2-4 frame gap rows of
`benchmarks/interpolation.py` (every k-th frame of real footage kept, the k-1 between
interpolated and compared with the real ones) for two versions of keyrender side by side, with
ffmpeg's minterpolate timed in the same run.

The "before" version is a git ref of this repository (default `main`), exported with `git
archive` into a temporary folder and imported from there; "after" is this checkout. Each
version runs in its own worker process (the same package cannot be imported twice in one
process), the two alternately (before, after, after, before, ... over `--rounds` rounds), and
each timing is the median of its rounds: on a shared, noisy machine the ratios of one run are
what can be compared. minterpolate is timed `--rounds` times too, between the workers (median;
ffmpeg's wall and CPU time minus a passthrough run's, as in `interpolation.py`).

Columns: PSNR and SSIM against the real frames (deterministic: the same in every round), wall
and CPU milliseconds per interpolated frame (CPU: the worker process's, all its threads; OpenCV
uses both cores, minterpolate one), speed against minterpolate (its time over ours), and how
many in-betweens are bit-identical between the two versions (sha256 of the pixels).

    python benchmarks/smallgaps.py                                  # tree.avi, vtest.avi: k = 2, 4
    python benchmarks/smallgaps.py --gaps 8,16,24 --rounds 1        # keyframe spacing: identical?
    python benchmarks/smallgaps.py --before 79a7fa6 --clips vtest --gaps 4
    python benchmarks/smallgaps.py --clips camera --gaps 24 --rounds 1   # the camera-move suite
    python benchmarks/smallgaps.py --clips camera-course --gaps 2,4      # its moves at 2-4 frame gaps
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def worker(clip: Path, k: int, limit: int, out: Path) -> None:
    """Interpolate every pair of `clip` at gap k with the keyrender on sys.path; write the figures."""
    import numpy as np

    sys.path.insert(0, str(HERE))
    import interpolation as bench  # noqa: E402  (its helpers: decoding, PSNR, SSIM)
    import keyrender
    from keyrender.interpolate.flow import FlowInterpolator

    if str(clip) in ("camera", "camera-course"):
        camera_worker(bench, k, out, course=str(clip) == "camera-course")
        return
    frames, _ = bench.decode_distinct(clip, limit or None)
    last = (len(frames) - 1) // k * k
    keys = frames[: last + 1 : k]
    ours, wall, cpu, modes, infos = bench.interpolate_keys(keys, k, FlowInterpolator())
    skipped = sum("features" in info for info in infos)
    psnr, ssim, digests = [], [], []
    for i, f in sorted(ours.items()):
        psnr.append(bench.psnr(f, frames[i]))
        ssim.append(bench.ssim(f, frames[i]))
        digests.append(hashlib.sha256(np.ascontiguousarray(f).data).hexdigest()[:16])
    n = len(digests)
    out.write_text(json.dumps({
        "package": str(Path(keyrender.__file__).parent), "n": n, "pairs": len(keys) - 1,
        "psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim)), "ms": 1000 * wall / n, "cpu_ms": 1000 * cpu / n,
        "modes": modes, "features_skipped": skipped, "digests": digests,
    }))


def camera_worker(bench, k: int, out: Path, course: bool = False) -> None:
    """The camera-move suite of interpolation.py (exact views of photographs): each move between
    two keyframes k frames apart, or (`course`) each move as 24 frames of footage with every k-th
    kept (a 2-4 frame gap of a camera move); the same figures, each in-between against its exact
    view."""
    import numpy as np

    import keyrender
    from keyrender.interpolate import inbetween
    from keyrender.interpolate.camera import CameraPath
    from keyrender.interpolate.flow import FlowInterpolator

    interp = FlowInterpolator()
    wall = cpu = 0.0
    psnr, ssim, digests = [], [], []
    modes: dict[str, int] = {}
    skipped = pairs = 0
    for photo in bench.camera_photos().values():
        for va, vb in bench.CAMERA_CASES.values():
            ma, mb = bench._view_matrix(photo, *va), bench._view_matrix(photo, *vb)
            path = CameraPath(mb @ np.linalg.inv(ma))
            # (keyframe times on the move, and the frames of a pair at fractions of it)
            starts, span = ([i / 24 for i in range(0, 24, k)], k / 24) if course else ([0.0], 1.0)
            times = [j / k for j in range(1, k)]
            for t0 in starts:
                a = bench._render_view(photo, path.at(t0) @ ma)
                b = bench._render_view(photo, path.at(t0 + span) @ ma)
                info: dict = {}
                w0, c0 = time.perf_counter(), time.process_time()
                outs = list(inbetween(a, b, times, backend=interp, info=info))
                wall += time.perf_counter() - w0
                cpu += time.process_time() - c0
                pairs += 1
                modes[info["mode"]] = modes.get(info["mode"], 0) + 1
                skipped += "features" in info
                for t, f in zip(times, outs):
                    truth = bench._render_view(photo, path.at(t0 + t * span) @ ma)
                    psnr.append(bench.psnr(f, truth))
                    ssim.append(bench.ssim(f, truth))
                    digests.append(hashlib.sha256(np.ascontiguousarray(f).data).hexdigest()[:16])
    n = len(digests)
    out.write_text(json.dumps({
        "package": str(Path(keyrender.__file__).parent), "n": n, "pairs": pairs,
        "psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim)), "ms": 1000 * wall / n, "cpu_ms": 1000 * cpu / n,
        "modes": modes, "features_skipped": skipped, "digests": digests,
    }))


def export_ref(ref: str, dest: Path) -> str:
    """`git archive` of `ref` into dest/keyrender; returns the commit it names."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", ref], check=True, capture_output=True,
                            text=True).stdout.strip()
    pkg = dest / "keyrender"
    pkg.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(pkg)], input=archive, check=True)
    return commit


def run_worker(clip: Path, k: int, limit: int, pythonpath: str | None, tmp: Path) -> dict:
    out = tmp / f"w-{os.getpid()}-{time.monotonic_ns()}.json"
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(clip), "--k", str(k),
                    "--limit", str(limit), "--out", str(out)], check=True, env=env, cwd=tmp)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default="main", help="git ref of the version to compare against (default: main)")
    ap.add_argument("--after", help="git ref of the version to measure (default: this checkout as it is)")
    ap.add_argument("--gaps", default="2,4", help="keyframe gaps, comma separated (default 2,4)")
    ap.add_argument("--clips", default="tree,vtest",
                    help="footage whose file name starts with these (default tree,vtest); 'camera': the camera-move "
                         "suite (keyframes k apart), 'camera-course': its moves as 24 frames of footage")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each version (and of minterpolate); medians reported")
    ap.add_argument("--limit", type=int, default=241, help="frames per clip, as interpolation.py (0: all)")
    ap.add_argument("--no-minterpolate", action="store_true", help="skip minterpolate (for the identity check)")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.k, args.limit, args.out)
        return 0

    sys.path.insert(0, str(HERE))
    import interpolation as bench  # noqa: E402

    videos = [bench.DATA / "tree.avi"] + [p for p in bench.EXTRA if p.is_file()][:1]
    names = [c.strip() for c in args.clips.split(",") if c.strip()]
    videos = [v for v in videos if any(v.name.startswith(n) for n in names if not n.startswith("camera"))]
    for suite in ("camera", "camera-course"):  # the camera-move suite (no minterpolate: pairs, not a clip)
        if suite in names:
            videos.append(Path(suite))
    if not videos:
        print(f"--clips {args.clips!r}: no such footage (vtest.avi: make bench-data)", file=sys.stderr)
        return 2
    gaps = [int(g) for g in args.gaps.split(",") if g.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="kr-smallgaps-") as td:
        tmp = Path(td)
        commit = export_ref(args.before, tmp / "before")
        paths = {"before": str(tmp / "before"), "after": None}
        if args.after:
            after = f"{args.after} ({export_ref(args.after, tmp / 'after')})"
            paths["after"] = str(tmp / "after")
        else:
            head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True).stdout.strip()
            after = f"this checkout ({head}{' + changes' if dirty else ''})"
        print(f"# Small gaps: before = {args.before} ({commit}), after = {after}; "
              f"{args.rounds} rounds, medians; os.cpu_count={os.cpu_count()}, load {os.getloadavg()[0]:.1f}\n")
        for video in videos:
            for k in gaps:
                runs: dict[str, list[dict]] = {"before": [], "after": []}
                mi_wall, mi_cpu = [], []
                mi_psnr = None
                for r in range(args.rounds):
                    order = ("before", "after") if r % 2 == 0 else ("after", "before")
                    for name in order:
                        runs[name].append(run_worker(video, k, args.limit, paths[name], tmp))
                    if not args.no_minterpolate and not video.name.startswith("camera"):
                        frames, _ = bench.decode_distinct(video, args.limit or None)
                        last = (len(frames) - 1) // k * k
                        keys = frames[: last + 1 : k]
                        mi, wall, cpu = bench.minterpolate(keys, k, tmp)
                        n = len(keys) - 1
                        mi_wall.append(1000 * wall / (n * (k - 1)))
                        mi_cpu.append(1000 * cpu / (n * (k - 1)))
                        truth = [i for i in range(last + 1) if i % k]
                        mi_psnr = float(sum(bench.psnr(mi[i], frames[i]) for i in truth) / len(truth))
                        del frames, keys, mi
                b, a = runs["before"], runs["after"]
                same = sum(x == y for x, y in zip(b[0]["digests"], a[0]["digests"]))
                stable = all(x["digests"] == b[0]["digests"] for x in b) and all(x["digests"] == a[0]["digests"] for x in a)
                row = {"clip": video.name, "k": k, "n": a[0]["n"], "identical": same, "deterministic": stable,
                       "mi_ms": statistics.median(mi_wall) if mi_wall else None,
                       "mi_cpu": statistics.median(mi_cpu) if mi_cpu else None, "mi_psnr": mi_psnr,
                       "mi_best": min(mi_wall) if mi_wall else None, "mi_cpu_best": min(mi_cpu) if mi_cpu else None,
                       "mi_all": [round(x, 1) for x in mi_wall]}
                for name, rs in runs.items():
                    row[name] = {"psnr": rs[0]["psnr"], "ssim": rs[0]["ssim"], "ms": statistics.median(x["ms"] for x in rs),
                                 "cpu_ms": statistics.median(x["cpu_ms"] for x in rs), "modes": rs[0]["modes"],
                                 "skipped": rs[0]["features_skipped"], "pairs": rs[0]["pairs"],
                                 "best": min(x["ms"] for x in rs), "cpu_best": min(x["cpu_ms"] for x in rs),
                                 "ms_all": [round(x["ms"], 1) for x in rs]}
                rows.append(row)
                print(json.dumps({key: v for key, v in row.items()}), flush=True)
    print_table(rows)
    return 0


def print_table(rows: list[dict]) -> None:
    def ratio(mi, ours):
        return f"{mi / ours:.1f}x" if mi else ""

    print("\nMedian of the rounds (best round in brackets: the least disturbed by other load):\n")
    print("| clip | k | version | PSNR (dB) | SSIM | ms / frame | speed vs minterpolate | CPU ms / frame "
          "| CPU-time ratio | pairs without SIFT |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if r["mi_ms"]:
            print(f"| {r['clip']} | {r['k']} | minterpolate | {r['mi_psnr']:.2f} |  | {r['mi_ms']:.1f} ({r['mi_best']:.1f}) "
                  f"| 1.0x | {r['mi_cpu']:.1f} ({r['mi_cpu_best']:.1f}) | 1.0x |  |")
        for name in ("before", "after"):
            m = r[name]
            speed = f"{ratio(r['mi_ms'], m['ms'])} ({ratio(r['mi_best'], m['best'])})" if r["mi_ms"] else ""
            cpu = f"{ratio(r['mi_cpu'], m['cpu_ms'])} ({ratio(r['mi_cpu_best'], m['cpu_best'])})" if r["mi_ms"] else ""
            print(f"| {r['clip']} | {r['k']} | {name} | {m['psnr']:.3f} | {m['ssim']:.4f} | {m['ms']:.1f} ({m['best']:.1f}) | "
                  f"{speed} | {m['cpu_ms']:.1f} ({m['cpu_best']:.1f}) | {cpu} | {m['skipped']} of {m['pairs']} |")
    print()
    for r in rows:
        b, a = r["before"], r["after"]
        print(f"{r['clip']} k={r['k']}: PSNR {a['psnr'] - b['psnr']:+.4f} dB, wall {b['ms'] / a['ms']:.2f}x, "
              f"CPU {b['cpu_ms'] / a['cpu_ms']:.2f}x faster than before (medians); {r['identical']} of {r['n']} "
              f"in-betweens bit-identical{'' if r['deterministic'] else ' (outputs differ between rounds!)'}; "
              f"wall per round before {b['ms_all']} after {a['ms_all']} minterpolate {r.get('mi_all')}")


if __name__ == "__main__":
    sys.exit(main())
