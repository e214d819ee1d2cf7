"""The identity store: identities saved next to the cast, rebuilt only when something changed.

Layout (beside the characters' folders, hidden so `find_cast` skips it), one folder per face
model (its label: `dlib`, `buffalo_l`, a pack folder's name), so that the judge's identities and
the conditioning model's (IP-Adapter FaceID needs insightface embeddings) live side by side:

    cast/.keyrender/identities/<model>/<name>.npz    embeddings (N, D) float32
    cast/.keyrender/identities/<model>/<name>.json   metadata: face model, metric, threshold,
                                             spread, each reference's file name + sha256 + size
                                             + mtime, skipped references with the reason, the
                                             sha256 of the .npz (so a torn pair reads as stale),
                                             and `checksum`: the sha256 of all of that metadata,
                                             so an edited threshold reads as damaged and is
                                             rebuilt from the references (it does not stop
                                             someone who recomputes the checksum)

A store whose folders are symlinks (`cast/.keyrender -> /elsewhere`, shipped with a project) is
neither read nor written: the identities go to keyrender's cache as for a read-only cast.

An identity is stale when its files are missing, unreadable or damaged (a checksum that does not
match: `why_stale` says "damaged: ..."), saved in another store format, the face model's name differs
(other weights or detector settings under the same label),
or the set of reference files or any file's content (sha256; size + mtime are a shortcut to
skip rehashing untouched files) differs. Loading needs numpy and json only: no torch, no face
model.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from keyrender.core.errors import InputError
from keyrender.core.fsutil import atomic_path, atomic_write_json, cache_root, json_default, sha256_file, writable_dir

from .base import FaceEmbedder
from .cast import check_cast_name, find_cast
from .identity import Identity, Reference

STORE_DIR = Path(".keyrender") / "identities"
FORMAT_VERSION = 3  # 2: one folder per face model, the metric saved; 3: the metadata's checksum


def model_label(model_name: str) -> str:
    """The store folder of a face model name: its label (before ':'), made safe for a path."""
    label = model_name.split(":", 1)[0] or "model"
    return re.sub(r"[^A-Za-z0-9._-]", "_", label).lstrip(".") or "model"


@dataclass(frozen=True)
class BuildEvent:
    """What `IdentityStore.build` reports through its progress callback.

    action: "cached" (up to date, loaded), "built" (embedded anew), "skipped-reference"
    (detail names the file and why) or "failed" (no usable reference; detail says why).
    """

    name: str
    action: str
    detail: str = ""


def read_image(path: Path) -> np.ndarray:
    """An RGB uint8 image from disk; InputError naming the file when it cannot be read."""
    from keyrender.outputs.media import load_image  # the package's one image reader (EXIF, limits)

    return load_image(path)


def fallback_store_dir(cast_dir: str | Path) -> Path:
    """Where the identities of a read-only cast folder go: keyrender's cache, one folder per cast
    (by its absolute path)."""
    import hashlib

    key = hashlib.sha256(str(Path(cast_dir).resolve()).encode()).hexdigest()[:16]
    return cache_root() / "identities" / key


class IdentityStore:
    """Identities of the characters in `cast_dir`, cached in `cast_dir/.keyrender/identities`,
    or, when the cast folder is read-only (a shared drive), in `fallback_store_dir(cast_dir)`;
    a store that someone with write access built in the cast folder is still read then."""

    def __init__(self, cast_dir: str | Path, *, threshold: float | None = None):
        self.cast_dir = Path(cast_dir)
        local = self.cast_dir / STORE_DIR
        linked = _linked_store(self.cast_dir)
        self.dir = local if writable_dir(local) and not linked else fallback_store_dir(self.cast_dir)
        self._read_dirs = [self.dir] + ([local] if self.dir != local and not linked else [])
        self.threshold = threshold

    # -- the cast ----------------------------------------------------------------------------
    def cast(self) -> dict[str, list[Path]]:
        if not self.cast_dir.is_dir():
            raise InputError(f"cast folder {self.cast_dir} does not exist (expected "
                             f"{self.cast_dir}/<character>/<reference images>)")
        cast = find_cast(self.cast_dir)
        if not cast:
            raise InputError(f"cast folder {self.cast_dir} has no character folders (expected "
                             f"{self.cast_dir}/<character>/<reference images>)")
        return cast

    def _paths(self, name: str, model: str) -> tuple[Path, Path]:
        check_cast_name(name)
        d = self.dir / model_label(model)
        return d / f"{name}.json", d / f"{name}.npz"

    def _model_dirs(self, model: str | None) -> list[Path]:
        """Folders to read `model`'s identities from (None: every model's, the default judge's
        first, then by label)."""
        if model is not None:
            return [d / model_label(model) for d in self._read_dirs]
        from .backend import DEFAULT_FACE_MODEL

        found = [sub for d in self._read_dirs if d.is_dir() for sub in sorted(d.iterdir()) if sub.is_dir()]
        return sorted(found, key=lambda p: p.name != DEFAULT_FACE_MODEL)

    def models(self) -> list[str]:
        """Labels of the face models with identities in the store."""
        return sorted({p.name for p in self._model_dirs(None)})

    def names(self, model: str | None = None) -> list[str]:
        """Names of the identities saved in the store (for `model`, or for any model)."""
        return sorted({p.stem for d in self._model_dirs(model) if d.is_dir()
                       for p in d.glob("*.json") if not p.name.startswith(".")})

    # -- load --------------------------------------------------------------------------------
    def _read(self, name: str, model: str | None = None) -> tuple[dict, np.ndarray] | None:
        return self._lookup(name, model)[0]

    def _lookup(self, name: str, model: str | None = None) -> tuple[tuple[dict, np.ndarray] | None, str | None]:
        """(the saved identity, None), or (None, why it cannot be used: damaged, another format)
        or (None, None) when none is saved."""
        check_cast_name(name)  # a name is never a path: nothing outside the store is read
        why = None
        for d in self._model_dirs(model):
            got = self._read_from(d / f"{name}.json", d / f"{name}.npz")
            if isinstance(got, tuple):
                return got, None
            why = why or got
        return None, why

    @staticmethod
    def _read_from(meta_path: Path, npz_path: Path) -> tuple[dict, np.ndarray] | str | None:
        """The identity saved at these paths; None when there is none; a reason when it cannot
        be used (damaged: its checksums do not match; another store format)."""
        import hashlib

        if not meta_path.exists() and not npz_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            raw = npz_path.read_bytes()
        except (OSError, ValueError) as exc:
            return f"damaged: {meta_path.name} or {npz_path.name} cannot be read ({type(exc).__name__})"
        if not isinstance(meta, dict):
            return f"damaged: {meta_path.name} is not an identity"
        if meta.get("version") != FORMAT_VERSION:
            return f"saved in store format {meta.get('version')!r}, this keyrender reads {FORMAT_VERSION}"
        if meta.get("checksum") != metadata_checksum(meta):
            return f"damaged: {meta_path.name} does not match its checksum (edited?)"
        if meta.get("npz_sha256") != hashlib.sha256(raw).hexdigest():
            return f"damaged: {npz_path.name} does not match the checksum in {meta_path.name}"
        try:
            with np.load(io.BytesIO(raw)) as z:
                emb = np.asarray(z["embeddings"], np.float32)
        except (OSError, ValueError, KeyError):
            return f"damaged: {npz_path.name} holds no embeddings"
        return meta, emb

    def load(self, name: str, model: str | None = None) -> Identity:
        """The saved identity of `name` for face model `model` (a name or label; None: the
        default judge's if saved, else any), whether or not it is stale (see `is_stale`)."""
        got, why = self._lookup(name, model)
        if got is None:
            which = f" for face model {model_label(model)!r}" if model else ""
            state = f"the saved identity of character {name!r}{which} is {why}" if why else \
                f"no saved identity for character {name!r}{which}"
            raise InputError(f"{state} (store {self.dir}): run `keyrender identity build {self.cast_dir}`")
        meta, emb = got
        refs = tuple(Reference(file=r["file"], sha256=r["sha256"], size=r.get("size", 0),
                               mtime_ns=r.get("mtime_ns", 0),
                               box=tuple(r["box"]) if r.get("box") else None, score=r.get("score"))
                     for r in meta["references"])
        ident = Identity.from_embeddings(
            meta["name"], emb, refs, meta["model"],
            skipped=tuple((s["file"], s["reason"]) for s in meta.get("skipped", ())),
            metric=meta.get("metric", "cosine"),
        )
        # the threshold is calibrated again from the saved embeddings (the saved one is a record):
        # an identity saved under an older rule is judged by the current one without a rebuild
        if self.threshold is not None:
            ident = ident.with_threshold(self.threshold)
        return ident

    def load_all(self, model: str | None = None) -> dict[str, Identity]:
        return {n: self.load(n, model) for n in self.names(model)}

    # -- staleness ---------------------------------------------------------------------------
    def is_stale(self, name: str, model_name: str | None) -> bool:
        """True when `name` must be rebuilt for `model_name` (None: any model will do)."""
        return self.why_stale(name, model_name) is not None

    def why_stale(self, name: str, model_name: str | None) -> str | None:
        got, why = self._lookup(name, model_name)
        if got is None:
            return why or "not built"
        meta, _ = got
        if model_name is not None and meta.get("model") != model_name:
            return f"built with face model {meta.get('model')!r}, now {model_name!r}"
        folder = self.cast_dir / name
        files = find_cast(self.cast_dir).get(name)
        if files is None:
            return f"character folder {folder} is gone"
        known = {r["file"]: r for r in meta["references"]}
        known.update({s["file"]: s for s in meta.get("skipped", ())})
        current = {p.name for p in files}
        if current != set(known):
            added, removed = sorted(current - set(known)), sorted(set(known) - current)
            parts = ([f"added {', '.join(added)}"] if added else []) + \
                    ([f"removed {', '.join(removed)}"] if removed else [])
            return "references changed: " + "; ".join(parts)
        for p in files:
            rec = known[p.name]
            st = p.stat()
            if rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns:
                continue
            if rec.get("sha256") != sha256_file(p):
                return f"reference {p.name} changed"
        return None

    # -- build -------------------------------------------------------------------------------
    def build(self, embedder: FaceEmbedder, names: Iterable[str] | None = None,
              progress: Callable[[BuildEvent], None] | None = None) -> dict[str, Identity]:
        """Identities for `names` (default: the whole cast), rebuilding only the stale ones.

        A reference with no face or several faces, or that cannot be read, is skipped and
        reported (progress event "skipped-reference", and kept in the identity's `skipped`).
        A character with no usable reference raises InputError (after the others are saved).
        """
        cast = self.cast()
        wanted = list(cast) if names is None else list(dict.fromkeys(names))
        unknown = [n for n in wanted if n not in cast]
        if unknown:
            raise InputError(f"unknown character(s) {', '.join(unknown)} in {self.cast_dir}: the "
                             f"cast has {', '.join(cast) or 'nobody'}")
        report = progress or (lambda event: None)
        out: dict[str, Identity] = {}
        errors: list[str] = []
        for name in wanted:
            if not self.is_stale(name, embedder.name):
                out[name] = self.load(name, embedder.name)
                report(BuildEvent(name, "cached"))
                continue
            try:
                ident, skipped_sha = self._build_one(name, cast[name], embedder, report)
            except InputError as exc:
                errors.append(str(exc))
                report(BuildEvent(name, "failed", str(exc)))
                continue
            self._save(ident, skipped_sha)
            if self.threshold is not None:
                ident = ident.with_threshold(self.threshold)
            out[name] = ident
            report(BuildEvent(name, "built", f"{len(ident.references)} reference(s)"))
        if errors:
            raise InputError("; ".join(errors))
        return out

    def _build_one(self, name: str, files: list[Path], embedder: FaceEmbedder,
                   report: Callable[[BuildEvent], None]) -> tuple[Identity, dict[str, str | None]]:
        folder = self.cast_dir / name
        if not files:
            raise InputError(f"character {name!r} has no reference images in {folder} "
                             "(.jpg, .jpeg, .png, .webp, .bmp)")
        refs, embs, skipped = [], [], []

        def skip(p: Path, reason: str, sha: str | None = None) -> None:
            skipped.append((p.name, reason, sha))
            report(BuildEvent(name, "skipped-reference", f"{folder / p.name}: {reason}"))

        images, readable = [], []
        for p in files:
            try:
                images.append(read_image(p))
                readable.append(p)
            except InputError:
                skip(p, "cannot read image", sha256_file(p))
        found = embedder.faces_batch(images) if images else []
        for p, faces in zip(readable, found):
            sha = sha256_file(p)
            if not faces:
                skip(p, "no face found", sha)
                continue
            if len(faces) > 1:
                skip(p, f"{len(faces)} faces found, expected one", sha)
                continue
            st = p.stat()
            refs.append(Reference(p.name, sha, st.st_size, st.st_mtime_ns,
                                  tuple(float(v) for v in faces[0].box), float(faces[0].score)))
            embs.append(faces[0].embedding)
        if not refs:
            why = "; ".join(f"{f}: {r}" for f, r, _ in skipped)
            raise InputError(f"character {name!r} has no usable reference in {folder} ({why})")
        ident = Identity.from_embeddings(name, np.stack(embs), tuple(refs), embedder.name,
                                         skipped=tuple((f, r) for f, r, _ in skipped),
                                         metric=getattr(embedder, "metric", "cosine"))
        # the skipped files' hashes are kept too, so that fixing one triggers a rebuild
        return ident, {f: s for f, _, s in skipped}

    def _save(self, ident: Identity, skipped_sha: dict[str, str | None]) -> None:
        import hashlib

        meta_path, npz_path = self._paths(ident.name, ident.model)
        buf = io.BytesIO()
        np.savez(buf, embeddings=ident.embeddings.astype(np.float32))
        raw = buf.getvalue()
        with atomic_path(npz_path) as tmp:
            tmp.write_bytes(raw)
        meta = {"version": FORMAT_VERSION, **ident.to_json(),
                "npz_sha256": hashlib.sha256(raw).hexdigest()}
        for s in meta["skipped"]:
            s["sha256"] = skipped_sha.get(s["file"])
            path = self.cast_dir / ident.name / s["file"]
            if path.exists():
                st = path.stat()
                s["size"], s["mtime_ns"] = st.st_size, st.st_mtime_ns
        meta["checksum"] = metadata_checksum(meta)  # last: it covers everything above, the threshold too
        atomic_write_json(meta_path, meta)


def metadata_checksum(meta: dict) -> str:
    """The sha256 of an identity's metadata (everything but the checksum itself), as canonical
    JSON: the threshold, the metric, the references, the .npz's sha256."""
    import hashlib

    body = {k: v for k, v in meta.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                     default=json_default).encode()).hexdigest()


def _linked_store(cast_dir: Path) -> bool:
    """The cast's store (`.keyrender/`, `identities/`, a face model's folder) is or holds a symlink:
    it is neither read nor written (a project from elsewhere may ship one pointing anywhere)."""
    top = cast_dir / ".keyrender"
    ids = cast_dir / STORE_DIR
    if top.is_symlink() or ids.is_symlink():
        return True
    try:
        return ids.is_dir() and any(p.is_symlink() for p in ids.iterdir())
    except OSError:
        return False
