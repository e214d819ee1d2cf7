"""Quiet Hugging Face libraries while a pipeline runs inside keyrender's own progress display.

diffusers and transformers log notices mid-run that do not apply to how keyrender calls them
(FaceID needs no CLIP image encoder; the tiny tokenizers' prompts are "too long"; LTX's condition
pipeline warns about its own timesteps). They would break the progress bars and leak through
`-q`. Errors are still shown.
"""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def quiet_hf():
    """Set diffusers' and transformers' logging to errors only for the block; restore after."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    level, tlevel = dlog.get_verbosity(), tlog.get_verbosity()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(level)
        tlog.set_verbosity(tlevel)
