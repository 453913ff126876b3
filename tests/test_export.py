"""Export: merged logits equal adapter logits, int8 stays close and is smaller, ONNX matches
PyTorch under onnxruntime, GGUF (f16/q8_0) loads back in transformers with matching logits,
the model card names base, method, data fingerprint and metrics."""

from __future__ import annotations

import json

import pytest
import torch

from tunesmith.config import validate_config
from tunesmith.errors import ModelError
from tunesmith.export import (compare_logits, export_run, load_gguf_model, load_int8, logits_of,
                              merge_run, probe_ids, write_gguf)
from tunesmith.tasks import run_task
from tunesmith.train import load_run

ROWS = [
    {"instruction": "Say hello to the user.", "input": "", "output": "Hello!"},
    {"instruction": "What is the capital of France?", "input": "", "output": "Paris is the capital of France."},
    {"instruction": "Answer the question.", "input": "2 + 3", "output": "5"},
    {"instruction": "Summarise the text.", "input": "The quick brown fox.", "output": "A fox."},
]


def train_tiny_run(model_dir, tmp, name="run", method=None, lr=5e-2):
    data = tmp / f"{name}.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS * 2) + "\n")
    cfg = validate_config({
        "model": {"name_or_path": str(model_dir)},
        "data": {"train_file": str(data), "max_length": 128, "eval_split": 0.25},
        "method": method or {"name": "lora", "r": 4, "dropout": 0.0},
        "train": {"max_steps": 2, "batch_size": 4, "learning_rate": lr, "warmup_ratio": 0.0,
                  "lr_scheduler": "constant", "logging_steps": 1},
        "output": {"dir": str(tmp), "name": name},
    })
    run_task(cfg)
    return tmp / name


@pytest.fixture(scope="module")
def lora_run(tiny_llama_dir, tmp_path_factory):
    return train_tiny_run(tiny_llama_dir, tmp_path_factory.mktemp("export-run"), lr=2e-1)


