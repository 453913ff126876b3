"""Model registry (bundled, local folder, GGUF, hub id) and loading."""

from tunesmith.models.load import load_model, load_tokenizer, torch_dtype
from tunesmith.models.registry import BUNDLED, ResolvedModel, cache_root, list_models, resolve_model

__all__ = [
    "BUNDLED", "ResolvedModel", "cache_root", "list_models", "load_model", "load_tokenizer",
    "resolve_model", "torch_dtype",
]
