"""The identity layer: real insightface/onnxruntime loading on generated ONNX files, exact unit
tests of assignment, thresholds and the store, and the `identity` / `check` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from keyrender.core.errors import InputError, ModelNotFoundError
from keyrender.identity import (
    Face,
    FaceChecker,
    Identity,
    IdentityStore,
    InsightFaceEmbedder,
    Reference,
    assign,
    audit_video,
    calibrate_threshold,
    check_frame,
    load_face_model,
    write_plot,
)
from helpers import synthetic_frame
from keyrender.identity.tiny import make_tiny_face_pack

LEFT, RIGHT, CENTRE = (24, 88), (152, 88), (88, 88)


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    return make_tiny_face_pack(tmp_path_factory.mktemp("pack") / "tiny")


@pytest.fixture(scope="module")
def embedder(pack) -> InsightFaceEmbedder:
    return load_face_model(str(pack))


def _write(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rgb[:, :, ::-1])
    return path


def _make_cast(root: Path, people: dict[str, int]) -> Path:
    cast = root / "cast"
    for name, seed in people.items():
        for k, pos in enumerate([CENTRE, (80, 96), (96, 80)]):
            _write(cast / name / f"{k}.png", synthetic_frame([(seed, pos)]))
    return cast


@pytest.fixture
def cast(tmp_path) -> Path:
    return _make_cast(tmp_path, {"alice": 1, "bob": 2})


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def _ident(name: str, *vecs, threshold=None) -> Identity:
    refs = tuple(Reference(f"{i}.png", f"{i:064d}") for i in range(len(vecs)))
    return Identity.from_embeddings(name, np.stack([_unit(v) for v in vecs]), refs, "m",
                                    threshold=threshold)


def _face(vec, x=0.0) -> Face:
    return Face((x, 0.0, x + 10, 10.0), np.zeros((5, 2), np.float32), 0.9, _unit(vec))


# -- the backend through insightface's real classes ------------------------------------------
def test_tiny_pack_loads_through_insightface_router(pack, embedder):
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.scrfd import SCRFD

    embedder.load()
    assert isinstance(embedder._det, SCRFD) and isinstance(embedder._rec, ArcFaceONNX)
    assert embedder._rec.input_size == (112, 112)
    assert embedder.name.startswith("tiny:")


def test_tiny_pack_is_deterministic_and_fast(tmp_path):
    t = time.perf_counter()
    a = make_tiny_face_pack(tmp_path / "a")
    assert time.perf_counter() - t < 2.0
    b = make_tiny_face_pack(tmp_path / "b")
    for f in ("det_tiny.onnx", "w600k_tiny.onnx"):
        assert (a / f).read_bytes() == (b / f).read_bytes()


def test_detector_counts_faces(embedder):
    assert embedder.faces(np.full((256, 256, 3), 128, np.uint8)) == []
    one = embedder.faces(synthetic_frame([(1, CENTRE)]))
    assert len(one) == 1
    x0, y0, x1, y1 = one[0].box
    assert abs((x0 + x1) / 2 - 128) <= 16 and abs((y0 + y1) / 2 - 128) <= 16
    assert one[0].landmarks.shape == (5, 2) and one[0].score > 0.9
    assert np.isclose(np.linalg.norm(one[0].embedding), 1.0, atol=1e-5)
    assert len(embedder.faces(synthetic_frame([(1, LEFT), (2, RIGHT)]))) == 2


def test_embedding_is_a_function_of_the_face(embedder):
    a1 = embedder.faces(synthetic_frame([(1, CENTRE)]))[0].embedding
    a1b = embedder.faces(synthetic_frame([(1, CENTRE)]))[0].embedding
    a2 = embedder.faces(synthetic_frame([(1, (80, 96))]))[0].embedding  # moved a little
    b = embedder.faces(synthetic_frame([(2, CENTRE)]))[0].embedding
    assert float(a1 @ a1b) == pytest.approx(1.0, abs=1e-6)
    # the tiny detector places boxes on an 8-cell grid, so a moved face loses some similarity,
    # but stays clearly closer than somebody else (values are deterministic: fixed seeds)
    assert float(a1 @ a2) > 0.25
    assert float(a1 @ b) < 0.3 and float(a1 @ a2) - float(a1 @ b) > 0.25


def test_batch_equals_single(embedder):
    imgs = [synthetic_frame([(1, CENTRE)]), np.full((200, 300, 3), 90, np.uint8),
            synthetic_frame([(1, LEFT), (2, RIGHT)])]
    batch = embedder.faces_batch(imgs)
    assert [len(f) for f in batch] == [1, 0, 2]
    for img, faces in zip(imgs, batch):
        single = embedder.faces(img)
        for s, b in zip(single, faces):
            assert s.box == b.box
            np.testing.assert_allclose(s.embedding, b.embedding, atol=1e-5)


def test_backend_rejects_non_rgb_uint8(embedder):
    with pytest.raises(InputError, match="RGB uint8"):
        embedder.faces(np.zeros((64, 64), np.uint8))
    with pytest.raises(InputError, match="RGB uint8"):
        embedder.faces(np.zeros((64, 64, 3), np.float32))


# -- model lookup and its errors -------------------------------------------------------------
def test_missing_pack_names_folder_and_how_to_fill(tmp_path, monkeypatch):
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "ifhome"))
    monkeypatch.delenv("KEYRENDER_FACE_MODEL", raising=False)
    with pytest.raises(ModelNotFoundError) as err:
        load_face_model("buffalo_l")
    msg = str(err.value)
    assert str(tmp_path / "ifhome" / "models" / "buffalo_l") in msg
    assert "buffalo_l.zip" in msg and "--allow-download" in msg and "non-commercial" in msg
    assert err.value.exit_code == 2
    assert not (tmp_path / "ifhome").exists()  # nothing was downloaded or created
    with pytest.raises(ModelNotFoundError, match="antelopev2"):
        load_face_model("antelopev2")


def test_missing_folder_and_env_override(tmp_path, monkeypatch, pack):
    with pytest.raises(ModelNotFoundError, match=str(tmp_path / "nope")):
        load_face_model(str(tmp_path / "nope"))
    monkeypatch.setenv("KEYRENDER_FACE_MODEL", str(pack))
    assert load_face_model(lazy=True).name.startswith("tiny:")


def test_root_argument_finds_a_pack_by_name(tmp_path, pack):
    import shutil

    with pytest.raises(ModelNotFoundError, match="mypack"):
        load_face_model("mypack", root=tmp_path)                   # not there yet
    shutil.copytree(pack, tmp_path / "models" / "mypack")
    emb = load_face_model("mypack", root=tmp_path)
    assert emb.name.startswith("mypack:")
    assert len(emb.faces(synthetic_frame([(1, CENTRE)]))) == 1     # the pack under root was loaded and runs


def test_recognizer_override_and_bad_files(tmp_path, pack, embedder):
    import shutil

    folder = tmp_path / "det_only"
    folder.mkdir()
    shutil.copy(pack / "det_tiny.onnx", folder)
    with pytest.raises(ModelNotFoundError, match="no face recognizer"):
        load_face_model(str(folder))
    emb = load_face_model(str(folder), recognizer=pack / "w600k_tiny.onnx")
    assert emb.name == embedder.name.replace("tiny:", "det_only:")
    with pytest.raises(ModelNotFoundError, match="missing.onnx"):
        load_face_model(str(folder), recognizer=tmp_path / "missing.onnx")
    # a "recognizer" that is really the detector is refused by insightface's router
    with pytest.raises(InputError, match="not a face recognition model"):
        load_face_model(str(folder), recognizer=pack / "det_tiny.onnx")


def test_lazy_model_does_not_create_sessions(pack):
    emb = load_face_model(str(pack), lazy=True)
    assert emb._det is None
    assert len(emb.faces(synthetic_frame([(1, CENTRE)]))) == 1


# -- thresholds and Identity -----------------------------------------------------------------
def test_calibrated_threshold_is_bounded():
    cal = dict(min_references=1)  # the clip rule itself, from any number of references
    assert calibrate_threshold(np.array([[1.0, 0.0]]), **cal) == pytest.approx(0.5)  # ceiling
    loose = np.array([[1.0, 0.0], [0.0, 1.0]])  # each ref at cos 0.707 of the centroid
    assert calibrate_threshold(loose, **cal) == pytest.approx(0.5)  # 0.557, capped
    looser = np.array([[1.0, 0.0], [-0.2, 0.98]])  # 101.5 degrees apart: cos 0.632 to centroid
    half = np.arccos(looser[0] @ looser[1] / np.linalg.norm(looser[1])) / 2
    assert calibrate_threshold(looser, **cal) == pytest.approx(np.cos(half) - 0.15, abs=1e-4)
    very_loose = np.array([[1.0, 0.0], [-0.9, 0.1]])
    assert calibrate_threshold(very_loose, **cal) == pytest.approx(0.30)  # floor
    assert calibrate_threshold(loose, margin=0.0, ceiling=0.9, **cal) == pytest.approx(0.7071, abs=1e-3)
    with pytest.raises(ValueError):
        calibrate_threshold(loose, floor=0.6, ceiling=0.5)


def test_one_or_two_references_take_the_models_pair_threshold():
    """Calibration knows what it doesn't know: 1-2 references have no spread worth the name, so
    the identity takes the metric's pair threshold and says so; 3 are calibrated."""
    for metric, pair in (("cosine", 0.35), ("euclidean", 0.45)):
        one = Identity.from_embeddings("a", np.array([[1.0, 0.0, 0.0]]), (Reference("0.png", "x"),), "m",
                                       metric=metric)
        assert one.threshold == pytest.approx(pair) and one.calibration == "pair"
        assert one.calibration_note == ("1 reference: the model's default threshold; add photos for a "
                                        "calibrated one (3 or more)")
        two = Identity.from_embeddings("a", np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0]]),
                                       (Reference("0.png", "x"), Reference("1.png", "y")), "m", metric=metric)
        assert two.threshold == pytest.approx(pair) and two.calibration_note.startswith("2 references: the model's")
    three = np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.95, 0.0, 0.05]])
    ident = Identity.from_embeddings("a", three, tuple(Reference(f"{i}.png", str(i)) for i in range(3)), "m")
    assert ident.calibration == "references" and ident.threshold == pytest.approx(0.5)  # tight refs: the ceiling
    assert ident.calibration_note == "3 references: threshold calibrated from their spread"
    assert ident.to_json()["calibration"] == "references"
    assert "forced to 0.600" in ident.with_threshold(0.6).calibration_note


