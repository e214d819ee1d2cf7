"""The shot list's columns: one record per column (name, required, default, parser, doc).

`COLUMNS` is the schema. It is listed in the order a row is read: a column's parser gets the cell's
text and the row (`RowContext`), which holds the values of the columns above it, so a cell that
depends on others (the keyframes on the frame count and rate, the layout on the characters) is
read after them. A column whose value ties it to the ones above it also has a `check`, run once its
value is known (the frames and the duration agree; the storyboard images fit the keyframes).
Problems are reported through the row (file:line: column 'x': message) and reading goes on, so a
user fixes the sheet in one pass; a row with any problem becomes no shot.

README's shot-list table documents the same columns; tests/test_shotlist.py checks that the two
agree (names, required, defaults). This module never imports torch or numpy.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Mapping

from keyrender.core.errors import InputError
from keyrender.core.imagefile import IMAGE_SUFFIXES, check_image

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
MAX_NUMBER_CHARS = 40
MAX_EXPONENT = 30
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_RATIO = re.compile(r"[+-]?[0-9]{1,18}/[0-9]{1,18}")


# ---- numbers ------------------------------------------------------------------------------------

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


def _clip(text: str, n: int = 40) -> str:
    """A cell as quoted in a message: long ones shortened."""
    return text if len(text) <= n else text[: n - 3] + "..."


# ---- the registry -------------------------------------------------------------------------------

@dataclass
class RowContext:
    """One row being read: its cells (stripped text by column name), where it is, and the
    values of the columns read so far."""

    cells: Mapping[str, str]
    line: int
    base: Path  # the shot list's folder: image paths are relative to it
    cast: set[str] | dict[str, list] | None
    allow_outside: bool
    fail: Callable[..., None]  # the file's collector: fail(message, line, column)
    values: dict[str, Any] = field(default_factory=dict)
    image_sizes: dict[Path, tuple[int, int]] = field(default_factory=dict)  # storyboard images read

    def __getitem__(self, column: str) -> Any:
        return self.values[column]

    def error(self, message: str, column: str) -> None:
        self.fail(message, self.line, column)


@dataclass(frozen=True)
class Column:
    """One column of the shot list."""

    name: str
    doc: str  # one line, for the reader of the code; README's table says more
    parse: Callable[[str, RowContext], Any] | None = None  # a non-blank cell -> its value; None: the text
    default: Any = ""  # a blank cell's value; a callable computes it from the row (and may report)
    default_doc: str | None = None  # the default as README states it (checked by a test)
    required: bool = False  # the header must have it
    check: Callable[[RowContext], None] | None = None  # run once the value is known: ties it to the columns above
    attr: str | None = None  # the Shot attribute it fills, when not the column's name; "": none

    def read(self, row: RowContext) -> None:
        text = row.cells.get(self.name, "")
        if text:
            value = text if self.parse is None else self.parse(text, row)
        else:
            value = self.default(row) if callable(self.default) else self.default
        row.values[self.name] = value
        if self.check is not None:
            self.check(row)


# ---- the parsers: each gets a non-blank cell and the row, reports problems through the row and
# returns the value the columns below it see (a row with a problem becomes no shot anyway)

def _shot_id(text: str, row: RowContext) -> str:
    if not SHOT_ID.match(text):
        row.error(f"'{text}' is not a usable id (letters, digits, '_', '-', '.'; it names a folder)", "shot")
    elif len(text) > MAX_SHOT_ID:
        row.error(f"'{_clip(text)}' is {len(text)} characters; a shot id is at most {MAX_SHOT_ID} (it names a folder)", "shot")
    elif text.lower() in RESERVED_SHOT_IDS:
        row.error(f"'{text}' is reserved: keyrender writes {text.lower()} in the output folder (rename the shot)", "shot")
    return text


def _empty(message: str, column: str) -> Callable[[RowContext], str]:
    """The default of a column that must not be blank: reports `message`."""
    def default(row: RowContext) -> str:
        row.error(message, column)
        return ""
    return default


def _fps(text: str, row: RowContext) -> Fraction:
    try:
        fps = parse_fps(text)
    except (ValueError, ZeroDivisionError) as exc:
        row.error(f"'{text}' is not a frame rate ({exc if 'positive' in str(exc) else 'a positive number like 24, 23.976 or 24000/1001'})", "fps")
        return DEFAULT_FPS
    if fps > MAX_FPS:
        row.error(f"'{text}' is more than {MAX_FPS} frames per second", "fps")
    return fps


def _positive_int(text: str, row: RowContext, col: str) -> int | None:
    try:
        f = parse_number(text)
    except (ValueError, ZeroDivisionError) as exc:
        row.error(f"'{_clip(text)}' is not a number ({exc})" if str(exc) != "not a number" else f"'{_clip(text)}' is not a number", col)
        return None
    if f.denominator != 1:
        row.error(f"'{text}' is not a whole number", col)
        return None
    n = int(f)
    if n <= 0:
        row.error(f"{text} must be positive", col)
        return None
    return n


def _duration(text: str, row: RowContext) -> Fraction | None:
    try:
        duration = parse_number(text)
        if duration <= 0:
            raise ValueError
    except (ValueError, ZeroDivisionError):
        row.error(f"'{text}' is not a positive number of seconds", "duration")
        return None
    return duration


def _settle_frames(row: RowContext) -> None:
    """After `duration`: one of duration and frames is given, they agree, the shot is at most
    MAX_SECONDS. `frames` becomes the shot's frame count (from the duration when not given)."""
    frames, duration, fps, cells = row["frames"], row["duration"], row["fps"], row.cells
    if frames is None and duration is None and not cells.get("frames") and not cells.get("duration"):
        row.error("needs 'duration' (seconds) or 'frames'", "duration")
    if duration is not None:
        from_duration = max(1, round(duration * fps))
        if frames is not None and frames != from_duration:
            row.error(f"frames={frames} disagrees with duration {cells['duration']}s x {float(fps):g} fps = {from_duration} frames; give one of them", "frames")
        frames = from_duration if frames is None else frames
    if frames is not None and frames / fps > MAX_SECONDS:
        row.error(f"{frames} frames is {float(frames / fps):.0f} s; a shot is at most {MAX_SECONDS} s", "frames" if cells.get("frames") else "duration")
    row.values["frames"] = frames


