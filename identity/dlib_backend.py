"""The built-in face backend: dlib's detector, 5-point alignment and 128-D ResNet descriptors.

The chain is the one of dlib's `python_examples/face_recognition.py`: a detector finds face boxes
(HOG + linear SVM by default, no weights file; or the MMOD CNN detector), the 5-point shape
predictor places eye corners and the nose, `get_face_chip` aligns each face to 150 x 150, and the
ResNet face-recognition model turns every chip of every image into a 128-D descriptor in one
batched call. dlib's own metric is the Euclidean distance between descriptors (the model was
trained so that one person's faces lie within 0.6 of each other); identities built with this
backend judge in that metric (see `identity.py`).

The model files come from PyPI's `face_recognition_models` (dlib-models by Davis King, released
as CC0 / public domain; its 68-point predictor, trained on iBUG 300-W whose licence excludes
commercial use, is never loaded). They are found through the package's install location without
importing it (its `__init__` imports `pkg_resources`). Nothing here imports dlib at module level.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from keyrender.core.errors import InputError, ModelNotFoundError

from .base import Face, check_rgb

DLIB_MODELS = ("dlib", "dlib-cnn")
DETECTORS = {"dlib": "hog", "dlib-cnn": "cnn"}
METRIC = "euclidean"
MODEL_FILES = {
    "shape_predictor": "shape_predictor_5_face_landmarks.dat",
    "recognizer": "dlib_face_recognition_resnet_model_v1.dat",
    "cnn_detector": "mmod_human_face_detector.dat",
}
CHIP_SIZE = 150
CHIP_PADDING = 0.25
# HOG scans 80 x 80 windows: frames up to this long side are upsampled once (faces down to
# about 40 px are found); larger ones are scanned as they are (faces from about 80 px)
AUTO_UPSAMPLE_MAX_SIDE = 1024
# HOG's decision boundary is margin 0. Where it finds no face at all it looks once more with the
# boundary lowered by this much: on the sample's pan, a fully visible face sat just under the
# boundary on 11 of 48 frames (found on every frame at -0.3). Only a miss pays the second pass,
# and a stray box that is not a face gets a descriptor that matches nobody (a "stranger").
HOG_RETRY_ADJUST = -0.3
# the aligned face `face_chips` returns for following a face between frames (identity.follow):
# small, and tight on the face (no padding): what moves with the face, little of the background
FOLLOW_CHIP_SIZE = 64
_INSTALL_HINT = ("it is installed with keyrender (pip install dlib-bin face_recognition_models); "
                 "nothing is downloaded at run time")


def dlib_model_dir() -> Path:
    """The folder of dlib's model files inside the installed `face_recognition_models` package.

    Raises ModelNotFoundError naming the package (and the file) when they are missing."""
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelNotFoundError(f"face model 'dlib': the package face_recognition_models is not "
                                 f"installed; {_INSTALL_HINT}")
    return Path(locations[0]) / "models"


def _model_file(key: str) -> Path:
    path = dlib_model_dir() / MODEL_FILES[key]
    if not path.is_file():
        raise ModelNotFoundError(f"face model 'dlib': {path} is missing (a broken "
                                 f"face_recognition_models install?); reinstall: {_INSTALL_HINT}")
    return path


def _file_digest(path: Path, _cache: dict = {}) -> str:  # noqa: B006 - process-wide cache
    from keyrender.core.fsutil import sha256_file

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _cache:
        _cache[key] = sha256_file(path)
    return _cache[key]


def _import_dlib():
    try:
        import dlib
    except ImportError as exc:
        raise ModelNotFoundError(f"face model 'dlib': the dlib module cannot be imported ({exc}); "
                                 f"{_INSTALL_HINT}") from exc
    return dlib


def frontal_face_detector(dlib):
    """dlib's frontal HOG face detector. `get_frontal_face_detector()` decodes its filters from a
    string compiled into dlib, about 0.6 s of CPU in every process (more than checking a frame);
    the same detector is saved once in keyrender's cache (per dlib version, as dlib serialises
    it: byte for byte the same detector, the same boxes and scores) and loaded from there in
    about 1 ms. Any problem with the cached file falls back to building it."""
    from keyrender.core.fsutil import atomic_path, cache_root

    path = cache_root() / "dlib" / f"frontal_face_detector-{getattr(dlib, '__version__', 'x')}.svm"
    if path.is_file():
        try:
            return dlib.fhog_object_detector(str(path))
        except (RuntimeError, OSError):
            pass
    det = dlib.get_frontal_face_detector()
    try:
        with atomic_path(path) as tmp:
            det.save(str(tmp))
    except (OSError, RuntimeError):
        pass  # a read-only cache: build it every time, as before
    return det


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class DlibFaceEmbedder:
    """`FaceEmbedder` on dlib: detector -> 5-point shape -> aligned 150 x 150 chip -> 128-D.

    detector: "hog" (dlib's frontal HOG detector, no file, fast on a CPU) or "cnn" (the MMOD CNN
        detector: finds turned and small faces HOG misses, several times slower on a CPU).
    upsample: how many times the detector doubles the image first; None ("auto") upsamples once
        images whose longer side is at most 1024 px (HOG finds faces of about 80 px unscaled).
    lazy: compute `name` now, load the model files on first use.

    Embeddings are dlib's raw descriptors (not normalised: the model's metric is the Euclidean
    distance between them). `Face.score` is the logistic of the detector's score (HOG: the SVM
    margin; CNN: the MMOD confidence), so that 0.5 is the detector's own decision boundary.
    `Face.landmarks` holds dlib's 5 points: the two corners of each eye and the bottom of the
    nose (not insightface's eyes / nose / mouth corners).
    """

    metric = METRIC

    def __init__(self, detector: str = "hog", *, upsample: int | None = None, lazy: bool = False):
        if detector not in ("hog", "cnn"):
            raise InputError(f"dlib detector must be 'hog' or 'cnn', got {detector!r}")
        if upsample is not None and not (isinstance(upsample, int) and 0 <= upsample <= 3):
            raise InputError(f"dlib upsample must be 0..3 or None (auto), got {upsample!r}")
        self.detector = detector
        self.upsample = upsample
        self.label = "dlib" if detector == "hog" else "dlib-cnn"
        self.files = {"shape_predictor": _model_file("shape_predictor"),
                      "recognizer": _model_file("recognizer")}
        if detector == "cnn":
            self.files["cnn_detector"] = _model_file("cnn_detector")
        digest = hashlib.sha256("".join(_file_digest(p) for p in self.files.values()).encode()).hexdigest()[:12]
        up = "auto" if upsample is None else str(upsample)
        retry = "-retry0.3" if detector == "hog" else ""
        self.name = f"{self.label}:{detector}-up{up}{retry}+resnet_v1@{digest}"
        self._det = self._sp = self._rec = None
        if not lazy:
            self.load()

    def __repr__(self) -> str:
        return f"DlibFaceEmbedder({self.name!r})"

    def load(self) -> "DlibFaceEmbedder":
        if self._rec is not None:
            return self
        dlib = _import_dlib()
        try:
            if self.detector == "hog":
                det = frontal_face_detector(dlib)
            else:
                det = dlib.cnn_face_detection_model_v1(str(self.files["cnn_detector"]))
            sp = dlib.shape_predictor(str(self.files["shape_predictor"]))
            rec = dlib.face_recognition_model_v1(str(self.files["recognizer"]))
        except RuntimeError as exc:  # dlib's deserialisation errors: name the files
            raise InputError(f"cannot load dlib model files {', '.join(map(str, self.files.values()))}: "
                             f"{exc}") from exc
        self._det, self._sp, self._rec = det, sp, rec
        return self

    # -- inference ---------------------------------------------------------------------------
    @staticmethod
    def _check_image(image: np.ndarray) -> np.ndarray:
        return check_rgb(image)

    def _upsample_for(self, image: np.ndarray) -> int:
        if self.upsample is not None:
            return self.upsample
        return 1 if max(image.shape[:2]) <= AUTO_UPSAMPLE_MAX_SIDE else 0

    def _detect(self, images: list[np.ndarray], coarse: bool = False) -> list[list[tuple[object, float]]]:
        """(dlib rectangle, raw score) per face per image (coarse: HOG at upsample 0, no second look)."""
        out: list[list[tuple[object, float]]] = []
        if self.detector == "hog":
            for img in images:
                up = 0 if coarse else self._upsample_for(img)
                rects, scores, _ = self._det.run(img, up, 0.0)
                if not len(rects) and not coarse:
                    rects, scores, _ = self._det.run(img, up, HOG_RETRY_ADJUST)
                out.append(list(zip(rects, scores)))
            return out
        # the CNN detector takes a batch of same-size images with one upsample count
        out = [[] for _ in images]
        groups: dict[tuple, list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault((img.shape, self._upsample_for(img)), []).append(i)
        for (_, up), idx in groups.items():
            dets = self._det([images[i] for i in idx], up, batch_size=min(len(idx), 8))
            for i, found in zip(idx, dets):
                out[i] = [(d.rect, float(d.confidence)) for d in found]
        return out

    def faces(self, image: np.ndarray) -> list[Face]:
        return self.faces_batch([image])[0]

    def faces_coarse(self, image: np.ndarray) -> list[Face] | None:
        """faces() with HOG at the image's own scale only (no upsampling, no second look): faces
        from about 80 px, in a quarter of the detection time. None where that is what faces()
        does anyway (the CNN detector, a fixed upsample, a frame longer than 1024 px). A check
        that passes on these faces passes on faces()'s (the expected faces are there and
        recognised; a smaller face could only be somebody else's); one that does not is
        checked with faces() (identity.follow)."""
        if self.detector != "hog" or self.upsample is not None or self._upsample_for(self._check_image(image)) == 0:
            return None
        return self.faces_batch([image], coarse=True)[0]

    def faces_batch(self, images: Sequence[np.ndarray], *, coarse: bool = False) -> list[list[Face]]:
        """Detection and alignment per image, then one descriptor batch over every face of every
        image (dlib's compute_face_descriptor on a list of aligned chips). coarse: see
        `faces_coarse`."""
        import dlib

        self.load()
        imgs = [self._check_image(im) for im in images]
        found = self._detect(imgs, coarse)
        chips, meta = [], []
        for i, (img, dets) in enumerate(zip(imgs, found)):
            h, w = img.shape[:2]
            for rect, score in dets:
                shape = self._sp(img, rect)
                chips.append(dlib.get_face_chip(img, shape, size=CHIP_SIZE, padding=CHIP_PADDING))
                box = (float(max(rect.left(), 0)), float(max(rect.top(), 0)),
                       float(min(rect.right() + 1, w)), float(min(rect.bottom() + 1, h)))
                points = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
                meta.append((i, box, points, _logistic(float(score))))
        descriptors = np.zeros((0, 128), np.float32)
        if chips:
            descriptors = np.asarray(self._rec.compute_face_descriptor(chips), np.float32).reshape(len(chips), -1)
        out: list[list[Face]] = [[] for _ in imgs]
        for k, (i, box, points, score) in enumerate(meta):
            out[i].append(Face(box=box, landmarks=points, score=score, embedding=descriptors[k]))
        for faces in out:
            faces.sort(key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        return out


    def face_chips(self, image: np.ndarray, landmarks: Sequence[np.ndarray],
                   size: int = FOLLOW_CHIP_SIZE) -> list[tuple[np.ndarray, np.ndarray]]:
        """The face aligned on each set of landmarks (this backend's five points, as in
        `Face.landmarks`), without detection or descriptor: `get_face_chip` (size x size RGB
        uint8, no padding) and a mask of its pixels that lie inside the image (a face cut by
        the frame's edge). About 0.3 ms a face, against ~80 ms for a descriptor:
        identity.follow compares these to follow a face from the keyframes into the
        in-betweens."""
        import dlib

        img = self._check_image(image)
        h, w = img.shape[:2]
        out = []
        for lm in landmarks:
            pts = dlib.points()
            for x, y in np.asarray(lm, np.float64).reshape(-1, 2):
                pts.append(dlib.point(int(round(x)), int(round(y))))
            det = dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1), pts)
            chip = np.asarray(dlib.get_face_chip(img, det, size=size, padding=0.0), np.uint8)
            # where each chip pixel comes from (dlib's chip details: a rotated square)
            d = dlib.get_face_chip_details(det, size, 0.0)
            r = d.rect
            u = (np.arange(size) - (size - 1) / 2)
            x = u[None, :] * (r.right() - r.left()) / (size - 1)
            y = u[:, None] * (r.bottom() - r.top()) / (size - 1)
            c, s_ = math.cos(d.angle), math.sin(d.angle)
            cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
            X, Y = cx + c * x - s_ * y, cy + s_ * x + c * y
            out.append((chip, (X >= 0) & (X <= w - 1) & (Y >= 0) & (Y <= h - 1)))
        return out


def load_dlib_model(name: str = "dlib", *, upsample: int | None = None,
                    lazy: bool = False) -> DlibFaceEmbedder:
    """The built-in backend by name: "dlib" (HOG detector) or "dlib-cnn" (MMOD CNN detector)."""
    if name not in DETECTORS:
        raise InputError(f"unknown dlib face model {name!r}: use one of {', '.join(DLIB_MODELS)}")
    return DlibFaceEmbedder(DETECTORS[name], upsample=upsample, lazy=lazy)
