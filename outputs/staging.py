"""A shot's files appear all at once or not at all: each shot renders into a staging folder under
the output folder, swapped into place when complete; only folders keyrender wrote are replaced,
and the user's own files in a replaced shot folder are carried into the new one.

Temporary folders carry a marker: `.staging-<shot>-<16 hex>` and `.old-<shot>-<16 hex>` each hold
`.keyrender-temp`, a small JSON file that names the folder it is in. Leftover cleaning removes a
folder only when its name has that exact form AND its marker names it: a user's
`.old-photos-20240101` (or anything else that merely looks like one) is never touched, and
nothing is deleted through a symlink.

    create_staging(out, shot_id)       -> a fresh marked staging folder (with keyframes/)
    swap_into_place(staging, final)    the new shot folder in place; the old one's user files carried
    clean_leftovers(out)               what killed runs left: staging folders removed, a previous
                                       render whose swap was cut short put back

Outputs layer: imports the manifest's schema and the base layer. No torch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

from keyrender.core.errors import InputError
from keyrender.core.fsutil import atomic_write_json
from keyrender.core.jobs import MANIFEST
from keyrender.outputs.manifest import SCHEMA

_MANIFEST_HEAD = re.compile(rb'"schema"\s*:\s*"' + re.escape(SCHEMA.split("/")[0].encode()) + rb"/")

#: the marker file in every temporary folder keyrender makes under an output folder
MARKER = ".keyrender-temp"
SUFFIX_HEX = 16  # uuid4 hex digits in a temporary folder's name (8 could still spell a date)

#: the names create_staging and swap_into_place give their folders: .staging-<shot>-<16 hex>
LEFTOVER = re.compile(r"^\.(staging|old)-([A-Za-z0-9][A-Za-z0-9_.\-]*)-[0-9a-f]{%d}$" % SUFFIX_HEX)

# keyrender's file names in a shot folder, for a folder whose manifest cannot be read
_OWN_NAMES = re.compile(r"^(video\.mp4|keyframes/kf\d{3}_f\d{5}\.png|keyframes/repair_f\d{5}\.png|spans/mid_f\d{5}\.jpg)$")


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


def _new_name(kind: str, shot_id: str) -> str:
    return f".{kind}-{shot_id}-{uuid.uuid4().hex[:SUFFIX_HEX]}"


def _mark(folder: Path, kind: str, name: str) -> None:
    atomic_write_json(folder / MARKER, {"keyrender": kind, "folder": name})


def _unmark(folder: Path) -> None:
    try:
        (folder / MARKER).unlink()
    except OSError:
        pass


def leftover_kind(path: str | os.PathLike) -> str | None:
    """"staging" or "old" when `path` is a temporary folder keyrender made: named exactly as
    keyrender names them, a real folder (not a link), holding a marker that names this folder
    and its kind. None for anything else (a user's folder is never taken for one)."""
    p = Path(path)
    m = LEFTOVER.match(p.name)
    if m is None or p.is_symlink() or not p.is_dir():
        return None
    marker = p / MARKER
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        with open(marker, "rb") as fh:
            data = json.loads(fh.read(4096))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("folder") != p.name or data.get("keyrender") != m.group(1):
        return None
    return m.group(1)


def create_staging(out: Path, shot_id: str) -> Path:
    """A fresh staging folder for a shot under the output folder (with keyframes/ in it), its
    marker written before anything else."""
    name = _new_name("staging", shot_id)
    staging = Path(out) / name
    staging.mkdir(parents=True)
    try:
        _mark(staging, "staging", name)
        (staging / "keyframes").mkdir()
    except BaseException:  # a full disk: the caller gets no folder, so none is left behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def swap_into_place(staging: Path, final: Path) -> None:
    """Replace `final` by `staging` with two renames; a crash between them loses only old output
    (and the next run's leftover cleaning puts the old one back). Only a shot folder keyrender
    wrote is ever replaced (checked again here: the folder may have appeared since the run was
    planned). Files the user put into the old folder are carried into the new one."""
    old = None
    if os.path.lexists(final) and not written_by_keyrender(final):
        raise InputError(f"{final} exists and was not written by keyrender; it is left as it is "
                         "(rename the shot or choose another --out)")
    if os.path.lexists(final):
        name = _new_name("old", final.name)
        _mark(final, "old", name)  # marked before the rename: the moved folder is known as ours
        old = final.parent / name
        os.replace(final, old)
    os.replace(staging, final)
    _unmark(final)
    if old is not None:
        settle_old(old, final)


def _own_files(folder: Path) -> set[str]:
    """The files of a shot folder that keyrender wrote (relative posix paths): its manifest, the
    files the manifest lists, the marker; keyrender's own names when the manifest is unreadable."""
    own = {MANIFEST, MARKER}
    try:
        d = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        d = None
    listed = set()
    if isinstance(d, dict):
        for rec in d.get("files") or []:
            if isinstance(rec, dict) and isinstance(rec.get("path"), str):
                listed.add(rec["path"])
        video = d.get("video")
        if isinstance(video, dict) and isinstance(video.get("path"), str):
            listed.add(video["path"])
        for kf in d.get("keyframes") or []:
            if isinstance(kf, dict) and isinstance(kf.get("path"), str):
                listed.add(kf["path"])
    if not listed:  # a damaged manifest: the names keyrender gives its files
        listed = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if _OWN_NAMES.match(p.relative_to(folder).as_posix())}
    return own | listed


