#!/usr/bin/env bash
# The full-resolution table of docs/fullsize.md on one CUDA card (written for an H200, 141 GB):
# every family at its published config and depth, random weights built on the card, through
# keyrender's own code (benchmarks/fullsize.py). Nothing is downloaded.
#
#   benchmarks/fullsize_gpu.sh a     # SDXL + LTX, with and without offload/tiling, the gpu tests (at most 460 s)
#   benchmarks/fullsize_gpu.sh b     # Wan 2.1 FLF2V 14B at 1280x720 x 81 frames (at most 340 s)
#   benchmarks/fullsize_gpu.sh all
#
# Each run has its own timeout, so a part stays under 10 minutes (one device command) and the two
# under 14 minutes even if every run hits its limit (expected: well under; not measured, no device
# was lent when this was written). The offloaded runs take fewer steps (s/step is what they
# measure); Wan runs 2 (1 offloaded) of its 50 steps: its 50-step figure is s/step x 50 + the
# rest of the stage. Results: $OUT (default
# /tmp/fullsize-gpu) holds one .jsonl (benchmarks/fullsize.py --json) and one .err per run, and
# summary.md (the tables). PY: the Python with keyrender's dependencies (default: the first of
# .venv/bin/python, python3, python that imports torch).
set -u
cd "$(dirname "$0")/.."
PART=${1:-all}
OUT=${OUT:-/tmp/fullsize-gpu}
mkdir -p "$OUT"
if [ -z "${PY:-}" ]; then  # the first Python that has torch: the checkout's venv, else the machine's
    for candidate in .venv/bin/python python3 python; do
        if "$candidate" -c "import torch" 2>/dev/null; then PY=$candidate; break; fi
    done
fi
PY=${PY:-python3}

# the repository root is the package `keyrender` (setup.cfg); where it is not installed, put a link
# to it on the path
if ! "$PY" -c "import keyrender" 2>/dev/null; then
    LINKS="${TMPDIR:-/tmp}/keyrender-path"; mkdir -p "$LINKS" && ln -sfn "$(pwd)" "$LINKS/keyrender"
    export PYTHONPATH="$LINKS${PYTHONPATH:+:$PYTHONPATH}"
fi

# fail fast (seconds, not minutes) when the machine cannot run it
"$PY" - <<'EOF' || { echo "fullsize_gpu: no CUDA or missing packages (torch, diffusers, transformers, accelerate, peft, psutil, cv2)"; exit 3; }
import importlib, sys
for m in ("torch", "diffusers", "transformers", "accelerate", "peft", "psutil", "cv2", "keyrender"):
    importlib.import_module(m)
import torch
assert torch.cuda.is_available()
p = torch.cuda.get_device_properties(0)
print(f"{p.name}: {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}", flush=True)
EOF

run() {  # name, seconds, fullsize.py arguments...
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$PY" benchmarks/fullsize.py --device cuda --json "$@" >"$OUT/$name.jsonl" 2>"$OUT/$name.err"
    local rc=$?
    echo "$name: rc=$rc, $((SECONDS - t0)) s" | tee -a "$OUT/runs.txt"
    grep -v '^#' "$OUT/$name.err" | grep -E '^\|' >>"$OUT/summary.md" || true
}

if [ "$PART" = a ] || [ "$PART" = all ]; then
    # SDXL keyframes: 1024x1024, 30 steps, 3 keyframes of 3 characters jointly (FaceID, style,
    # joint attention), then the repair's img2img and a ControlNet shot; fp16 as the preset
    run sdxl 140 --family sdxl --resolution 1024x1024 --steps 30
    run sdxl-offload-tiling 90 --family sdxl --resolution 1024x1024 --steps 5 --cpu-offload --vae-tiling
    # LTX-Video 0.9.5: 768x512, 121 frames, 40 steps (24 of them from the flow start), bf16
    run ltx 100 --family ltx --resolution 768x512 --frames 121 --steps 40
    run ltx-offload-tiling 70 --family ltx --resolution 768x512 --frames 121 --steps 5 --cpu-offload --vae-tiling
    # the CUDA tests (tiny models: fp16/bf16 paths, the offloaded ControlNet)
    timeout 60 "$PY" -m pytest -q -m gpu tests/ >"$OUT/pytest-gpu.txt" 2>&1
    echo "pytest -m gpu: rc=$?" | tee -a "$OUT/runs.txt"
fi
if [ "$PART" = b ] || [ "$PART" = all ]; then
    # Wan 2.1 FLF2V 14B: 1280x720, 81 frames, full depth (40 blocks, 16.4B) in bf16
    run wan 200 --family wan --resolution 1280x720 --frames 81 --steps 2
    run wan-offload-tiling 140 --family wan --resolution 1280x720 --frames 81 --steps 1 --cpu-offload --vae-tiling
fi
cat "$OUT/runs.txt"
