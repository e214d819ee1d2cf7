"""The built-in face model (dlib) on real faces: detection, determinism, same / other person,
who is who, swaps, the store, the commands. Real photos are read from ../shared/faces
(evaluation only: read in place, copied only into tmp folders); tests skip where it is absent."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keyrender.core.errors import InputError, ModelNotFoundError
from keyrender.identity import (
    DlibFaceEmbedder,
    FaceChecker,
    IdentityStore,
    audit_video,
    check_frame,
    load_face_model,
    read_image,
)
from helpers import cli

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
needs_faces = pytest.mark.skipif(not (FACES / "people").is_dir(),
                                 reason=f"real faces not present at {FACES} (evaluation data, not in the repo)")
pytestmark = needs_faces


def _photo(person: str, name: str) -> np.ndarray:
    return read_image(FACES / "people" / person / name)


@pytest.fixture(scope="module")
def dlib_model() -> DlibFaceEmbedder:
    return load_face_model("dlib")


def _cast(root: Path, people: dict[str, list[str]]) -> Path:
    """A cast folder in tmp with these photos of these people (copies, deleted with tmp)."""
    for person, files in people.items():
        (root / person).mkdir(parents=True)
        for f in files:
            shutil.copy(FACES / "people" / person / f, root / person / f)
    return root


@pytest.fixture
def real_cast(tmp_path) -> Path:
    return _cast(tmp_path / "cast", {"obama": ["obama.jpg", "obama1.jpg"],
                                     "biden": ["biden2.jpg"]})


# -- the backend ------------------------------------------------------------------------------
def test_default_face_model_is_the_builtin_dlib_one(dlib_model, monkeypatch):
    monkeypatch.delenv("KEYRENDER_FACE_MODEL", raising=False)
    default = load_face_model(lazy=True)
    assert isinstance(default, DlibFaceEmbedder) and default.name == dlib_model.name
    assert default.metric == "euclidean" and default.name.startswith("dlib:hog")
    cnn = load_face_model("dlib-cnn", lazy=True)
    assert cnn.name.startswith("dlib-cnn:cnn") and cnn.name != default.name


def test_detection_on_real_photos(dlib_model):
    img = _photo("john_simm", "000288_00470387.jpg")
    faces = dlib_model.faces(img)
    assert len(faces) == 1
    f = faces[0]
    x0, y0, x1, y1 = f.box
    assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0]
    assert f.landmarks.shape == (5, 2) and 0.5 < f.score <= 1.0
    assert f.embedding.shape == (128,) and f.embedding.dtype == np.float32
    # the five points lie inside the face box (eye corners, nose)
    assert np.all((f.landmarks[:, 0] >= x0 - 5) & (f.landmarks[:, 0] <= x1 + 5))
    group = dlib_model.faces(read_image(FACES / "groups" / "obama_and_biden.jpg"))
    assert len(group) == 3  # Biden, Obama, and a child in the corner
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in (g.box for g in group)]
    assert areas == sorted(areas, reverse=True)
    assert dlib_model.faces(np.full((120, 160, 3), 128, np.uint8)) == []


def test_embeddings_are_deterministic_and_batch_equals_single(dlib_model):
    a, b = _photo("obama", "obama.jpg"), _photo("scarlett", "img8.jpg")
    one = dlib_model.faces(a)[0].embedding
    again = dlib_model.faces(a.copy())[0].embedding
    np.testing.assert_array_equal(one, again)
    batch = dlib_model.faces_batch([a, b])
    np.testing.assert_allclose(batch[0][0].embedding, one, atol=1e-6)
    np.testing.assert_allclose(batch[1][0].embedding, dlib_model.faces(b)[0].embedding, atol=1e-6)


def test_bad_inputs_and_names(dlib_model):
    for bad in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), "image.png"):
        with pytest.raises(InputError, match="RGB uint8"):
            dlib_model.faces(bad)
    with pytest.raises(InputError, match="recognizer"):
        load_face_model("dlib", recognizer="x.onnx")
    with pytest.raises(InputError, match="detector"):
        DlibFaceEmbedder("haar")
    with pytest.raises(InputError, match="upsample"):
        DlibFaceEmbedder(upsample=9)


def test_missing_model_package_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else real(name, *a))
    with pytest.raises(ModelNotFoundError, match="face_recognition_models.*pip install dlib-bin"):
        load_face_model("dlib")


def test_identity_package_import_does_not_import_dlib():
    code = ("import sys; import keyrender.identity as i; i.load_face_model('dlib', lazy=True); "
            "print('dlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- identities and checks on real faces -------------------------------------------------------
@pytest.mark.slow
def test_same_person_accepted_other_people_and_strangers_rejected(dlib_model, real_cast):
    ids = IdentityStore(real_cast).build(dlib_model)
    obama, biden = ids["obama"], ids["biden"]
    assert obama.metric == "euclidean" and 0.45 <= obama.threshold <= 0.50
    held_back = dlib_model.faces(_photo("obama", "obama2.jpg"))[0].embedding
    assert obama.accepts(held_back) and not biden.accepts(held_back)
    other = dlib_model.faces(_photo("biden", "biden.jpg"))[0].embedding
    assert biden.accepts(other) and not obama.accepts(other)
    for person, f in (("scarlett", "img8.jpg"), ("john_salley", "000179_02159509.jpg"),
                      ("angelina_jolie", "img1.jpg")):
        e = dlib_model.faces(_photo(person, f))[0].embedding
        assert not obama.accepts(e) and not biden.accepts(e), person
    strangers = []
    for g in sorted((FACES / "groups").glob("strangers_*.jpg")):
        strangers += dlib_model.faces(read_image(g))
    assert len(strangers) >= 10
    for s in strangers:
        fc = check_frame([s], ids, ["obama"])
        assert not fc.passed and fc.characters["obama"].wrong_person is None


def test_who_is_who_in_a_two_person_photo(dlib_model, real_cast):
    ids = IdentityStore(real_cast).build(dlib_model)
    faces = dlib_model.faces(read_image(FACES / "groups" / "obama_and_biden.jpg"))
    fc = check_frame(faces, ids, ["obama", "biden"])
    assert fc.passed
    # Biden stands on the left of the photo, Obama on the right; the child is nobody expected
    assert fc.characters["biden"].box[0] < fc.characters["obama"].box[0]
    assert len(fc.strangers) == 1


def _video(path: Path, frames: list[np.ndarray], fps: int = 8) -> Path:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "12"}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    return path


def _frame(*photos: np.ndarray, size=(512, 288)) -> np.ndarray:
    import cv2

    w, h = size
    frame = np.full((h, w, 3), 30, np.uint8)
    slot = w // len(photos)
    for i, p in enumerate(photos):
        scale = min(0.9 * h / p.shape[0], 0.9 * slot / p.shape[1])
        small = cv2.resize(p, (int(p.shape[1] * scale), int(p.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        y, x = (h - small.shape[0]) // 2, i * slot + (slot - small.shape[1]) // 2
        frame[y:y + small.shape[0], x:x + small.shape[1]] = small
    return frame


@pytest.mark.slow
def test_swap_across_frames_is_the_wrong_person(dlib_model, real_cast, tmp_path):
    ids = IdentityStore(real_cast).build(dlib_model)
    o, b = _photo("obama", "obama2.jpg"), _photo("biden", "biden.jpg")
    frames = [_frame(o, b)] * 4 + [_frame(b, b)] * 2 + [_frame(o)] * 2 + [_frame(b)] * 2
    checker = FaceChecker(dlib_model, ids)
    checks = checker.check_batch(frames, ["obama", "biden"])
    assert all(c.passed for c in checks[:4])
    assert not checks[4].passed and checks[4].characters["obama"].wrong_person == "biden"
    # through the video audit (H.264 round trip), one character expected
    video = _video(tmp_path / "swap.mp4", frames[:4] + frames[6:])
    result = audit_video(video, checker, ["obama"])
    status = [r.status["obama"] for r in result.frames]
    assert status == ["pass"] * 6 + ["wrong:biden"] * 2 and result.drift


@pytest.mark.slow
def test_store_rebuilt_when_the_model_changes(dlib_model, real_cast, tmp_path):
    from keyrender.identity.tiny import make_tiny_face_pack

    events = []
    store = IdentityStore(real_cast)
    store.build(dlib_model, progress=events.append)
    assert [e.action for e in events] == ["built", "built"]
    events.clear()
    IdentityStore(real_cast).build(dlib_model, progress=events.append)
    assert [e.action for e in events] == ["cached", "cached"]
    # same label, other detector settings: a different model name -> rebuilt, with the reason
    other = DlibFaceEmbedder(upsample=1)
    assert other.name != dlib_model.name
    assert "built with face model" in store.why_stale("obama", other.name)
    events.clear()
    rebuilt = store.build(other, progress=events.append)
    assert [e.action for e in events] == ["built", "built"] and rebuilt["obama"].model == other.name
    # another model family gets its own folder: the dlib identities stay
    tiny = load_face_model(str(make_tiny_face_pack(tmp_path / "tiny")))
    store.build(tiny, names=["obama"])
    assert set(store.models()) == {"dlib", "tiny"}
    assert store.why_stale("obama", other.name) is None
    assert store.load("obama").model == other.name  # the default judge's identity first
    assert store.load("obama", tiny.name).metric == "cosine"


# -- the commands with the default model -------------------------------------------------------
@pytest.mark.slow
def test_cli_identity_and_check_with_the_default_model(real_cast, tmp_path):
    env = {"KEYRENDER_FACE_MODEL": ""}
    r = cli("identity", "build", real_cast, env=env)
    assert r.exit_code == 0, r.output
    assert "obama: built" in r.output and "biden: built" in r.output
    r = cli("identity", "list", "--cast", real_cast, "--json", env=env)
    assert [x["status"] for x in json.loads(r.output)] == ["ok", "ok"]
    r = cli("identity", "compare", "obama", FACES / "people" / "obama" / "obama2.jpg",
             "--cast", real_cast, "--json", env=env)
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert got["same"] is True and got["metric"] == "euclidean" and got["model"].startswith("dlib")
    r = cli("identity", "compare", "obama", "biden", "--cast", real_cast, env=env)
    assert r.exit_code == 0 and "different people" in r.output
    o, b = _photo("obama", "obama2.jpg"), _photo("biden", "biden.jpg")
    video = _video(tmp_path / "v.mp4", [_frame(o)] * 3 + [_frame(b)] * 2)
    r = cli("check", video, "--cast", real_cast, "--characters", "obama", env=env)
    assert r.exit_code == 3, r.output
    assert "wrong person 2" in r.output and "drift found" in r.output
    r = cli("check", video, "--cast", real_cast, "--json", env=env)  # expected if seen
    data = json.loads(r.output)
    assert r.exit_code == 0 and data["drift"] is False, r.output


# -- the two roles in a render ----------------------------------------------------------------
def test_generated_shot_without_insightface_pack_says_what_to_fetch(project, tmp_path, monkeypatch):
    """The judge is dlib, but generation is conditioned by IP-Adapter FaceID on insightface
    embeddings: a generated shot fails (alone) with the pack to fetch and where."""
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "ifhome"))
    monkeypatch.delenv("KEYRENDER_FACE_MODEL", raising=False)
    r = cli("run", project / "generate.csv", "--out", tmp_path / "out", "--preset", "sd15",
             "--offline", "--json")
    summary = json.loads(r.output.strip().splitlines()[-1])
    reasons = [s["reason"] for s in summary["shots"]]
    assert all(s["status"] == "failed" for s in summary["shots"]), r.output
    for reason in reasons:
        assert "IP-Adapter FaceID" in reason and "buffalo_l.zip" in reason
        assert str(tmp_path / "ifhome" / "models" / "buffalo_l") in reason
    assert not (tmp_path / "ifhome").exists()  # nothing downloaded, nothing created
