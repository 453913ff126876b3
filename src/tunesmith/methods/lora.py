"""LoRA and its variants (DoRA, rsLoRA, PiSSA/OLoRA init) through peft's LoraConfig."""

from __future__ import annotations

from pathlib import Path

from tunesmith.config.schema import DoraMethod, LoraMethod, QloraMethod

_INIT = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora"}


def lora_config(cfg: LoraMethod | DoraMethod | QloraMethod, task_type: str):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        use_rslora=cfg.use_rslora,
        use_dora=cfg.name == "dora",
        init_lora_weights=_INIT[cfg.init],
        modules_to_save=cfg.modules_to_save,
        task_type=task_type,
    )


def apply_lora(model, cfg: LoraMethod | DoraMethod | QloraMethod, task_type: str):
    from peft import get_peft_model

    return get_peft_model(model, lora_config(cfg, task_type))


def save_initial_adapter(peft_model, folder: Path) -> Path | None:
    """PiSSA/OLoRA change the base weights at init. Keep the initial adapter so the final one can be
    converted into a plain LoRA that applies to the *original* base (peft's documented procedure)."""
    conf = peft_model.peft_config["default"]
    if conf.init_lora_weights not in ("pissa", "olora"):
        return None
    init = conf.init_lora_weights
    conf.init_lora_weights = True  # the saved initial adapter must not re-run the decomposition on load
    peft_model.save_pretrained(str(folder))
    conf.init_lora_weights = init
    return folder
