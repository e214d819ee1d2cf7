"""The cast on disk: one folder of reference images per character, `cast/<name>/*.jpg`."""

from __future__ import annotations

from pathlib import Path

from keyrender.imagefile import IMAGE_SUFFIXES


def find_cast(cast_dir: str | Path) -> dict[str, list[Path]]:
    """Character name -> its reference images (sorted). Empty when the folder does not exist.

    Hidden folders and files (the identity store keeps its data in `.keyrender/`) are skipped.
    """
    cast_dir = Path(cast_dir)
    if not cast_dir.is_dir():
        return {}
    cast: dict[str, list[Path]] = {}
    for entry in sorted(cast_dir.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        cast[entry.name] = sorted(
            p for p in entry.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
    return cast
