"""QLoRA: a 4-bit NF4 base (bitsandbytes) with LoRA adapters. Needs CUDA."""

from __future__ import annotations

import importlib.util

from tunesmith.config.schema import QloraMethod


def qlora_problems() -> list[str]:
    """Why QLoRA cannot run here (empty when it can). Checked at validation time."""
    import torch

    problems = []
    if not torch.cuda.is_available():
        problems.append(
            "method.name: qlora needs a CUDA GPU (bitsandbytes 4-bit kernels) and none is available here; "
            "use method.name: lora on this machine, or run on a GPU machine"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        problems.append("method.name: qlora needs the bitsandbytes package: pip install bitsandbytes")
    return problems


def quantization_config(cfg: QloraMethod):
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.quant_type,
        bnb_4bit_use_double_quant=cfg.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, cfg.compute_dtype),
    )


def prepare_kbit(model, gradient_checkpointing: bool):
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
