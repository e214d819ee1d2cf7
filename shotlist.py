"""The shot list: the CSV schema, parsing, validation, and the Shot / Scene types.

One row is one shot. Validation reads the whole file and collects every problem before failing,
each naming the file, line, column and value, so a user fixes the sheet in one pass.
This module never imports torch (the dry run and `--help` depend on that).

Schema (header names are case-insensitive; order is free):

| column            | required | meaning |
| ----------------- | -------- | ------- |
| scene             | yes      | scene id; shots of a scene share its style (locked per scene) |
| shot              | yes      | shot id, unique in the file: letters, digits, `_ - .` (it names the output folder) |
| prompt            | yes*     | what the shot shows (*may be empty when every keyframe image is given) |
| negative_prompt   |          | what to avoid |
| characters        |          | cast names, `;`-separated; each must be a folder `cast/<name>/` |
| duration          | one of   | seconds (decimal) |
| frames            | these    | frame count; when both are given they must agree |
| fps               |          | frames per second, default 24; `23.976`, `29.97`, `59.94` mean the exact NTSC rates (24000/1001, ...); `24000/1001` is accepted too |
| keyframes         |          | how many keyframes (>= 2), or their times in seconds `0;1.5;3` (first 0, last = duration); default one per second plus one |
| seed              |          | integer; default derived from the shot id, so a rerun is reproducible |
| style             |          | the scene's style text; every shot of a scene that gives one must give the same |
| style_image       |          | a style reference image for the scene (same rule) |
| width, height     |          | multiples of 8 in [64, 4096]; default: the preset's, or the storyboard's size |
| camera            |          | camera move in words (`slow push in`), added to the prompt |
| keyframe_images   |          | storyboard images, `;`-separated, one per keyframe in order; an empty entry leaves that keyframe to be generated |
| beats             |          | per-keyframe action, `;`-separated: beat j goes to the keyframes nearest its place in the shot (first beat first keyframe, last beat last keyframe) |
| layout            |          | where each character is: `anna:left;ben:right` (left, right, center, top, bottom, full) or `anna:0,0,0.5,1` (x0,y0,x1,y1 in 0..1) |
| control_image     |          | pose/layout control image (ControlNet) |
| control_type      |          | openpose, canny, depth, or none (the image is already a control map); default openpose |
| identity_strength |          | 0..2, how strongly faces are conditioned; default from the preset |
| refine            |          | `on` (default) or `off`: the identity check-and-repair loop for this shot |
| hedge             |          | 0..1, the flow interpolator's hedge for this shot: where A and B warped to t still disagree, mix in up to this share of the plain cross-fade (0: crisp warping everywhere, may tear on fast crossing motion); default the run's (`--hedge`, 0.5) |
| notes             |          | free text, kept in the manifest |

Paths are relative to the CSV file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from keyrender.errors import InputError
from keyrender.imagefile import IMAGE_SUFFIXES, check_image

REQUIRED_COLUMNS = ("scene", "shot", "prompt")
OPTIONAL_COLUMNS = (
    "negative_prompt", "characters", "duration", "frames", "fps", "keyframes", "seed", "style",
    "style_image", "width", "height", "camera", "keyframe_images", "beats", "layout",
    "control_image", "control_type", "identity_strength", "refine", "hedge", "notes",
)
KNOWN_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

DEFAULT_FPS = Fraction(24)
MIN_SIZE, MAX_SIZE = 64, 4096
MAX_FPS = 240
MAX_SECONDS = 600  # a shot longer than ten minutes is a mistake, not a shot
CONTROL_TYPES = ("openpose", "canny", "depth", "none")
NAMED_REGIONS = {
    "full": (0.0, 0.0, 1.0, 1.0),
    "left": (0.0, 0.0, 0.5, 1.0),
    "right": (0.5, 0.0, 1.0, 1.0),
    "center": (0.25, 0.0, 0.75, 1.0),
    "centre": (0.25, 0.0, 0.75, 1.0),
    "top": (0.0, 0.0, 1.0, 0.5),
    "bottom": (0.0, 0.5, 1.0, 1.0),
}
SHOT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# decimal spellings of the NTSC rates -> their exact values
NTSC = {n: Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120)}
# names keyrender writes at the top of the output folder: no shot folder may take them
RESERVED_SHOT_IDS = ("report.html", "timeline.otio")
MAX_SHOT_ID = 100  # it names a folder, and file names inside it (a path component is <= 255 bytes)


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

    def shot(self, shot_id: str) -> Shot:
        for s in self.shots:
            if s.id == shot_id:
                return s
        raise InputError(f"{self.path}: no shot '{shot_id}' (shots: {', '.join(s.id for s in self.shots)})")

    def scene_of(self, shot: Shot) -> Scene:
        return next(sc for sc in self.scenes if sc.id == shot.scene)

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
        return [s for s in self.shots if s.id in set(wanted)]


def parse_fps(text: str) -> Fraction:
    """'24' -> 24, '23.976' -> 24000/1001, '30000/1001' -> exact. ValueError when not a rate."""
    text = text.strip()
    value = parse_number(text)
    if "/" not in text:
        for n, exact in NTSC.items():
            # 23.976, 23.98, 29.97, 59.94 ... are the NTSC rates written with few decimals
            if value != n and abs(value - exact) < Fraction(1, 100):
                value = exact
                break
    if value <= 0:
        raise ValueError("must be positive")
    return value


def default_seed(shot_id: str) -> int:
    return int.from_bytes(hashlib.sha256(shot_id.encode()).digest()[:4], "little") & 0x7FFFFFFF


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
    for name in unknown:
        warnings.warn(f"{path}:{header_lineno}: unknown column '{name}' is ignored", UnknownColumnWarning, stacklevel=2)
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
    ids: dict[str, int] = {}
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
        if shot.id in ids:
            fail(f"duplicate shot id '{shot.id}' (first on line {ids[shot.id]})", lineno, "shot")
            continue
        ids[shot.id] = lineno
        shots.append(shot)

    scenes = _group_scenes(shots, fail)
    if issues:
        raise ShotListError(sorted(issues, key=lambda i: (i.line or 0)))
    return ShotList(path=path, shots=tuple(shots), scenes=tuple(scenes), unknown_columns=unknown)


MAX_SHOTLIST_BYTES = 16 << 20  # 16 MiB: about 50000 rows; anything larger is not a shot list
MAX_FIELD_CHARS = 131072       # the csv module's own limit, said in the sheet's terms
MAX_NUMBER_CHARS = 40
MAX_EXPONENT = 30
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_RATIO = re.compile(r"[+-]?[0-9]{1,18}/[0-9]{1,18}")


def parse_number(text: str) -> Fraction:
    """A decimal (`2`, `1.5`, `-0.25`, `1e3`) or a ratio (`24000/1001`) as an exact Fraction.

    Bounded so that no cell can make validation hang or overflow: at most 40 characters and
    exponents within +-30 (Fraction('1e1000000000') alone would compute a billion-digit integer).
    ValueError (saying why) for anything else, including inf and nan.
    """
    t = text.strip()
    if len(t) > MAX_NUMBER_CHARS:
        raise ValueError(f"more than {MAX_NUMBER_CHARS} characters")
    if _RATIO.fullmatch(t):
        num, den = t.split("/")
        if int(den) == 0:
            raise ValueError("division by zero")
        return Fraction(int(num), int(den))
    if not _DECIMAL.fullmatch(t):
        raise ValueError("not a number")
    mantissa, _, exponent = t.lower().partition("e")
    if exponent and abs(int(exponent)) > MAX_EXPONENT:
        raise ValueError(f"exponent beyond +-{MAX_EXPONENT}")
    return Fraction(t)


def _clip(text: str, n: int = 40) -> str:
    """A cell as quoted in a message: long ones shortened."""
    return text if len(text) <= n else text[: n - 3] + "..."


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


def _number_in(v: dict[str, str], column: str, lo: float, hi: float, ln: int, fail) -> float | None:
    """The optional number in `column`, checked to lie in lo..hi; None when blank or wrong (reported)."""
    if not v.get(column):
        return None
    try:
        x = float(parse_number(v[column]))
    except (ValueError, ZeroDivisionError):
        x = math.nan
    if not lo <= x <= hi:  # NaN fails too
        fail(f"'{v[column]}' is not a number in {lo:g}..{hi:g}", ln, column)
        return None
    return x


def _parse_row(v: dict[str, str], ln: int, base: Path, cast: set[str] | dict[str, list] | None, fail,
               allow_outside: bool = False) -> Shot | None:
    n_before = len(fail)
    shot_id = v.get("shot", "")
    if not shot_id:
        fail("is empty; every shot needs an id", ln, "shot")
    elif not SHOT_ID.match(shot_id):
        fail(f"'{shot_id}' is not a usable id (letters, digits, '_', '-', '.'; it names a folder)", ln, "shot")
    elif len(shot_id) > MAX_SHOT_ID:
        fail(f"'{_clip(shot_id)}' is {len(shot_id)} characters; a shot id is at most {MAX_SHOT_ID} (it names a folder)", ln, "shot")
    elif shot_id.lower() in RESERVED_SHOT_IDS:
        fail(f"'{shot_id}' is reserved: keyrender writes {shot_id.lower()} in the output folder (rename the shot)", ln, "shot")
    scene = v.get("scene", "")
    if not scene:
        fail("is empty; every shot belongs to a scene", ln, "scene")

    fps = DEFAULT_FPS
    if v.get("fps"):
        try:
            fps = parse_fps(v["fps"])
            if fps > MAX_FPS:
                fail(f"'{v['fps']}' is more than {MAX_FPS} frames per second", ln, "fps")
        except (ValueError, ZeroDivisionError) as exc:
            fail(f"'{v['fps']}' is not a frame rate ({exc if 'positive' in str(exc) else 'a positive number like 24, 23.976 or 24000/1001'})", ln, "fps")

    frames = None
    if v.get("frames"):
        frames = _positive_int(v["frames"], ln, "frames", fail)
    duration = None
    if v.get("duration"):
        try:
            duration = parse_number(v["duration"])
            if duration <= 0:
                raise ValueError
        except (ValueError, ZeroDivisionError):
            fail(f"'{v['duration']}' is not a positive number of seconds", ln, "duration")
            duration = None
    if frames is None and duration is None and not v.get("frames") and not v.get("duration"):
        fail("needs 'duration' (seconds) or 'frames'", ln, "duration")
    if duration is not None:
        from_duration = max(1, round(duration * fps))
        if frames is not None and frames != from_duration:
            fail(f"frames={frames} disagrees with duration {v['duration']}s x {float(fps):g} fps = {from_duration} frames; give one of them", ln, "frames")
        frames = from_duration if frames is None else frames
    if frames is not None and frames / fps > MAX_SECONDS:
        fail(f"{frames} frames is {float(frames / fps):.0f} s; a shot is at most {MAX_SECONDS} s", ln, "frames" if v.get("frames") else "duration")

    seed = default_seed(shot_id or f"line{ln}")
    if v.get("seed"):
        try:
            seed = int(v["seed"])
            if not 0 <= seed < 2**63:
                raise ValueError
        except ValueError:
            fail(f"'{_clip(v['seed'])}' is not an integer in 0..2^63-1", ln, "seed")

    size = {}
    for col in ("width", "height"):
        if v.get(col):
            n = _positive_int(v[col], ln, col, fail)
            if n is not None:
                if n % 8:
                    fail(f"{n} is not a multiple of 8 (try {max(8, n // 8 * 8)} or {n // 8 * 8 + 8})", ln, col)
                elif not MIN_SIZE <= n <= MAX_SIZE:
                    fail(f"{n} is outside {MIN_SIZE}..{MAX_SIZE}", ln, col)
                else:
                    size[col] = n

    characters = tuple(c.strip() for c in v.get("characters", "").split(";") if c.strip())
    seen_chars = set()
    for c in characters:
        if c in seen_chars:
            fail(f"names '{c}' twice", ln, "characters")
        seen_chars.add(c)
        if cast is not None and c not in cast:
            known = ", ".join(sorted(cast)) or "none: the cast folder is empty or missing"
            fail(f"unknown character '{c}' (no folder cast/{c}/; the cast has: {known})", ln, "characters")
        elif isinstance(cast, dict) and not cast[c]:
            fail(f"character '{c}' has no reference images (cast/{c}/ holds no {', '.join(IMAGE_SUFFIXES)} file)", ln, "characters")

    images: list[Path | None] = []
    sizes: dict[Path, tuple[int, int]] = {}
    if v.get("keyframe_images"):
        for entry in v["keyframe_images"].split(";"):
            entry = entry.strip()
            images.append(_image_path(entry, base, ln, "keyframe_images", fail, sizes, allow_outside) if entry else None)
        while images and images[-1] is None and not v["keyframe_images"].rstrip().endswith(";"):
            images.pop()

    keyframe_frames: tuple[int, ...] = ()
    if frames is not None:
        keyframe_frames = _keyframes(v.get("keyframes", ""), frames, fps, len(images), ln, fail)
        if images and keyframe_frames and len(images) > len(keyframe_frames):
            fail(f"{len(images)} keyframe images for {len(keyframe_frames)} keyframes", ln, "keyframe_images")
    if keyframe_frames and len(images) < len(keyframe_frames):
        images += [None] * (len(keyframe_frames) - len(images))

    if images and all(images) and not (size.get("width") and size.get("height")) and images[0] in sizes:
        # a storyboard shot takes its size from its first image: the same 64..4096 rule applies
        iw, ih = sizes[images[0]]
        for col, n in (("width", iw), ("height", ih)):
            if col not in size and not MIN_SIZE <= n // 8 * 8 <= MAX_SIZE:
                fail(f"the storyboard image {images[0].name} is {iw}x{ih}: its {col} {n} is outside "
                     f"{MIN_SIZE}..{MAX_SIZE}; give the shot's width and height (the images are scaled to fit)",
                     ln, "keyframe_images")
                break

    prompt = v.get("prompt", "")
    if not prompt and not (images and all(images)):
        fail("is empty; a shot with keyframes to generate needs a prompt", ln, "prompt")

    layout = {}
    if v.get("layout"):
        layout = _layout(v["layout"], characters, ln, fail)

    control_type = (v.get("control_type") or "openpose").lower()
    if control_type not in CONTROL_TYPES:
        fail(f"'{v['control_type']}' is not one of {', '.join(CONTROL_TYPES)}", ln, "control_type")
    control_image = _image_path(v["control_image"], base, ln, "control_image", fail, None, allow_outside) if v.get("control_image") else None
    style_image = _image_path(v["style_image"], base, ln, "style_image", fail, None, allow_outside) if v.get("style_image") else None

    strength = _number_in(v, "identity_strength", 0, 2, ln, fail)
    hedge = _number_in(v, "hedge", 0, 1, ln, fail)

    refine = True
    if v.get("refine"):
        flag = v["refine"].lower()
        if flag in ("on", "yes", "true", "1"):
            refine = True
        elif flag in ("off", "no", "false", "0"):
            refine = False
        else:
            fail(f"'{v['refine']}' is not on or off", ln, "refine")

    if len(fail) > n_before:
        return None
    return Shot(
        id=shot_id, scene=scene, line=ln, prompt=prompt,
        negative_prompt=v.get("negative_prompt", ""), characters=characters,
        frames=frames, fps=fps, keyframe_frames=keyframe_frames, seed=seed,
        style=v.get("style", ""), style_image=style_image,
        width=size.get("width"), height=size.get("height"), camera=v.get("camera", ""),
        keyframe_images=tuple(images),
        beats=tuple(b.strip() for b in v.get("beats", "").split(";") if b.strip()),
        layout=layout, control_image=control_image, control_type=control_type,
        identity_strength=strength, refine=refine, hedge=hedge, notes=v.get("notes", ""), row=dict(v),
    )


class _Problems:
    """Collects the issues of one file; called like a function: fail(message, line, column)."""

    def __init__(self, path: Path):
        self.path = path
        self.items: list[Issue] = []

    def __call__(self, message: str, line: int | None = None, column: str | None = None) -> None:
        self.items.append(Issue(self.path, line, column, message))

    def __len__(self) -> int:
        return len(self.items)


def _positive_int(text: str, ln: int, col: str, fail) -> int | None:
    try:
        f = parse_number(text)
    except (ValueError, ZeroDivisionError) as exc:
        fail(f"'{_clip(text)}' is not a number ({exc})" if str(exc) != "not a number" else f"'{_clip(text)}' is not a number", ln, col)
        return None
    if f.denominator != 1:
        fail(f"'{text}' is not a whole number", ln, col)
        return None
    n = int(f)
    if n <= 0:
        fail(f"{text} must be positive", ln, col)
        return None
    return n


def _image_path(entry: str, base: Path, ln: int, col: str, fail,
                sizes: dict[Path, tuple[int, int]] | None = None, allow_outside: bool = False) -> Path | None:
    p = Path(entry)
    p = p if p.is_absolute() else base / p
    if not allow_outside:
        outside = _outside(entry, p, base)
        if outside:
            fail(f"'{entry}' {outside}, outside the shot list's folder {base.resolve()}: images are read from "
                 "that folder only (to allow it: keyrender run --allow-outside-images, "
                 "RenderOptions.allow_outside_images)", ln, col)
            return None
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        fail(f"'{entry}' is not an image file ({', '.join(IMAGE_SUFFIXES)})", ln, col)
        return None
    try:
        header = check_image(p)  # header, limits and completeness; no pixel decoded
    except InputError as exc:
        reason = getattr(exc, "reason", str(exc))
        fail(f"image '{entry}' not found (looked for {p})" if reason == "not found"
             else f"'{entry}' is not a readable image ({reason})", ln, col)
        return None
    if sizes is not None:
        sizes[p] = (header.width, header.height)
    return p


def _outside(entry: str, p: Path, base: Path) -> str | None:
    """How the image path `entry` (joined to the shot list's folder as `p`) leaves that folder
    (an absolute path, a '..', a symlink), or None when it stays inside."""
    roots = (Path(os.path.abspath(base)), base.resolve())
    lexical = Path(os.path.normpath(os.path.abspath(p)))
    if not any(lexical.is_relative_to(r) for r in roots):
        return "is an absolute path" if Path(entry).is_absolute() else "goes up with '..'"
    try:
        real = p.resolve()
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a link loop: reported as unreadable next
        return None
    if not real.is_relative_to(roots[1]):
        return f"is a link to {real}"
    return None


def _keyframes(text: str, frames: int, fps: Fraction, n_images: int, ln: int, fail) -> tuple[int, ...]:
    """Frame indices of the keyframes: from a count, from times in seconds, or the default."""
    last = frames - 1
    if frames == 1:
        return (0,)
    if not text:
        count = max(2, n_images, int(math.ceil(frames / fps)) + 1)
        return _spread(min(count, frames), last)
    if ";" not in text:
        try:
            count = int(text)
        except ValueError:
            count = None
        if count is not None:
            if count < 2:
                fail(f"{count} keyframes; a shot needs at least 2 (its first and last frame)", ln, "keyframes")
                return ()
            if count > frames:
                fail(f"{count} keyframes for a shot of {frames} frames", ln, "keyframes")
                return ()
            return _spread(count, last)
    out = []
    for part in text.split(";"):
        part = part.strip()
        try:
            t = parse_number(part)
        except (ValueError, ZeroDivisionError):
            fail(f"'{part}' is not a time in seconds (give a count like 4 or times like 0;1.5;3)", ln, "keyframes")
            return ()
        f = round(t * fps)
        if t < 0 or f > frames:
            fail(f"time {part}s is outside the shot (0..{float(frames / fps):g}s)", ln, "keyframes")
            return ()
        out.append(min(f, last))
    if out != sorted(out) or len(set(out)) != len(out):
        fail(f"times '{text}' must increase and fall on different frames at {float(fps):g} fps", ln, "keyframes")
        return ()
    if out[0] != 0 or out[-1] != last:
        fail(f"times '{text}' must start at 0 and end at the shot's end ({float(frames / fps):g}s)", ln, "keyframes")
        return ()
    if len(out) < 2:
        fail("a shot needs at least 2 keyframes (its first and last frame)", ln, "keyframes")
        return ()
    return tuple(out)


def _spread(count: int, last: int) -> tuple[int, ...]:
    return tuple(round(i * last / (count - 1)) for i in range(count))


def _layout(text: str, characters: tuple[str, ...], ln: int, fail) -> dict[str, tuple[float, float, float, float]]:
    out = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, where = part.partition(":")
        name, where = name.strip(), where.strip().lower()
        if not sep or not name:
            fail(f"'{part}' is not name:region (e.g. anna:left or anna:0,0,0.5,1)", ln, "layout")
            continue
        if name not in characters:
            fail(f"'{name}' is not among this shot's characters ({', '.join(characters) or 'none'})", ln, "layout")
            continue
        if where in NAMED_REGIONS:
            out[name] = NAMED_REGIONS[where]
            continue
        try:
            box = tuple(float(x) for x in where.split(","))
        except ValueError:
            box = ()
        if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
            fail(f"region '{where}' for {name} is neither a name ({', '.join(NAMED_REGIONS)}) nor x0,y0,x1,y1 with 0 <= x0 < x1 <= 1", ln, "layout")
            continue
        out[name] = box  # type: ignore[assignment]
    return out


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
