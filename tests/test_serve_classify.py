"""Serving classify runs on POST /v1/classify: the run's own head and labels (not a language-model
head), the same probabilities as the saved model under plain transformers, full and LoRA runs;
generative routes refuse a classifier. Integration: a real minilm-l6 SST-2 run."""

from __future__ import annotations

import json

import httpx2 as httpx
import pytest
import torch

from conftest import shared_data
from test_serve import live_server
from tunesmith.config import validate_config
from tunesmith.serve import load_served
from tunesmith.tasks import run_task

ROWS = [("the quick brown fox", "positive"), ("the lazy dog", "negative"), ("paris is the capital", "positive"),
        ("eat well sleep exercise", "neutral"), ("john lives in london", "negative")]
TEXTS = ["the quick brown fox", "the lazy dog", "john lives in paris"]


def _classify_run(tmp_path, model, train_file, method, name, **extra):
    cfg = validate_config({
        "task": "classify", "model": {"name_or_path": str(model)},
        "data": {"train_file": str(train_file), "format": "classification", **extra.pop("data", {})},
        "method": method, "classify": {"max_length": 48},
        "train": {"max_steps": 2, "batch_size": 8, "learning_rate": 5e-2, "warmup_ratio": 0.0,
                  "lr_scheduler": "constant", "logging_steps": 1, **extra.pop("train", {})},
        "output": {"dir": str(tmp_path), "name": name},
    })
    return run_task(cfg).run_dir


def _reference_probs(run_dir, texts):
    """The saved run scored with plain transformers (the adapter, if any, through peft)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunesmith.train import read_run_config, weights_dir

    wdir = weights_dir(run_dir)
    tok = AutoTokenizer.from_pretrained(wdir)
    if wdir.name == "adapter":
        from peft import PeftModel

        labels = json.loads((wdir / "labels.json").read_text())["labels"]
        base = AutoModelForSequenceClassification.from_pretrained(
            read_run_config(run_dir).model.name_or_path, num_labels=len(labels),
            id2label=dict(enumerate(labels)), label2id={y: i for i, y in enumerate(labels)})
        model = PeftModel.from_pretrained(base, wdir)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(wdir)
    with torch.no_grad():
        enc = tok(texts, padding=True, truncation=True, max_length=48, return_tensors="pt")
        probs = torch.softmax(model.eval()(**enc).logits, -1)
    id2label = model.config.id2label
    return [{id2label[i]: float(p[i]) for i in range(len(p))} for p in probs]


def _check_served(run_dir, texts):
    served = load_served(str(run_dir))
    assert served.is_classifier and served.model_ids == [run_dir.name]
    with live_server(served) as url, httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/v1/classify", json={"model": run_dir.name, "input": texts})
        assert r.status_code == 200, r.text
        one = c.post("/v1/classify", json={"model": run_dir.name, "input": texts[0]}).json()["data"]
        chat = c.post("/v1/chat/completions", json={"model": run_dir.name, "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 400 and "/v1/classify" in chat.json()["error"]["message"]
    data = r.json()["data"]
    ref = _reference_probs(run_dir, texts)
    assert len(data) == len(texts) and len(one) == 1 and one[0]["label"] == data[0]["label"]
    for row, want in zip(data, ref):
        assert row["scores"] == pytest.approx(want, abs=1e-4)
        assert row["label"] == max(want, key=want.get) and row["score"] == pytest.approx(max(want.values()), abs=1e-4)
    return data


@pytest.mark.parametrize("method", [{"name": "full"}, {"name": "lora", "r": 4, "target_modules": ["query", "value"]}])
def test_classify_run_is_served_with_its_own_head_and_labels(tmp_path, tiny_bert_dir, method):
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in ROWS * 6))
    run = _classify_run(tmp_path, tiny_bert_dir, data, method, method["name"])
    rows = _check_served(run, TEXTS)
    assert all(set(r["scores"]) == {"negative", "neutral", "positive"} for r in rows)


def test_ner_runs_are_refused_with_the_alternative(tmp_path):
    from tunesmith.errors import ModelError
    from tunesmith.serve.adapters import _classifier_run

    with pytest.raises(ModelError, match="tunesmith predict"):
        _classifier_run(tmp_path, "ner", None, [])


@pytest.mark.integration
def test_real_minilm_sst2_run_served_on_v1_classify(tmp_path):
    """minilm-l6 briefly tuned on 64 real SST-2 rows: the served scores are the saved model's."""
    sst2 = shared_data("sst2")
    run = _classify_run(tmp_path, "minilm-l6", sst2 / "train.tsv", {"name": "full"}, "sst2",
                        data={"columns": {"text": "sentence"}, "max_samples": 64, "eval_file": str(sst2 / "dev.tsv"),
                              "max_eval_samples": 32},
                        train={"max_steps": 4, "learning_rate": 1e-4, "precision": "fp32"})
    rows = _check_served(run, ["a gorgeous , witty , seductive movie .", "dull , lifeless and far too long ."])
    assert all(set(r["scores"]) == {"0", "1"} for r in rows)
