"""Tuning methods: one module per family, one entry point `apply_method`."""

from __future__ import annotations

from torch import nn

from tunesmith.methods.full_freeze import apply_freeze, apply_full, decoder_layers
from tunesmith.methods.lora import apply_lora, lora_config, save_initial_adapter
from tunesmith.methods.peft_other import apply_ia3, apply_prefix, apply_prompt
from tunesmith.methods.qlora import prepare_kbit, qlora_problems, quantization_config

PEFT_METHODS = ("lora", "dora", "qlora", "ia3", "prefix", "prompt")


def apply_method(model: nn.Module, method, *, task_type: str = "CAUSAL_LM", head_modules: tuple[str, ...] = (),
                 tokenizer_path: str | None = None, gradient_checkpointing: bool | str = False) -> nn.Module:
    """Return the model ready to train with `method` (a peft model for adapter methods)."""
    name = method.name
    if name == "full":
        return apply_full(model, head_modules)
    if name == "freeze":
        return apply_freeze(model, method, head_modules)
    if name == "qlora":
        model = prepare_kbit(model, gradient_checkpointing is True)  # `auto` is resolved by the recipe
        return apply_lora(model, method, task_type)
    if name in ("lora", "dora"):
        return apply_lora(model, method, task_type)
    if name == "ia3":
        return apply_ia3(model, method, task_type)
    if name == "prefix":
        return apply_prefix(model, method, task_type)
    if name == "prompt":
        return apply_prompt(model, method, task_type, tokenizer_path)
    raise ValueError(f"unknown method {name!r}")


def trainable_summary(model: nn.Module) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total, "share": trainable / max(total, 1)}


__all__ = [
    "PEFT_METHODS", "apply_freeze", "apply_full", "apply_ia3", "apply_lora", "apply_method", "apply_prefix",
    "apply_prompt", "decoder_layers", "lora_config", "prepare_kbit", "qlora_problems", "quantization_config",
    "save_initial_adapter", "trainable_summary",
]