def test_identity_centroid_spread_similarity_digest():
    ident = _ident("a", [1, 0, 0], [0, 1, 0])
    np.testing.assert_allclose(ident.centroid, _unit([1, 1, 0]), atol=1e-6)
    assert ident.spread == pytest.approx(1 - 0.70710677, abs=1e-5)
    assert ident.similarity([1, 1, 0]) == pytest.approx(1.0)
    np.testing.assert_allclose(ident.similarity(np.eye(3)), [0.7071, 0.7071, 0.0], atol=1e-4)
    same = _ident("a", [1, 0, 0], [0, 1, 0])
    assert ident.digest == same.digest
    assert ident.with_threshold(0.9).digest != ident.digest
    assert ident.with_threshold(0.9).with_threshold(None).threshold == ident.calibrated_threshold


# -- assignment and frame checks (controlled embeddings) ---------------------------------------
def test_hungarian_beats_greedy():
    # greedy would give face 0 to column 0 (0.9) and leave column 1 with 0.1 (total 1.0);
    # the optimum is 0.8 + 0.85 = 1.65
    sims = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert sorted(assign(sims)) == [(0, 1), (1, 0)]
    assert assign(np.zeros((0, 2))) == []


def test_check_frame_found_missing_stranger():
    ids = {"a": _ident("a", [1, 0, 0, 0], threshold=0.5), "b": _ident("b", [0, 1, 0, 0], threshold=0.5)}
    fc = check_frame([_face([0, 1, 0, 0], 1), _face([1, 0.1, 0, 0], 2), _face([0, 0, 1, 0], 3)],
                     ids, ["a", "b"])
    assert fc.passed
    assert fc.characters["a"].box[0] == 2 and fc.characters["b"].box[0] == 1
    assert fc.characters["a"].similarity == pytest.approx(float(_unit([1, 0.1, 0, 0])[0]))
    assert fc.strangers == ((3.0, 0.0, 13.0, 10.0),)
    fc = check_frame([_face([1, 0, 0, 0])], ids, ["a", "b"])
    assert fc.characters["a"].passed and not fc.characters["b"].found
    assert not fc.passed and fc.characters["b"].margin == pytest.approx(-1.5)
    fc = check_frame([], ids, [])
    assert fc.passed and fc.margin == float("inf")
    with pytest.raises(InputError, match="unknown character"):
        check_frame([], ids, ["carol"])


