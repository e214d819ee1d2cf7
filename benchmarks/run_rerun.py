"""What a rerun costs: the storyboard sample rendered, then run again unchanged (every shot is
checked by size + sha256 and reused), then run again after editing one row (only that shot
renders). Each run is `keyrender run` in a fresh subprocess, so the times include Python start-up
and imports, as a user sees them; the report and timeline are rewritten every run.

    .venv/bin/python benchmarks/run_rerun.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"


def run(csv: Path, out: Path) -> tuple[float, dict]:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "keyrender.cli", "run", str(csv), "--out", str(out), "--json"],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"keyrender run failed ({p.returncode}):\n{p.stderr[-3000:]}")
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    return wall, {k: sum(s["status"] == k for s in summary["shots"]) for k in ("rendered", "cached")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each case; the median is shown")
    args = ap.parse_args()
    times: dict[str, list[float]] = {"first run": [], "rerun, unchanged": [], "rerun, one row edited": []}
    counts: dict[str, dict] = {}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="keyrender-bench-rerun-") as tmp:
            proj = Path(tmp) / "proj"
            shutil.copytree(SAMPLES, proj, ignore=shutil.ignore_patterns("renders", ".keyrender"))
            csv, out = proj / "shotlist.csv", Path(tmp) / "out"
            for case in times:
                if case == "rerun, one row edited":
                    csv.write_text(csv.read_text().replace("close-up of Eileen", "a closer close-up of Eileen"))
                wall, c = run(csv, out)
                times[case].append(wall)
                counts[case] = c
    first = statistics.median(times["first run"])
    print(f"| run (storyboard sample: 3 shots, 132 frames; median of {args.repeat}) | shots rendered / cached | wall time | vs first run |")
    print("| --- | ---: | ---: | ---: |")
    for case, ts in times.items():
        m = statistics.median(ts)
        print(f"| {case} | {counts[case]['rendered']} / {counts[case]['cached']} | {m:.2f} s | {m / first:.2f} |")


if __name__ == "__main__":
    main()
