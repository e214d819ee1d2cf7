"""keyrender's exception types and the exit codes the CLI maps them to.

Every message names what it is about: the file, the line and column, the shot, the character or
the model folder, so that a user can fix the input without reading a traceback.
"""

from __future__ import annotations

import errno

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


class ShotFailedError(KeyrenderError):
    """One shot could not be rendered; the others go on. Carries the shot id."""

    def __init__(self, shot: str, reason: str):
        super().__init__(f"shot {shot}: {reason}")
        self.shot = shot
        self.reason = reason
