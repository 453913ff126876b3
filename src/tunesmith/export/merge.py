"""Fold a trained adapter into its base model and save a plain safetensors HF folder.

Only methods whose update is a weight delta can be folded (LoRA and its variants, DoRA, IA3);
prefix and prompt tuning add virtual tokens instead, so they are refused with the reason.
A run trained with `full` or `freeze` is already a full model: it is saved again as is.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tunesmith.errors import ModelError

_UNMERGEABLE = {"prefix", "prompt"}
PROBE_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? Paris is the capital of France.",
)


def merge_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write ``out_dir`` = base weights + folded adapter (safetensors) + tokenizer; return it."""
    from tunesmith.train.artifacts import load_run, read_run_config

    cfg = read_run_config(Path(run_dir))
    if cfg.method.name in _UNMERGEABLE:
        raise ModelError(
            f"{run_dir} was trained with method {cfg.method.name!r}, which adds virtual tokens rather than "
            "a weight delta, so it cannot be merged into the base model; serve it with its adapter instead "
            "(`tunesmith serve RUN_DIR`).")
    run = load_run(run_dir, merge=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run.model.save_pretrained(str(out), safe_serialization=True)
    run.tokenizer.padding_side = "left"
    run.tokenizer.save_pretrained(str(out))
    return out


def probe_ids(tokenizer, texts=PROBE_TEXTS) -> torch.Tensor:
    """A small fixed batch of token ids to compare two versions of the same model on."""
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = min(len(r) for r in rows)
    return torch.tensor([r[:width] for r in rows], dtype=torch.long)


@torch.no_grad()
def logits_of(model, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(input_ids=ids).logits.float()


def compare_logits(reference: torch.Tensor, other: torch.Tensor) -> dict:
    """Max absolute difference, its size relative to the reference's spread, top-1 agreement."""
    diff = (reference - other).abs()
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "relative_max_diff": float(diff.max() / reference.std().clamp_min(1e-12)),
        "relative_mean_diff": float(diff.mean() / reference.std().clamp_min(1e-12)),
        "top1_agreement": float((reference.argmax(-1) == other.argmax(-1)).float().mean()),
    }
