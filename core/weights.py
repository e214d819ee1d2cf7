"""Where model weights come from, for every stage that loads them (keyframes, interpolation).

One place for the rules a user meets when a model loads:

- **offline switch** (`offline`): an explicit True/False (``--offline`` / ``--online``) wins; else
  ``KEYRENDER_OFFLINE`` or ``HF_HUB_OFFLINE`` set to 1/true/yes/on means local files only.
- **caches** (`hub_cache_dir`, `cache_root`): weights live in the Hugging Face hub cache
  (``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), read at call time;
  what keyrender builds itself (tiny models, face packs, identity stores) lives under
  `fsutil.cache_root` (``KEYRENDER_CACHE``, else ``$XDG_CACHE_HOME/keyrender``).
- **model specs** (`WeightSpec`): a hub repo (+ subfolder / file), its size and licence, the files
  a download needs; `source` applies the environment override of a component (the flux pattern:
  a ``KEYRENDER_MODEL_*`` variable naming a hub id or a local folder). The registries of specs
  live with their stage (keyframes.presets.PRESETS, interpolate.generative.MODELS), whose lookups
  (`get_preset`, `model_spec`) fail fast listing the known names.
- **missing weights** (`resolve`, `missing_weights`, `load_errors`): a local path that is not
  there, or a hub id that is not in the cache while offline, raises `ModelNotFoundError` naming
  the model, its size, the ``hf download`` command and the variable that points elsewhere, with
  no network access; a loader's own missing-file errors are turned into the same message.
- **log quieting** (`quiet_hf`): diffusers' and transformers' notices off while a pipeline runs
  inside keyrender's progress display.

Base layer: imports neither torch nor diffusers at module level (the dry run reads the specs).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from keyrender.core.errors import ModelNotFoundError
from keyrender.core.fsutil import cache_root

__all__ = [
    "OFFLINE_VARS",
    "WeightSpec",
    "cache_root",
    "env_flag",
    "hub_cache_dir",
    "load_errors",
    "looks_local",
    "missing_weights",
    "offline",
    "quiet_hf",
    "resolve",
    "source",
]

#: Either of these set to a true value (1, true, yes, on) switches downloads off.
OFFLINE_VARS = ("KEYRENDER_OFFLINE", "HF_HUB_OFFLINE")
_TRUE = {"1", "true", "yes", "on"}

def env_flag(name: str) -> bool:
    """Whether the environment variable `name` is set to a true value (1, true, yes, on)."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def offline(explicit: bool | None = None) -> bool:
    """True when weights must come from local files only: `explicit` when given (``--offline`` /
    ``--online``), else KEYRENDER_OFFLINE or HF_HUB_OFFLINE, read now."""
    if explicit is not None:
        return bool(explicit)
    return any(env_flag(v) for v in OFFLINE_VARS)


def hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> str:
    """The Hugging Face hub cache: `cache_dir` when given, else HF_HUB_CACHE, else $HF_HOME/hub,
    else ~/.cache/huggingface/hub; read from the environment at call time (not import time)."""
    if cache_dir:
        return str(cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home, "hub")


def looks_local(location: str) -> bool:
    """Whether a model location names a local path (absolute, ./, ~, or existing) rather than a hub id."""
    return os.path.isabs(location) or location.startswith((".", "~")) or os.path.exists(location)


@dataclass(frozen=True)
class WeightSpec:
    """Where one component's weights live: a Hugging Face repo (+ optional subfolder / file) and
    roughly how big the download is, so that a missing-weights error can say what to fetch."""

    repo_id: str
    subfolder: str | None = None
    weight_name: str | None = None
    size: str = ""
    license: str = ""
    # The files of the repo that a download needs (`hf download --include` patterns).
    include: tuple[str, ...] = ()
    # The folder of the repo (relative to its root) holding the CLIP image encoder that a plain
    # IP-Adapter needs (transformers' CLIPVisionModelWithProjection: config.json +
    # model.safetensors). None: the adapter needs none (FaceID takes face embeddings).
    image_encoder: str | None = None

    def files(self) -> list[str]:
        """The files of the repo that a download needs, by name (empty: `include` patterns)."""
        out = []
        if self.weight_name:
            out.append(f"{self.subfolder}/{self.weight_name}" if self.subfolder else self.weight_name)
        if self.image_encoder:
            out += [f"{self.image_encoder}/config.json", f"{self.image_encoder}/model.safetensors"]
        return out

    def fetch_command(self) -> str:
        parts = ["hf download", self.repo_id, *self.files()]
        # hf download ignores --include when file names are given
        if not parts[2:]:
            for pattern in self.include:
                parts.append(f'--include "{pattern}"')
        return " ".join(parts)


