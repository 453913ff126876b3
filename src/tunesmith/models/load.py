"""Load tokenizers and models from a resolved location, with the config's dtype and safety flags."""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.config.schema import ModelConfig
from tunesmith.errors import ModelError
from tunesmith.models.registry import ResolvedModel, resolve_model

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    """The weights' dtype: `auto` is float32 on CPU (mixed precision comes from autocast)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return _DTYPES[name]


def load_tokenizer(cfg: ModelConfig, resolved: ResolvedModel | None = None, *, padding_side: str = "right"):
    """The model's tokenizer with a pad token guaranteed (eos when the tokenizer has none)."""
    from transformers import AutoTokenizer

    resolved = resolved or resolve_model(cfg.name_or_path, gguf_file=cfg.gguf_file)
    try:
        tok = AutoTokenizer.from_pretrained(
            resolved.path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
        )
    except Exception as exc:
        raise ModelError(f"could not load the tokenizer from {resolved.path}: {exc}") from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.padding_side = padding_side
    return tok


def model_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "dtype": torch_dtype(cfg.dtype),
        "trust_remote_code": cfg.trust_remote_code,
        "revision": cfg.revision,
    }
    if cfg.attn_implementation == "tunesmith_varlen":
        from tunesmith.models.varlen_attention import register

        kwargs["attn_implementation"] = register()
    elif cfg.attn_implementation != "auto":
        kwargs["attn_implementation"] = cfg.attn_implementation
    return kwargs


def load_model(cfg: ModelConfig, auto_class: Any = None, resolved: ResolvedModel | None = None, **extra: Any):
    """Load a model with `auto_class` (default AutoModelForCausalLM) from the resolved location."""
    from transformers import AutoModelForCausalLM

    auto_class = auto_class or AutoModelForCausalLM
    resolved = resolved or resolve_model(cfg.name_or_path, gguf_file=cfg.gguf_file)
    try:
        model = auto_class.from_pretrained(resolved.path, **{**model_kwargs(cfg), **extra})
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"could not load {cfg.name_or_path!r} from {resolved.path} as {auto_class.__name__}: {exc}") from exc
    return model