def _seed(text: str, row: RowContext) -> int:
    try:
        seed = int(text)
        if not 0 <= seed < 2**63:
            raise ValueError
    except ValueError:
        row.error(f"'{_clip(text)}' is not an integer in 0..2^63-1", "seed")
        return _default_seed(row)
    return seed


def _default_seed(row: RowContext) -> int:
    return default_seed(row["shot"] or f"line{row.line}")


def _size(col: str) -> Callable[[str, RowContext], int | None]:
    def parse(text: str, row: RowContext) -> int | None:
        n = _positive_int(text, row, col)
        if n is None:
            return None
        if not MIN_SIZE <= n <= MAX_SIZE:  # first: a suggestion must lie in the range
            row.error(f"{n} is outside {MIN_SIZE}..{MAX_SIZE} (a multiple of 8)", col)
        elif n % 8:
            row.error(f"{n} is not a multiple of 8 (try {n // 8 * 8} or {n // 8 * 8 + 8})", col)
        else:
            return n
        return None
    return parse


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _characters(text: str, row: RowContext) -> tuple[str, ...]:
    # names are compared in Unicode NFC and given as the cast folder spells them: 'José' typed as
    # e + combining accent (a Mac's file names, some keyboards) is the folder 'José'
    cast, seen = row.cast, set()
    folders = {} if cast is None else {_nfc(n): n for n in cast}
    characters = tuple(folders.get(_nfc(c.strip()), _nfc(c.strip())) for c in text.split(";") if c.strip())
    for c in characters:
        if c in seen:
            row.error(f"names '{c}' twice", "characters")
        seen.add(c)
        if cast is not None and c not in cast:
            known = ", ".join(sorted(cast)) or "none: the cast folder is empty or missing"
            row.error(f"unknown character '{c}' (no folder cast/{c}/; the cast has: {known})", "characters")
        elif isinstance(cast, dict) and not cast[c]:
            row.error(f"character '{c}' has no reference images (cast/{c}/ holds no {', '.join(IMAGE_SUFFIXES)} file)", "characters")
    return characters


def _image_path(entry: str, row: RowContext, col: str, sizes: dict[Path, tuple[int, int]] | None = None) -> Path | None:
    """The image `entry` names, relative to the shot list's folder, checked to stay in that folder
    (unless allowed) and to be a complete image within the limits (its header read, no pixel
    decoded); None when it is not (reported). `sizes` receives its width and height."""
    base = row.base
    p = Path(entry)
    p = p if p.is_absolute() else base / p
    if not row.allow_outside:
        outside = _outside(entry, p, base)
        if outside:
            row.error(f"'{entry}' {outside}, outside the shot list's folder {base.resolve()}: images are read from "
                      "that folder only (to allow it: keyrender run --allow-outside-images, "
                      "RenderOptions.allow_outside_images)", col)
            return None
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        row.error(f"'{entry}' is not an image file ({', '.join(IMAGE_SUFFIXES)})", col)
        return None
    try:
        header = check_image(p)  # header, limits and completeness; no pixel decoded
    except InputError as exc:
        reason = getattr(exc, "reason", str(exc))
        row.error(f"image '{entry}' not found (looked for {p})" if reason == "not found"
                  else f"'{entry}' is not a readable image ({reason})", col)
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


