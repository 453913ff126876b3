"""Full fine-tuning and partial freezing (top/bottom N layers or named modules)."""

from __future__ import annotations

from torch import nn

from tunesmith.config.schema import FreezeMethod
from tunesmith.errors import ConfigError


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's stack of transformer blocks: the ModuleList as long as config.num_hidden_layers."""
    n = getattr(model.config, "num_hidden_layers", None)
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise ConfigError([f"method.freeze: could not find the {n} transformer layers of {type(model).__name__}"])


def apply_full(model: nn.Module, head_modules: tuple[str, ...] = ()) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def apply_freeze(model: nn.Module, cfg: FreezeMethod, head_modules: tuple[str, ...] = ()) -> nn.Module:
    """Freeze everything, then unfreeze the chosen part. Task heads (e.g. `classifier`) always train."""
    for p in model.parameters():
        p.requires_grad_(False)
    if cfg.trainable_modules is not None:
        chosen = [n for n, _ in model.named_parameters() if any(s in n for s in cfg.trainable_modules)]
        if not chosen:
            raise ConfigError(
                [f"method.trainable_modules: none of {cfg.trainable_modules} matches a parameter name; "
                 f"examples of names: {[n for n, _ in model.named_parameters()][:6]}"]
            )
        names = set(chosen)
    else:
        layers = decoder_layers(model)
        n = len(layers)
        k = cfg.trainable_layers if cfg.trainable_layers is not None else n - cfg.frozen_layers
        if not 0 < k <= n:
            raise ConfigError([f"method: the model has {n} layers; the setting leaves {k} trainable"])
        layer_ids = {id(p) for layer in list(layers)[n - k:] for p in layer.parameters()}
        names = {name for name, p in model.named_parameters() if id(p) in layer_ids}
        names |= {name for name, _ in model.named_parameters() if _is_final_norm(name)}
    names |= {name for name, _ in model.named_parameters() if any(name.startswith(h) or f".{h}." in name for h in head_modules)}
    for name, p in model.named_parameters():
        if name in names:
            p.requires_grad_(True)
    return model


def _is_final_norm(name: str) -> bool:
    """The norm after the last block (model.norm in Llama-style models)."""
    parts = name.split(".")
    return 2 <= len(parts) <= 3 and "norm" in parts[-2].lower()
