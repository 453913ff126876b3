"""Each preference task trains a few steps on a tiny random model and its trainable weights change;
with LoRA the reference is the adapter-disabled base (no "ref" adapter, no second model)."""

from __future__ import annotations

import json

import pytest
import torch

from tunesmith.config import validate_config
from tunesmith.tasks import run_task

PAIRS = [
    {"prompt": "Say hello.", "chosen": "Hello!", "rejected": "No."},
    {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "London."},
    {"prompt": "2 + 3", "chosen": "5", "rejected": "6"},
    {"prompt": "Translate: the dog", "chosen": "le chien", "rejected": "the cat"},
    {"prompt": "Is this positive?", "chosen": "positive", "rejected": "negative"},
    {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."},
]


@pytest.fixture()
def pairs_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in PAIRS) + "\n")
    return path


def pref_cfg(model_dir, data, out, task="dpo", method=None, preference=None, **train):
    return validate_config({
        "task": task,
        "model": {"name_or_path": str(model_dir)},
        "data": {"train_file": str(data), "format": "preference", "max_length": 64, "eval_split": 0.34},
        "method": method or {"name": "lora", "r": 4},
        "preference": {"beta": 0.1, **(preference or {})},
        "train": {"max_steps": 2, "batch_size": 2, "learning_rate": 5e-2, "warmup_ratio": 0.0,
                  "lr_scheduler": "constant", "logging_steps": 1, "precision": "fp32", **train},
        "output": {"dir": str(out), "name": f"{task}-run"},
    })


def _trainable(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("task", ["dpo", "orpo", "kto", "simpo", "reward"])
def test_each_task_trains_and_its_weights_change(task, tiny_llama_dir, pairs_file, tmp_path, monkeypatch):
    import tunesmith.train.preference_trainer as pt

    seen = {}
    real = pt.build_preference_trainer

    def spy(*args, **kwargs):
        trainer = real(*args, **kwargs)
        seen["before"] = _trainable(trainer.model)
        seen["model"] = trainer.model
        return trainer

    monkeypatch.setattr("tunesmith.tasks.preference.build_preference_trainer", spy)
    result = run_task(pref_cfg(tiny_llama_dir, pairs_file, tmp_path, task=task))
    after = _trainable(seen["model"])
    assert seen["before"] and set(after) == set(seen["before"])
    assert any(not torch.equal(seen["before"][n], after[n]) for n in after)
    assert "ref" not in getattr(seen["model"], "peft_config", {})
    assert (result.run_dir / "adapter").is_dir()
    metrics = json.loads((result.run_dir / "final_metrics.json").read_text())
    assert 0.0 <= metrics["pref_after_accuracy"] <= 1.0
    if task == "dpo":
        assert {"pref_reward_accuracy", "pref_reward_margin", "pref_before_accuracy",
                "pref_after_chosen_logps", "pref_after_rejected_logps"} <= set(metrics)


@pytest.mark.parametrize("loss_type", ["ipo", "hinge"])
def test_dpo_loss_variants_train(loss_type, tiny_llama_dir, pairs_file, tmp_path):
    result = run_task(pref_cfg(tiny_llama_dir, pairs_file, tmp_path, preference={"loss_type": loss_type},
                               max_steps=1))
    log = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in row and torch.isfinite(torch.tensor(row["loss"])) for row in log)


def test_full_dpo_keeps_a_frozen_reference(tiny_llama_dir, pairs_file, tmp_path):
    from transformers import AutoModelForCausalLM

    result = run_task(pref_cfg(tiny_llama_dir, pairs_file, tmp_path, method={"name": "full"},
                               learning_rate=1e-3, max_steps=1))
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).state_dict()
    trained = result.model.state_dict()
    assert any(not torch.equal(base[k], trained[k]) for k in base if k in trained)
    assert (result.run_dir / "model").is_dir()


def test_pipeline_sft_then_dpo_starts_from_the_sft_result(tiny_llama_dir, pairs_file, tmp_path):
    sft = tmp_path / "sft.jsonl"
    sft.write_text("\n".join(json.dumps({"instruction": r["prompt"], "output": r["chosen"]}) for r in PAIRS) + "\n")
    cfg = pref_cfg(tiny_llama_dir, pairs_file, tmp_path, max_steps=1).model_dump(exclude={"stages"})
    cfg["stages"] = [{"task": "sft", "overrides": {"data": {"format": "alpaca", "train_file": str(sft)}}},
                     {"task": "dpo", "overrides": {"train.learning_rate": 1e-2}}]
    cfg["output"]["name"] = "chain"
    results = run_task(validate_config(cfg))
    assert [r.run_dir.name for r in results] == ["chain-1-sft", "chain-2-dpo"]
    assert (results[0].run_dir / "merged" / "config.json").is_file()
    dpo_cfg = (results[1].run_dir / "config.yaml").read_text()
    assert str(results[0].run_dir / "merged") in dpo_cfg and "learning_rate: 0.01" in dpo_cfg
