"""Classification runs on a tiny BERT: what trains under each method, labels saved and reloaded,
`predict` agrees with the model's argmax, imbalance options, and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.config import validate_config
from tunesmith.tasks import run_task

ROWS = [("the quick brown fox", "positive"), ("the lazy dog", "negative"), ("paris is the capital", "positive"),
        ("eat well sleep exercise", "neutral"), ("john lives in london", "negative"),
        ("answer the question", "positive")]


@pytest.fixture()
def cls_data(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps({"sentence": t, "y": y}) for t, y in ROWS * 5))
    return path


def _cfg(model_dir, data, out, method, **classify):
    return validate_config({
        "task": "classify", "model": {"name_or_path": str(model_dir)},
        "data": {"train_file": str(data), "format": "classification", "columns": {"text": "sentence", "label": "y"}},
        "method": method, "classify": classify,
        "train": {"max_steps": 2, "batch_size": 8, "learning_rate": 5e-2, "warmup_ratio": 0.0,
                  "lr_scheduler": "constant", "logging_steps": 1},
        "output": {"dir": str(out), "name": method["name"]},
    })


def _base_weights(model_dir):
    return {k.removeprefix("bert."): v for k, v in load_file(str(model_dir / "model.safetensors")).items()}


@pytest.mark.parametrize("method", [{"name": "full"}, {"name": "freeze", "frozen_layers": 1},
                                    {"name": "lora", "r": 4, "target_modules": ["query", "value"]}])
def test_methods_train_what_they_should(tmp_path, tiny_bert_dir, cls_data, method):
    before = _base_weights(tiny_bert_dir)
    result = run_task(_cfg(tiny_bert_dir, cls_data, tmp_path / "runs", method))
    model = result.model.get_base_model() if hasattr(result.model, "get_base_model") else result.model
    now = {k.removeprefix("bert."): v.detach() for k, v in model.state_dict().items()}
    changed = lambda key: not torch.equal(before[key], now[key])  # noqa: E731
    emb, low, top = "embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight", \
        "encoder.layer.1.attention.self.query.weight"
    if method["name"] == "full":
        assert changed(emb) and changed(low) and changed(top)
    elif method["name"] == "freeze":
        assert not changed(emb) and not changed(low) and changed(top)
    else:  # LoRA: base frozen, adapters and the classifier head trained and saved
        base_keys = [k for k in now if "lora" not in k and k in before]
        assert base_keys and not any(changed(k.replace(".base_layer", "")) for k in base_keys
                                     if k.replace(".base_layer", "") in before)
        saved = load_file(str(result.weights_dir / "adapter_model.safetensors"))
        assert any("lora_A" in k for k in saved) and any("classifier" in k for k in saved)
    assert json.loads((result.weights_dir / "labels.json").read_text())["labels"] == ["negative", "neutral", "positive"]


def test_labels_saved_reloaded_and_predict_matches_argmax(tmp_path, tiny_bert_dir, cls_data):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunesmith.tasks.predict import Predictor

    result = run_task(_cfg(tiny_bert_dir, cls_data, tmp_path / "runs", {"name": "full"}))
    for name in ("test_metrics.json", "confusion_matrix.json", "confusion_matrix.png", "errors.jsonl",
                 "classification_report.json"):
        assert (result.run_dir / name).exists(), name
    cm = json.loads((result.run_dir / "confusion_matrix.json").read_text())
    assert cm["labels"] == ["negative", "neutral", "positive"] and sum(map(sum, cm["matrix"])) == 3
    model = AutoModelForSequenceClassification.from_pretrained(result.weights_dir).eval()
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    texts = ["the quick brown fox", "the lazy dog", "john lives in paris"]
    tok = AutoTokenizer.from_pretrained(result.weights_dir)
    with torch.no_grad():
        logits = model(**tok(texts, padding=True, return_tensors="pt")).logits
    out = Predictor(result.run_dir).classify(texts, batch_size=2)
    assert [o["label"] for o in out] == [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    probs = torch.softmax(logits, -1)
    assert [o["confidence"] for o in out] == pytest.approx(probs.max(-1).values.tolist(), abs=1e-5)
    assert all(abs(sum(o["probabilities"].values()) - 1) < 1e-4 for o in out)


def test_oversampling_and_weighted_loss(tmp_path, tiny_bert_dir, cls_data):
    over = run_task(_cfg(tiny_bert_dir, cls_data, tmp_path / "a", {"name": "full"}, imbalance="oversample"))
    info = json.loads((over.run_dir / "run_info.json").read_text())
    assert info["data"]["train"] == 3 * 12  # 24 train rows, largest class (positive) 12 -> 12 each
    weighted = run_task(_cfg(tiny_bert_dir, cls_data, tmp_path / "b", {"name": "full"}, imbalance="weighted_loss",
                             class_weights={"positive": 0.5, "negative": 2.0}))
    info = json.loads((weighted.run_dir / "run_info.json").read_text())
    assert info["class_weights"] == [2.0, 1.0, 0.5]


def test_cli_train_then_predict(tmp_path, tiny_bert_dir, cls_data):
    from typer.testing import CliRunner

    from tunesmith.cli import app

    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"task": "classify", "model": {"name_or_path": str(tiny_bert_dir)},
                               "data": {"train_file": str(cls_data), "format": "classification",
                                        "columns": {"text": "sentence", "label": "y"}},
                               "method": {"name": "full"}, "train": {"max_steps": 1, "batch_size": 8}}))
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(cfg), f"output.dir={tmp_path / 'runs'}", "output.name=cli"])
    assert res.exit_code == 0, res.output
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"sentence": "the lazy dog"}) + "\n")
    res = runner.invoke(app, ["predict", str(tmp_path / "runs" / "cli"), "--text", "the quick fox", "--input", str(inp)])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.strip().splitlines()]
    assert [x["text"] for x in lines] == ["the quick fox", "the lazy dog"] and all("label" in x for x in lines)
    bad = runner.invoke(app, ["validate", str(cfg), "data.format=alpaca"])
    assert bad.exit_code == 2 and "task classify needs format classification" in bad.output


def test_length_grouping_cuts_padding(tmp_path, tiny_bert_dir):
    """train.group_by_length batches classify examples of similar length: far less padding than random batches."""
    import random

    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    from tunesmith.config.schema import TrainConfig
    from tunesmith.train import build_trainer, length_grouped

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    rng = random.Random(0)
    texts = [" ".join(["a"] * rng.randint(1, 60)) for _ in range(128)]
    ds = Dataset.from_dict({**tokenizer(texts, truncation=True, max_length=64), "labels": [0] * len(texts)})
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    real = sum(len(ids) for ids in ds["input_ids"])

    def padded_tokens(group: bool) -> int:
        cfg = TrainConfig(batch_size=8, group_by_length=group)
        trainer = build_trainer(model, tokenizer, ds, None, cfg, tmp_path / str(group),
                                data_collator=DataCollatorWithPadding(tokenizer), **length_grouped(cfg))
        batches = list(trainer.get_train_dataloader())
        assert sum(len(b["input_ids"]) for b in batches) == len(ds)  # every example once
        return sum(b["input_ids"].numel() for b in batches)

    grouped, shuffled = padded_tokens(True), padded_tokens(False)
    print(f"real {real}, grouped {grouped}, shuffled {shuffled}")
    assert grouped <= 1.25 * real
    assert shuffled >= 1.4 * real
    assert grouped <= 0.8 * shuffled


def test_test_predictions_stay_paired_with_their_rows_under_length_grouping(tmp_path, tiny_bert_dir, cls_data):
    """transformers 5 length-groups the evaluation sampler too when training does; the test metrics
    and errors.jsonl must still pair each prediction with its own row (they equal `predict`'s)."""
    from tunesmith.tasks.predict import Predictor

    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    test_rows = [(" ".join(words[: 1 + (i * 7) % 10]) + f" {i}", ROWS[i % len(ROWS)][1]) for i in range(40)]
    test = tmp_path / "test.jsonl"
    test.write_text("\n".join(json.dumps({"sentence": t, "y": y}) for t, y in test_rows))
    cfg = _cfg(tiny_bert_dir, cls_data, tmp_path / "runs", {"name": "full"})
    cfg = validate_config({**cfg.model_dump(mode="json"), "data": {**cfg.data.model_dump(mode="json"),
                                                                    "test_file": str(test)},
                           "train": {**cfg.train.model_dump(mode="json"), "eval_batch_size": 4}})
    assert cfg.train.group_by_length
    result = run_task(cfg)
    texts = [t for t, _ in test_rows]
    predicted = dict(zip(texts, Predictor(result.run_dir).classify(texts, batch_size=4)))
    accuracy = sum(predicted[t]["label"] == y for t, y in test_rows) / len(test_rows)
    metrics = json.loads((result.run_dir / "test_metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(accuracy)
    errors = [json.loads(line) for line in (result.run_dir / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == sum(predicted[t]["label"] != y for t, y in test_rows)
    for row in errors:
        assert row["predicted"] == predicted[row["text"]]["label"], row
        assert row["confidence"] == pytest.approx(predicted[row["text"]]["confidence"], abs=1e-4)
