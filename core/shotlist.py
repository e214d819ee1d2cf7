"""The shot list: reading and validating the CSV, and the Shot / Scene / ShotList types.

One row is one shot. Validation reads the whole file and collects every problem before failing,
each naming the file, line, column and value, so a user fixes the sheet in one pass.
The columns (name, required, default, parser, doc) are described once, in
`keyrender.core.shotlist_columns.COLUMNS`; README's shot-list table documents them for users (a test
checks that the two agree). Paths are relative to the CSV file.
This module never imports torch (the dry run and `--help` depend on that).
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from keyrender.core.errors import InputError
from keyrender.core.imagefile import IMAGE_SUFFIXES
from keyrender.core.shotlist_columns import (
    COLUMNS, CONTROL_TYPES, DEFAULT_FPS, KNOWN_COLUMNS, MAX_EXPONENT, MAX_FPS, MAX_NUMBER_CHARS, MAX_SECONDS,
    MAX_SHOT_ID, MAX_SIZE, MIN_SIZE, NAMED_REGIONS, NTSC, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, RESERVED_SHOT_IDS,
    SHOT_ID, Column, RowContext, default_seed, parse_fps, parse_number,
)

# keyrender.core.shotlist is the public path of the schema too (the columns, limits and number parsers)
__all__ = [
    "Shot", "Scene", "ShotList", "load_shotlist", "ShotListError", "Issue", "UnknownColumnWarning",
    "MAX_SHOTLIST_BYTES", "MAX_FIELD_CHARS", "IMAGE_SUFFIXES", "COLUMNS", "Column", "RowContext",
    "REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "KNOWN_COLUMNS", "CONTROL_TYPES", "DEFAULT_FPS", "MIN_SIZE",
    "MAX_SIZE", "MAX_FPS", "MAX_SECONDS", "MAX_SHOT_ID", "MAX_NUMBER_CHARS", "MAX_EXPONENT", "NAMED_REGIONS",
    "NTSC", "RESERVED_SHOT_IDS", "SHOT_ID", "default_seed", "parse_fps", "parse_number",
]


class UnknownColumnWarning(UserWarning):
    """A column the schema does not know; it is ignored."""


@dataclass(frozen=True)
class Issue:
    """One problem in the shot list, located as precisely as the problem allows."""

    path: Path
    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = str(self.path)
        if self.line is not None:
            where += f":{self.line}"
        if self.column:
            where += f": column '{self.column}'"
        return f"{where}: {self.message}"


class ShotListError(InputError):
    """Every problem found in a shot list, each with file, line and column."""

    def __init__(self, issues: Sequence[Issue]):
        self.issues = list(issues)
        n = len(self.issues)
        head = f"{n} problem{'s' if n != 1 else ''} in the shot list"
        super().__init__(head + ":\n" + "\n".join(f"  {i}" for i in self.issues))


@dataclass(frozen=True)
class Shot:
    """One validated row. Times are seconds; frame indices are 0-based."""

    id: str
    scene: str
    line: int
    prompt: str
    negative_prompt: str
    characters: tuple[str, ...]
    frames: int
    fps: Fraction
    keyframe_frames: tuple[int, ...]  # frame index of each keyframe; first 0, last frames-1
    seed: int
    style: str
    style_image: Path | None
    width: int | None
    height: int | None
    camera: str
    keyframe_images: tuple[Path | None, ...]  # one entry per keyframe (None: generate)
    beats: tuple[str, ...]
    layout: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    control_image: Path | None = None
    control_type: str = "openpose"
    identity_strength: float | None = None
    refine: bool = True
    # the identity loop may repaint (diffusion) the in-betweens between two storyboard images: off
    # by default, the pictures are the user's (checked and flagged, never repainted unless asked)
    storyboard_repair: bool = False
    hedge: float | None = None  # None: the run's default (RenderOptions.hedge, --hedge)
    notes: str = ""
    row: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def duration(self) -> Fraction:
        return Fraction(self.frames) / self.fps

    @property
    def keyframe_times(self) -> tuple[float, ...]:
        return tuple(float(Fraction(f) / self.fps) for f in self.keyframe_frames)

    @property
    def storyboard(self) -> bool:
        """Every keyframe is given as an image: nothing is generated."""
        return bool(self.keyframe_images) and all(p is not None for p in self.keyframe_images)

    def keyframe_prompts(self) -> list[str]:
        """The prompt of each keyframe: the shot prompt, its camera move, and the nearest beat."""
        k = len(self.keyframe_frames)
        out = []
        for i in range(k):
            parts = [self.prompt]
            if self.beats:
                b = len(self.beats)
                j = 0 if k == 1 else round(i * (b - 1) / (k - 1))
                parts.append(self.beats[j])
            if self.camera:
                parts.append(self.camera)
            out.append(", ".join(p for p in parts if p))
        return out


@dataclass(frozen=True)
class Scene:
    id: str
    shots: tuple[Shot, ...]
    style: str
    style_image: Path | None


@dataclass(frozen=True)
class ShotList:
    path: Path
    shots: tuple[Shot, ...]
    scenes: tuple[Scene, ...]
    unknown_columns: tuple[str, ...] = ()

    @cached_property
    def _by_id(self) -> tuple[dict[str, Shot], dict[str, Scene]]:
        """Shots and scenes by id, built once: planning a 30,000-row list looks each up once per
        shot (a scan per lookup made it quadratic)."""
        return {s.id: s for s in self.shots}, {sc.id: sc for sc in self.scenes}

    def shot(self, shot_id: str) -> Shot:
        found = self._by_id[0].get(shot_id)
        if found is not None:
            return found
        raise InputError(f"{self.path}: no shot '{shot_id}' (shots: {', '.join(s.id for s in self.shots)})")

    def scene_of(self, shot: Shot) -> Scene:
        return self._by_id[1][shot.scene]

    def select(self, only: Iterable[str] | None) -> list[Shot]:
        """The shots named in `only` (in shot-list order), or all; unknown ids are an InputError."""
        if not only:
            return list(self.shots)
        wanted = [s.strip() for s in only if s.strip()]
        known = {s.id for s in self.shots}
        missing = [w for w in wanted if w not in known]
        if missing:
            raise InputError(
                f"{self.path}: --only names unknown shot{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)} (shots: {', '.join(s.id for s in self.shots)})"
            )
        wanted_ids = set(wanted)
        return [s for s in self.shots if s.id in wanted_ids]


def load_shotlist(path: str | Path, cast: Iterable[str] | Mapping[str, Sequence] | None = None,
                  allow_outside_images: bool = False) -> ShotList:
    """Read and validate a shot list. Raises ShotListError listing every problem.

    cast: the names of the characters that exist (folders of the cast directory), or a mapping
    of each name to its reference images. When given, every character a shot names must be one
    of them (and, with a mapping, have at least one image).
    allow_outside_images: accept images (storyboard, style, control) that lie outside the shot
    list's folder: an absolute path, a `..`, a symlink that resolves outside. Off by default:
    these images are copied into the outputs and the report, so a shot list from someone else
    must not be able to pick any file on the disk.
    """
    path = Path(path)
    fail = _Problems(path)
    issues = fail.items

    raw = _read_bounded(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ShotListError([Issue(path, line, None, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save the sheet as UTF-8 CSV")]) from None
    if not text.strip():
        raise ShotListError([Issue(path, None, None, "the file is empty; it needs a header row and at least one shot")])

    records = _records(path, text)  # (first physical line, fields); CR, LF and CRLF line ends
    start = 0  # skip leading blank lines
    while start < len(records) and not any(c.strip() for c in records[start][1]):
        start += 1
    header_line, header_row = records[start]
    if len(header_row) == 1:
        for delim, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
            if delim in header_row[0]:
                raise ShotListError([Issue(path, header_line, None, f"columns are separated by {name}; keyrender reads comma-separated CSV (export the sheet as CSV with commas)")])

    header = [h.strip().lower() for h in header_row]
    header_lineno = header_line
    seen_cols: dict[str, int] = {}
    for idx, name in enumerate(header):
        if not name:
            fail(f"column {idx + 1} has no name", header_lineno)
        elif name in seen_cols:
            fail(f"column '{name}' appears twice (columns {seen_cols[name] + 1} and {idx + 1})", header_lineno, name)
        else:
            seen_cols[name] = idx
    missing = [c for c in REQUIRED_COLUMNS if c not in seen_cols]
    for c in missing:
        fail(f"required column '{c}' is missing (the header has: {', '.join(h for h in header if h)})", header_lineno, c)
    if "duration" not in seen_cols and "frames" not in seen_cols:
        fail("needs a 'duration' or a 'frames' column", header_lineno)
    unknown = tuple(h for h in header if h and h not in KNOWN_COLUMNS)
    if unknown:  # one warning, however many (a sheet with 20,000 stray columns is one line)
        names = ", ".join(f"'{_clip_name(n)}'" for n in unknown[:MAX_NAMED_UNKNOWN])
        more = f" and {len(unknown) - MAX_NAMED_UNKNOWN} more" if len(unknown) > MAX_NAMED_UNKNOWN else ""
        warnings.warn(f"{path}:{header_lineno}: unknown column{'s' if len(unknown) > 1 else ''} {names}{more} "
                      f"{'are' if len(unknown) > 1 else 'is'} ignored", UnknownColumnWarning, stacklevel=2)
    if missing:
        raise ShotListError(issues)

    data = [(ln, row) for ln, row in records[start + 1:] if any(c.strip() for c in row)]
    if not data:
        fail("the file has a header but no shots", header_lineno)
        raise ShotListError(issues)

    # a mapping (name -> its reference images) also lets a character without images be reported
    cast_names = None if cast is None else (dict(cast) if isinstance(cast, Mapping) else set(cast))
    base = path.parent
    shots: list[Shot] = []
    ids: dict[str, tuple[int, str]] = {}  # case-folded id -> (line, id as written)
    for lineno, row in data:
        swallowed = _swallowed_row(row, len(header))
        if swallowed is not None:
            fail(f"a quoted field that starts on this line runs over {swallowed} more line(s) that look like rows: "
                 "is a closing \" missing? (those rows would not be rendered)", lineno)
            continue
        if len(row) > len(header):
            extra = [c for c in row[len(header):] if c.strip()]
            if extra:
                fail(f"has {len(row)} fields but the header has {len(header)} (a comma inside a field needs quotes)", lineno)
                continue
        values = {name: (row[i].strip() if i < len(row) else "") for name, i in seen_cols.items()}
        shot = _parse_row(values, lineno, base, cast_names, fail, allow_outside_images)
        if shot is None:
            continue
        # (ids are compared case-folded: each shot's folder is named by its id, and on a
        # case-insensitive file system, macOS's and Windows' default, '1a' and '1A' are one folder)
        first = ids.get(shot.id.casefold())
        if first is not None:
            same = first[1] == shot.id
            fail(f"duplicate shot id '{shot.id}' (first on line {first[0]}"
                 + ("" if same else f" as '{first[1]}': shot folders are named by id, and on a case-insensitive "
                    "file system the two would be one folder") + ")", lineno, "shot")
            continue
        ids[shot.id.casefold()] = (lineno, shot.id)
        shots.append(shot)

    scenes = _group_scenes(shots, fail)
    if issues:
        raise ShotListError(sorted(issues, key=lambda i: (i.line or 0)))
    return ShotList(path=path, shots=tuple(shots), scenes=tuple(scenes), unknown_columns=unknown)


MAX_NAMED_UNKNOWN = 10  # unknown columns named in the warning; the rest are counted


def _clip_name(name: str, n: int = 40) -> str:
    return name if len(name) <= n else name[: n - 3] + "..."


MAX_SHOTLIST_BYTES = 16 << 20  # 16 MiB: about 50000 rows; anything larger is not a shot list
MAX_FIELD_CHARS = 131072       # the csv module's own limit, said in the sheet's terms


def _read_bounded(path: Path) -> bytes:
    """The shot list's bytes: a regular file of at most MAX_SHOTLIST_BYTES (not /dev/zero, a
    FIFO or a folder, which would be read until memory runs out or block forever)."""
    import stat

    try:
        st = path.stat()
    except FileNotFoundError:
        raise ShotListError([Issue(path, None, None, "no such file")]) from None
    except OSError as exc:
        raise ShotListError([Issue(path, None, None, f"cannot read: {exc.strerror}")]) from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, pipe or socket)"
        raise ShotListError([Issue(path, None, None, f"is {kind}; give the shot list's CSV file")])
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_SHOTLIST_BYTES + 1)
    except OSError as exc:
        raise ShotListError([Issue(path, None, None, f"cannot read: {exc.strerror}")]) from None
    if len(raw) > MAX_SHOTLIST_BYTES:
        raise ShotListError([Issue(path, None, None, f"is larger than {MAX_SHOTLIST_BYTES >> 20} MiB; that is not a shot list")])
    return raw


def _records(path: Path, text: str) -> list[tuple[int, list[str]]]:
    """The CSV records with the physical line each starts on. Strict quoting: a damaged quote
    is reported with its line instead of silently swallowing the rows after it."""
    # newline="": the reader sees CR, LF and CRLF line ends alike (old Mac exports use CR only)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    prev_end = 0
    try:
        for row in reader:
            records.append((prev_end + 1, row))
            prev_end = reader.line_num
    except csv.Error as exc:
        line, msg = prev_end + 1, str(exc)
        if "field larger than field limit" in msg:
            why = (f"a field is longer than {MAX_FIELD_CHARS} characters (a quote that is never closed "
                   "swallows the rest of the file into one field)")
        elif "unexpected end of data" in msg or "EOF" in msg:
            why = "a quoted field that starts on this line is never closed (a missing \"): the rows after it would be lost"
        else:
            why = f"not valid CSV here ({msg}; a quote inside a field is written as two quotes, and the whole field quoted)"
        raise ShotListError([Issue(path, line, None, why)]) from None
    return records


def _swallowed_row(row: list[str], n_columns: int) -> int | None:
    """How many whole rows a multi-line field holds, when it looks like an unterminated quote
    swallowed them (an inner line with as many commas as a row has); None otherwise."""
    if n_columns < 2:
        return None
    for cell in row:
        if "\n" in cell or "\r" in cell:
            inner = cell.splitlines()[1:]
            rows = sum(1 for ln in inner if ln.count(",") >= n_columns - 1)
            if rows:
                return rows
    return None


def _parse_row(v: dict[str, str], ln: int, base: Path, cast: set[str] | dict[str, list] | None, fail,
               allow_outside: bool = False) -> Shot | None:
    """The shot of one row (its cells by column name), or None when any cell has a problem (reported)."""
    n_before = len(fail)
    row = RowContext(cells=v, line=ln, base=base, cast=cast, allow_outside=allow_outside, fail=fail)
    for column in COLUMNS:  # in reading order: each parser sees the values of the columns above it
        column.read(row)
    if len(fail) > n_before:
        return None
    values = {c.name if c.attr is None else c.attr: row[c.name] for c in COLUMNS if c.attr != ""}
    return Shot(line=ln, row=dict(v), **values)


class _Problems:
    """Collects the issues of one file; called like a function: fail(message, line, column)."""

    def __init__(self, path: Path):
        self.path = path
        self.items: list[Issue] = []

    def __call__(self, message: str, line: int | None = None, column: str | None = None) -> None:
        self.items.append(Issue(self.path, line, column, message))

    def __len__(self) -> int:
        return len(self.items)


def _group_scenes(shots: list[Shot], fail) -> list[Scene]:
    order: dict[str, list[Shot]] = {}
    for s in shots:
        order.setdefault(s.scene, []).append(s)
    scenes = []
    for sid, members in order.items():
        style, style_line = "", None
        style_image, image_line = None, None
        for s in members:
            if s.style:
                if style and s.style != style:
                    fail(f"scene '{sid}' has style '{style}' (line {style_line}); style is locked per scene, so this shot must repeat it or leave it empty", s.line, "style")
                elif not style:
                    style, style_line = s.style, s.line
            if s.style_image:
                if style_image and s.style_image != style_image:
                    fail(f"scene '{sid}' already has style image {style_image.name} (line {image_line}); one per scene", s.line, "style_image")
                elif not style_image:
                    style_image, image_line = s.style_image, s.line
        scenes.append(Scene(id=sid, shots=tuple(members), style=style, style_image=style_image))
    return scenes