@pytest.fixture(scope="module")
def exported(lora_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    return out, export_run(lora_run, out, ("merged", "int8", "gguf"))


def test_merged_logits_equal_adapter_logits(lora_run, exported):
    from transformers import AutoModelForCausalLM

    out, _ = exported
    run = load_run(lora_run)
    ids = probe_ids(run.tokenizer)
    adapter = logits_of(run.model, ids)
    with run.model.disable_adapter():
        plain = logits_of(run.model, ids)
    assert (adapter - plain).abs().max() > 1e-3, "the adapter must change the logits for the test to mean anything"
    merged = AutoModelForCausalLM.from_pretrained(out / "merged", dtype=torch.float32)
    assert torch.allclose(logits_of(merged, ids), adapter, atol=1e-4)
    assert list((out / "merged").glob("*.safetensors")) and (out / "merged" / "tokenizer.json").exists()


def test_gguf_roundtrip_through_transformers(exported):
    out, reports = exported
    by = {r["format"]: r for r in reports}
    # f16 stores matrices in half precision: deltas ~1e-3 of logits that span several units.
    assert by["gguf-f16"]["roundtrip"]["max_abs_diff"] < 2e-2
    assert by["gguf-f16"]["roundtrip"]["top1_agreement"] == 1.0
    # q8_0: 8-bit blocks of 32 with one scale each; a random tiny model tolerates ~5e-2.
    assert by["gguf-q8_0"]["roundtrip"]["max_abs_diff"] < 1e-1
    assert by["gguf-q8_0"]["size_bytes"] < by["gguf-f16"]["size_bytes"]


def test_gguf_permutation_matters(exported, tmp_path):
    """Without the rotary Q/K permutation the round trip must fail: the test really checks it."""
    import tunesmith.export.gguf_writer as gw

    out, _ = exported
    orig = gw._permute_rotary
    gw._permute_rotary = lambda w, n: w
    try:
        path = write_gguf(out / "merged", tmp_path / "bad.gguf", "f16")
    finally:
        gw._permute_rotary = orig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = probe_ids(AutoTokenizer.from_pretrained(out / "merged"))
    ref = logits_of(AutoModelForCausalLM.from_pretrained(out / "merged", dtype=torch.float32), ids)
    assert compare_logits(ref, logits_of(load_gguf_model(path), ids))["max_abs_diff"] > 2e-2


def test_int8_reports_size_speed_and_quality(exported):
    out, reports = exported
    r = next(x for x in reports if x["format"] == "int8")
    assert r["size_bytes"] > 0 and r["speedup"] > 0
    # A random 2-layer model has near-flat logits (argmax flips easily): judge the mean error
    # against the logits' spread; the real SmolLM2 figures are in the report.
    assert r["quality"]["relative_mean_diff"] < 0.2
    from transformers import AutoTokenizer

    q = load_int8(out / "int8")
    ids = probe_ids(AutoTokenizer.from_pretrained(out / "int8"))
    assert logits_of(q, ids).shape[-1] == q.config.vocab_size
    # Decoder matrices are int8 with per-channel scales; the output layer stays float.
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    proj = q.model.layers[0].self_attn.q_proj
    assert isinstance(proj, DynamicInt8Linear) and proj.weight().qscheme() == torch.per_channel_affine
    assert type(q.get_output_embeddings()) is torch.nn.Linear


def test_int8_and_gguf_quality_is_measured_on_held_out_answers(lora_run, exported):
    _, reports = exported
    by = {r["format"]: r for r in reports}
    assert by["merged"]["vs_trained"]["max_abs_diff"] < 1e-4
    for fmt in ("int8", "gguf-f16", "gguf-q8_0"):
        h = by[fmt]["held_out"]
        assert h["source"].endswith(("validation.jsonl", "test.jsonl")) and h["answer_tokens"] > 0
        assert h["loss_reference"] > 0 and 0 <= h["top1_agreement"] <= 1 and h["mean_kl"] > -1e-6
    # f16 is all but lossless, so its held-out deltas must be far below int8's.
    assert abs(by["gguf-f16"]["held_out"]["loss_delta"]) < 1e-2 and by["gguf-f16"]["held_out"]["mean_kl"] < 1e-3


def test_held_out_delta_is_zero_for_the_same_model_and_not_for_another(lora_run):
    from tunesmith.export import encode_held_out, held_out_conversations, held_out_delta

    run = load_run(lora_run)
    rows, _ = held_out_conversations(lora_run)
    examples = encode_held_out(run.tokenizer, rows)
    same = held_out_delta(run.model, run.model, examples)
    assert same["loss_delta"] == 0 and same["top1_agreement"] == 1 and abs(same["mean_kl"]) < 1e-6
    assert same["answer_tokens"] == sum(int((lab[0, 1:] != -100).sum()) for _, lab in examples)
    with run.model.disable_adapter():
        other = held_out_delta(run.model, load_run(lora_run).model, examples)
    assert other["loss_delta"] != 0 and other["mean_kl"] > 0


def test_model_card_names_base_method_fingerprint_metrics(lora_run, exported):
    out, _ = exported
    card = (out / "README.md").read_text()
    info = json.loads((lora_run / "run_info.json").read_text())
    assert "Base model" in card and "`lora`" in card
    assert str(info["data_fingerprint"]) in card
    assert "## Metrics" in card and "gguf-q8_0" in card
    assert json.loads((out / "export_report.json").read_text())


def test_onnx_matches_pytorch(exported, tmp_path):
    pytest.importorskip("onnxruntime")
    from tunesmith.export import export_onnx

    out, _ = exported
    r = export_onnx(out / "merged", tmp_path / "onnx")
    assert r["probe"]["max_abs_diff"] < 1e-3 and r["probe_x2"]["max_abs_diff"] < 1e-3


def test_prompt_tuning_cannot_be_merged(tiny_llama_dir, tmp_path):
    run = train_tiny_run(tiny_llama_dir, tmp_path, "prompt", {"name": "prompt", "num_virtual_tokens": 2})
    with pytest.raises(ModelError, match="cannot be merged"):
        merge_run(run, tmp_path / "m")
