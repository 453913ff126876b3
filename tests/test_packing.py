"""Padding-free packing is exact: a packed row gives each example the loss and gradients it has on
its own; the KV-cache path leaks attention across examples (so packing turns it off); best-fit-
decreasing keeps bins within budget; a packed SGD step through the Trainer equals the reference."""

from __future__ import annotations

import math

import pytest
import torch

from tunesmith.data.batching import best_fit_decreasing, first_fit
from tunesmith.models import varlen_attention as varlen
from tunesmith.train.batches import PackedCollator

TOL = 1e-5  # absolute, fp32: packed vs one-by-one losses, logits and gradients


def _examples(vocab: int, lengths=(23, 9, 40, 5)) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for n in lengths:
        ids = torch.randint(5, vocab, (n,), generator=g).tolist()
        prompt = n // 3  # a masked prompt, as the SFT label mask makes
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def _tiny_model(model_dir, attn: str):
    from transformers import AutoModelForCausalLM

    if attn == varlen.NAME:
        varlen.register()
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=attn, dtype=torch.float32)
    model.eval()  # no dropout; gradients still flow
    return model


def _token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-position loss of predicting labels[t + 1] from logits[t] (0 where the label is -100)."""
    return torch.nn.functional.cross_entropy(logits[0, :-1].float(), labels[0, 1:], ignore_index=-100,
                                             reduction="none")


@pytest.mark.parametrize("attn", ["sdpa", "eager", "tunesmith_varlen"])
def test_packed_row_gives_each_example_its_own_loss_and_gradients(tiny_llama_dir, attn):
    model = _tiny_model(tiny_llama_dir, attn)
    examples = _examples(model.config.vocab_size)
    rows = [{"input_ids": [e["input_ids"] for e in examples], "labels": [e["labels"] for e in examples]}]
    batch = PackedCollator(loss_positions_only=False)(rows)
    assert batch["use_cache"] is False and "attention_mask" not in batch
    starts = [0]
    for e in examples:
        starts.append(starts[-1] + len(e["input_ids"]))
    assert batch["position_ids"][0].tolist() == [p for e in examples for p in range(len(e["input_ids"]))]
    assert all(batch["labels"][0, s].item() == -100 for s in starts[:-1])  # no loss across a boundary

    packed_losses = _token_losses(model(**{k: v for k, v in batch.items() if k != "labels"}).logits, batch["labels"])
    n_loss_tokens = int((batch["labels"][0, 1:] != -100).sum())
    trimmed = PackedCollator()(rows)  # logits only where a label follows: the same loss
    assert len(trimmed["logits_to_keep"]) == n_loss_tokens < batch["input_ids"].shape[1] - 1
    with torch.no_grad():
        trimmed_loss = model(**trimmed).loss
    torch.testing.assert_close(trimmed_loss, packed_losses.sum().detach() / n_loss_tokens, atol=TOL, rtol=0)
    packed_losses.sum().backward()
    packed_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    total = 0.0
    for e, lo, hi in zip(examples, starts, starts[1:]):
        ids, labels = torch.tensor([e["input_ids"]]), torch.tensor([e["labels"]])
        own = _token_losses(model(input_ids=ids, use_cache=False).logits, labels)
        # the packed row's positions lo..hi-2 predict this example's tokens 1..n-1
        torch.testing.assert_close(packed_losses[lo:hi - 1], own.detach(), atol=TOL, rtol=0)
        total = total + own.sum()
    total.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(packed_grads[name], p.grad, atol=TOL, rtol=1e-4, msg=name)


def test_packed_row_leaks_across_examples_when_the_cache_is_on(tiny_llama_dir):
    """transformers 5.23 detects packed rows from position_ids only with use_cache=False; with the
    cache on, the second example attends to the first. This is why packing forces the cache off."""
    model = _tiny_model(tiny_llama_dir, "sdpa")
    first, second = _examples(model.config.vocab_size, lengths=(20, 12))
    ids = torch.tensor([first["input_ids"] + second["input_ids"]])
    pos = torch.tensor([list(range(20)) + list(range(12))])
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([second["input_ids"]]), use_cache=False).logits[0]
        packed_off = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0, 20:]
        packed_on = model(input_ids=ids, position_ids=pos, use_cache=True).logits[0, 20:]
    assert (packed_off - alone).abs().max() < TOL
    assert (packed_on - alone).abs().max() > 1e-3


def test_best_fit_decreasing_places_each_example_once_within_budget():
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 300, (500,), generator=g).tolist()
    bins = best_fit_decreasing(lengths, 512)
    placed = sorted(i for b in bins for i in b)
    assert placed == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 512 for b in bins)
    assert len(bins) <= len(first_fit(lengths, 512))
    assert len(bins) < 1.1 * sum(lengths) / 512 + 1  # close to the lower bound


def test_best_fit_decreasing_beats_first_fit_on_a_crafted_case():
    lengths = [3, 3, 3, 7, 7, 7]  # first-fit: [3,3,3] [7] [7] [7]; BFD: [7,3] x 3
    assert len(first_fit(lengths, 10)) == 4
    bins = best_fit_decreasing(lengths, 10)
    assert len(bins) == 3 and all(sorted(lengths[i] for i in b) == [3, 7] for b in bins)


def test_an_example_longer_than_the_budget_is_an_error_naming_the_fix(tiny_tokenizer):
    from datasets import Dataset

    from tunesmith.config.schema import TrainConfig
    from tunesmith.errors import ConfigError
    from tunesmith.train.batches import plan_sft_batches

    ds = Dataset.from_dict({"input_ids": [[1] * 40, [1] * 8], "labels": [[1] * 40, [1] * 8]})
    with pytest.raises(ConfigError, match="train.batch_tokens=32.*longest example"):
        plan_sft_batches(TrainConfig(batch_tokens=32), ds, None, tiny_tokenizer)


def test_auto_budget_keeps_about_batch_size_examples_per_step(tiny_tokenizer):
    from datasets import Dataset

    from tunesmith.config.schema import TrainConfig
    from tunesmith.train.batches import AUTO_MICRO_BATCH_TOKENS, plan_sft_batches

    lengths = [100 + (i * 37) % 200 for i in range(256)]  # mean ~200 tokens
    ds = Dataset.from_dict({"input_ids": [[1] * n for n in lengths], "labels": [[1] * n for n in lengths]})
    plan = plan_sft_batches(TrainConfig(batch_size=8), ds, None, tiny_tokenizer)
    cap = AUTO_MICRO_BATCH_TOKENS["cpu"]
    assert plan.mode == "packed" and plan.batch_tokens <= cap
    # 8 x ~200 = ~1600 tokens per step -> cut into micro-batches of at most `cap` tokens on CPU
    assert plan.grad_accum == math.ceil(8 * sum(lengths) / len(lengths) / cap) > 1
    examples_per_step = len(lengths) / (len(plan.train) / plan.grad_accum)
    assert 7 <= examples_per_step <= 8.5
    assert plan.stats["padding_fraction"] == 0.0


def _one_sgd_step(model_dir, examples, tmp_path, name, **train):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.config.schema import TrainConfig
    from tunesmith.train import build_trainer, plan_sft_batches

    from datasets import Dataset

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ds = Dataset.from_dict({"input_ids": [e["input_ids"] for e in examples], "labels": [e["labels"] for e in examples]})
    cfg = TrainConfig(max_steps=1, learning_rate=1.0, warmup_ratio=0.0, lr_scheduler="constant", weight_decay=0.0,
                      max_grad_norm=0.0, logging_steps=1, **train)
    plan = plan_sft_batches(cfg, ds, None, tok)
    out = tmp_path / name
    out.mkdir()
    trainer = build_trainer(model, tok, plan.train, None, cfg, out, data_collator=plan.collator, optim="sgd",
                            **plan.trainer_args)
    trainer.train()
    return {n: p.detach().clone() for n, p in model.named_parameters()}, plan


def test_a_packed_training_step_equals_the_token_level_reference(tiny_llama_dir, tmp_path):
    """Through the Trainer: one packed row, two packed micro-batches with gradient accumulation and
    one padded batch all take the same SGD step as the mean loss over every loss token."""
    from transformers import AutoModelForCausalLM

    examples = _examples(400, lengths=(23, 9, 40, 5, 17, 31))
    total = sum(len(e["input_ids"]) for e in examples)
    one_row, plan1 = _one_sgd_step(tiny_llama_dir, examples, tmp_path, "one", batch_tokens=256)
    two_rows, plan2 = _one_sgd_step(tiny_llama_dir, examples, tmp_path, "two", batch_tokens=total // 2 + 8, grad_accum=2)
    padded, plan3 = _one_sgd_step(tiny_llama_dir, examples, tmp_path, "pad", packing=False, batch_size=6)
    assert (len(plan1.train), len(plan2.train), plan3.mode) == (1, 2, "length_grouped")

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    n_tokens = sum(sum(1 for x in e["labels"][1:] if x != -100) for e in examples)
    loss = sum(_token_losses(model(input_ids=torch.tensor([e["input_ids"]])).logits,
                             torch.tensor([e["labels"]])).sum() for e in examples) / n_tokens
    loss.backward()
    for n, p in model.named_parameters():
        expected = start[n] - p.grad
        for got in (one_row, two_rows, padded):
            torch.testing.assert_close(got[n], expected, rtol=1e-4, atol=TOL, msg=n)


def test_sft_packs_by_default_and_saves_weights_with_the_cache_on(tiny_llama_dir, tmp_path):
    import json

    from tunesmith.config import validate_config
    from tunesmith.tasks import run_task

    rows = [{"instruction": f"Count to {n}.", "input": "", "output": " ".join(str(i) for i in range(n))}
            for n in range(1, 13)]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = validate_config({"model": {"name_or_path": str(tiny_llama_dir)},
                           "data": {"train_file": str(data), "max_length": 128, "eval_split": 0.25},
                           "method": {"name": "lora", "r": 4},
                           "train": {"max_steps": 2, "batch_size": 4, "logging_steps": 1},
                           "output": {"dir": str(tmp_path / "runs"), "name": "run"}})
    result = run_task(cfg)
    batches = json.loads((result.run_dir / "run_info.json").read_text())["batches"]
    assert batches["mode"] == "packed" and batches["padding_fraction"] == 0.0
    assert batches["gradient_checkpointing"] is False
    assert batches["attention"] == "tunesmith_varlen"  # auto: per-example attention for packed rows
    assert "eval_loss" in result.metrics
    assert result.model.config.use_cache is True  # the training-time switch is not saved


def test_flash_attention_gets_the_varlen_boundaries():
    rows = [{"input_ids": [[5, 6, 7], [8, 9]], "labels": [[-100, 6, 7], [-100, 9]]}]
    batch = PackedCollator(flash_attn_kwargs=True)(rows)
    assert batch["cu_seq_lens_q"].tolist() == batch["cu_seq_lens_k"].tolist() == [0, 3, 5]
    assert batch["max_length_q"] == batch["max_length_k"] == 3
    assert batch["logits_to_keep"].tolist() == [0, 1, 3]  # positions whose next token has a label
    assert batch["shift_labels"].tolist() == [[6, 7, 9]]


def test_varlen_kernel_is_plain_sdpa_outside_packed_rows(tiny_llama_dir):
    """Padded batches and cached generation take the stock sdpa path: same logits, same tokens."""
    sdpa, mine = _tiny_model(tiny_llama_dir, "sdpa"), _tiny_model(tiny_llama_dir, varlen.NAME)
    ids = torch.tensor([[0, 0, 0, 11, 12, 13, 14], [21, 22, 23, 24, 25, 26, 27]])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [1] * 7])
    with torch.no_grad():
        torch.testing.assert_close(mine(input_ids=ids, attention_mask=mask).logits,
                                   sdpa(input_ids=ids, attention_mask=mask).logits, atol=TOL, rtol=0)
    kw = {"input_ids": ids, "attention_mask": mask, "max_new_tokens": 6, "do_sample": False}
    assert torch.equal(mine.generate(**kw), sdpa.generate(**kw))


def test_varlen_kernel_cuts_rows_at_position_restarts():
    assert varlen._segments(torch.tensor([0, 1, 2, 0, 1, 0])) == [(0, 3), (3, 5), (5, 6)]
    assert varlen._segments(torch.tensor([3, 4, 0, 1])) == [(0, 2), (2, 4)]  # a row may start mid-example


def test_varlen_kernel_refuses_sliding_window_models(tiny_llama_dir):
    from tunesmith.errors import ConfigError

    model = _tiny_model(tiny_llama_dir, "sdpa")
    model.config.sliding_window = 16
    assert not varlen.supported(model.config)
    assert varlen.use_varlen_attention(model, "auto") is False  # auto keeps sdpa's mask
    with pytest.raises(ConfigError, match="sliding-window"):
        varlen.use_varlen_attention(model, varlen.NAME)
