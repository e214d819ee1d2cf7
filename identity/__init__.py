"""The identity layer: face backends, persistent identities, frame checks and video audits.

Importing this package is cheap (numpy only): insightface, onnxruntime, scipy, OpenCV and PyAV
are imported inside the functions that need them, and nothing here imports torch.
"""

from __future__ import annotations

from .audit import AuditResult, audit_video, write_plot
from .backend import (
    DEFAULT_FACE_MODEL,
    InsightFaceEmbedder,
    insightface_root,
    load_face_model,
    resolve_face_model_dir,
)
from .base import CharacterResult, Face, FaceEmbedder, FrameCheck
from .cast import find_cast
from .check import FaceChecker, assign, check_frame, similarity_matrix
from .identity import Identity, Reference, calibrate_threshold
from .store import BuildEvent, IdentityStore, read_image

__all__ = [
    "AuditResult", "BuildEvent", "CharacterResult", "DEFAULT_FACE_MODEL", "Face", "FaceChecker",
    "FaceEmbedder", "FrameCheck", "Identity", "IdentityStore", "InsightFaceEmbedder", "Reference",
    "assign", "audit_video", "calibrate_threshold", "check_frame", "find_cast",
    "insightface_root", "load_face_model", "read_image", "resolve_face_model_dir",
    "similarity_matrix", "write_plot",
]
