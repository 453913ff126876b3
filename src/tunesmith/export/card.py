"""The model card (README.md) written beside every export: where the model came from, how it was
tuned, on which data (fingerprint), its metrics and what each exported file is."""

from __future__ import annotations

import json
from pathlib import Path


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def model_card(run_dir: str | Path, exports: list[dict]) -> str:
    """Markdown text of the card for ``run_dir`` and the formats in ``exports``."""
    from tunesmith.train.artifacts import base_model_of, read_run_config

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    info = _read_json(run_dir / "run_info.json")
    metrics = _read_json(run_dir / "final_metrics.json")
    method = cfg.method.model_dump()
    lines = [
        f"# {run_dir.name}",
        "",
        f"Fine-tuned with tunesmith (task `{cfg.task}`).",
        "",
        "| | |", "|---|---|",
        f"| Base model | `{info.get('base_model') or base_model_of(run_dir)}` |",
        f"| Method | `{method.get('name')}` ({', '.join(f'{k}={v}' for k, v in method.items() if k != 'name' and v is not None)}) |",
        f"| Data fingerprint | `{info.get('data_fingerprint', 'unknown')}` |",
        f"| Training data | `{cfg.data.train_file}` (format `{cfg.data.format}`) |",
        f"| Chat template | `{cfg.model.chat_template or 'the tokenizer own'}` |",
    ]
    versions = info.get("versions") or {}
    if versions:
        lines.append(f"| Library versions | {', '.join(f'{k} {v}' for k, v in versions.items())} |")
    lines += ["", "## Metrics", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in metrics.items()
                                                         if not isinstance(v, (dict, list))]
    else:
        lines.append("No final metrics were recorded for this run.")
    lines += ["", "## Files", ""]
    for e in exports:
        extra = {k: v for k, v in e.items() if k not in ("format", "path")}
        lines.append(f"- **{e['format']}** `{Path(e['path']).name}`: "
                     + ", ".join(f"{k}={_fmt(v)}" for k, v in _flatten(extra).items()))
    lines += ["", "Chat prompts must be rendered with the chat template saved with the tokenizer, as in training.", ""]
    return "\n".join(lines)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out
