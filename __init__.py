"""keyrender: render a shot list into video with characters that stay the same person.

    import keyrender
    result = keyrender.render("shotlist.csv", keyrender.RenderOptions(out="renders"))
    print(result.exit_code, result.report)

The names below load on first use (PEP 562), so `import keyrender` imports no torch.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "render": ("keyrender.pipeline", "render"),
    "plan": ("keyrender.pipeline", "plan"),
    "RenderOptions": ("keyrender.shot.options", "RenderOptions"),
    "RunResult": ("keyrender.core.jobs", "RunResult"),
    "ShotResult": ("keyrender.core.jobs", "ShotResult"),
    "Manifest": ("keyrender.outputs.manifest", "Manifest"),
    "LocalExecutor": ("keyrender.pipeline", "LocalExecutor"),
    "RayExecutor": ("keyrender.pipeline", "RayExecutor"),
    "load_shotlist": ("keyrender.core.shotlist", "load_shotlist"),
    "write_report": ("keyrender.outputs.report", "write_report"),
    "write_otio": ("keyrender.outputs.timeline", "write_otio"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'keyrender' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