def test_other_cast_members_in_the_frame_are_named():
    """Who-is-who: a face nobody expected that is a cast member is named (`others`), with its
    similarity; the words of a failing picture say who it shows."""
    from keyrender.outputs.manifest import Score
    from keyrender.shot.refine import _scores

    ids = {n: _ident(n, v, threshold=0.5) for n, v in
           (("a", [1, 0, 0, 0]), ("b", [0, 1, 0, 0]), ("c", [0, 0, 1, 0]))}
    # a weak likeness of a, and b clearly: a gets the weak face (the best for a), b is named
    fc = check_frame([_face([0.45, 0.1, 0, 1], 1), _face([0, 1, 0, 0], 2)], ids, ["a"])
    assert not fc.passed and fc.characters["a"].wrong_person is None
    assert set(fc.others) == {"b"} and fc.others["b"] == pytest.approx(1.0) and len(fc.strangers) == 1
    score = _scores(fc)
    assert score["others"] == {"b": 1.0}
    assert Score.from_dict(score).shows().startswith("shows b (1.000), not a (similarity to a 0.")
    # the face taken for a is b: the wrong person, by name and similarity
    fc = check_frame([_face([0.3, 1, 0, 0], 1)], ids, ["a"])
    r = fc.characters["a"]
    assert r.wrong_person == "b" and r.wrong_similarity == pytest.approx(0.958, abs=1e-3) and not r.passed
    assert Score.from_dict(_scores(fc)).shows() == f"shows b, not a (similarity to b 0.958, to a {r.similarity:.3f})"
    # a stranger (nobody in the cast) is not named
    assert check_frame([_face([1, 0, 0, 0], 1), _face([0, 0, 0, 1], 2)], ids, ["a"]).others == {}