def _image(col: str) -> Callable[[str, RowContext], Path | None]:
    return lambda text, row: _image_path(text, row, col)


def _keyframe_images(text: str, row: RowContext) -> list[Path | None]:
    images = [_image_path(e.strip(), row, "keyframe_images", row.image_sizes) if e.strip() else None
              for e in text.split(";")]
    while images and images[-1] is None and not text.rstrip().endswith(";"):
        images.pop()
    return images


def _keyframes(text: str, row: RowContext) -> tuple[int, ...]:
    """Frame indices of the keyframes: from a count, from times in seconds, or the default (one
    per second plus one, at least one per storyboard image); () when the frame count is unknown."""
    frames, fps = row["frames"], row["fps"]
    if frames is None:
        return ()
    last = frames - 1
    if frames == 1:
        return (0,)
    if not text:
        count = max(2, len(row["keyframe_images"]), int(math.ceil(frames / fps)) + 1)
        return _spread(min(count, frames), last)
    if ";" not in text:
        try:
            count = int(text)
        except ValueError:
            count = None
        if count is not None:
            if count < 2:
                row.error(f"{count} keyframes; a shot needs at least 2 (its first and last frame)", "keyframes")
                return ()
            if count > frames:
                row.error(f"{count} keyframes for a shot of {frames} frames", "keyframes")
                return ()
            return _spread(count, last)
    out = []
    for part in text.split(";"):
        part = part.strip()
        try:
            t = parse_number(part)
        except (ValueError, ZeroDivisionError):
            row.error(f"'{part}' is not a time in seconds (give a count like 4 or times like 0;1.5;3)", "keyframes")
            return ()
        f = round(t * fps)
        if t < 0 or f > frames:
            row.error(f"time {part}s is outside the shot (0..{float(frames / fps):g}s)", "keyframes")
            return ()
        out.append(min(f, last))
    if out != sorted(out) or len(set(out)) != len(out):
        row.error(f"times '{text}' must increase and fall on different frames at {float(fps):g} fps", "keyframes")
        return ()
    if out[0] != 0 or out[-1] != last:
        row.error(f"times '{text}' must start at 0 and end at the shot's end ({float(frames / fps):g}s)", "keyframes")
        return ()
    if len(out) < 2:
        row.error("a shot needs at least 2 keyframes (its first and last frame)", "keyframes")
        return ()
    return tuple(out)


def _spread(count: int, last: int) -> tuple[int, ...]:
    return tuple(round(i * last / (count - 1)) for i in range(count))


def _fit_storyboard(row: RowContext) -> None:
    """After `keyframes`: at most one storyboard image per keyframe (the missing ones are
    generated), and a storyboard shot without a width and height takes a usable size from its
    first image."""
    images, keyframes = row["keyframe_images"], row["keyframes"]
    if images and keyframes and len(images) > len(keyframes):
        row.error(f"{len(images)} keyframe images for {len(keyframes)} keyframes", "keyframe_images")
    if keyframes and len(images) < len(keyframes):
        images += [None] * (len(keyframes) - len(images))
    if images and all(images) and not (row["width"] and row["height"]) and images[0] in row.image_sizes:
        # a storyboard shot takes its size from its first image: the same 64..4096 rule applies
        iw, ih = row.image_sizes[images[0]]
        for col, n in (("width", iw), ("height", ih)):
            if row[col] is None and not MIN_SIZE <= n // 8 * 8 <= MAX_SIZE:
                row.error(f"the storyboard image {images[0].name} is {iw}x{ih}: its {col} {n} is outside "
                          f"{MIN_SIZE}..{MAX_SIZE}; give the shot's width and height (the images are scaled to fit)",
                          "keyframe_images")
                break
    row.values["keyframe_images"] = tuple(images)


def _prompt_default(row: RowContext) -> str:
    images = row["keyframe_images"]
    if not (images and all(images)):
        row.error("is empty; a shot with keyframes to generate needs a prompt", "prompt")
    return ""


def _layout(text: str, row: RowContext) -> dict[str, tuple[float, float, float, float]]:
    characters = row["characters"]
    out = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, where = part.partition(":")
        name, where = name.strip(), where.strip().lower()
        name = {_nfc(c): c for c in characters}.get(_nfc(name), name)  # as the characters column spells it
        if not sep or not name:
            row.error(f"'{part}' is not name:region (e.g. anna:left or anna:0,0,0.5,1)", "layout")
            continue
        if name not in characters:
            row.error(f"'{name}' is not among this shot's characters ({', '.join(characters) or 'none'})", "layout")
            continue
        if where in NAMED_REGIONS:
            out[name] = NAMED_REGIONS[where]
            continue
        try:
            box = tuple(float(x) for x in where.split(","))
        except ValueError:
            box = ()
        if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
            row.error(f"region '{where}' for {name} is neither a name ({', '.join(NAMED_REGIONS)}) nor x0,y0,x1,y1 with 0 <= x0 < x1 <= 1", "layout")
            continue
        out[name] = box  # type: ignore[assignment]
    return out


