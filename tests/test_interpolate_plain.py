"""Keyframes too plain for feature matches (interpolate.direct): the camera by direct alignment
where the pictures determine it, no camera claimed where they do not, and no cut for a pan over a
plain wall. On Middlebury's basketball frame (a grey wall, a door, two players) from the shared
bench data, whose exact views are known."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from keyrender.interpolate import inbetween
from keyrender.interpolate.camera import CameraPath, fit_camera
from keyrender.interpolate.direct import colour_distance, direct_camera, few_keypoints
from keyrender.interpolate.flow import FlowInterpolator, cross_fade
from helpers import psnr

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "bench-data"
W, H = 320, 180

pytestmark = pytest.mark.skipif(not (SHARED / "basketball1.png").is_file(),
                                reason="../shared/bench-data/basketball1.png not present")


@pytest.fixture(scope="module")
def wall() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(SHARED / "basketball1.png")), cv2.COLOR_BGR2RGB)  # 640 x 480


def view(photo: np.ndarray, cx: float, cy: float, width: float, roll: float = 0.0) -> np.ndarray:
    """Photo -> frame for a W x H view (relative centre and width, roll in degrees)."""
    ph, pw = photo.shape[:2]
    s = W / (width * pw)
    c, sn = np.cos(np.radians(roll)), np.sin(np.radians(roll))
    return (np.array([[1, 0, (W - 1) / 2], [0, 1, (H - 1) / 2], [0, 0, 1.0]]) @ np.diag([s, s, 1.0])
            @ np.array([[c, -sn, 0], [sn, c, 0], [0, 0, 1.0]]) @ np.array([[1, 0, -cx * pw], [0, 1, -cy * ph], [0, 0, 1.0]]))


def render(photo: np.ndarray, m: np.ndarray) -> np.ndarray:
    return cv2.warpPerspective(photo, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize("va, vb", [((0.5, 0.5, 0.6), (0.5, 0.5, 0.4)),          # zoom in 1.5x
                                    ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5, 15))],      # roll 15 degrees
                         ids=["zoom in 1.5x", "roll 15 degrees"])
def test_a_camera_move_over_a_plain_wall_is_solved_by_direct_alignment(wall, va, vb):
    ma, mb = view(wall, *va), view(wall, *vb)
    a, b = render(wall, ma), render(wall, mb)
    # the features cannot: one view has a handful of keypoints, and too few matches agree
    assert few_keypoints(a, b) is not None
    fit = fit_camera(a, b)
    assert fit is None or not fit.explains()
    hom = mb @ np.linalg.inv(ma)
    cam = direct_camera(a, b, seed=fit.matrix if fit is not None else None)
    assert cam is not None and cam.source == "photometric" and cam.explains()
    corners = np.float32([[0, 0], [W - 1, 0], [0, H - 1], [W - 1, H - 1]]).reshape(-1, 1, 2)
    err = np.abs(cv2.perspectiveTransform(corners, cam.matrix) - cv2.perspectiveTransform(corners, hom)).max()
    assert err < 3.0, err
    ts = [0.25, 0.5, 0.75]
    info: dict = {}
    outs = list(inbetween(a, b, ts, info=info))
    assert info["mode"] == "camera" and info["camera"]["source"] == "photometric", info
    path = CameraPath(hom)
    for t, out in zip(ts, outs):
        truth = render(wall, path.at(t) @ ma)
        assert psnr(out, truth) > 38.0, (t, psnr(out, truth))


def test_no_camera_is_claimed_where_the_pictures_do_not_determine_it(wall):
    # zoom in 2.5x onto the bare wall: B matches A's middle, and almost anywhere else as well
    a, b = render(wall, view(wall, 0.5, 0.5, 0.75)), render(wall, view(wall, 0.5, 0.5, 0.3))
    assert len(cv2.SIFT_create().detect(cv2.cvtColor(b, cv2.COLOR_RGB2GRAY))) < 10
    assert direct_camera(a, b) is None


@pytest.mark.parametrize("x0, width, reason", [
    (0.32, 0.38, "too plain for feature matches"),        # B: a few keypoints, nothing to match
    (0.30, 0.45, "of 9 feature matches agree"),            # 5 of 9 matches agree: too few to solve
], ids=["plain", "few matches"])
def test_a_pan_over_a_plain_wall_is_never_held_as_a_cut(wall, x0, width, reason):
    # pan 55%: the overlap is bare wall, too little to solve the camera by matches or alignment;
    # before, both pairs were held and jumped as cuts
    a, b = render(wall, view(wall, x0, 0.5, width)), render(wall, view(wall, x0 + 0.55 * width, 0.5, width))
    ts = [0.25, 0.75]
    info: dict = {}
    outs = list(inbetween(a, b, ts, info=info, detect_cuts=True))
    assert info["mode"] == "fallback" and reason in info["why"] and "not a cut" in info["why"], info
    for t, out in zip(ts, outs):
        assert np.array_equal(out, cross_fade(a, b, t))
    # between keyframes (the default): a dissolve too (a bare wall has nothing to move)
    info = {}
    outs = list(inbetween(a, b, ts, info=info))
    assert info["mode"] == "fallback", info
    for t, out in zip(ts, outs):
        assert np.abs(out.astype(np.int16) - cross_fade(a, b, t)).mean() < 1.0


def test_a_plain_frame_cut_to_a_differently_coloured_one_is_still_a_cut(wall):
    # the bare grey wall, then a plain blue-to-orange sky: nothing to match on either side, but
    # the colours say these are different pictures
    a = render(wall, view(wall, 0.30 + 0.55 * 0.45, 0.5, 0.45))
    y = np.linspace(0.0, 1.0, H, dtype=np.float32)[:, None, None]
    sky = ((1 - y) * np.float32([40, 90, 200]) + y * np.float32([240, 150, 60])) * np.ones((1, W, 1), np.float32)
    b = np.clip(sky + np.random.default_rng(1).normal(0, 1.5, sky.shape), 0, 255).astype(np.uint8)
    assert colour_distance(a, b) > 0.6
    info: dict = {}
    outs = list(inbetween(a, b, [0.25, 0.75], info=info, detect_cuts=True))
    assert info["mode"] == "cut", info
    assert np.array_equal(outs[0], a) and np.array_equal(outs[1], b)


def test_camera_motion_off_skips_the_direct_search(wall, monkeypatch):
    import keyrender.interpolate.flow as flow

    def boom(*_a, **_k):  # pragma: no cover - the test fails if it runs
        raise AssertionError("direct_camera ran with camera_motion=False")

    monkeypatch.setattr(flow, "direct_camera", boom)
    a, b = render(wall, view(wall, 0.5, 0.5, 0.6)), render(wall, view(wall, 0.5, 0.5, 0.4))
    info: dict = {}
    list(FlowInterpolator(camera_motion=False).inbetween(a, b, [0.5], info=info))
    assert info["mode"] == "fallback", info   # not a camera (the search did not run), and not held as a cut