def source(spec: WeightSpec | None, env_var: str | None, given: str | None = None) -> str | None:
    """Where to load a component from: `given` (an argument), else its environment override
    `env_var`, else the spec's repo id; None when there is nothing."""
    if given:
        return given
    if env_var and os.environ.get(env_var):
        return os.environ[env_var]
    return spec.repo_id if spec is not None else None


def missing_weights(what: str, location: str, spec: WeightSpec | None, where: str,
                    env_var: str | None = None, alternative: str = "") -> ModelNotFoundError:
    """The error for weights that are not there. `what` names the model ("keyframe preset 'sdxl':
    base"), `location` where they were looked for, `where` how ("in the Hugging Face cache ...").
    The message gives the download's size, the `hf download` command (with --local-dir for a
    local path), the variable that points elsewhere and `alternative` (e.g. a smoke-run preset)."""
    size = f" ({spec.size})" if spec is not None and spec.size else ""
    from_env = f" (from {env_var})" if env_var and os.environ.get(env_var) == location else ""
    fetch = ""
    if spec is not None and not looks_local(location):
        fetch = f" Fetch it with: {replace(spec, repo_id=location).fetch_command()}."
    elif spec is not None:
        fetch = f" It is {spec.repo_id}{size}: {spec.fetch_command()} --local-dir {location}."
    point = f" Or set {env_var} to a local folder holding them" if env_var else ""
    tail = (point + (f", {alternative}" if alternative else "") + ".") if point or alternative else ""
    return ModelNotFoundError(f"{what} weights {location!r}{from_env}{size} not found {where}.{fetch}{tail}")


def resolve(what: str, location: str | None, spec: WeightSpec | None, *, offline: bool, cache_dir: str,
            probe_file: str | None = None, env_var: str | None = None, alternative: str = "") -> str:
    """The location to load from: a local file or folder that exists (holding `probe_file` when it
    is a folder), or a hub id that is in the cache (offline) or may be downloaded (online).
    Missing weights raise ModelNotFoundError (`missing_weights`) without any network access."""
    if location is None:
        raise ModelNotFoundError(f"{what}: no model configured")

    def missing(loc: str, where: str) -> ModelNotFoundError:
        return missing_weights(what, loc, spec, where, env_var, alternative)

    if looks_local(location):
        path = Path(location).expanduser()
        if not path.exists():
            raise missing(location, "(no such file or folder)")
        if path.is_dir() and probe_file and not (path / probe_file).exists():
            raise missing(location, f"(the folder has no {probe_file})")
        return str(path)
    if offline:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(location, probe_file or "config.json", cache_dir=cache_dir)
        if not isinstance(hit, str):
            raise missing(location, f"in the Hugging Face cache {cache_dir} (offline mode)")
    return location


@contextlib.contextmanager
def load_errors(what: str, location: str, spec: WeightSpec | None, env_var: str | None = None,
                alternative: str = "", catch: tuple[type[BaseException], ...] = (OSError,)) -> Iterator[None]:
    """Turn the hub's / diffusers' missing-file errors (OSError: LocalEntryNotFound,
    RepositoryNotFound, a folder without its files...; `catch`) into ModelNotFoundError naming
    the model."""
    try:
        yield
    except ModelNotFoundError:
        raise
    except catch as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise missing_weights(what, location, spec, f"or not loadable ({first[:300]})", env_var, alternative) from exc


def place_pipeline(pipe, device: str | None = None, *, cpu_offload: bool = False, vae_tiling: bool = False):
    """Put a loaded diffusers pipeline where it runs and return it (the keyframe generator and the
    video models alike): on `device` (default: CUDA when there is one); with `cpu_offload` on a
    CUDA device, under diffusers' model CPU offload instead (each model moves to the GPU only while
    it runs: Wan 2.1 FLF2V's transformer alone is 33 GB in bfloat16, so the whole pipeline fits no
    24 or 48 GB card otherwise; on the CPU it is ignored); `vae_tiling`: the VAE decodes (and
    encodes) in tiles, so its activations no longer grow with the picture or the clip. Progress
    bars off. torch is imported only to find the default device."""
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if cpu_offload and str(device).startswith("cuda"):
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if vae_tiling:
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@contextlib.contextmanager
def quiet_hf() -> Iterator[None]:
    """Set diffusers' and transformers' logging to errors only for the block; restore after.

    They log notices mid-run that do not apply to how keyrender calls them (FaceID needs no CLIP
    image encoder; the tiny tokenizers' prompts are "too long"; LTX's condition pipeline warns
    about its own timesteps), which would break the progress bars and leak through `-q`."""
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
