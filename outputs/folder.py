"""The output folder before a run writes into it: what in it is keyrender's, which shot list it
belongs to, and every output path against every input path. Everything here reads; nothing is
written except the shot-list record (`claim`), under the run's lock.

    output_problems(shotlist, jobs, out, ...) -> [str]  every reason the run must not write there
    owner_problem(out, shotlist_path)          -> str | None  the folder holds another list's renders
    claim(out, shotlist_path)                  the folder now belongs to this shot list
    report_is_ours(path), timeline_is_ours(path)  a file keyrender wrote (its marker, or the head
                                               every earlier keyrender wrote)

Decisions (README, "Failure and recovery"):
- the default output folder (renders/ next to the shot list, no --out) is refused when it is a
  symlink: a project from someone else may ship `renders -> /anywhere`. Named with --out, a
  linked folder is the user's choice and is used;
- an output folder records the shot list it belongs to (`.keyrender-shotlist.json`); a run of
  another shot list is refused unless --force (which renders every shot again). A list is the
  same when its real path is, or when it lies at the same place relative to the folder (a moved
  or copied project);
- report.html and timeline.otio are replaced only when keyrender wrote them;
- a shot folder is replaced only when keyrender wrote it (outputs.staging.written_by_keyrender);
- no input (the shot list, an image a shot names, the cast) may be an output or lie inside one
  the run replaces, and the output folder may not lie inside the cast.

Outputs layer; no torch.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable

from keyrender.core.fsutil import atomic_write_json
from keyrender.core.jobs import MANIFEST, ShotJob
from keyrender.outputs.staging import written_by_keyrender

REPORT = "report.html"
TIMELINE = "timeline.otio"
OWNER = ".keyrender-shotlist.json"   # which shot list the output folder belongs to
LOCK_FILE = ".keyrender.lock"
LOCK_OWNER = ".keyrender.lock.owner"

#: what report.py writes near the top of every report (and what it checks before replacing one)
REPORT_MARKER = '<meta name="generator" content="keyrender">'
_REPORT_HEAD = re.compile(re.escape(REPORT_MARKER.encode()) + rb"|<title>keyrender run: ")
#: the head every keyrender timeline has: a Timeline whose first metadata key is "keyrender"
_TIMELINE_HEAD = re.compile(rb'^\{\s*"OTIO_SCHEMA":\s*"Timeline\.1",\s*"metadata":\s*\{\s*"keyrender":\s*\{')


def _head(path: Path, n: int = 4096) -> bytes | None:
    """The first bytes of a regular file (no link); None otherwise."""
    if path.is_symlink() or not path.is_file():
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return None


def report_is_ours(path: str | os.PathLike) -> bool:
    """`path` is a report keyrender wrote (a regular file, no link, with its marker)."""
    head = _head(Path(path), 2048)
    return head is not None and _REPORT_HEAD.search(head) is not None


def timeline_is_ours(path: str | os.PathLike) -> bool:
    """`path` is a timeline keyrender wrote (a regular file, no link, with keyrender's head)."""
    head = _head(Path(path), 512)
    return head is not None and _TIMELINE_HEAD.match(head) is not None


def temp_file_is_ours(path: str | os.PathLike) -> bool:
    """A killed report or timeline write (`.report.<8>.tmp.html`): keyrender's marker in it."""
    p = Path(path)
    return report_is_ours(p) if p.name.endswith(".html") else timeline_is_ours(p)


def _real(p: str | os.PathLike) -> Path:
    return Path(os.path.realpath(p))


def _inside(p: Path, folder: Path) -> bool:
    return p == folder or folder in p.parents


# ---- which shot list the folder belongs to ---------------------------------------------------


def _record(out: Path, shotlist_path: Path) -> dict:
    real = _real(shotlist_path)
    return {"keyrender": "output folder", "shotlist": str(real),
            "shotlist_from_out": os.path.relpath(real, _real(out))}


def owner_problem(out: str | os.PathLike, shotlist_path: str | os.PathLike) -> str | None:
    """Why `out` is not this shot list's output folder, or None. It is when it records no other
    list: the record names the same real path, or the same path relative to the folder (a moved
    or copied project). A folder without a record (from a keyrender before it) belongs to the
    list its keyrender timeline names (by file name), else to no one."""
    out, shotlist_path = Path(out), Path(shotlist_path)
    mine = _record(out, shotlist_path)
    owner = out / OWNER
    theirs = None
    if os.path.lexists(owner):
        try:
            data = json.loads(owner.read_text(encoding="utf-8"))
            theirs = data["shotlist"] if data.get("keyrender") == "output folder" else None
            if theirs is not None and (theirs == mine["shotlist"]
                                       or data.get("shotlist_from_out") == mine["shotlist_from_out"]):
                return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            theirs = None
        if theirs is None:
            return (f"{owner} is not keyrender's record of the folder's shot list (damaged, or not "
                    "written by keyrender); move it away or choose another --out")
        where = f" (recorded in {owner})"
    elif timeline_is_ours(out / TIMELINE):
        try:
            theirs = json.loads((out / TIMELINE).read_text(encoding="utf-8"))["metadata"]["keyrender"]["shotlist"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not theirs or Path(theirs).name == shotlist_path.name:
            return None
        where = f" (named by {out / TIMELINE})"
    else:
        return None
    return (f"{out} holds the renders of another shot list, {theirs}{where}; rendering "
            f"{shotlist_path} there would replace its shots, its report and its timeline. Give each "
            "shot list its own --out, or add --force to render this one there anyway (every shot again)")


def claim(out: str | os.PathLike, shotlist_path: str | os.PathLike) -> None:
    """Record that `out` holds the renders of `shotlist_path` (atomically)."""
    atomic_write_json(Path(out) / OWNER, _record(Path(out), Path(shotlist_path)))


# ---- the checks before a run ------------------------------------------------------------------


def output_problems(shotlist, jobs: list[ShotJob], out: str | os.PathLike, *, cast_dir: str | os.PathLike,
                    named: bool = True, force: bool = False) -> list[str]:
    """Every reason the run must not write into `out`, as lines (empty: go ahead). Reads only.

    `named`: the user named the folder (--out, a library's RenderOptions.out); False for the
    default (renders/ next to the shot list), which is refused when it is a symlink. `force`:
    the run may take over a folder that holds another shot list's renders.
    """
    from keyrender.core.shotlist import Issue

    out = Path(out)
    problems: list[str] = []
    if not named and out.is_symlink():
        problems.append(f"{out} is a symlink (to {os.readlink(out)}): keyrender writes into a linked output "
                        f"folder only when it is named with --out (--out {out}); nothing was written")
        return problems  # nothing inside it is looked at
    if os.path.lexists(out) and not out.is_dir():
        problems.append(f"--out {out} is not a folder")
        return problems
    real_out, real_cast = _real(out), _real(cast_dir)
    if _inside(real_out, real_cast):
        problems.append(f"--out {out} is inside the cast folder {cast_dir}: its shot folders would be read "
                        "as characters and its files as reference photos; choose another --out")
    for name in (LOCK_FILE, LOCK_OWNER, OWNER):
        if (out / name).is_symlink():
            problems.append(f"{out / name} is a symlink: keyrender does not write through it; remove it")
    for name, ours in ((REPORT, report_is_ours), (TIMELINE, timeline_is_ours)):
        p = out / name
        if os.path.lexists(p) and not ours(p):
            problems.append(f"{p} was not written by keyrender (no keyrender marker in it{'; a link' if p.is_symlink() else ''}); "
                            "it is left as it is: move it away or choose another --out")
    for j in jobs:
        d = j.out_dir
        if not os.path.lexists(d) or written_by_keyrender(d):
            continue
        if d.is_symlink():
            why = f"{d} is a symlink (to {os.readlink(d)}); keyrender never writes through one"
        elif d.is_dir() and (d / MANIFEST).is_file() and not (d / MANIFEST).is_symlink():
            size = (d / MANIFEST).stat().st_size
            why = (f"{d / MANIFEST} is {'empty' if size == 0 else 'not a keyrender manifest'}: keyrender "
                   f"cannot tell that it wrote {d}; move that folder away (or delete it) to render the shot again")
        else:
            why = f"would replace {d}, which was not written by keyrender (no keyrender {MANIFEST} in it)"
        problems.append(str(Issue(shotlist.path, j.shot.line, "shot", f"shot '{j.shot.id}' {why}; "
                                  "rename the shot or choose another --out")))
    if not force and out.is_dir():
        problem = owner_problem(out, shotlist.path)
        if problem:
            problems.append(problem)
    problems += _inputs_in_outputs(shotlist, jobs, out, cast_dir)
    return problems


def _inputs_in_outputs(shotlist, jobs: list[ShotJob], out: Path, cast_dir) -> list[str]:
    """An input that is one of the run's outputs, or lies inside a shot folder the run replaces."""
    from keyrender.core.shotlist import Issue

    real_out = _real(out)
    files = {_real(out / n): f"{out / n}" for n in (REPORT, TIMELINE, OWNER, LOCK_FILE, LOCK_OWNER)}
    # a shot folder is a plain name under the output folder (a linked one was refused above)
    replaced = {j.out_dir.name for j in jobs if not j.done}
    problems: list[str] = []

    def clash(p: Path) -> str | None:
        r = _real(p)
        if r in files:
            return f"{p} is the run's own {files[r]}, which it writes"
        if real_out not in r.parents:
            return None
        shot = r.relative_to(real_out).parts[0]
        if shot in replaced:
            return f"{p} lies in shot {shot}'s folder, which this run replaces; copy it out of the output folder"
        return None

    why = clash(shotlist.path)
    if why:
        problems.append(f"{shotlist.path}: the shot list: {why}")
    if clash(Path(cast_dir)):
        problems.append(f"the cast folder {cast_dir} lies in an output the run replaces; move it")
    seen: set[Path] = set()
    for shot in shotlist.shots:
        for column, paths in _images(shot):
            for p in paths:
                if p is None or p in seen:
                    continue
                seen.add(p)
                why = clash(p)
                if why:
                    problems.append(str(Issue(shotlist.path, shot.line, column, why)))
    return problems


def _images(shot) -> Iterable[tuple[str, Iterable]]:
    yield "keyframe_images", shot.keyframe_images
    yield "style_image", (shot.style_image,)
    yield "control_image", (shot.control_image,)
