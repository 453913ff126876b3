"""TRL's DPO loss equals the formula on log-probabilities computed independently, and the reference
log-probabilities of a LoRA policy are those of the base model (adapter disabled, no copy)."""

from __future__ import annotations

import math

import pytest
import torch

from tunesmith.eval.preference_metrics import (
    accuracy_from_logprobs, dpo_sigmoid_loss, pair_logprobs, preference_accuracy, reward_accuracy,
)
from tunesmith.train.preference_data import render_pair

PAIR = {"prompt": [{"role": "user", "content": "Capital of France?"}],
        "chosen": [{"role": "assistant", "content": "Paris."}],
        "rejected": [{"role": "assistant", "content": "London is it."}]}


def test_dpo_sigmoid_loss_by_hand():
    # z = 0.5 * ((-2 - -3) - (-4 - -3)) = 0.5 * 2 = 1 -> -log sigmoid(1) = log(1 + e^-1)
    assert dpo_sigmoid_loss(-2.0, -4.0, -3.0, -3.0, beta=0.5) == pytest.approx(math.log1p(math.exp(-1)))


def test_accuracy_and_reward_from_logprobs():
    pol = {"chosen": [-1.0, -5.0], "rejected": [-2.0, -4.0], "chosen_tokens": [1, 5], "rejected_tokens": [2, 2]}
    ref = {"chosen": [-1.5, -6.0], "rejected": [-1.0, -4.0]}
    acc = accuracy_from_logprobs(pol)
    assert acc["accuracy"] == 0.5 and acc["margin"] == pytest.approx(0.0)
    assert accuracy_from_logprobs(pol, per_token=True)["accuracy"] == 0.5  # -1 > -1 false; -1 > -2 true
    r = reward_accuracy(pol, ref, beta=0.1)
    assert r["reward_accuracy"] == 1.0  # 0.05 > -0.1 and 0.1 > 0
    assert r["reward_margin"] == pytest.approx((0.15 + 0.1) / 2)


@pytest.fixture()
def lora_setup(tiny_llama_dir, tiny_tokenizer, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from tunesmith.config import validate_config
    from tunesmith.methods import apply_method
    from tunesmith.train.preference_trainer import build_preference_trainer

    cfg = validate_config({
        "task": "dpo", "model": {"name_or_path": str(tiny_llama_dir)},
        "data": {"train_file": "x.jsonl", "format": "preference", "max_length": 64},
        "method": {"name": "lora", "r": 4, "dropout": 0.0},
        "preference": {"beta": 0.5},
        "train": {"max_steps": 1, "batch_size": 1, "precision": "fp32"},
        "output": {"dir": str(tmp_path)},
    })
    torch.manual_seed(0)
    model = apply_method(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), cfg.method)
    with torch.no_grad():  # a trained-looking adapter, so policy and reference differ
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    pair = render_pair(tiny_tokenizer, PAIR)
    trainer = build_preference_trainer("dpo", model, tiny_tokenizer, Dataset.from_list([pair]), None, cfg, tmp_path)
    return trainer, pair


def test_trl_dpo_loss_equals_formula(lora_setup, tiny_tokenizer):
    trainer, pair = lora_setup
    model = trainer.model
    batch = trainer.data_collator([trainer.train_dataset[0]])
    model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch).item()
    pol = pair_logprobs(model, tiny_tokenizer, [pair])
    ref = pair_logprobs(model, tiny_tokenizer, [pair], reference=True)
    assert pol["chosen"][0] != pytest.approx(ref["chosen"][0])
    expected = dpo_sigmoid_loss(pol["chosen"][0], pol["rejected"][0], ref["chosen"][0], ref["rejected"][0], beta=0.5)
    assert loss == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_reference_is_the_adapter_disabled_base(lora_setup, tiny_llama_dir, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    trainer, pair = lora_setup
    assert "ref" not in trainer.model.peft_config and trainer.ref_model is None
    batch = trainer.data_collator([trainer.train_dataset[0]])
    ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    expected = pair_logprobs(base, tiny_tokenizer, [pair])
    assert ref_chosen.item() == pytest.approx(expected["chosen"][0], rel=1e-4)
    assert ref_rejected.item() == pytest.approx(expected["rejected"][0], rel=1e-4)
    policy = pair_logprobs(trainer.model, tiny_tokenizer, [pair])
    assert policy["chosen"][0] != pytest.approx(expected["chosen"][0], rel=1e-4)


def test_preference_accuracy_counts_pairs(tiny_llama_dir, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    pair = render_pair(tiny_tokenizer, PAIR)
    swapped = {**pair, "chosen": pair["rejected"], "rejected": pair["chosen"]}
    a = preference_accuracy(model, tiny_tokenizer, [pair, swapped])
    assert a["pairs"] == 2 and a["accuracy"] == 0.5  # exactly one of a pair and its swap wins
    assert a["chosen_logps"] < 0 and a["rejected_logps"] < 0