def _free_name(target: Path) -> Path:
    """`target`, or `name.yours.ext` (then .yours2, ...) when the new render holds that name."""
    if not os.path.lexists(target):
        return target
    stem, suffix = (target.stem, target.suffix) if target.suffix else (target.name, "")
    n = 1
    while True:
        candidate = target.with_name(f"{stem}.yours{'' if n == 1 else n}{suffix}")
        if not os.path.lexists(candidate):
            return candidate
        n += 1


def _carry(src: Path, dst: Path, own: set[str], rel: str = "") -> list[str]:
    """Move every entry of `src` that keyrender did not write into `dst` (same relative place),
    folders of the user's as a whole, links as links (never followed). Returns what was carried."""
    carried = []
    own_dirs = {p.rsplit("/", 1)[0] + "/" for p in own if "/" in p}
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        r = rel + entry.name
        if r in own:
            continue
        if entry.is_dir(follow_symlinks=False) and any(d.startswith(r + "/") for d in own_dirs):
            target = dst / entry.name
            if not os.path.lexists(target):
                target.mkdir()
            elif target.is_symlink() or not target.is_dir():
                target = _free_name(target)
                target.mkdir()
            carried += _carry(Path(entry.path), target, own, r + "/")
            continue
        target = _free_name(dst / entry.name)
        os.rename(entry.path, target)
        carried.append(r if target.name == entry.name else f"{r} -> {target.relative_to(dst).as_posix()}")
    return carried


def settle_old(old: Path, final: Path) -> list[str]:
    """A replaced shot folder `old` (renamed aside, marked) after its replacement `final` is in
    place: the user's files in it (anything its manifest does not list: notes, a graded/ folder)
    are carried into `final` (a name the new render also has gets `.yours` before its suffix),
    then the rest, keyrender's own files, is deleted. Returns what was carried."""
    carried = _carry(old, final, _own_files(old))
    _rmtree(old)
    return carried


def _rmtree(path: Path) -> None:
    """Delete a folder keyrender made; never through a link (rmtree itself does not follow the
    links inside: they are removed as links)."""
    if path.is_symlink() or not path.is_dir():
        return
    shutil.rmtree(path, ignore_errors=True)


_MARKER_TMP = re.compile(r"^\.%s\.[a-z0-9_]{8}\.tmp$" % re.escape(MARKER))  # atomic_path's temp name


def _marker_debris_only(folder: Path) -> bool:
    """The folder holds nothing, or only what a marker write cut short leaves (its temp file, a
    marker that does not parse): a staging folder killed before its marker was whole."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return False
    return all(e.is_file(follow_symlinks=False) and (e.name == MARKER or _MARKER_TMP.match(e.name))
               and e.stat(follow_symlinks=False).st_size < 4096 for e in entries)


_LEFTOVER_TMP = re.compile(r"^\.(report|timeline)\.[a-z0-9_]{8}\.tmp\.(html|otio)$")


def clean_leftovers(out: Path, is_ours=None) -> None:
    """What killed runs left in the output folder, and nothing else:

    - a marked staging folder (`leftover_kind`): removed;
    - a marked old shot folder (a swap cut short between its two renames): put back as the shot
      folder when that is gone, else its user files carried into the shot folder and the rest
      removed;
    - a folder named like one that holds nothing but an unfinished marker (killed before the
      marker was whole): removed;
    - a report or timeline temp file (`.report.<8>.tmp.html`) that is empty or that
      `is_ours(path)` says keyrender wrote (its marker).
    """
    for d in out.iterdir():
        kind = leftover_kind(d)
        if kind == "staging":
            _rmtree(d)
        elif kind == "old":
            final = out / LEFTOVER.match(d.name).group(2)
            if not os.path.lexists(final):
                os.replace(d, final)
                _unmark(final)
            elif written_by_keyrender(final):
                settle_old(d, final)
        elif LEFTOVER.match(d.name) and d.is_dir() and not d.is_symlink() and _marker_debris_only(d):
            shutil.rmtree(d, ignore_errors=True)  # killed before its marker was whole: nothing is lost
        elif _LEFTOVER_TMP.match(d.name) and d.is_file() and not d.is_symlink():
            try:
                empty = d.stat().st_size == 0
            except OSError:
                continue
            if empty or (is_ours is not None and is_ours(d)):
                d.unlink(missing_ok=True)  # a report or timeline write that was killed (fsutil.atomic_path)


__all__ = ["written_by_keyrender", "create_staging", "swap_into_place", "settle_old", "clean_leftovers",
           "leftover_kind", "LEFTOVER", "MARKER"]
