"""Atomic file writes: a crash leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed onto `path`.

    The temporary name keeps the extension (or `suffix`) so that writers that pick a format by
    extension (PyAV, OpenCV) still work. On an exception the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = suffix if suffix is not None else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{ext}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would (umask applies)
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and exc.errno is None and _SHORT_WRITE.search(str(exc)):
            # numpy's tofile and some C writers report a full disk as a short write, no errno
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (a short write: {exc})", str(path)) from None
        raise


_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths, Fractions: the things manifests are made of
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    from fractions import Fraction

    if isinstance(obj, Fraction):
        return f"{obj.numerator}/{obj.denominator}"
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def cache_root() -> Path:
    """keyrender's own cache: $KEYRENDER_CACHE, else $XDG_CACHE_HOME/keyrender, else ~/.cache/keyrender."""
    base = os.environ.get("KEYRENDER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "keyrender")
    return Path(base)


def writable_dir(path: str | os.PathLike) -> bool:
    """Whether the folder `path` (there or not yet) can be written to, or created: the nearest
    existing ancestor is a folder we may write into."""
    p = Path(path).absolute()
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """`a` and `b` are one file (the same inode, through links and hard links), or name one path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_output_path(path: str | os.PathLike, *, folder: bool = False, inputs=(), not_inside=(),
                      what: str = "--out") -> None:
    """Before any work: `path` can be written as a file (a folder of files with `folder`), and
    writing it touches no input. InputError naming `what` when `path` is the other kind, a file
    stands where one of its folders must be, it is one of `inputs`, or it lies in one of the
    folders `not_inside` (name, folder) (a plot inside the cast would become a reference photo)."""
    from keyrender.core.errors import InputError

    p = Path(path)
    if p.exists():
        if folder and not p.is_dir():
            raise InputError(f"{what} {p} is a file; it names a folder to write into (choose another {what})")
        if not folder and p.is_dir():
            raise InputError(f"{what} {p} is a folder; it names the file to write (e.g. {p / 'out'}"
                             f"{'.png' if what == '--plot' else '.mp4'})")
    a = p.absolute().parent
    while not a.exists() and a.parent != a:
        a = a.parent
    if a.exists() and not a.is_dir():
        raise InputError(f"{what} {p}: {a} is a file, so {p} cannot be written there (choose another {what})")
    for inp in inputs:
        if inp is not None and (same_file(p, inp) if os.path.lexists(p) else
                                os.path.realpath(p) == os.path.realpath(inp)):
            raise InputError(f"{what} {p} is the input {inp}: writing it would replace the input; "
                             f"choose another {what}")
    real = Path(os.path.realpath(p))
    for name, d in not_inside:
        rd = Path(os.path.realpath(d))
        if real == rd or rd in real.parents:
            raise InputError(f"{what} {p} is inside {name} {d}; choose another {what}")
