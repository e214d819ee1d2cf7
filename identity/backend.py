"""Face model resolution (`load_face_model`) and the insightface backend: insightface's detector +
ArcFace-style recognizer on onnxruntime.

`load_face_model(None)` is the built-in dlib backend (`dlib_backend.py`: installed with
keyrender, commercial-clean, nothing to download); "dlib-cnn" is the same with dlib's CNN
detector; any other name is an insightface pack (or a folder of ONNX files).

We drive insightface's `model_zoo` (its `SCRFD` detector and `ArcFaceONNX` recognizer, found by
its own shape-based router) rather than `FaceAnalysis`, because `FaceAnalysis` downloads
silently, asserts instead of raising and loads every model in the pack (landmarks, gender/age)
whether it is needed or not. The folder is checked here first, and a missing model is a
`ModelNotFoundError` that names the folder and how to fill it.

Nothing here imports insightface or onnxruntime at module level.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from keyrender.core.errors import InputError, ModelNotFoundError
from keyrender.core.fsutil import sha256_file

from .base import Face, check_rgb
from .dlib_backend import DLIB_MODELS, DlibFaceEmbedder, load_dlib_model

DEFAULT_FACE_MODEL = "dlib"  # the judge when no face model is named (see docs/identity.md, "Face models")
DEFAULT_INSIGHTFACE_PACK = "buffalo_l"  # what IP-Adapter FaceID was trained on
KNOWN_PACKS = ("buffalo_l", "buffalo_m", "buffalo_s", "buffalo_sc", "antelopev2")
PACK_URL = "https://github.com/deepinsight/insightface/releases/download/model-zoo/{name}.zip"
LICENCE_NOTE = (
    "insightface's model packs are licensed for non-commercial research use only; for "
    "commercial work use a recognizer you may use commercially (--recognizer, or a folder "
    "as --face-model); the default identity judge, dlib, is CC0 and needs no pack"
)


def insightface_root(root: str | os.PathLike | None = None) -> Path:
    """The insightface home: `root`, else $INSIGHTFACE_HOME, else ~/.insightface."""
    if root is None:
        root = os.environ.get("INSIGHTFACE_HOME") or "~/.insightface"
    return Path(root).expanduser()


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.startswith((".", "~")) or text.endswith(".onnx")


def resolve_face_model_dir(name_or_path: str | None = None, *,
                           root: str | os.PathLike | None = None) -> tuple[str, Path]:
    """(label, folder) for a model pack name or a folder path; does not check the folder."""
    spec = name_or_path or os.environ.get("KEYRENDER_FACE_MODEL") or DEFAULT_INSIGHTFACE_PACK
    spec = str(spec)
    if spec in DLIB_MODELS:
        spec = DEFAULT_INSIGHTFACE_PACK
    direct = Path(spec).expanduser()
    if direct.is_dir() or _looks_like_path(spec):
        return direct.name or spec, direct
    return spec, insightface_root(root) / "models" / spec


def _how_to_fill(label: str, folder: Path) -> str:
    lines = [f"face model {label!r} not found: expected a detector and a recognizer (*.onnx) in {folder}."]
    if not _looks_like_path(label) and label in KNOWN_PACKS:
        lines.append(
            f"To fill it, download {PACK_URL.format(name=label)} on a machine with internet and "
            f"unzip it so that the .onnx files lie directly in {folder}"
            " (or rerun with --allow-download to let insightface fetch it)."
        )
    else:
        lines.append(
            "To fill it, copy a detector (SCRFD/RetinaFace ONNX, e.g. det_10g.onnx) and an "
            "ArcFace-style recognizer ONNX (input N x 3 x 112 x 112, one embedding output) into "
            "that folder, or pass --face-model with a folder that has them."
        )
    lines.append(f"Set INSIGHTFACE_HOME to move the model root; note: {LICENCE_NOTE}.")
    return " ".join(lines)


def _default_providers() -> list[str]:
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _file_sha256(path: Path, _cache: dict = {}) -> str:  # noqa: B006 - process-wide cache
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _cache:
        _cache[key] = sha256_file(path)
    return _cache[key]


def _onnx_outputs(path: Path) -> int | None:
    """Number of graph outputs (detector: >= 5), read without building a session."""
    try:
        import onnx

        return len(onnx.load_model(str(path), load_external_data=False).graph.output)
    except Exception:
        return None


class InsightFaceEmbedder:
    """`FaceEmbedder` over insightface's model_zoo classes (SCRFD + ArcFaceONNX).

    Sessions are created on first use when `lazy` (so that a cache check can name the model
    without loading it); `load()` forces it. `name` is the pack label plus a short hash of the
    detector and recognizer files, so that identities built with other weights are rebuilt.
    Its recognizers are ArcFace-style: embeddings are compared by cosine.
    """

    metric = "cosine"

    def __init__(self, label: str, detector_file: Path, recognizer_file: Path, *,
                 providers: list[str] | None = None, det_thresh: float = 0.5,
                 det_size: tuple[int, int] = (640, 640), lazy: bool = False,
                 folder: Path | None = None):
        self.label = label
        self.folder = folder
        self.detector_file = Path(detector_file)
        self.recognizer_file = Path(recognizer_file)
        self.providers = providers
        self.det_thresh = float(det_thresh)
        self.det_size = det_size
        digest = hashlib.sha256(
            (_file_sha256(self.detector_file) + _file_sha256(self.recognizer_file)).encode()
        ).hexdigest()[:12]
        self.name = f"{label}:{self.recognizer_file.stem}@{digest}"
        self._det = None
        self._rec = None
        if not lazy:
            self.load()

    def __repr__(self) -> str:
        return f"InsightFaceEmbedder({self.name!r})"

    # -- loading -----------------------------------------------------------------------------
    def load(self) -> "InsightFaceEmbedder":
        if self._det is not None:
            return self
        providers = self.providers or _default_providers()
        ctx_id = 0 if "CUDAExecutionProvider" in providers else -1
        det = self._get_model(self.detector_file, providers, "detection")
        rec = self._get_model(self.recognizer_file, providers, "recognition")
        det.prepare(ctx_id, det_thresh=self.det_thresh, input_size=self.det_size)
        rec.prepare(ctx_id)
        self._det, self._rec = det, rec
        return self

    @staticmethod
    def _get_model(path: Path, providers: list[str], task: str):
        from insightface.model_zoo import model_zoo

        try:
            model = model_zoo.get_model(str(path), providers=providers)
        except Exception as exc:  # onnxruntime / protobuf errors: name the file
            raise InputError(f"cannot load face model file {path}: {exc}") from exc
        if model is None or getattr(model, "taskname", None) != task:
            got = getattr(model, "taskname", "nothing insightface recognises")
            raise InputError(f"{path} is not a face {task} model (insightface sees: {got})")
        return model

    # -- inference ---------------------------------------------------------------------------
    @staticmethod
    def _check_image(image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(check_rgb(image)[:, :, ::-1])  # RGB -> BGR for insightface

    def _detect(self, bgr: np.ndarray):
        bboxes, kpss = self._det.detect(bgr, max_num=0)
        if bboxes.shape[0] and kpss is None:
            raise InputError(f"detector {self.detector_file} gives no landmarks; it cannot be used "
                             "for alignment")
        return bboxes, kpss

    def faces(self, image: np.ndarray) -> list[Face]:
        return self.faces_batch([image])[0]

    def faces_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Detection per image (insightface's SCRFD takes one image), then one recognizer batch
        over every face of every image."""
        import warnings

        from insightface.utils import face_align

        self.load()
        size = self._rec.input_size[0]
        dets, crops, owners = [], [], []
        for i, image in enumerate(images):
            bgr = self._check_image(image)
            bboxes, kpss = self._detect(bgr)
            dets.append((bboxes, kpss))
            for j in range(bboxes.shape[0]):
                with warnings.catch_warnings():  # skimage's estimate() deprecation, inside insightface
                    warnings.simplefilter("ignore", FutureWarning)
                    crops.append(face_align.norm_crop(bgr, landmark=kpss[j], image_size=size))
                owners.append((i, j))
        embeddings = np.zeros((0, 0), np.float32)
        if crops:
            embeddings = np.asarray(self._rec.get_feat(crops), dtype=np.float32).reshape(len(crops), -1)
            norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
            embeddings = embeddings / np.maximum(norms, 1e-12)
        out: list[list[Face]] = [[] for _ in images]
        for k, (i, j) in enumerate(owners):
            bboxes, kpss = dets[i]
            out[i].append(Face(
                box=tuple(float(v) for v in bboxes[j, :4]),
                landmarks=np.asarray(kpss[j], np.float32).reshape(5, 2),
                score=float(bboxes[j, 4]),
                embedding=embeddings[k],
            ))
        for faces in out:
            faces.sort(key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        return out


def _find_pair(folder: Path) -> tuple[Path | None, Path | None]:
    """The detector (an ONNX with >= 5 outputs, as insightface's router decides) and the
    recognizer (by insightface's file names first: w600k*, glintr*, arcface*; else the one
    remaining ONNX with a single output)."""
    detector = recognizer = None
    for path in sorted(folder.glob("*.onnx")):
        n = _onnx_outputs(path)
        if n is None:
            continue
        if n >= 5:
            detector = detector or path
        elif n == 1 and recognizer is None:
            stem = path.stem.lower()
            if stem.startswith(("w600k", "glint", "arcface", "r50", "r100")) or "rec" in stem:
                recognizer = path
    if recognizer is None:
        # fall back to any single-output ONNX that is not the detector (insightface's router
        # decides later whether it really is a recognizer)
        for path in sorted(folder.glob("*.onnx")):
            if path != detector and _onnx_outputs(path) == 1 and not path.stem.startswith(("1k3d", "2d106", "genderage")):
                recognizer = path
                break
    return detector, recognizer


def load_face_model(name_or_path: str | None = None, *, root: str | os.PathLike | None = None,
                    providers: list[str] | None = None, allow_download: bool = False,
                    recognizer: str | os.PathLike | None = None, det_thresh: float = 0.5,
                    det_size: tuple[int, int] = (640, 640),
                    lazy: bool = False) -> InsightFaceEmbedder | DlibFaceEmbedder:
    """The face backend for a name: "dlib" (the default: built in, HOG detector), "dlib-cnn"
    (dlib with its CNN detector), an insightface pack name ("buffalo_l", "antelopev2", ...) or a
    folder of ONNX files.

    name_or_path: None -> $KEYRENDER_FACE_MODEL, else "dlib". A pack name is looked up in
        `<root>/models/<name>`; root defaults to $INSIGHTFACE_HOME or ~/.insightface.
    recognizer: any ArcFace-style ONNX file to use instead of the pack's recognizer (the packs
        are non-commercial).
    allow_download: let insightface download a missing pack (off by default; never in tests).
    lazy: check the files and compute `name` now, create onnxruntime sessions on first use.

    Raises ModelNotFoundError (naming the folder and how to fill it) when files are missing.
    """
    spec = str(name_or_path or os.environ.get("KEYRENDER_FACE_MODEL") or DEFAULT_FACE_MODEL)
    if spec in DLIB_MODELS:
        if recognizer is not None:
            raise InputError(f"--recognizer takes an ArcFace-style ONNX for an insightface pack; "
                             f"face model {spec!r} has its own (pass --face-model with a pack)")
        return load_dlib_model(spec, lazy=lazy)
    label, folder = resolve_face_model_dir(spec, root=root)
    if not folder.is_dir() or not any(folder.glob("*.onnx")):
        if allow_download and not _looks_like_path(str(name_or_path or label)):
            from insightface.utils import storage

            # insightface keeps an empty folder as "present": remove it so it downloads
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
            try:
                storage.ensure_available("models", label, root=str(folder.parent.parent))
            except Exception as exc:
                raise ModelNotFoundError(f"downloading face model {label!r} failed ({exc}); "
                                         + _how_to_fill(label, folder)) from exc
        if not folder.is_dir() or not any(folder.glob("*.onnx")):
            raise ModelNotFoundError(_how_to_fill(label, folder))
    detector, rec_file = _find_pair(folder)
    if detector is None:
        raise ModelNotFoundError(f"no face detector ONNX (SCRFD/RetinaFace) in {folder}. "
                                 + _how_to_fill(label, folder))
    if recognizer is not None:
        rec_file = Path(recognizer).expanduser()
        if not rec_file.is_file():
            raise ModelNotFoundError(f"recognizer file {rec_file} does not exist; pass the path of "
                                     "an ArcFace-style ONNX (input N x 3 x 112 x 112)")
    if rec_file is None:
        raise ModelNotFoundError(f"no face recognizer ONNX in {folder}. " + _how_to_fill(label, folder))
    return InsightFaceEmbedder(label, detector, rec_file, providers=providers, det_thresh=det_thresh,
                               det_size=det_size, lazy=lazy, folder=folder)