def test_drift_below_threshold_fails():
    ids = {"a": _ident("a", [1, 0, 0], threshold=0.6)}
    c = check_frame([_face([0.5, 0.866, 0])], ids, ["a"]).characters["a"]
    assert c.found and not c.passed and c.wrong_person is None
    assert c.similarity == pytest.approx(0.5, abs=1e-4)


def test_wrong_person_even_above_own_threshold():
    # the face looks a bit like a (0.6 >= 0.4) but much more like b: wrong person, not a pass
    ids = {"a": _ident("a", [1, 0, 0], threshold=0.4), "b": _ident("b", [0, 1, 0], threshold=0.4)}
    c = check_frame([_face([0.6, 0.8, 0])], ids, ["a"]).characters["a"]
    assert c.wrong_person == "b" and not c.passed
    # both faces are b ("identity bleeding"): one of the two expected places is the wrong person
    fc = check_frame([_face([0, 1, 0]), _face([0.05, 1, 0])], ids, ["a", "b"])
    assert fc.characters["b"].passed and fc.characters["a"].wrong_person == "b"


def test_swapped_characters_are_wrong_person_not_two_passes(embedder, cast):
    ids = IdentityStore(cast).build(embedder)
    checker = FaceChecker(embedder, ids)
    ok = checker.check(synthetic_frame([(1, CENTRE)]), ["alice"])
    assert ok.passed
    swapped = checker.check(synthetic_frame([(2, CENTRE)]), ["alice"])  # bob where alice should be
    assert not swapped.passed and swapped.characters["alice"].wrong_person == "bob"
    both = checker.check_batch([synthetic_frame([(1, LEFT), (2, RIGHT)]),
                                synthetic_frame([(2, LEFT), (2, RIGHT)])], ["alice", "bob"])
    assert both[0].passed
    assert not both[1].passed and both[1].characters["alice"].wrong_person == "bob"
    stranger = checker.check(synthetic_frame([(7, CENTRE)]), ["alice"])
    assert not stranger.passed and stranger.characters["alice"].wrong_person is None


