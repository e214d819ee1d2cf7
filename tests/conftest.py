"""Fixtures shared by the end-to-end tests: a private copy of the samples folder to edit freely."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _copy_sample(dst: Path) -> Path:
    """Copy samples/ (shot lists, storyboard, cast; no renders, no identity store) to dst."""
    shutil.copytree(SAMPLES, dst, ignore=shutil.ignore_patterns("renders", ".keyrender"))
    return dst


@pytest.fixture(scope="session")
def copy_sample() -> Callable[[Path], Path]:
    return _copy_sample


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the samples in tmp_path/proj."""
    return _copy_sample(tmp_path / "proj")


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory):
    """One tiny keyframe generator (the real diffusers classes from tiny configs, its own files)
    shared by every test that only calls it: options travel per request, so tests do not change
    it. Torch runs one intra-op thread meanwhile: the toy models gain nothing from more, and on a
    busy machine OpenMP workers waiting on each other multiply their time."""
    torch = pytest.importorskip("torch")
    from keyrender.keyframes import load_generator

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield load_generator("tiny", device="cpu", tiny_dir=tmp_path_factory.mktemp("tiny"), use_cache=False)
    finally:
        torch.set_num_threads(threads)
