"""keyrender.core.weights: the one place that says where weights come from (no network, no torch)."""

from __future__ import annotations


import pytest

from keyrender.core import weights
from keyrender.core.errors import ModelNotFoundError
from keyrender.core.weights import WeightSpec
from helpers import heavy_imports

SPEC = WeightSpec("org/model", subfolder="sub", weight_name="w.safetensors", size="~1 GB")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("KEYRENDER_OFFLINE", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "HF_HOME", "KEYRENDER_MODEL_X"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return monkeypatch


def test_import_does_not_pull_torch():
    assert heavy_imports("import keyrender.core.weights") == []


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("YES", True), ("on", True),
                                             ("0", False), ("off", False), ("", False)])
def test_offline_switch_values(clean_env, value, expected):
    for var in weights.OFFLINE_VARS:
        clean_env.setenv(var, value)
        assert weights.offline() is expected, (var, value)
        assert weights.offline(False) is False and weights.offline(True) is True  # the flag wins
        clean_env.delenv(var)
    assert weights.offline() is False


def test_hub_cache_dir_is_read_at_call_time(clean_env, tmp_path):
    assert weights.hub_cache_dir() == str(tmp_path / "hf" / "hub")
    clean_env.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert weights.hub_cache_dir() == str(tmp_path / "elsewhere")
    assert weights.hub_cache_dir(tmp_path / "given") == str(tmp_path / "given")


def test_source_order_argument_env_repo(clean_env):
    assert weights.source(SPEC, "KEYRENDER_MODEL_X") == "org/model"
    clean_env.setenv("KEYRENDER_MODEL_X", "/models/x")
    assert weights.source(SPEC, "KEYRENDER_MODEL_X") == "/models/x"
    assert weights.source(SPEC, "KEYRENDER_MODEL_X", "other/model") == "other/model"
    assert weights.source(None, None) is None


def test_resolve_local_paths(clean_env, tmp_path):
    kw = dict(offline=True, cache_dir=str(tmp_path / "hub"), probe_file="model_index.json", env_var="KEYRENDER_MODEL_X")
    missing = tmp_path / "nope"
    clean_env.setenv("KEYRENDER_MODEL_X", str(missing))
    with pytest.raises(ModelNotFoundError) as err:
        weights.resolve("test model", str(missing), SPEC, **kw)
    msg = str(err.value)
    assert f"test model weights '{missing}' (from KEYRENDER_MODEL_X) (~1 GB) not found (no such file or folder)" in msg
    assert f"It is org/model (~1 GB): hf download org/model sub/w.safetensors --local-dir {missing}" in msg
    assert msg.endswith("Or set KEYRENDER_MODEL_X to a local folder holding them.")
    missing.mkdir()
    with pytest.raises(ModelNotFoundError, match="the folder has no model_index.json"):
        weights.resolve("test model", str(missing), SPEC, **kw)
    (missing / "model_index.json").write_text("{}")
    assert weights.resolve("test model", str(missing), SPEC, **kw) == str(missing)


def test_resolve_hub_ids_offline_uses_the_cache_only(clean_env, tmp_path):
    cache = tmp_path / "hub"
    kw = dict(cache_dir=str(cache), probe_file="sub/w.safetensors", alternative="or try the tiny one")
    with pytest.raises(ModelNotFoundError) as err:
        weights.resolve("test model", "org/model", SPEC, offline=True, **kw)
    msg = str(err.value)
    assert f"not found in the Hugging Face cache {cache} (offline mode)" in msg
    assert "Fetch it with: hf download org/model sub/w.safetensors." in msg and msg.endswith("or try the tiny one.")
    # online: the id is handed on (the loader may download)
    assert weights.resolve("test model", "org/model", SPEC, offline=False, **kw) == "org/model"
    # in the cache, laid out as huggingface_hub stores it: found offline
    repo = cache / "models--org--model"
    (repo / "snapshots" / "abc" / "sub").mkdir(parents=True)
    (repo / "snapshots" / "abc" / "sub" / "w.safetensors").write_bytes(b"x")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    assert weights.resolve("test model", "org/model", SPEC, offline=True, **kw) == "org/model"


def test_load_errors_become_the_missing_weights_message():
    with pytest.raises(ModelNotFoundError, match=r"'org/model' \(~1 GB\) not found or not loadable \(boom\)") as err:
        with weights.load_errors("test model", "org/model", SPEC):
            raise OSError("boom\nsecond line")
    assert isinstance(err.value.__cause__, OSError) and err.value.exit_code == 2
    with pytest.raises(ValueError):  # only what it is told to catch
        with weights.load_errors("test model", "org/model", SPEC):
            raise ValueError("not a missing file")


def test_fetch_command():
    assert SPEC.fetch_command() == "hf download org/model sub/w.safetensors"
    assert WeightSpec("org/m", include=("*.json", "*.bin")).fetch_command() == 'hf download org/m --include "*.json" --include "*.bin"'
    enc = WeightSpec("org/m", weight_name="a.bin", image_encoder="enc")
    assert enc.files() == ["a.bin", "enc/config.json", "enc/model.safetensors"]


def test_tiny_files_go_to_keyrenders_cache(monkeypatch, tmp_path):
    from keyrender.core.fsutil import cache_root
    from keyrender.keyframes.tiny import TINY_VERSION, default_tiny_dir

    monkeypatch.setenv("KEYRENDER_CACHE", str(tmp_path / "kc"))
    assert default_tiny_dir() == cache_root() / TINY_VERSION == tmp_path / "kc" / TINY_VERSION
    monkeypatch.delenv("KEYRENDER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_tiny_dir() == tmp_path / "xdg" / "keyrender" / TINY_VERSION
