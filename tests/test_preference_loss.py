"""TRL's DPO loss equals the formula on log-probabilities computed independently, the reference
log-probabilities of a LoRA policy are those of the base model (adapter disabled, no copy)."""

from __future__ import annotations

import math

import pytest
import torch

from tunesmith.eval.preference_metrics import (
    accuracy_from_logprobs, dpo_sigmoid_loss, flip_difficulty, pair_logprobs, paired_change, preference_accuracy,
    reward_accuracy,
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


def test_paired_change_counts_flips_and_gives_the_exact_sign_test():
    before = {"chosen": [-1.0, -5.0, -3.0, -2.0, -9.0], "rejected": [-2.0, -4.0, -1.0, -6.0, -1.0]}
    # wins before: T F F T F; after: T T T F T -> 3 flipped to chosen (pairs 2, 3, 5), 1 away (pair 4)
    after = {"chosen": [-1.0, -3.0, -1.0, -7.0, -1.0], "rejected": [-2.0, -4.0, -2.0, -6.0, -2.0]}
    c = paired_change(before, after)
    assert (c["flipped_to_chosen"], c["flipped_to_rejected"]) == (3, 1)
    # two-sided exact binomial: P(X <= 1) + P(X >= 3) for X ~ Bin(4, 1/2) = (1 + 4 + 4 + 1) / 16
    assert c["sign_test_p"] == pytest.approx(10 / 16)
    assert c["before_median_abs_margin"] == pytest.approx(2.0)  # |margins| 1, 1, 2, 4, 8
    assert paired_change(before, before)["sign_test_p"] == 1.0


def test_flip_difficulty_is_the_loss_below_which_the_policy_itself_ranks_a_misranked_pair_right():
    # pair A: the reference prefers the rejected reply by 5 nats; pair B: the reference is right
    ref = {"chosen": [-10.0, -1.0], "rejected": [-5.0, -2.0]}
    needed = math.log1p(math.exp(-1.0))  # -log sigmoid(0.2 * 5)
    still_wrong = {"chosen": [-6.0, -1.0], "rejected": [-5.0, -2.0]}  # A: z = 0.2 * 4 = 0.8 < 1
    flipped = {"chosen": [-4.0, -1.0], "rejected": [-5.0, -2.0]}  # A: z = 0.2 * 6 = 1.2 > 1
    for policy, ranks_a_right in ((still_wrong, False), (flipped, True)):
        d = flip_difficulty(policy, ref, beta=0.2)
        assert d["reference_misranked"] == 1
        assert d["flip_loss_needed_median"] == pytest.approx(needed)
        loss_a = dpo_sigmoid_loss(policy["chosen"][0], policy["rejected"][0], -10.0, -5.0, beta=0.2)
        assert d["misranked_sigmoid_loss"] == pytest.approx(loss_a)
        assert (loss_a < needed) == ranks_a_right == (policy["chosen"][0] > policy["rejected"][0])
        assert d["sigmoid_loss"] == pytest.approx((loss_a + math.log1p(math.exp(-0.0))) / 2)  # B: z = 0


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """A 32-wide model gains nothing from threads; on a shared busy CPU they only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def lora_dpo_trainer(model_dir, tokenizer, out, pairs, *, loss_type="sigmoid", max_steps=1, sft_weight=0.0):
    """A DPO trainer on a LoRA model whose adapter looks trained (lora_B random), so policy and
    reference differ."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from tunesmith.config import validate_config
    from tunesmith.methods import apply_method
    from tunesmith.train.preference_trainer import build_preference_trainer

    cfg = validate_config({
        "task": "dpo", "model": {"name_or_path": str(model_dir)},
        "data": {"train_file": "x.jsonl", "format": "preference", "max_length": 32},
        "method": {"name": "lora", "r": 4, "dropout": 0.0},
        "preference": {"beta": 0.5, "loss_type": loss_type, "sft_weight": sft_weight},
        "train": {"max_steps": max_steps, "batch_size": 1, "precision": "fp32", "learning_rate": 1e-2,
                  "logging_steps": 1},
        "output": {"dir": str(out)},
    })
    torch.manual_seed(0)
    model = apply_method(AutoModelForCausalLM.from_pretrained(model_dir), cfg.method)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    rendered = [render_pair(tokenizer, p) for p in pairs]
    return build_preference_trainer("dpo", model, tokenizer, Dataset.from_list(rendered), None, cfg, out)


@pytest.fixture(scope="module")
def lora_setup(tiny_llama_dir, tiny_tokenizer, tmp_path_factory):
    """One trainer shared by the checks below; none of them changes its weights."""
    trainer = lora_dpo_trainer(tiny_llama_dir, tiny_tokenizer, tmp_path_factory.mktemp("dpo"), [PAIR])
    return trainer, render_pair(tiny_tokenizer, PAIR)


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


def test_sft_weight_adds_the_chosen_replys_mean_token_nll(tiny_llama_dir, tiny_tokenizer, tmp_path):
    """RPO: loss = DPO loss + w * (mean negative log-likelihood per token of the chosen reply)."""
    trainer = lora_dpo_trainer(tiny_llama_dir, tiny_tokenizer, tmp_path, [PAIR], sft_weight=0.7)
    assert trainer.args.loss_type == ["sigmoid", "sft"] and trainer.args.loss_weights == [1.0, 0.7]
    model, pair = trainer.model, render_pair(tiny_tokenizer, PAIR)
    model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, trainer.data_collator([trainer.train_dataset[0]])).item()
    pol = pair_logprobs(model, tiny_tokenizer, [pair])
    ref = pair_logprobs(model, tiny_tokenizer, [pair], reference=True)
    dpo = dpo_sigmoid_loss(pol["chosen"][0], pol["rejected"][0], ref["chosen"][0], ref["rejected"][0], beta=0.5)
    nll = -pol["chosen"][0] / pol["chosen_tokens"][0]
    assert loss == pytest.approx(dpo + 0.7 * nll, rel=1e-4, abs=1e-5)


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


@pytest.mark.parametrize("loss_type", ["ipo", "hinge"])
def test_dpo_loss_variants_train(loss_type, tiny_llama_dir, tiny_tokenizer, tmp_path):
    trainer = lora_dpo_trainer(tiny_llama_dir, tiny_tokenizer, tmp_path, [PAIR], loss_type=loss_type, max_steps=2)
    assert trainer.args.loss_type == [loss_type]
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert losses and all(math.isfinite(x) for x in losses)
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters() if n in before)
