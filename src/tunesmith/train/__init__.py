"""Trainer wiring, callbacks, run directories, checkpoints and saved artifacts."""

from __future__ import annotations

from tunesmith.train.artifacts import LoadedRun, RunResult, base_model_of, load_run, read_run_config, save_final, weights_dir
from tunesmith.train.callbacks import MetricsJsonlCallback, RichProgressCallback
from tunesmith.train.plots import plot_loss_curve, read_metrics
from tunesmith.train.rundir import last_checkpoint, library_versions, make_run_dir, save_run_info
from tunesmith.train.batches import BatchPlan, PackedCollator, PaddedCollator, plan_sft_batches
from tunesmith.train.trainer import (
    build_trainer,
    cpu_has_native_bf16,
    length_grouped,
    predict_in_order,
    resolve_gradient_checkpointing,
    resolve_optim,
    resolve_precision,
    training_arguments,
)


def sft_collator(tokenizer, pad_to_multiple_of: int = 8):
    """Dynamic padding to the longest in the batch (a multiple of 8); labels padded with -100."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, padding=True, pad_to_multiple_of=pad_to_multiple_of, label_pad_token_id=-100)


def model_load_kwargs(method) -> dict:
    """Extra from_pretrained arguments a method needs (QLoRA: 4-bit quantisation on the GPU)."""
    if method.name == "qlora":
        from tunesmith.methods import quantization_config

        from tunesmith.train.distributed import current_world

        # one GPU per process: this rank's (0 in a single-process run)
        return {"quantization_config": quantization_config(method), "device_map": {"": current_world().local_rank}}
    return {}


__all__ = [
    "BatchPlan", "LoadedRun", "MetricsJsonlCallback", "PackedCollator", "PaddedCollator", "plan_sft_batches",
    "resolve_gradient_checkpointing", "resolve_optim", "RunResult", "RichProgressCallback", "base_model_of", "build_trainer",
    "cpu_has_native_bf16", "last_checkpoint", "length_grouped", "predict_in_order", "library_versions", "load_run", "make_run_dir", "model_load_kwargs",
    "plot_loss_curve", "read_metrics", "read_run_config", "resolve_precision", "save_final", "save_run_info",
    "sft_collator", "training_arguments", "weights_dir",
]
