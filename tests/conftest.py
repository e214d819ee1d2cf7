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
