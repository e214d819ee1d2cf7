"""A shot's files appear all at once or not at all: each shot renders into a staging folder under
the output folder, swapped into place when complete; only folders keyrender wrote are replaced.

Outputs layer: imports the manifest's schema and the base layer. No torch.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

from keyrender.core.errors import InputError
from keyrender.core.jobs import MANIFEST
from keyrender.outputs.manifest import SCHEMA

_MANIFEST_HEAD = re.compile(rb'"schema"\s*:\s*"' + re.escape(SCHEMA.split("/")[0].encode()) + rb"/")


def written_by_keyrender(out_dir: str | os.PathLike) -> bool:
    """Whether `out_dir` is a shot folder keyrender wrote: a real folder (no link) holding a
    manifest.json with keyrender's schema. The manifest's head is enough, so a shot whose
    manifest was damaged is still recognised (and rendered again)."""
    p = Path(out_dir)
    if p.is_symlink() or not p.is_dir():
        return False
    try:
        with open(p / MANIFEST, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return _MANIFEST_HEAD.search(head) is not None


#: the names create_staging and swap_into_place give their folders: .staging-<shot>-<8 hex>
LEFTOVER = re.compile(r"^\.(staging|old)-[A-Za-z0-9][A-Za-z0-9_.\-]*-[0-9a-f]{8}$")


def create_staging(out: Path, shot_id: str) -> Path:
    """A fresh staging folder for a shot under the output folder (with keyframes/ in it)."""
    staging = Path(out) / f".staging-{shot_id}-{uuid.uuid4().hex[:8]}"
    (staging / "keyframes").mkdir(parents=True)
    return staging


def swap_into_place(staging: Path, final: Path) -> None:
    """Replace `final` by `staging` with two renames; a crash between them loses only old output.
    Only a shot folder keyrender wrote is ever replaced (checked again here: the folder may have
    appeared since the run was planned)."""
    old = None
    if os.path.lexists(final) and not written_by_keyrender(final):
        raise InputError(f"{final} exists and was not written by keyrender; it is left as it is "
                         "(rename the shot or choose another --out)")
    if os.path.lexists(final):
        old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
