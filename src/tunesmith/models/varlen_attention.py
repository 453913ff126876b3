"""Per-example attention for packed rows without flash-attn: the `tunesmith_varlen` kernel.

A packed row holds several examples; `position_ids` restart at 0 for each. transformers' `sdpa`
path keeps attention inside each example with a block-diagonal mask over the whole row, so the
kernel computes (and then discards) every cross-example score: a 512-token row of four examples
does four times the attention work it needs, and a masked SDPA call cannot use the causal
block-skipping of the flash kernel. `flash_attention_2` solves this with varlen kernels, but only
on CUDA and with the flash-attn package.

This module registers, through transformers' public `AttentionInterface` and
`AttentionMaskInterface`, an attention function that cuts a packed row at its `position_ids`
restarts and runs causal SDPA on each example alone (same math, no mask, no cross-example work).
Any other call -- padded batches, generation with a KV cache, a row that is one example -- goes to
the stock `sdpa` functions unchanged, so a model set to this kernel behaves exactly like `sdpa`
outside packed training. tests/test_packing.py checks losses and gradients against one-by-one runs.
"""

from __future__ import annotations

import torch

NAME = "tunesmith_varlen"


def _segments(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) of each example in one packed row, from the restarts of its position ids."""
    starts = (position_ids == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    ends = [*starts[1:], position_ids.numel()]
    return list(zip(starts, ends))


def _is_packed(query: torch.Tensor, key: torch.Tensor, attention_mask, position_ids) -> bool:
    return (attention_mask is None and position_ids is not None and query.shape[2] > 1
            and query.shape[2] == key.shape[2] and position_ids.shape[-1] == query.shape[2]
            and bool((position_ids[:, 1:] == 0).any()))


def varlen_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                             scaling: float | None = None, is_causal: bool | None = None, **kwargs):
    """Causal SDPA per example of a packed row; the stock sdpa function for anything else."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if not causal or not _is_packed(query, key, attention_mask, position_ids):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    rows = []
    for b in range(query.shape[0]):
        # torch.split, not one slice per example: a slice's backward writes its gradient into a zero
        # tensor of the whole row (a fill and an add per example, per q/k/v, per layer); split's
        # backward is a single cat of the pieces' gradients.
        sizes = [e - s for s, e in _segments(position_ids[min(b, position_ids.shape[0] - 1)])]
        row = [t if t.shape[0] == 1 else t[b:b + 1] for t in (query, key, value)]
        pieces = [torch.nn.functional.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout, scale=scaling, is_causal=True, enable_gqa=groups > 1)
            for q, k, v in zip(*(t.split(sizes, dim=2) for t in row))]
        rows.append(torch.cat(pieces, dim=2))
    out = rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)
    return out.transpose(1, 2).contiguous(), None


def varlen_mask(*args, attention_mask=None, **kwargs):
    """No mask for padding-free rows (the kernel cuts them itself); sdpa's mask otherwise."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None and not kwargs.get("use_vmap", False):
        return None  # causal and padding-free: the kernel cuts packed rows at their position restarts
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def supported(config) -> bool:
    """Plain causal self-attention only: no sliding window, no layer types that need a mask."""
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    return set(getattr(config, "layer_types", None) or ["full_attention"]) <= {"full_attention"}


def register() -> str:
    """Make `tunesmith_varlen` a valid `attn_implementation` (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, varlen_attention_forward)
    AttentionMaskInterface.register(NAME, varlen_mask)
    return NAME


def use_varlen_attention(model, requested: str = "auto") -> bool:
    """Switch a model loaded for packed training to this kernel: when asked for, or under `auto`
    when transformers picked sdpa and the model is plain causal attention. Returns whether it did."""
    current = getattr(model.config, "_attn_implementation", None)
    if requested == NAME or (requested == "auto" and current == "sdpa" and supported(model.config)):
        if requested == NAME and not supported(model.config):
            from tunesmith.errors import ConfigError

            raise ConfigError([f"model.attn_implementation={NAME} needs plain causal attention; this model has "
                               "sliding-window or mixed layer types. Fix: use `sdpa` or `auto`."])
        model.set_attn_implementation(register())
        return True
    return False