def _control_type(text: str, row: RowContext) -> str:
    if text.lower() not in CONTROL_TYPES:
        row.error(f"'{text}' is not one of {', '.join(CONTROL_TYPES)}", "control_type")
    return text.lower()


def _number_in(col: str, lo: float, hi: float) -> Callable[[str, RowContext], float | None]:
    def parse(text: str, row: RowContext) -> float | None:
        try:
            x = float(parse_number(text))
        except (ValueError, ZeroDivisionError):
            x = math.nan
        if not lo <= x <= hi:  # NaN fails too
            row.error(f"'{text}' is not a number in {lo:g}..{hi:g}", col)
            return None
        return x
    return parse


def _on_off(col: str) -> Callable[[str, RowContext], bool]:
    def parse(text: str, row: RowContext) -> bool:
        flag = text.lower()
        if flag in ("off", "no", "false", "0"):
            return False
        if flag not in ("on", "yes", "true", "1"):
            row.error(f"'{text}' is not on or off", col)
        return True
    return parse


def _list(text: str, row: RowContext) -> tuple[str, ...]:
    return tuple(b.strip() for b in text.split(";") if b.strip())


COLUMNS: tuple[Column, ...] = (
    Column("shot", "shot id, unique in the file: letters, digits, `_ - .` (it names the output folder)",
           _shot_id, _empty("is empty; every shot needs an id", "shot"), required=True, attr="id"),
    Column("scene", "scene id; the shots of a scene share its style (locked per scene)",
           None, _empty("is empty; every shot belongs to a scene", "scene"), required=True),
    Column("fps", "frames per second; 23.976, 29.97, 59.94 mean the exact NTSC rates; 24000/1001 works too",
           _fps, DEFAULT_FPS, "24"),
    Column("frames", "frame count (this or duration); when both are given they must agree", lambda t, row: _positive_int(t, row, "frames"), None),
    Column("duration", "seconds (this or frames); frames = round(duration x fps)", _duration, None,
           check=_settle_frames, attr=""),
    Column("seed", "integer; keyframe seeds derive from it", _seed, _default_seed, "derived from the shot id"),
    Column("width", "multiple of 8 in 64..4096", _size("width"), None, "the storyboard's size, else the preset's"),
    Column("height", "multiple of 8 in 64..4096", _size("height"), None, "the storyboard's size, else the preset's"),
    Column("characters", "cast names, `;`-separated; each a folder cast/<name>/", _characters, ()),
    Column("keyframe_images", "storyboard images, `;`-separated, one per keyframe; an empty entry is generated",
           _keyframe_images, lambda row: []),
    Column("keyframes", "a count (>= 2), or times in seconds `0;1.5;3` (first 0, last the shot's end)",
           _keyframes, lambda row: _keyframes("", row), "one per second, plus one", check=_fit_storyboard,
           attr="keyframe_frames"),
    Column("prompt", "what the shot shows (may be blank when every keyframe image is given)",
           None, _prompt_default, required=True),
    Column("layout", "where each character is: `anna:left;ben:right` or `anna:0,0,0.5,1`", _layout, lambda row: {}),
    Column("control_type", "openpose, canny, depth (run through that preprocessor) or none (already a control map)",
           _control_type, "openpose", "openpose"),
    Column("control_image", "a pose/layout control image (ControlNet)", _image("control_image"), None),
    Column("style_image", "a style reference image for the scene (one per scene)", _image("style_image"), None),
    Column("identity_strength", "0..2, how strongly faces are conditioned", _number_in("identity_strength", 0, 2),
           None, "from the preset"),
    Column("hedge", "0..1, the flow in-betweens' share of cross-fade where the warps disagree",
           _number_in("hedge", 0, 1), None, "the run's --hedge (0.5)"),
    Column("refine", "`on` or `off`: the identity check-and-repair loop for this shot", _on_off("refine"), True, "on"),
    Column("storyboard_repair", "`on` or `off`: whether the identity loop may repaint, by diffusion, the "
           "in-betweens of a span between two storyboard images", _on_off("storyboard_repair"), False, "off"),
    Column("negative_prompt", "what to avoid"),
    Column("style", "the scene's style text; every shot of a scene that gives one gives the same"),
    Column("camera", "the camera move in words, added to the prompt"),
    Column("beats", "per-keyframe action, `;`-separated, spread over the keyframes", _list, ()),
    Column("notes", "free text, kept in the manifest"),
)

REQUIRED_COLUMNS = tuple(c.name for c in COLUMNS if c.required)
OPTIONAL_COLUMNS = tuple(c.name for c in COLUMNS if not c.required)
KNOWN_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
