"""Helpers shared by the tests."""

from __future__ import annotations

import numpy as np


def synthetic_face(seed: int, size: int = 80, blocks: int = 6, noise: int = 60) -> np.ndarray:
    """A "face" for the tiny pack: a seeded colour pattern of `blocks` x `blocks` squares with
    fine noise on top (RGB uint8, size x size). Different seeds are different people."""
    import cv2

    rng = np.random.default_rng(seed)
    base = rng.integers(30, 226, size=(blocks, blocks, 3), dtype=np.uint8)
    face = cv2.resize(base, (size, size), interpolation=cv2.INTER_NEAREST).astype(np.int16)
    fine = np.random.default_rng(10_000 + seed).integers(-noise, noise + 1, size=face.shape)
    return np.clip(face + fine, 0, 255).astype(np.uint8)


def synthetic_frame(faces: list[tuple[int, tuple[int, int]]], size: tuple[int, int] = (256, 256),
                    face_size: int = 80, background: int = 128) -> np.ndarray:
    """An RGB frame (H, W) = size, flat `background`, with synthetic faces pasted at top-left
    positions: faces = [(seed, (x, y)), ...]."""
    h, w = size
    frame = np.full((h, w, 3), background, np.uint8)
    for seed, (x, y) in faces:
        frame[y:y + face_size, x:x + face_size] = synthetic_face(seed, face_size)
    return frame


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (peak 255); 99.0 for identical images."""
    mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def cli(*args, env: dict | None = None, catch: bool = True):
    """`keyrender ARGS...` through click's test runner (arguments str()-ed); the click Result.
    `catch`: an exception the CLI lets through becomes the Result's (False: it is raised)."""
    from click.testing import CliRunner

    from keyrender.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=catch)


def run(*args, env: dict | None = None, catch: bool = False):
    """`cli` that raises what the CLI lets through (a test fails on the traceback, not on an exit code)."""
    return cli(*args, env=env, catch=catch)


#: modules that the torch-free paths (shot-list checks, dry runs, --help, the identity store) never load
HEAVY = ("torch", "diffusers", "onnxruntime", "insightface", "ray")

#: a prelude for `heavy_imports` that runs the CLI with the process's arguments, as `keyrender` would
RUN_CLI = ("import sys\nfrom keyrender.cli import main\ntry:\n    main(sys.argv[1:])\n"
           "except SystemExit as e:\n    assert not e.code, e.code\n")


def run_python(code: str, *argv, env: dict | None = None, heavy: tuple[str, ...] = HEAVY) -> tuple[list[str], str]:
    """Run `code` in a fresh Python (with `argv` as its arguments): (which of `heavy` it imported,
    what it printed). A failing `code` fails the calling test with its output."""
    import json
    import subprocess
    import sys

    probe = f"{code}\nimport sys as _s, json as _j\nprint('HEAVY=' + _j.dumps([m for m in {list(heavy)!r} if m in _s.modules]))\n"
    p = subprocess.run([sys.executable, "-c", probe, *map(str, argv)], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    *printed, last = p.stdout.rstrip("\n").split("\n")
    assert last.startswith("HEAVY="), p.stdout
    return json.loads(last[len("HEAVY="):]), "\n".join(printed)


def heavy_imports(code: str, *argv, env: dict | None = None, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """Which of `heavy` `code` imports, run in a fresh Python (see `run_python`)."""
    return run_python(code, *argv, env=env, heavy=heavy)[0]


def can_mount_tmpfs(options: str) -> bool:
    """Whether `unshare -rm` can mount a tmpfs with `options` ("ro", "size=64k") in a private mount
    namespace (no privileges, nothing outside the test sees it): tests of real full or read-only
    file systems skip without it."""
    import shutil
    import subprocess

    if not shutil.which("unshare"):
        return False
    p = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o {options} tmpfs /mnt"], capture_output=True)
    return p.returncode == 0
