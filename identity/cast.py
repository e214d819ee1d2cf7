"""The cast on disk: one folder of reference images per character, `cast/<name>/*.jpg`."""

from __future__ import annotations

from pathlib import Path

from keyrender.core.errors import InputError
from keyrender.core.imagefile import IMAGE_SUFFIXES


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


def check_cast_name(name: str) -> str:
    """`name` if it can be a character of a cast: what `find_cast` lists, one visible folder name
    (no separator, not hidden, not `.` or `..`). Anything else is an InputError: a name is never a
    path, so no command reads or writes outside the cast folder and its identity store."""
    if not isinstance(name, str) or not name or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise InputError(f"{name!r} is not a character name: a character is a folder of the cast "
                         "(cast/<name>/), named without '/', '\\' or a leading '.'")
    return name
