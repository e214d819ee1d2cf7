"""A tiny, deterministic face pack for tests and `--preset tiny` smoke runs.

`make_tiny_face_pack(folder)` writes two small ONNX files that insightface's own model router
recognises: an SCRFD-style detector (9 outputs: scores, boxes and 5 landmarks at strides 8, 16
and 32) and an ArcFace-style recognizer (one input N x 3 x 112 x 112, one output N x 512). They
go through the same loading path as a real pack (`load_face_model(folder)` -> insightface's
`model_zoo.get_model` -> `SCRFD` / `ArcFaceONNX` on onnxruntime), so a test that uses them tests
the real code.

What the tiny models compute, so that checks made with them mean something:

* detector (fixed 128 x 128 input; insightface letterboxes any image into it): the local
  variance of each 8 x 8 cell, averaged over the 3 channels and smoothed over 5 x 5 cells
  (40 px, a bit under a third of the image's longer side). A "face" is a local maximum of that
  map (7 x 7 cells; a tiny ramp breaks ties) whose contrast is above 0.05 (in insightface's
  normalised units, (x - 127.5) / 128) and at least 0.85 of the strongest peak's. Each face gets a fixed-size 40 x 40 box (in detector
  pixels) centred on its cell and the 5 ArcFace template landmarks inside that box, so the
  aligned crop is the box. A uniform image has no face; a textured patch on a flat background
  has exactly one; two patches far enough apart (more than 4 cells) are two faces.
* recognizer: the 112 x 112 aligned crop average-pooled to 8 x 8 x 3, then a fixed random
  projection (seed 0) to 512 dimensions. The same crop gives cosine 1; unrelated content gives
  cosine near 0.

Generation takes a few milliseconds and needs only the `onnx` package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DETECTOR_FILE = "det_tiny.onnx"
RECOGNIZER_FILE = "w600k_tiny.onnx"

DET_SIZE = 128
_STRIDES = (8, 16, 32)
_CELL = 8
_SMOOTH = 5  # cells
_PEAK = 7  # cells
_BOX = 40.0  # detector pixels
_CONTRAST_T = 0.05
_CONTRAST_K = 200.0
_RELATIVE = 0.85  # a face's contrast must be at least this fraction of the strongest face's
EMBED_DIM = 512  # the size of real ArcFace embeddings, which FaceID adapters take
_POOL = 14  # 112 / 14 = 8

# insightface's ArcFace alignment template for a 112 x 112 crop (utils/face_align.arcface_dst)
_ARCFACE_DST = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def _const(name: str, array: np.ndarray):
    from onnx import helper, numpy_helper

    return helper.make_node(
        "Constant", [], [name], name=f"const_{name}",
        value=numpy_helper.from_array(np.ascontiguousarray(array), name=f"{name}_value"),
    )


def _detector_model():
    from onnx import TensorProto, helper

    s = DET_SIZE
    g = s // _CELL  # 16 cells per side at stride 8
    nodes = []
    nodes.append(_const("chan_mean", np.full((1, 3, 1, 1), 1.0 / 3.0, np.float32)))
    nodes += [
        helper.make_node("Mul", ["input.1", "input.1"], ["x2"], name="sq"),
        helper.make_node("AveragePool", ["input.1"], ["m"], name="cell_mean",
                         kernel_shape=[_CELL, _CELL], strides=[_CELL, _CELL]),
        helper.make_node("AveragePool", ["x2"], ["m2"], name="cell_mean2",
                         kernel_shape=[_CELL, _CELL], strides=[_CELL, _CELL]),
        helper.make_node("Mul", ["m", "m"], ["mm"], name="mean_sq"),
        helper.make_node("Sub", ["m2", "mm"], ["var3"], name="cell_var"),
        helper.make_node("Conv", ["var3", "chan_mean"], ["var"], name="chan_avg"),
        helper.make_node("AveragePool", ["var"], ["contrast"], name="smooth",
                         kernel_shape=[_SMOOTH, _SMOOTH], strides=[1, 1],
                         pads=[_SMOOTH // 2] * 4, count_include_pad=1),
    ]
    ramp = (np.arange(g * g, dtype=np.float32) * 1e-7).reshape(1, 1, g, g)
    nodes.append(_const("ramp", ramp))
    nodes += [
        helper.make_node("Add", ["contrast", "ramp"], ["c_r"], name="tiebreak"),
        helper.make_node("MaxPool", ["c_r"], ["c_max"], name="peak_pool",
                         kernel_shape=[_PEAK, _PEAK], strides=[1, 1], pads=[_PEAK // 2] * 4),
        helper.make_node("Equal", ["c_r", "c_max"], ["is_peak_b"], name="is_peak"),
        helper.make_node("Cast", ["is_peak_b"], ["is_peak"], name="peak_float",
                         to=TensorProto.FLOAT),
    ]
    nodes.append(_const("k", np.array(_CONTRAST_K, np.float32)))
    nodes.append(_const("kt", np.array(_CONTRAST_K * _CONTRAST_T, np.float32)))
    nodes += [
        helper.make_node("Mul", ["contrast", "k"], ["ck"], name="scale"),
        helper.make_node("Sub", ["ck", "kt"], ["logit"], name="offset"),
        helper.make_node("Sigmoid", ["logit"], ["prob"], name="sigmoid"),
        helper.make_node("Mul", ["prob", "is_peak"], ["peak_prob"], name="keep_peaks"),
        # only peaks within _RELATIVE of the strongest one: a photo's lesser texture peaks drop
        helper.make_node("ReduceMax", ["contrast"], ["c_top"], name="global_max", keepdims=1),
        helper.make_node("Mul", ["c_top", "rel"], ["c_floor"], name="relative_floor"),
        helper.make_node("GreaterOrEqual", ["contrast", "c_floor"], ["strong_b"], name="strong"),
        helper.make_node("Cast", ["strong_b"], ["strong"], name="strong_float", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["peak_prob", "strong"], ["score_map"], name="keep_strong"),
    ]
    nodes.insert(0, _const("rel", np.array(_RELATIVE, np.float32)))
    nodes.append(_const("shape_cells", np.array([g * g, 1], np.int64)))
    nodes.append(_const("zeros_cells", np.zeros((g * g, 1), np.float32)))
    nodes.append(_const("shape_anchors", np.array([g * g * 2, 1], np.int64)))
    nodes += [
        helper.make_node("Reshape", ["score_map", "shape_cells"], ["score_cells"], name="flat"),
        # two anchors per cell (insightface's SCRFD layout); only the first one scores
        helper.make_node("Concat", ["score_cells", "zeros_cells"], ["score_pairs"], name="anchors",
                         axis=1),
        helper.make_node("Reshape", ["score_pairs", "shape_anchors"], ["score_8"], name="scores8"),
    ]

    # Distances from each anchor point (the cell's top-left corner) in units of the stride.
    half = _BOX / 2.0
    centre = _CELL / 2.0
    dist = np.array([half - centre, half - centre, half + centre, half + centre], np.float32) / _CELL
    kps = (_ARCFACE_DST * (_BOX / 112.0) + (centre - half)) / _CELL  # (5, 2), relative to anchor

    outputs_scores, outputs_boxes, outputs_kps = [], [], []
    for stride in _STRIDES:
        n = (s // stride) ** 2 * 2
        if stride == 8:
            score_name = "score_8"
        else:
            score_name = f"score_{stride}"
            nodes.append(_const(f"{score_name}_c", np.zeros((n, 1), np.float32)))
            nodes.append(helper.make_node("Identity", [f"{score_name}_c"], [score_name],
                                          name=f"id_{score_name}"))
        nodes.append(_const(f"bbox_{stride}_c", np.tile(dist, (n, 1))))
        nodes.append(helper.make_node("Identity", [f"bbox_{stride}_c"], [f"bbox_{stride}"],
                                      name=f"id_bbox_{stride}"))
        nodes.append(_const(f"kps_{stride}_c", np.tile(kps.reshape(1, 10), (n, 1))))
        nodes.append(helper.make_node("Identity", [f"kps_{stride}_c"], [f"kps_{stride}"],
                                      name=f"id_kps_{stride}"))
        outputs_scores.append(helper.make_tensor_value_info(score_name, TensorProto.FLOAT, [n, 1]))
        outputs_boxes.append(helper.make_tensor_value_info(f"bbox_{stride}", TensorProto.FLOAT, [n, 4]))
        outputs_kps.append(helper.make_tensor_value_info(f"kps_{stride}", TensorProto.FLOAT, [n, 10]))

    graph = helper.make_graph(
        nodes, "keyrender_tiny_scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, s, s])],
        outputs_scores + outputs_boxes + outputs_kps,
    )
    return _finish(graph)


def _recognizer_model(seed: int = 0):
    from onnx import TensorProto, helper

    pooled = 3 * (112 // _POOL) ** 2
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((pooled, EMBED_DIM)) / np.sqrt(pooled)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["data"], ["pooled"], name="pool",
                         kernel_shape=[_POOL, _POOL], strides=[_POOL, _POOL]),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1),
        _const("proj", weight),
        helper.make_node("MatMul", ["flat", "proj"], ["fc1"], name="projection"),
    ]
    graph = helper.make_graph(
        nodes, "keyrender_tiny_arcface",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["N", EMBED_DIM])],
    )
    return _finish(graph)


def _finish(graph):
    import onnx
    from onnx import helper

    # the producer name is the module's old one: the pack's bytes (and every store built on it)
    # stay the same as before the module was renamed
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="keyrender.identity.testing")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make_tiny_face_pack(folder: str | Path) -> Path:
    """Write the tiny detector + recognizer into `folder` (created if needed); return it.

    The folder is what `load_face_model(folder)` accepts. Files are written atomically and
    are byte-for-byte the same on every call.
    """
    from keyrender.core.fsutil import atomic_write_bytes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / DETECTOR_FILE, _detector_model().SerializeToString())
    atomic_write_bytes(folder / RECOGNIZER_FILE, _recognizer_model().SerializeToString())
    return folder
