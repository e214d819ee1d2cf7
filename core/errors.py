"""keyrender's exception types and the exit codes the CLI maps them to.

Every message names what it is about: the file, the line and column, the shot, the character or
the model folder, so that a user can fix the input without reading a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_SHOTS_FAILED = 3


class KeyrenderError(Exception):
    """Base of every error keyrender raises on purpose."""

    exit_code = EXIT_FAILED


class InputError(KeyrenderError):
    """The user's input (shot list, cast, images, options) is wrong. Exit code 2."""

    exit_code = EXIT_BAD_INPUT


class ModelNotFoundError(InputError):
    """A model's weights are not where they were looked for; the message says how to get them."""


#: errno values of an output that cannot take more: a full disk, an exhausted quota, a read-only mount
OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class OutputError(KeyrenderError):
    """The output folder cannot take the run: read-only, a full disk, or another run holds it.
    The run stops with one message (exit 1) instead of failing every shot the same way."""


def output_error(exc: OSError, out: "str | os.PathLike", advice: str | None = None) -> OutputError:
    """One message for an output folder that cannot be written, naming the cause plainly.
    `advice`: what the user does next (default: a run's)."""
    what = {errno.ENOSPC: "the disk is full (no space left on device)",
            errno.EDQUOT: "the disk quota is exhausted",
            errno.EROFS: "it is on a read-only file system",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied"}.get(exc.errno or 0)
    what = what or (exc.strerror or str(exc))
    where = f" ({exc.filename})" if exc.filename else ""
    advice = advice or ("Finished shots are kept; free space or choose another --out, then run again "
                        "(done shots are not rendered twice)")
    return OutputError(f"cannot write into {out}: {what}{where}. {advice}")


@contextlib.contextmanager
def output_errors(out: "str | os.PathLike", advice: str | None = None):
    """Inside: an OSError that means the output cannot be written (full disk, quota, read-only,
    or permission denied on `out` or inside it) becomes one OutputError naming the cause (exit 1),
    not a traceback. Any other OSError passes through."""
    try:
        yield
    except OSError as exc:
        inside = exc.filename is not None and Path(os.path.abspath(exc.filename)).is_relative_to(
            Path(os.path.abspath(out)).parent)
        if not (exc.errno in OUTPUT_ERRNOS or (exc.errno in (errno.EACCES, errno.EPERM) and inside)):
            raise
        raise output_error(exc, out, advice=advice) from None


class OutputFolderError(InputError):
    """The output folder cannot take this run as it is (a link where keyrender would write, a file
    of the user's under a name keyrender writes, another shot list's renders, an input among the
    outputs): every problem at once, before anything is written. Exit code 2."""

    def __init__(self, out: "str | os.PathLike", problems: list[str]):
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} with the output folder {out}:\n"
                         + "\n".join(f"  {p}" for p in self.problems))


class ShotFailedError(KeyrenderError):
    """One shot could not be rendered; the others go on. Carries the shot id."""

    def __init__(self, shot: str, reason: str):
        super().__init__(f"shot {shot}: {reason}")
        self.shot = shot
        self.reason = reason
