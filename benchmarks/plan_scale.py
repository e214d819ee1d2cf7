"""How the dry run scales with the number of rows (issue 21, item 8).

A shot list of N rows, one shot per scene (the worst case for a per-shot scan of the scenes),
generated keyframes (no images to hash), dry-run as `keyrender run LIST --dry-run --preset tiny`
does: read and validate, plan, check the output folder, print the plan. The peer, in the same
run, is the same code with the scene lookup as it was before the fix (a scan of every scene per
shot), for the sizes where it finishes in reasonable time.

    python benchmarks/plan_scale.py [--rows 1000,10000,30000,60000] [--peer-max 30000]

Prints a markdown table: rows, file size, wall and CPU seconds of the dry run (in-process, the
CLI's own code), and the peer's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def write_list(path: Path, rows: int) -> Path:
    with open(path, "w") as fh:
        fh.write("scene,shot,prompt,frames\n")
        for i in range(rows):
            fh.write(f"s{i},S{i},a shot of scene {i},24\n")
    return path


def dry_run(csv: Path, out: Path) -> tuple[float, float]:
    """(wall s, CPU s) of `keyrender run CSV --dry-run --preset tiny --out OUT`, in-process."""
    from click.testing import CliRunner

    from keyrender.cli import main

    w0, c0 = time.perf_counter(), time.process_time()
    r = CliRunner().invoke(main, ["run", str(csv), "--dry-run", "--preset", "tiny", "--out", str(out)])
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    if r.exit_code != 0:
        raise SystemExit(f"dry run failed: {r.output[-2000:]}")
    return wall, cpu


def linear_scene_of(self, shot):
    """ShotList.scene_of before the fix: a scan of the scenes for each lookup."""
    return next(sc for sc in self.scenes if sc.id == shot.scene)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1000,10000,30000,60000")
    ap.add_argument("--peer-max", type=int, default=30000, help="largest list the peer is timed on")
    args = ap.parse_args()
    from keyrender.core.shotlist import ShotList

    fixed = ShotList.scene_of
    print("| rows | file | dry run wall | dry run CPU | peer (scan per lookup) wall | peer CPU | CPU ratio |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        dry_run(write_list(Path(tmp) / "warm.csv", 10), Path(tmp) / "out")  # imports, caches
        for n in [int(x) for x in args.rows.split(",")]:
            csv = write_list(Path(tmp) / f"list{n}.csv", n)
            size = f"{os.path.getsize(csv) / 1000:.0f} KB"
            wall, cpu = dry_run(csv, Path(tmp) / "out")
            peer = "-", "-", "-"
            if n <= args.peer_max:
                ShotList.scene_of = linear_scene_of
                try:
                    pw, pc = dry_run(csv, Path(tmp) / "out")
                finally:
                    ShotList.scene_of = fixed
                peer = f"{pw:.1f} s", f"{pc:.1f} s", f"{pc / cpu:.1f}x"
            print(f"| {n} | {size} | {wall:.1f} s | {cpu:.1f} s | {peer[0]} | {peer[1]} | {peer[2]} |", flush=True)


if __name__ == "__main__":
    main()
