"""Export a trained run: merged safetensors, int8 (CPU), ONNX, GGUF (f16/q8_0), plus a model card.

``export_run`` always merges first (every other format is made from the merged folder), then
writes each requested format into its own sub-folder of ``to``, a README.md model card and
``export_report.json`` with sizes, speed-ups and logit deltas.
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

FORMATS = ("merged", "int8", "onnx", "gguf")

__all__ = ["FORMATS", "GGUF_TYPES", "compare_logits", "export_int8", "export_onnx", "export_run",
           "load_gguf_model", "load_int8", "logits_of", "merge_run", "model_card", "probe_ids", "write_gguf"]


def _check_gguf(merged_dir: Path, gguf_file: Path, qtype: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(merged_dir))
    ids = probe_ids(tok)
    ref = logits_of(AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32), ids)
    return {"format": f"gguf-{qtype}", "path": str(gguf_file), "size_bytes": gguf_file.stat().st_size,
            "roundtrip": compare_logits(ref, logits_of(load_gguf_model(gguf_file), ids))}


def export_run(run_dir: str | Path, to: str | Path, formats=("merged",), *,
               gguf_types=GGUF_TYPES, verify: bool = True) -> list[dict]:
    """Export ``run_dir`` into ``to`` in each of ``formats``; return one report dict per file."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ModelError(f"unknown export format(s) {unknown}; choose from {', '.join(FORMATS)}")
    to = Path(to)
    merged = merge_run(run_dir, to / "merged")
    reports = [{"format": "merged", "path": str(merged),
                "size_bytes": sum(p.stat().st_size for p in merged.glob("*.safetensors"))}]
    if "int8" in formats:
        reports.append(export_int8(merged, to / "int8"))
    if "onnx" in formats:
        reports.append(export_onnx(merged, to / "onnx"))
    if "gguf" in formats:
        for qtype in gguf_types:
            path = write_gguf(merged, to / "gguf" / f"model-{qtype}.gguf", qtype)
            reports.append(_check_gguf(merged, path, qtype) if verify else
                           {"format": f"gguf-{qtype}", "path": str(path), "size_bytes": path.stat().st_size})
    (to / "README.md").write_text(model_card(run_dir, reports), encoding="utf-8")
    (to / "export_report.json").write_text(json.dumps(reports, indent=2), encoding="utf-8")
    return reports
