"""TRL trainers for the preference tasks, configured from tunesmith's typed config.

task -> trainer: dpo -> DPOTrainer, kto -> KTOTrainer, reward -> RewardTrainer (scalar head),
orpo -> ORPOTrainer and simpo -> CPOTrainer(loss_type="simpo", cpo_alpha=0) (both in
``trl.experimental`` in TRL 1.x). The optimisation, precision and cadence arguments are the same
``training_arguments`` as SFT; the task's own arguments come from ``cfg.preference``.

Reference model: with an adapter method the reference is the base model with the adapter
disabled, so no second copy is kept. TRL copies an existing adapter into a frozen "ref" adapter;
``drop_reference_adapter`` removes it again when the fresh adapter starts as the identity (every
init but PiSSA/OLoRA, which change the base weights). Full and freeze get a frozen copy, or none
with ``preference.precompute_ref_log_probs``.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

from transformers import TrainingArguments

from tunesmith.train.callbacks import MetricsJsonlCallback, RichProgressCallback
from tunesmith.train.trainer import training_arguments

# task -> (module, trainer class, config class)
TRAINERS = {
    "dpo": ("trl", "DPOTrainer", "DPOConfig"),
    "kto": ("trl", "KTOTrainer", "KTOConfig"),
    "reward": ("trl", "RewardTrainer", "RewardConfig"),
    "orpo": ("trl.experimental.orpo", "ORPOTrainer", "ORPOConfig"),
    "simpo": ("trl.experimental.cpo", "CPOTrainer", "CPOConfig"),
}
USES_REFERENCE = ("dpo", "kto")


def task_arguments(task: str, pref, max_length: int) -> dict:
    """The TRL config arguments specific to ``task``."""
    if task == "dpo":
        losses, weights = [pref.loss_type], None
        if pref.sft_weight > 0:  # RPO: the preference loss plus the NLL of the chosen reply (TRL's "sft" term)
            losses, weights = [pref.loss_type, "sft"], [1.0, pref.sft_weight]
        return dict(beta=pref.beta, loss_type=losses, loss_weights=weights, label_smoothing=pref.label_smoothing,
                    max_length=max_length, precompute_ref_log_probs=pref.precompute_ref_log_probs)
    if task == "kto":
        # the KL estimate pairs each row with its batch neighbours, which TRL requires in fixed order
        return dict(beta=pref.beta, desirable_weight=pref.desirable_weight, max_length=max_length,
                    train_sampling_strategy="sequential",
                    undesirable_weight=pref.undesirable_weight, precompute_ref_log_probs=pref.precompute_ref_log_probs)
    if task == "orpo":
        return dict(beta=pref.beta, max_length=max_length)
    if task == "simpo":
        return dict(loss_type="simpo", cpo_alpha=0.0, beta=pref.beta, simpo_gamma=pref.simpo_gamma,
                    label_smoothing=pref.label_smoothing, max_length=max_length)
    if task == "reward":
        return dict(max_length=max_length, center_rewards_coefficient=pref.reward_center_coefficient)
    raise ValueError(f"no preference trainer for task {task!r}")


def preference_arguments(task: str, cfg, run_dir: Path, *, has_eval: bool):
    """The TRL config of ``task``: tunesmith's TrainingArguments plus the task's own arguments."""
    module, _, config_name = TRAINERS[task]
    config_cls = getattr(importlib.import_module(module), config_name)
    base = training_arguments(cfg.train, run_dir, has_eval=has_eval)
    common = {f.name: getattr(base, f.name) for f in dataclasses.fields(TrainingArguments)
              if f.init and not f.name.startswith("_")}
    max_length = cfg.preference.max_length or cfg.data.max_length
    return config_cls(**{**common, **task_arguments(task, cfg.preference, max_length)})


def build_preference_trainer(task: str, model, tokenizer, train_dataset, eval_dataset, cfg, run_dir: Path, *,
                             ref_model=None, callbacks=()):
    """The TRL trainer of ``task`` writing metrics.jsonl into run_dir, adapter reference without a copy."""
    from transformers import PrinterCallback, ProgressCallback

    module, trainer_name, _ = TRAINERS[task]
    trainer_cls = getattr(importlib.import_module(module), trainer_name)
    has_eval = eval_dataset is not None and len(eval_dataset) > 0
    args = preference_arguments(task, cfg, run_dir, has_eval=has_eval)
    kwargs = dict(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset if has_eval else None,
                  processing_class=tokenizer,
                  callbacks=[MetricsJsonlCallback(run_dir / "metrics.jsonl"), RichProgressCallback(), *callbacks])
    if task in USES_REFERENCE:
        kwargs["ref_model"] = ref_model
    trainer = trainer_cls(**kwargs)
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    if task in USES_REFERENCE:
        drop_reference_adapter(trainer.model, getattr(cfg.method, "init", "default"))
    return trainer


def drop_reference_adapter(model, init: str = "default") -> bool:
    """Remove TRL's "ref" adapter copy so the reference is the adapter-disabled base; True if removed."""
    from peft import PeftModel

    if not isinstance(model, PeftModel) or "ref" not in model.peft_config or init in ("pissa", "olora"):
        return False
    model.delete_adapter("ref")
    model.set_adapter("default")
    return True