# -- the store -------------------------------------------------------------------------------
def test_store_builds_once_and_survives_restart(embedder, cast):
    events = []
    store = IdentityStore(cast)
    ids = store.build(embedder, progress=events.append)
    assert [(e.name, e.action) for e in events] == [("alice", "built"), ("bob", "built")]
    folder = cast / ".keyrender" / "identities" / "tiny"  # one folder per face model (its label)
    assert (folder / "alice.npz").is_file()
    meta = json.loads((folder / "alice.json").read_text())
    assert meta["model"] == embedder.name and len(meta["references"]) == 3
    assert all(len(r["sha256"]) == 64 for r in meta["references"])

    again = IdentityStore(cast)  # "restart": a new store object, nothing in memory
    assert again.names() == ["alice", "bob"]
    assert not again.is_stale("alice", embedder.name)
    events.clear()

    class NoModel:  # nothing changed: the face model must not be touched
        name = embedder.name

        def faces_batch(self, images):
            raise AssertionError("rebuilt although nothing changed")

    loaded = again.build(NoModel(), progress=events.append)
    assert [e.action for e in events] == ["cached", "cached"]
    for n in ids:
        np.testing.assert_allclose(loaded[n].embeddings, ids[n].embeddings)
        assert loaded[n].digest == ids[n].digest and loaded[n].threshold == ids[n].threshold
    assert again.load_all().keys() == {"alice", "bob"}


