"""The identity layer: face backends, persistent identities, frame checks and video audits.

Importing this package is cheap (numpy only): dlib, insightface, onnxruntime, scipy, OpenCV and PyAV
are imported inside the functions that need them, and nothing here imports torch.
"""

from __future__ import annotations

from .audit import AuditResult, audit_video, write_plot
from .backend import (
    DEFAULT_FACE_MODEL,
    DEFAULT_INSIGHTFACE_PACK,
    InsightFaceEmbedder,
    insightface_root,
    load_face_model,
    resolve_face_model_dir,
)
from .base import CharacterResult, Face, FaceEmbedder, FrameCheck
from .cast import find_cast
from .dlib_backend import DLIB_MODELS, DlibFaceEmbedder, dlib_model_dir, load_dlib_model
from .compare import Comparison, compare
from .check import FaceChecker, assign, check_frame, similarity_matrix
from .identity import METRICS, Identity, Metric, Reference, calibrate_threshold, get_metric
from .store import BuildEvent, IdentityStore, read_image

__all__ = [
    "AuditResult", "BuildEvent", "CharacterResult", "Comparison", "compare", "DEFAULT_FACE_MODEL", "DEFAULT_INSIGHTFACE_PACK",
    "DLIB_MODELS", "DlibFaceEmbedder", "Face", "FaceChecker", "FaceEmbedder", "FrameCheck",
    "Identity", "IdentityStore", "InsightFaceEmbedder", "METRICS", "Metric", "Reference",
    "assign", "audit_video", "calibrate_threshold", "check_frame", "dlib_model_dir", "find_cast",
    "get_metric", "insightface_root", "load_dlib_model", "load_face_model", "read_image",
    "resolve_face_model_dir",
    "similarity_matrix", "write_plot",
]
