"""The camera between keyframes (interpolate.camera) and the flow interpolator's camera mode and
cut guard, on a real photograph (scikit-image's `coffee`) whose exact views are known."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from keyrender.interpolate import inbetween
from keyrender.interpolate.camera import CameraPath, fit_camera, homography_power, solve_camera
from keyrender.interpolate.flow import FlowInterpolator, cross_fade
from helpers import psnr

skimage_data = pytest.importorskip("skimage.data")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "bench-data"
W, H = 256, 144


def view_matrix(cx: float, cy: float, width: float, roll: float = 0.0) -> np.ndarray:
    """Photo -> frame: a W x H view of `width` photo pixels centred at (cx, cy), rolled by `roll` degrees."""
    s = W / width
    c, sn = np.cos(np.radians(roll)), np.sin(np.radians(roll))
    return (np.array([[1, 0, (W - 1) / 2], [0, 1, (H - 1) / 2], [0, 0, 1.0]]) @ np.diag([s, s, 1.0])
            @ np.array([[c, -sn, 0], [sn, c, 0], [0, 0, 1.0]]) @ np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1.0]]))


def render(img: np.ndarray, m: np.ndarray) -> np.ndarray:
    return cv2.warpPerspective(img, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return skimage_data.coffee()  # 400 x 600 RGB


# ---- H^t ---------------------------------------------------------------------------------------


def test_camera_power_pans_linearly_zooms_geometrically_and_ends_on_h():
    pan = np.array([[1, 0, 90.0], [0, 1, -30.0], [0, 0, 1]])
    assert np.allclose(homography_power(pan, 0.25), [[1, 0, 22.5], [0, 1, -7.5], [0, 0, 1]], atol=1e-9)
    zoom = np.array([[2.5, 0, -100.0], [0, 2.5, -60.0], [0, 0, 1]])  # 2.5x about (66.7, 40)
    path = CameraPath(zoom)
    half = path.at(0.5)
    assert np.isclose(half[0, 0], np.sqrt(2.5)) and np.allclose(half @ half, zoom, atol=1e-9)
    assert np.allclose(path.at(0.5) @ [66.666666, 40, 1], [66.666666, 40, 1], atol=1e-4)  # fixed point kept
    assert np.allclose(path.at(0.0), np.eye(3)) and np.allclose(path.at(1.0), zoom)
    with pytest.raises(ValueError, match="orientation"):
        CameraPath(np.diag([-1.0, 1.0, 1.0]))


def test_camera_power_agrees_with_scipy_and_a_conjugated_path_with_a_fresh_one():
    """The path's own 3 x 3 logarithm and exponential (`camera._logm`, `_expm`) against scipy's
    expm(t logm(H)), for a
    pan, a zoom, a roll with a pan and a mild perspective; `conjugate` against a new path."""
    from scipy.linalg import expm, logm

    c, s = np.cos(0.26), np.sin(0.26)
    for h in (np.array([[1, 0, -176.0], [0, 1, 0.3], [0, 0, 1]]), np.array([[2.5, 0, -300.0], [0, 2.5, -200], [0, 0, 1]]),
              np.array([[c, -s, 40.0], [s, c, -30], [0, 0, 1]]),
              np.array([[1.2, 0.05, 30.0], [-0.04, 1.18, -5.0], [1e-4, 0, 1.0]])):
        path = CameraPath(h)
        log = logm(h / np.cbrt(np.linalg.det(h))).real
        for t in (-1.0, -0.5, 0.1, 0.5, 0.9, 1.5):
            want = expm(t * log)
            assert np.allclose(path.at(t), want / want[2, 2], rtol=1e-10, atol=1e-9)
        cmap = np.array([[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]])
        fresh = CameraPath(np.linalg.inv(cmap) @ h @ cmap)
        for t in (-0.5, 0.3, 1.0):
            assert np.allclose(path.conjugate(cmap).at(t), fresh.at(t), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="no real logarithm"):
        CameraPath(np.diag([-1.0, -1.0, 1.0]))  # a roll of 180 degrees


# ---- the camera solved from matches --------------------------------------------------------------

CASES = {
    # name: (view A, view B, expected model)
    "pan 55% of the frame": ((220, 200, 240), (220 + 0.55 * 240, 200, 240), "translation"),
    "tilt 30%": ((300, 150, 260), (300, 150 + 0.3 * 146, 260), "translation"),
    "zoom in 2.5x": ((300, 200, 400), (300, 200, 160), "zoom"),
    "zoom out 2.5x": ((300, 200, 160), (300, 200, 400), "zoom"),
    "roll 15 degrees": ((300, 200, 300, 0), (300, 200, 300, 15), "similarity"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_camera_moves_are_solved_and_rendered_as_the_exact_views(photo, name):
    va, vb, kind = CASES[name]
    ma, mb = view_matrix(*va), view_matrix(*vb)
    hom = mb @ np.linalg.inv(ma)
    a, b = render(photo, ma), render(photo, mb)
    cam = solve_camera(a, b)
    kinds = ("similarity", "affine", "homography") if kind == "zoom" else (kind,)  # few matches at 2.5x
    assert cam is not None and cam.kind in kinds, cam
    corners = np.float32([[0, 0], [W - 1, 0], [0, H - 1], [W - 1, H - 1]]).reshape(-1, 1, 2)
    err = np.abs(cv2.perspectiveTransform(corners, cam.matrix) - cv2.perspectiveTransform(corners, hom)).max()
    assert err < 3.0, err  # within 3 px at every corner of the frame (1% of its width)
    ts = [0.25, 0.5, 0.75]
    info: dict = {}
    outs = list(inbetween(a, b, ts, info=info))
    assert info["mode"] == "camera" and info["camera"]["model"] in kinds, info
    path = CameraPath(hom)
    for t, out in zip(ts, outs):
        truth = render(photo, path.at(t) @ ma)
        assert psnr(out, truth) > 32.0, (t, psnr(out, truth))
        assert psnr(out, truth) > psnr(cross_fade(a, b, t), truth) + 12.0


def test_a_moving_subject_over_part_of_the_frame_does_not_move_the_camera(photo):
    # the background pans 20% of the frame; a "subject" (another picture) covering a seventh of
    # the frame moves the other way: the camera is the background's pan
    ma, mb = view_matrix(280, 200, 300), view_matrix(280 + 0.2 * 300, 200, 300)
    a, b = render(photo, ma), render(photo, mb)
    subject = cv2.resize(skimage_data.astronaut(), (96, 54), interpolation=cv2.INTER_AREA)
    a[45:99, 120:216] = subject
    b[45:99, 60:156] = subject
    cam = solve_camera(a, b)
    assert cam is not None
    expected = -0.2 * W  # photo content moves left in the frame
    assert abs(cam.matrix[0, 2] - expected) < 1.0 and abs(cam.matrix[1, 2]) < 1.0, cam.matrix
    info: dict = {}
    list(inbetween(a, b, [0.5], info=info))
    assert info["mode"] == "camera"


# ---- the cut guard -------------------------------------------------------------------------------


def test_unrelated_photographs_are_a_cut(photo):
    a = render(photo, view_matrix(300, 200, 300))
    b = cv2.resize(skimage_data.astronaut()[100:400], (W, H), interpolation=cv2.INTER_AREA)
    cam = fit_camera(a, b)
    assert cam is None or cam.inliers < 10
    info: dict = {}
    outs = list(inbetween(a, b, [0.25, 0.75], info=info, detect_cuts=True))
    assert info["mode"] == "cut"
    assert np.array_equal(outs[0], a) and np.array_equal(outs[1], b)
    # between keyframes (the default) the same pair is bridged, never held
    info = {}
    outs = list(inbetween(a, b, [0.25, 0.75], info=info))
    assert info["mode"] == "fallback", info
    assert not np.array_equal(outs[0], a) and not np.array_equal(outs[1], b)


@pytest.mark.skipif(not (SHARED / "tree.avi").is_file(), reason="../shared/bench-data/tree.avi not present")
def test_a_cut_between_real_footage_is_a_cut_and_a_shot_is_not():
    import av

    with av.open(str(SHARED / "tree.avi")) as c:
        tree = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    other = cv2.cvtColor(cv2.imread(str(SHARED / "basketball1.png")), cv2.COLOR_BGR2RGB)
    other = cv2.resize(other, tree[0].shape[1::-1], interpolation=cv2.INTER_AREA)
    info: dict = {}
    list(inbetween(tree[0], other, [0.5], info=info, detect_cuts=True))
    assert info["mode"] == "cut", info
    # a keyframe gap of 24 distinct frames inside the shot: explained, not a cut, and trusted
    info = {}
    list(inbetween(tree[0], tree[24], [0.5], info=info, detect_cuts=True))
    assert info["mode"] in ("camera", "flow"), info
    info = {}
    list(inbetween(tree[0], tree[24], [0.5], info=info))
    assert info["mode"] in ("camera", "flow") and info["trusted"] and info["explained"] > 0.8, info


def test_related_but_unexplained_pair_is_a_cross_fade_fallback_never_a_hold():
    # two unrelated textures, with the guard told that any pair shares enough matches to be
    # related (related_matches=0): not explained, not a cut -> a reported cross-fade, no hold
    rng = np.random.default_rng(3)
    a = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), (0, 0), 1.5)
    b = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), (0, 0), 1.5)
    info: dict = {}
    ts = [0.2, 0.5, 0.8]
    outs = list(FlowInterpolator(related_matches=0, detect_cuts=True).inbetween(a, b, ts, info=info))
    assert info["mode"] == "fallback" and "not a cut" in info["why"], info
    for t, out in zip(ts, outs):
        assert np.array_equal(out, cross_fade(a, b, t))
    info = {}
    list(FlowInterpolator(detect_cuts=True).inbetween(a, b, ts, info=info))
    assert info["mode"] == "cut"


def test_no_camera_motion_option_skips_the_camera(photo):
    ma, mb = view_matrix(280, 200, 300), view_matrix(280 + 0.1 * 300, 200, 300)
    a, b = render(photo, ma), render(photo, mb)
    info: dict = {}
    list(FlowInterpolator(camera_motion=False).inbetween(a, b, [0.5], info=info))
    assert info["mode"] == "flow" and "camera" not in info


def test_bad_camera_options_are_refused():
    with pytest.raises(ValueError, match="camera_min_move"):
        FlowInterpolator(camera_min_move=-1)
    with pytest.raises(ValueError, match="feature_max_side"):
        FlowInterpolator(feature_max_side=10)


# ---- the sample's shot 1B: a pan, rendered as a pan ------------------------------------------------


def test_sample_shot_1b_renders_as_a_pan_matching_the_exact_views():
    # samples/make_samples.py cut 1B's storyboard as 300 px wide windows of the astronaut photo
    # centred at x = 150, 256, 360 (y = 180), resized to 512 x 288: the exact view at any t
    from fractions import Fraction

    from keyrender.core.shotlist import load_shotlist

    repo = Path(__file__).resolve().parents[1]
    shot = next(s for s in load_shotlist(repo / "samples" / "shotlist.csv").shots if s.id == "1B")
    photo = skimage_data.astronaut()
    read = lambda p: cv2.cvtColor(cv2.imread(str(repo / "samples" / p)), cv2.COLOR_BGR2RGB)  # noqa: E731
    a, b = read("storyboard/1B_0.jpg"), read("storyboard/1B_1.jpg")
    gap = shot.frames // 2  # three keyframes over the shot: two spans of about a second
    times = [j / gap for j in range(1, gap)]
    info: dict = {}
    outs = list(inbetween(a, b, times, info=info))
    assert info["mode"] == "camera" and info["camera"]["model"] == "translation", info

    def exact(cx: float) -> np.ndarray:
        x0, y0 = cx - 150, 180 - 300 * 288 / 512 / 2
        window = cv2.warpAffine(photo, np.float64([[1, 0, -x0], [0, 1, -round(y0)]]), (300, round(300 * 288 / 512)),
                                flags=cv2.INTER_LINEAR)
        return cv2.resize(window, (512, 288), interpolation=cv2.INTER_AREA)

    # 1B is at 23.976 fps, and its first span is the gap the in-betweens above were asked for
    assert shot.fps == Fraction(24000, 1001) and shot.keyframe_frames[1] - shot.keyframe_frames[0] == gap
    ours = [psnr(o, exact(150 + 106 * t)) for o, t in zip(outs, times)]
    fades = [psnr(cross_fade(a, b, t), exact(150 + 106 * t)) for t in times]
    assert min(ours) > 28.0 and np.mean(ours) > np.mean(fades) + 8.0, (ours, fades)


# ---- the SIFT matching only where it is needed ---------------------------------------------------


def test_small_explained_motion_skips_the_features_and_a_pan_does_not(photo, monkeypatch):
    """DIS first: a 1.5 px pan (what a 2-frame gap of a steady shot looks like) is explained by
    the flow and pays no SIFT; a 30% pan fails `flow_suffices` and is solved as a camera move."""
    from keyrender.interpolate import flow as flow_mod

    calls = []
    real = flow_mod.pair_camera
    monkeypatch.setattr(flow_mod, "pair_camera", lambda *a, **k: calls.append(1) or real(*a, **k))
    a = render(photo, view_matrix(300, 200, 300))
    small = render(photo, view_matrix(303, 200, 300))  # 3 photo px = 2.56 frame px
    info: dict = {}
    out = list(inbetween(a, small, [0.5], info=info))
    assert info["mode"] == "flow" and "skipped" in info["features"] and calls == []
    exact = render(photo, view_matrix(301.5, 200, 300))
    assert psnr(out[0], exact) > 30
    # the gate off: same mode, the features computed
    info_off: dict = {}
    list(inbetween(a, small, [0.5], backend=FlowInterpolator(flow_gate=False), info=info_off))
    assert "features" not in info_off and calls == [1]
    pan = render(photo, view_matrix(300 + 0.3 * 300, 200, 300))
    info = {}
    list(inbetween(a, pan, [0.5], info=info))
    assert info["mode"] == "camera" and "features" not in info and calls == [1, 1]


def test_features_of_a_frame_shared_by_two_pairs_are_detected_once(photo, monkeypatch):
    from keyrender.interpolate import camera

    frames = [render(photo, view_matrix(250 + 40 * i, 200, 300)) for i in range(3)]
    camera._FEATURES.clear()
    grays = []
    real = camera._gray
    monkeypatch.setattr(camera, "_gray", lambda f, s: grays.append(1) or real(f, s))
    m01 = camera.match_features(frames[0], frames[1])
    m12 = camera.match_features(frames[1], frames[2])
    assert len(grays) == 3  # frame 1 once, not twice
    # the cached features give the same matches as fresh ones
    camera._FEATURES.clear()
    again = camera.match_features(frames[1], frames[2])
    assert np.array_equal(again[0], m12[0]) and np.array_equal(again[1], m12[1]) and len(m01[0]) > 50
    # a frame with the same pixels but another size setting is not a hit
    camera.match_features(frames[1], frames[2], max_side=320)
    assert len(grays) == 3 + 2 + 2


def test_mutual_nearest_is_the_brute_force_ratio_and_cross_check(photo):
    """One distance matrix for both directions gives the matches of OpenCV's brute-force matcher
    (knnMatch A -> B with Lowe's ratio test, B's nearest in A for the mutual check)."""
    from keyrender.interpolate.camera import frame_features, mutual_nearest

    a = render(photo, view_matrix(280, 200, 300))
    b = render(photo, view_matrix(330, 190, 260, 8))
    _, da, _ = frame_features(a)
    _, db, _ = frame_features(b)
    bf = cv2.BFMatcher(cv2.NORM_L2)
    back = {m.queryIdx: m.trainIdx for m in bf.match(db, da)}
    want = {(m.queryIdx, m.trainIdx) for m, n in bf.knnMatch(da, db, k=2)
            if m.distance < 0.8 * n.distance and back[m.trainIdx] == m.queryIdx}
    ia, ib = mutual_nearest(da, db, 0.8, block=700)  # several blocks of A's rows
    assert set(zip(ia.tolist(), ib.tolist())) == want and len(want) > 100
    # by hand: a0 -> b0 passes; a1's two nearest are equally near (ratio test fails); a2's
    # nearest is b0, whose nearest is a0 (not mutual)
    da = np.float32([[0, 0], [10, 10], [1, 1]])
    db = np.float32([[0, 0.1], [9, 11], [11, 9]])
    ia, ib = mutual_nearest(da, db)
    assert ia.tolist() == [0] and ib.tolist() == [0]
    # too few descriptors: no matches, no error
    assert len(mutual_nearest(da, db[:1])[0]) == 0 and len(mutual_nearest(da[:0], db)[0]) == 0


def test_small_frames_are_matched_at_their_own_size_unless_that_is_too_little(photo):
    """A pan between two 256 x 144 frames is solved from matches at their own size; a 2.5x zoom,
    where the views share few keypoints at that size, from the copies enlarged to 640 px."""
    from keyrender.interpolate.camera import pair_camera

    ma, mb = view_matrix(280, 200, 300), view_matrix(280 + 0.3 * 300, 200, 300)
    (pa, _, s), cam = pair_camera(render(photo, ma), render(photo, mb))
    assert s == 1.0 and cam is not None and cam.kind == "translation" and len(pa) >= 50
    assert abs(cam.matrix[0, 2] + 0.3 * W) < 0.5 and abs(cam.matrix[1, 2]) < 0.5
    ma, mb = view_matrix(300, 200, 450), view_matrix(300, 200, 180)
    (_, _, s), cam = pair_camera(render(photo, ma), render(photo, mb))
    assert s == 640 / W and cam is not None and cam.explains()
    assert abs(cam.summary(H, W)["zoom"] - 2.5) < 0.03