def test_read_only_cast_keeps_its_identities_in_the_cache(embedder, cast, tmp_path, monkeypatch):
    # a cast on a read-only share: the store goes to keyrender's cache, nothing is written into
    # the cast, and a store someone built in the cast with write access is still read
    from keyrender.core.fsutil import writable_dir
    from keyrender.identity import store as store_mod

    assert writable_dir(tmp_path / "not" / "yet") and not writable_dir(cast / "alice" / "0.png" / "x")
    IdentityStore(cast).build(embedder)  # built by someone who could write there
    built = {p: p.stat().st_mtime_ns for p in (cast / ".keyrender").rglob("*")}
    monkeypatch.setenv("KEYRENDER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(store_mod, "writable_dir", lambda p: not str(p).startswith(str(cast)))
    ro = IdentityStore(cast)
    assert ro.dir == store_mod.fallback_store_dir(cast) and ro.dir.is_relative_to(tmp_path / "cache")
    assert ro.names() == ["alice", "bob"] and not ro.is_stale("alice", embedder.name)
    # a changed reference is rebuilt into the cache, not into the cast
    ref = sorted((cast / "bob").iterdir())[0]
    img = cv2.imread(str(ref))
    cv2.imwrite(str(ref), cv2.flip(img, 1))
    events = []
    ro.build(embedder, progress=events.append)
    assert ("bob", "built") in [(e.name, e.action) for e in events]
    assert (ro.dir / "tiny" / "bob.npz").is_file() and not (ro.dir / "tiny" / "alice.npz").exists()
    assert {p: p.stat().st_mtime_ns for p in (cast / ".keyrender").rglob("*")} == built
    assert not IdentityStore(cast).is_stale("bob", embedder.name)  # the cache's copy wins


def test_store_notices_changed_reference_and_model(embedder, cast):
    store = IdentityStore(cast)
    store.build(embedder)
    old = store.load("alice").digest
    ref = cast / "alice" / "1.png"
    _write(ref, synthetic_frame([(1, (88, 96))]))
    os.utime(ref, ns=(1, 1))
    assert "1.png changed" in store.why_stale("alice", embedder.name)
    assert not store.is_stale("bob", embedder.name)
    assert store.is_stale("bob", "another-model")
    events = []
    store.build(embedder, progress=events.append)
    assert [(e.name, e.action) for e in events] == [("alice", "built"), ("bob", "cached")]
    assert store.load("alice").digest != old
    _write(cast / "alice" / "3.png", synthetic_frame([(1, CENTRE)]))
    assert "added 3.png" in store.why_stale("alice", embedder.name)
    (cast / "alice" / "3.png").unlink()
    (cast / "alice" / "2.png").unlink()
    assert "removed 2.png" in store.why_stale("alice", embedder.name)


def test_store_torn_or_corrupt_files_read_as_stale(embedder, cast):
    store = IdentityStore(cast)
    store.build(embedder)
    npz = cast / ".keyrender" / "identities" / "tiny" / "bob.npz"
    npz.write_bytes(b"garbage")
    assert store.why_stale("bob", embedder.name).startswith("damaged: bob.npz")  # said as it is (issue 21)
    with pytest.raises(InputError, match="identity build"):
        store.load("bob")


def test_store_loading_does_not_import_torch_or_onnxruntime(embedder, cast):
    IdentityStore(cast).build(embedder)
    code = ("import sys; from keyrender.identity import IdentityStore; "
            f"s = IdentityStore({str(cast)!r}); s.load_all(); s.is_stale('alice', 'x'); "
            "bad = [m for m in ('torch', 'onnxruntime', 'insightface', 'diffusers') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_bad_references_are_reported_by_file_name(embedder, cast):
    _write(cast / "bob" / "blank.png", np.full((200, 200, 3), 128, np.uint8))
    _write(cast / "bob" / "two.png", synthetic_frame([(2, (8, 8)), (2, (160, 160))]))
    (cast / "bob" / "broken.jpg").write_bytes(b"not an image")
    events = []
    ids = IdentityStore(cast).build(embedder, progress=events.append)
    skipped = {e.detail for e in events if e.action == "skipped-reference"}
    assert any("blank.png: no face found" in d for d in skipped)
    assert any("two.png: 2 faces found" in d for d in skipped)
    assert any("broken.jpg: cannot read image" in d for d in skipped)
    assert len(ids["bob"].references) == 3 and len(ids["bob"].skipped) == 3
    # fixing a skipped reference is a change too
    _write(cast / "bob" / "blank.png", synthetic_frame([(2, CENTRE)]))
    assert "blank.png changed" in IdentityStore(cast).why_stale("bob", embedder.name)


def test_character_without_usable_reference_is_an_error(embedder, tmp_path):
    cast = _make_cast(tmp_path, {"alice": 1})
    _write(cast / "ghost" / "empty.png", np.zeros((100, 100, 3), np.uint8))
    (cast / "nobody").mkdir()
    with pytest.raises(InputError) as err:
        IdentityStore(cast).build(embedder)
    msg = str(err.value)
    assert "'ghost' has no usable reference" in msg and "empty.png: no face found" in msg
    assert "'nobody' has no reference images" in msg
    # the good character was still saved
    assert IdentityStore(cast).names() == ["alice"]


def test_missing_or_empty_cast_and_unknown_names(embedder, tmp_path, cast):
    with pytest.raises(InputError, match="does not exist"):
        IdentityStore(tmp_path / "nope").build(embedder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no character folders"):
        IdentityStore(tmp_path / "empty").build(embedder)
    with pytest.raises(InputError, match="unknown character"):
        IdentityStore(cast).build(embedder, names=["carol"])


# -- video audit -----------------------------------------------------------------------------
def _video(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "0", "preset": "ultrafast"})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv444p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture
def drift_video(tmp_path) -> Path:
    good = synthetic_frame([(1, LEFT), (2, RIGHT)])
    swapped = synthetic_frame([(2, LEFT), (2, RIGHT)])  # alice became bob
    alone = synthetic_frame([(1, CENTRE)])
    return _video(tmp_path / "clip.mp4", [good] * 4 + [swapped] * 2 + [alone] * 2)


def test_audit_expected_characters(embedder, cast, drift_video, tmp_path):
    checker = FaceChecker(embedder, IdentityStore(cast).build(embedder))
    seen = []
    res = audit_video(drift_video, checker, ["alice", "bob"], progress=seen.append)
    assert res.frames_decoded == 8 and len(res.frames) == 8 and seen[-1] == 8
    assert [r.status["alice"] for r in res.frames] == ["pass"] * 4 + ["wrong:bob"] * 2 + ["pass"] * 2
    assert [r.status["bob"] for r in res.frames] == ["pass"] * 6 + ["missing"] * 2
    assert res.drift
    assert {r.index for r in res.worst_frames(2)} == {4, 5}
    st = res.stats()
    assert st["alice"]["frames_wrong_person"] == 2 and st["bob"]["frames_missing"] == 2
    png = write_plot(res, tmp_path / "plot.png")
    img = cv2.imread(str(png))
    assert img is not None and img.shape[1] == 1000
    json.dumps(res.to_json())
    sub = audit_video(drift_video, checker, ["alice"], every=3)
    assert [r.index for r in sub.frames] == [0, 3, 6]


def test_audit_expected_if_seen(embedder, cast, tmp_path):
    checker = FaceChecker(embedder, IdentityStore(cast).build(embedder))
    clean = _video(tmp_path / "clean.mp4", [synthetic_frame([(1, CENTRE)])] * 3
                   + [np.full((256, 256, 3), 128, np.uint8)] * 2)
    res = audit_video(clean, checker)
    assert res.mode == "if-seen" and not res.drift
    assert [r.status["alice"] for r in res.frames] == ["pass"] * 3 + ["absent"] * 2
    assert all(r.status["bob"] == "absent" for r in res.frames)  # never seen: not judged
    bleed = _video(tmp_path / "bleed.mp4", [synthetic_frame([(1, LEFT), (2, RIGHT)])] * 2
                   + [synthetic_frame([(2, LEFT), (2, RIGHT)])])
    res = audit_video(bleed, checker)
    assert res.drift and res.frames[2].status["alice"] == "wrong:bob"


def test_audit_bad_inputs(embedder, cast, tmp_path):
    checker = FaceChecker(embedder, IdentityStore(cast).build(embedder))
    with pytest.raises(InputError, match="does not exist"):
        audit_video(tmp_path / "none.mp4", checker)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="bad.mp4"):
        audit_video(bad, checker)
    with pytest.raises(InputError, match="unknown character"):
        audit_video(bad, checker, ["carol"])


def test_checker_refuses_identities_of_another_model(embedder, cast):
    ids = IdentityStore(cast).build(embedder)

    class Other:
        name = "other-model"

    with pytest.raises(InputError, match="rebuild"):
        FaceChecker(Other(), ids)


# -- the commands ------------------------------------------------------------------------------
def _cli(*args, env=None):
    from keyrender.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def test_cli_identity_commands(pack, cast):
    r = _cli("identity", "build", cast, "--face-model", pack)
    assert r.exit_code == 0, r.output
    assert "alice: built" in r.output
    r = _cli("identity", "build", "--cast", cast, "--face-model", pack)
    assert r.exit_code == 0 and "alice: cached" in r.output
    r = _cli("identity", "list", "--cast", cast, "--json")
    rows = json.loads(r.output)
    assert [x["status"] for x in rows] == ["ok", "ok"]
    r = _cli("identity", "show", "alice", "--cast", cast)
    assert r.exit_code == 0 and "threshold" in r.output and "0.png" in r.output
    r = _cli("identity", "compare", "alice", "bob", "--cast", cast, "--json")
    assert r.exit_code == 0 and json.loads(r.output)["same"] is False
    r = _cli("identity", "compare", "alice", cast / "alice" / "0.png", "--cast", cast,
             "--face-model", pack)
    assert r.exit_code == 0 and "same person" in r.output
    r = _cli("identity", "show", "carol", "--cast", cast)
    assert r.exit_code == 2 and "carol" in r.output


def test_cli_check(pack, cast, drift_video, tmp_path):
    plot = tmp_path / "out" / "plot.png"
    r = _cli("check", drift_video, "--cast", cast, "--characters", "alice,bob", "--face-model",
             pack, "--plot", plot)
    assert r.exit_code == 3, r.output
    assert "wrong person 2" in r.output and "drift found" in r.output and plot.is_file()
    r = _cli("check", drift_video, "--cast", cast, "--characters", "alice", "--every", "7",
             "--face-model", pack, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["frames_checked"] == 2 and data["drift"] is False


def test_cli_without_model_fails_cleanly(cast, drift_video, tmp_path):
    env = {"INSIGHTFACE_HOME": str(tmp_path / "ifhome"), "KEYRENDER_FACE_MODEL": ""}
    for args in (("identity", "build", cast), ("check", drift_video, "--cast", cast)):
        r = _cli(*args, "--face-model", "buffalo_l", env=env)
        assert r.exit_code == 2, r.output
        assert "buffalo_l" in r.output and str(tmp_path / "ifhome") in r.output
        assert "Traceback" not in r.output
    r = _cli("check", tmp_path / "missing.mp4", "--cast", cast)
    assert r.exit_code == 2 and "missing.mp4" in r.output
    r = _cli("identity", "build", tmp_path / "nocast")
    assert r.exit_code == 2 and "nocast" in r.output
