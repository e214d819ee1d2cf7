"""Soak: render N short storyboard shots in one run and check that memory stays flat.

A night's render is hundreds of shots in one process; anything kept per shot (a traceback, a
cache, an anchor) shows up as resident memory growing shot after shot. Each case runs in a fresh
subprocess; after every shot the process's resident set (VmRSS) and its peak (VmHWM) are read
from /proc/self/status. "flat" means the peak after the last 50 shots is within 10% of the peak
after the first 50. Cases: no face model (identity checks off: the default state before a face
pack is installed, where issue 14 measured +18 MB per shot), the tiny insightface-shaped pack
(identity/testing.py: real ONNX detector + recognizer, random weights; every keyframe and
checked in-between goes through detection and embedding) and the built-in dlib judge (the default).

    .venv/bin/python benchmarks/soak.py                    # 1000 shots, both cases
    .venv/bin/python benchmarks/soak.py --shots 200 --case none
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
import json, sys, time
from pathlib import Path
from keyrender.pipeline import RenderOptions, render

def status():
    out = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) / 1024
    return out

samples = []
def cb(e):
    if e.get("event") in ("shot_done", "shot_failed"):
        samples.append({**status(), "status": e.get("status")})

face = sys.argv[3] if sys.argv[3] != "none" else str(Path(sys.argv[2]).parent / "no-face-model")
t = time.perf_counter()
result = render(sys.argv[1], RenderOptions(out=Path(sys.argv[2]), face_model=face), callback=cb)
print(json.dumps({"seconds": time.perf_counter() - t, "exit_code": result.exit_code,
                  "rendered": sum(s.status == "rendered" for s in result.shots),
                  "checked": None, "samples": samples}))
"""


def make_project(root: Path, shots: int) -> Path:
    shutil.copytree(SAMPLES, root, ignore=shutil.ignore_patterns("renders", ".keyrender"))
    board = "storyboard/2A_0.jpg;storyboard/2A_1.jpg"
    rows = [f"{1 + i // 20},S{i:04d},Eileen,eileen,0.25,24,2,{board},96,64" for i in range(shots)]
    csv = root / "soak.csv"
    csv.write_text("scene,shot,prompt,characters,duration,fps,keyframes,keyframe_images,width,height\n"
                   + "\n".join(rows) + "\n")
    return csv


def run_case(shots: int, face: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        csv = make_project(Path(tmp) / "proj", shots)
        p = subprocess.run([sys.executable, "-c", CHILD, str(csv), str(Path(tmp) / "out"), face],
                           capture_output=True, text=True, env={**__import__("os").environ,
                                                                "KEYRENDER_CACHE": str(Path(tmp) / "cache")})
        if p.returncode:
            raise SystemExit(f"case {face} failed:\n{p.stderr[-3000:]}")
        res = json.loads(p.stdout.strip().splitlines()[-1])
    s = res["samples"]
    k = min(50, len(s) // 2)
    first, last = s[k - 1]["VmHWM"], s[-1]["VmHWM"]
    rss_first = sum(x["VmRSS"] for x in s[:k]) / k
    rss_last = sum(x["VmRSS"] for x in s[-k:]) / k
    return {"case": face, "shots": len(s), "seconds": res["seconds"], "exit": res["exit_code"],
            "peak_first": first, "peak_last": last, "growth": last / first - 1,
            "rss_first": rss_first, "rss_last": rss_last,
            "per_shot_kib": (rss_last - rss_first) * 1024 / max(1, len(s) - k)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shots", type=int, default=1000)
    ap.add_argument("--case", choices=["none", "tiny", "dlib"], action="append")
    args = ap.parse_args()
    rows = [run_case(args.shots, c) for c in (args.case or ["none", "tiny", "dlib"])]
    print(f"| face model | shots | wall s | peak after first 50 (MiB) | peak after last (MiB) | growth | "
          f"mean RSS first 50 / last 50 (MiB) | RSS per shot | flat (<10%) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        name = {"none": "none (checks off)", "tiny": "tiny pack (checks on)",
                "dlib": "dlib, the default (checks on)"}[r["case"]]
        print(f"| {name} | {r['shots']} | {r['seconds']:.0f} | {r['peak_first']:.0f} | {r['peak_last']:.0f} | "
              f"{100 * r['growth']:+.1f}% | {r['rss_first']:.0f} / {r['rss_last']:.0f} | "
              f"{r['per_shot_kib']:+.1f} KiB | {'yes' if r['growth'] < 0.10 else 'NO'} |")


if __name__ == "__main__":
    main()
