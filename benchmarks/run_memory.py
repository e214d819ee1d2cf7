"""Peak memory of rendering one storyboard shot of N seconds: it must not grow with N.

Frames are streamed from the interpolator into the encoder, so a 32 s shot should peak at about
the memory of a 2 s one. Each length is rendered in a fresh subprocess (no model, allocator or
import state carried over) and its peak RSS read with resource.getrusage(RUSAGE_SELF).ru_maxrss
at the end of that process. Identity checks are off (no face model), as on a machine without one.

    .venv/bin/python benchmarks/run_memory.py            # N = 2, 8, 32
    .venv/bin/python benchmarks/run_memory.py --seconds 2 --seconds 64
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from keyrender.pipeline import RenderOptions, render
t = time.perf_counter()
result = render(sys.argv[1], RenderOptions(out=Path(sys.argv[2])))
wall = time.perf_counter() - t
shot = result.shots[0]
print(json.dumps({"status": shot.status, "seconds": wall,
                  "frames": json.loads(shot.manifest.read_text())["video"]["frames"] if shot.manifest else None,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, action="append", help="shot length(s) in seconds (default 2, 8, 32)")
    args = ap.parse_args()
    lengths = args.seconds or [2, 8, 32]
    rows = []
    with tempfile.TemporaryDirectory(prefix="keyrender-bench-mem-") as tmp:
        proj = Path(tmp) / "proj"
        shutil.copytree(SAMPLES, proj, ignore=shutil.ignore_patterns("renders", ".keyrender"))
        board = "storyboard/1A_0.jpg;storyboard/1A_1.jpg;storyboard/1A_2.jpg"
        for n in lengths:
            csv = proj / f"shot_{n}s.csv"
            csv.write_text("scene,shot,prompt,characters,duration,fps,keyframes,keyframe_images\n"
                           f'1,M{n},"Eileen",eileen,{n},24,3,{board}\n')
            p = subprocess.run([sys.executable, "-c", CHILD, str(csv), str(Path(tmp) / f"out{n}")],
                               capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"render of the {n} s shot failed:\n{p.stderr[-3000:]}")
            rows.append((n, json.loads(p.stdout.strip().splitlines()[-1])))
    base = rows[0][1]["peak_rss_mib"]
    print("| shot length | frames (512x288) | render wall time | peak RSS | vs shortest |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n, r in rows:
        print(f"| {n} s | {r['frames']} | {r['seconds']:.1f} s | {r['peak_rss_mib']:.0f} MiB | {r['peak_rss_mib'] / base:.2f}x |")


if __name__ == "__main__":
    main()
