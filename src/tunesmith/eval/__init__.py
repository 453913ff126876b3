"""Evaluation: text metrics, batched generation eval, probes, error library, stability,
human rating sheets, the HTML/JSON report and run comparison.

Names are imported lazily so `tunesmith compare` does not pay for importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "compute_text_metrics": "metrics", "sentence_scores": "metrics", "detect_language": "metrics",
    "exact_match": "metrics", "token_f1": "metrics", "higher_is_better": "metrics",
    "GenerationResult": "generate", "generate_batch": "generate", "reference_perplexity": "generate",
    "efficiency_summary": "generate", "split_example": "generate", "PeakMemory": "generate",
    "evaluate_generation": "evaluate", "before_after": "evaluate",
    "load_probes": "probes", "run_probes": "probes", "check_probe": "probes",
    "score_probe_answers": "probes", "forgetting_check": "probes",
    "build_error_library": "errors_lib", "write_error_library": "errors_lib", "worst_k": "errors_lib",
    "aggregate_seeds": "stability", "aggregate_seed_runs": "stability",
    "export_sheet": "human", "import_sheets": "human",
    "build_report": "report", "write_report": "report", "validate_report": "report",
    "ReportSchema": "report", "training_section": "report",
    "compare_runs": "compare", "evaluate_run": "pipeline",
    "GenerationEvalCallback": "training_eval", "generation_metrics_for_step": "training_eval",
    "select_best_checkpoint": "run_logs", "read_metrics_jsonl": "run_logs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
