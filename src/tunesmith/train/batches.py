"""SFT micro-batches: the plan (packed or padded, token budget, gradient accumulation) and the
collators that turn one planned row into model inputs.

Packed rows go through transformers' `DataCollatorWithFlattening`: one row of concatenated
examples, `position_ids` restarting at 0 for each, `-100` as the first label of each so no loss
crosses a boundary, and (for flash attention) the varlen `cu_seq_lens_*` / `max_length_*` kwargs.
Without an attention mask, transformers keeps attention inside each example by reading the
restarts in `position_ids` -- but only when the KV cache is off, so the collator passes
`use_cache=False` with every batch (see tests/test_packing.py, which pins the leak otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from tunesmith.config.schema import TrainConfig
from tunesmith.data.batching import (
    best_fit_decreasing,
    binned_dataset,
    length_grouped_batches,
    padded_tokens,
    round_up,
    token_budget_batches,
)
from tunesmith.errors import ConfigError

# Largest auto micro-batch: CPU throughput is flat well below this, and memory grows with it.
# On 2 CPU cores, 512 (with LoRA dropout 0) beat 1024 (with dropout 0.05): 143 vs 88 real tok/s and 2.7 vs
# 4.2 GB (benchmarks/results/sft_throughput_microbatch512.json): packed CPU attention computes the whole
# row and the block mask discards most of that work, so shorter rows waste less.
AUTO_MICRO_BATCH_TOKENS = {"cpu": 512, "cuda": 16384}


class PackedCollator:
    """Rows of nested examples -> one flattened row (`DataCollatorWithFlattening`) + use_cache=False.

    With `loss_positions_only`, the batch also carries `logits_to_keep` (the positions whose next
    token has a label) and their `shift_labels`: the model then projects only those hidden states
    onto the vocabulary, skipping the lm_head and cross-entropy work on prompt tokens. The loss is
    the same sum over the same tokens."""

    def __init__(self, flash_attn_kwargs: bool = False, loss_positions_only: bool = True):
        from transformers import DataCollatorWithFlattening

        self.flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=-100,
                                                  return_flash_attn_kwargs=flash_attn_kwargs)
        self.loss_positions_only = loss_positions_only

    def __call__(self, rows: list[dict]) -> dict:
        examples = [{"input_ids": ids, "labels": labels}
                    for row in rows for ids, labels in zip(row["input_ids"], row["labels"])]
        batch = self.flatten(examples)
        batch["use_cache"] = False
        if self.loss_positions_only:
            shifted = torch.nn.functional.pad(batch["labels"][:, 1:], (0, 1), value=-100)
            keep = (shifted[0] != -100).nonzero().squeeze(1)
            if len(keep):
                batch["logits_to_keep"] = keep
                batch["shift_labels"] = shifted[:, keep]
        return batch


class PaddedCollator:
    """Rows of nested examples -> one batch padded to its longest (a multiple of 8), labels -100."""

    def __init__(self, tokenizer, pad_to_multiple_of: int = 8):
        from transformers import DataCollatorForSeq2Seq

        self.pad = DataCollatorForSeq2Seq(tokenizer, padding=True, pad_to_multiple_of=pad_to_multiple_of,
                                          label_pad_token_id=-100)

    def __call__(self, rows: list[dict]) -> dict:
        return self.pad([{"input_ids": ids, "labels": labels}
                         for row in rows for ids, labels in zip(row["input_ids"], row["labels"])])


@dataclass
class BatchPlan:
    """How the SFT datasets are cut into micro-batches; `trainer_args` go to TrainingArguments."""

    mode: str  # "packed" | "token_budget" | "length_grouped"
    train: object
    eval: object | None
    collator: object
    batch_tokens: int | None
    grad_accum: int
    stats: dict = field(default_factory=dict)

    @property
    def trainer_args(self) -> dict:
        return {"per_device_train_batch_size": 1, "per_device_eval_batch_size": 1,
                "gradient_accumulation_steps": self.grad_accum}


def _lengths(dataset) -> list[int]:
    return [len(ids) for ids in dataset["input_ids"]] if dataset is not None else []


def auto_batch_tokens(lengths: list[int], batch_size: int, device: str) -> tuple[int, int]:
    """(token budget, micro-batches per step): about batch_size mean-length examples per step, cut
    into micro-batches no larger than AUTO_MICRO_BATCH_TOKENS[device] (never below the longest)."""
    target = batch_size * sum(lengths) / max(len(lengths), 1)
    splits = max(1, math.ceil(target / AUTO_MICRO_BATCH_TOKENS[device]))
    return max(round_up(int(math.ceil(target / splits)), 8), round_up(max(lengths, default=8), 8)), splits


def plan_sft_batches(cfg: TrainConfig, train, eval_ds, tokenizer, *, attn_implementation: str = "auto",
                     seed: int | None = None) -> BatchPlan:
    """Packed bins (train.packing) or padded length-grouped / token-budget batches, as rows."""
    lengths = _lengths(train)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    splits = 1
    seed = cfg.seed if seed is None else seed
    budget = cfg.batch_tokens
    if cfg.packing:
        if budget is None:
            budget, splits = auto_batch_tokens(lengths, cfg.batch_size, device)
        planner = lambda ls: best_fit_decreasing(ls, budget)  # noqa: E731
        collator = PackedCollator(flash_attn_kwargs=attn_implementation.startswith("flash_attention"))
        mode = "packed"
    elif budget is not None:
        planner = lambda ls: token_budget_batches(ls, budget, cfg.pad_to_multiple_of)  # noqa: E731
        collator, mode = PaddedCollator(tokenizer, cfg.pad_to_multiple_of), "token_budget"
    else:
        size = cfg.batch_size
        planner = ((lambda ls: length_grouped_batches(ls, size, seed)) if cfg.group_by_length  # noqa: E731
                   else (lambda ls: [list(range(i, min(i + size, len(ls)))) for i in range(0, len(ls), size)]))
        collator, mode = PaddedCollator(tokenizer, cfg.pad_to_multiple_of), "length_grouped"
    try:
        train_bins = planner(lengths)
        eval_lengths = _lengths(eval_ds)
        eval_bins = planner(eval_lengths) if eval_ds is not None else None
    except ValueError as e:
        raise ConfigError([f"train.batch_tokens={budget}: {e}; raise train.batch_tokens to at least the "
                           "longest example or lower data.max_length"]) from e
    pad = 1 if mode == "packed" else cfg.pad_to_multiple_of
    computed = padded_tokens(lengths, train_bins, pad) if mode != "packed" else sum(lengths)
    largest = max((padded_tokens(lengths, [b], pad) if mode != "packed" else sum(lengths[i] for i in b)
                   for b in train_bins), default=0)
    stats = {"mode": mode, "batch_tokens": budget, "micro_batches": len(train_bins),
             "examples_per_micro_batch": round(len(lengths) / max(len(train_bins), 1), 2),
             "largest_micro_batch_tokens": largest, "real_tokens": sum(lengths), "computed_tokens": computed,
             "padding_fraction": round(1 - sum(lengths) / computed, 4) if computed else 0.0}
    return BatchPlan(mode=mode, train=binned_dataset(train, train_bins),
                     eval=binned_dataset(eval_ds, eval_bins) if eval_ds is not None else None,
                     collator=collator, batch_tokens=budget, grad_accum=cfg.grad_accum * splits, stats=stats)
