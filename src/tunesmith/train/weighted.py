"""Class-weighted loss (one Trainer hook: `compute_loss`) and layer-wise learning-rate decay groups.

LLRD is not a second hook: `llrd_optimizer` builds an AdamW over per-layer parameter groups and the
recipe passes it to the Trainer through `optimizers=(optimizer, None)`; the schedule scales each
group's own learning rate.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from transformers import Trainer

from tunesmith.methods import decoder_layers


class WeightedLossTrainer(Trainer):
    """Trainer whose loss weighs classes by `class_weights` (cross-entropy, or BCE for multi-label)."""

    def __init__(self, *args, class_weights=None, problem_type: str = "single_label", **kwargs):
        super().__init__(*args, **kwargs)
        self.class_weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.problem_type = problem_type

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.class_weights is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = weighted_loss(outputs.logits, labels, self.class_weights.to(outputs.logits.device), self.problem_type,
                             num_items_in_batch)
        return (loss, outputs) if return_outputs else loss


def weighted_loss(logits, labels, weights, problem_type: str = "single_label", num_items_in_batch=None):
    """Weighted CE over the last dim (ignoring -100), or per-class weighted BCE for multi-label.

    With gradient accumulation (`num_items_in_batch`), the CE sum is divided by the batch total so
    every item counts once, matching the unweighted Trainer loss."""
    logits = logits.float()
    if problem_type == "multi_label":
        loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
        return (loss * weights).mean()
    flat, target = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    if num_items_in_batch is None:
        return nn.functional.cross_entropy(flat, target, weight=weights, ignore_index=-100)
    total = nn.functional.cross_entropy(flat, target, weight=weights, ignore_index=-100, reduction="sum")
    kept = target[target != -100]
    norm = weights[kept].sum() * (num_items_in_batch / max(kept.numel(), 1))
    return total / norm.clamp_min(1e-12)


def llrd_param_groups(model: nn.Module, lr: float, decay: float, weight_decay: float = 0.0) -> list[dict]:
    """Parameter groups: layers above the top block (head, pooler, final norm) at `lr`, block i of L at
    lr * decay**(L - i), embeddings and anything below at lr * decay**(L + 1). Biases and norms get
    no weight decay. Only trainable parameters are included."""
    layers = list(decoder_layers(_base(model)))
    n = len(layers)
    depth = {id(p): i for i, layer in enumerate(layers) for p in layer.parameters()}
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in depth:
            scale = decay ** (n - depth[id(p)])
        elif "embed" in name:
            scale = decay ** (n + 1)
        else:
            scale = 1.0
        no_decay = p.ndim < 2 or "norm" in name.lower()
        key = (scale, no_decay)
        group = groups.setdefault(key, {"params": [], "lr": lr * scale,
                                        "weight_decay": 0.0 if no_decay else weight_decay})
        group["params"].append(p)
    return sorted(groups.values(), key=lambda g: g["lr"])


def llrd_optimizer(model: nn.Module, train_cfg, decay: float):
    return torch.optim.AdamW(llrd_param_groups(model, train_cfg.learning_rate, decay, train_cfg.weight_decay),
                             lr=train_cfg.learning_rate)


def classification_trainer_class(class_weights=None, problem_type: str = "single_label", optimizer=None):
    """A Trainer class for build_trainer: weighted loss when weights are given, a prebuilt optimizer."""
    kwargs = {"optimizers": (optimizer, None)} if optimizer is not None else {}
    if class_weights is None:
        return functools.partial(Trainer, **kwargs) if kwargs else Trainer
    return functools.partial(WeightedLossTrainer, class_weights=class_weights, problem_type=problem_type, **kwargs)


def _base(model):
    """The wrapped transformer inside a peft model (decoder_layers reads model.config)."""
    get = getattr(model, "get_base_model", None)
    return get() if get else model
