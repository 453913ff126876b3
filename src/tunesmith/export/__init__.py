"""Export a trained run: merged safetensors, int8 (CPU), ONNX, GGUF (f16/q8_0), plus a model card.

``export_run`` always merges first (every other format is made from the merged folder), then
writes each requested format into its own sub-folder of ``to``, a README.md model card and
``export_report.json`` with sizes, speed-ups, logit deltas and, for the lossy formats (int8,
GGUF), the answer-token loss / agreement / KL delta on up to 16 of the run's held-out rows.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.errors import ModelError
from tunesmith.export.card import model_card
from tunesmith.export.gguf_writer import GGUF_TYPES, load_gguf_model, write_gguf
from tunesmith.export.int8 import export_int8, load_int8
from tunesmith.export.merge import compare_logits, logits_of, merge_run, probe_ids
from tunesmith.export.onnx import export_onnx
from tunesmith.export.quality import encode_held_out, held_out_conversations, held_out_delta

FORMATS = ("merged", "int8", "onnx", "gguf")

__all__ = ["FORMATS", "GGUF_TYPES", "compare_logits", "encode_held_out", "export_int8", "export_onnx", "export_run",
           "held_out_conversations", "held_out_delta", "load_gguf_model", "load_int8", "logits_of", "merge_run",
           "model_card", "probe_ids", "write_gguf"]


def _float_model(merged_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32).eval()


def _check_gguf(merged_dir: Path, gguf_file: Path, qtype: str, held_out) -> dict:
    from transformers import AutoTokenizer

    ids = probe_ids(AutoTokenizer.from_pretrained(str(merged_dir)))
    ref, back = _float_model(merged_dir), load_gguf_model(gguf_file)
    report = {"format": f"gguf-{qtype}", "path": str(gguf_file), "size_bytes": gguf_file.stat().st_size,
              "roundtrip": compare_logits(logits_of(ref, ids), logits_of(back, ids))}
    if held_out:
        report["held_out"] = held_out_delta(ref, back, held_out)
    return report


def _merged_report(run_dir: Path, merged: Path) -> dict:
    """The merged folder against the run as trained (base + adapter), on the probe batch."""
    from tunesmith.train.artifacts import load_run

    run = load_run(run_dir)
    ids = probe_ids(run.tokenizer)
    return {"format": "merged", "path": str(merged),
            "size_bytes": sum(p.stat().st_size for p in merged.glob("*.safetensors")),
            "vs_trained": compare_logits(logits_of(run.model.float(), ids), logits_of(_float_model(merged), ids))}


def _held_out(run_dir: Path, merged: Path):
    from transformers import AutoTokenizer

    from tunesmith.train.artifacts import read_run_config

    rows, source = held_out_conversations(run_dir)
    if not rows:
        return None, None
    tok = AutoTokenizer.from_pretrained(str(merged))
    return encode_held_out(tok, rows, read_run_config(run_dir).model.chat_template), source


def export_run(run_dir: str | Path, to: str | Path, formats=("merged",), *,
               gguf_types=GGUF_TYPES, verify: bool = True) -> list[dict]:
    """Export ``run_dir`` into ``to`` in each of ``formats``; return one report dict per file."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ModelError(f"unknown export format(s) {unknown}; choose from {', '.join(FORMATS)}")
    run_dir, to = Path(run_dir), Path(to)
    merged = merge_run(run_dir, to / "merged")
    reports = [_merged_report(run_dir, merged)]
    held_out, source = _held_out(run_dir, merged) if {"int8", "gguf"} & set(formats) else (None, None)
    if "int8" in formats:
        reports.append(export_int8(merged, to / "int8", held_out))
    if "onnx" in formats:
        reports.append(export_onnx(merged, to / "onnx"))
    if "gguf" in formats:
        for qtype in gguf_types:
            path = write_gguf(merged, to / "gguf" / f"model-{qtype}.gguf", qtype)
            reports.append(_check_gguf(merged, path, qtype, held_out) if verify else
                           {"format": f"gguf-{qtype}", "path": str(path), "size_bytes": path.stat().st_size})
    for r in reports:
        if "held_out" in r:
            r["held_out"]["source"] = source
    (to / "README.md").write_text(model_card(run_dir, reports), encoding="utf-8")
    (to / "export_report.json").write_text(json.dumps(reports, indent=2), encoding="utf-8")
    return reports
