"""Control images for ControlNet: controlnet-aux preprocessors (openpose, canny, depth).

`control_type` is one of "openpose", "canny", "depth" (the control image is run through the
preprocessor) or "openpose-preprocessed", "canny-preprocessed", "depth-preprocessed" (the image is
already a pose / edge / depth map and is used as is). "none" is the shot list's word for "the
image is already a control map": a ready pose map, used as is with the openpose ControlNet (the
shot list's default kind). "off" turns control off.
Canny needs no weights (OpenCV's Canny, as controlnet-aux's CannyDetector); openpose and depth need the annotator weights (lllyasviel/Annotators),
loaded by `load_annotator` through controlnet-aux's own loader, after the caller has checked that
the files are there (no silent download).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..core.errors import InputError, ModelNotFoundError

KINDS = ("openpose", "canny", "depth")
#: what the shot list's control_type "none" ("the image is already a control map") means here
NONE_MEANS = ("openpose", True)


def parse_control_type(control_type: str | None, shot: str) -> tuple[str, bool] | None:
    """(kind, already_preprocessed), or None for no control."""
    if control_type is None:
        return None
    value = str(control_type).strip().lower()
    if value in ("", "off"):
        return None
    if value == "none":  # the shot list's "already a control map": a ready pose map
        return NONE_MEANS
    pre = value.endswith("-preprocessed")
    kind = value[: -len("-preprocessed")] if pre else value
    if kind not in KINDS:
        known = ", ".join(list(KINDS) + [f"{k}-preprocessed" for k in KINDS] + ["none", "off"])
        raise InputError(f"shot {shot}: control type {control_type!r} unknown; use one of {known}")
    return kind, pre


def load_annotator(kind: str, source: str, cache_dir: str | None, offline: bool):
    """The controlnet-aux detector for `kind` ("openpose" or "depth") from `source` (a local folder
    or a repo id already in the cache)."""
    try:
        if kind == "openpose":
            from controlnet_aux import OpenposeDetector

            return OpenposeDetector.from_pretrained(source, cache_dir=cache_dir, local_files_only=offline)
        if kind == "depth":
            from controlnet_aux import MidasDetector

            return MidasDetector.from_pretrained(source, cache_dir=cache_dir, local_files_only=offline)
    except (OSError, EnvironmentError) as exc:
        raise ModelNotFoundError(
            f"the {kind} preprocessor could not load its annotator weights from {source!r} ({exc}). Fetch them with: "
            "hf download lllyasviel/Annotators body_pose_model.pth hand_pose_model.pth facenet.pth "
            "dpt_hybrid-midas-501f0c75.pt, or set KEYRENDER_MODEL_ANNOTATORS to a folder holding them"
        ) from exc
    raise InputError(f"no annotator for control kind {kind!r}")


def preprocess_control(
    image: np.ndarray,
    kind: str,
    *,
    preprocessed: bool,
    width: int,
    height: int,
    annotator: Callable[[str], object] | None,
    shot: str,
) -> np.ndarray:
    """The control map (RGB uint8, height x width x 3) for the ControlNet of `kind`."""
    import cv2

    if preprocessed:
        out = image
    elif kind == "canny":
        # controlnet-aux's CannyDetector is cv2.Canny(100, 200) on the RGB image; called directly
        # because importing controlnet_aux loads every annotator module (seconds).
        out = cv2.Canny(image, 100, 200)
    else:
        if annotator is None:
            raise ModelNotFoundError(f"shot {shot}: no annotator weights configured for {kind}")
        detector = annotator(kind)
        res = max(64, min(image.shape[0], image.shape[1]))
        out = np.asarray(detector(image, detect_resolution=res, image_resolution=res, output_type="np"))
    out = np.asarray(out)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)
    if out.shape[:2] != (height, width):
        out = cv2.resize(out, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(out.astype(np.uint8))
