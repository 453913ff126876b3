"""The run report: report.json (schema below, validated by `ReportSchema`) and one
self-contained report.html (inline CSS, plots as base64 PNG, no external requests).

report.json, schema_version 1 (every section but schema_version/run/headline may be null):

    {"schema_version": 1,
     "run": {"name", "dir", "created_at" (ISO 8601 UTC), "seed": int|null, "config": dict|null},
     "headline": {"<label>.<metric>": float, ...},   # flat key numbers; `compare` reads these.
        # keys: <label>.<metric> (exact_match, token_f1, bleu, chrf, rouge1/2/L: 0-100;
        # perplexity), <label>.efficiency.<latency_p50_s|latency_p95_s|ttft_p50_s|tokens_per_s|
        # peak_memory_mb>, <label>.probes.<general|safety>.pass_rate (0-1),
        # training.final_loss, training.final_eval_loss, training.best.<metric>, human.<criterion>
     "generation": {"<label>": {"label", "n", "language", "settings", "metrics", "efficiency"}},
     "before_after": {"baseline", "candidate", "metrics": {"base", "tuned"}, "delta",
                      "improved", "efficiency_delta"} | null,
     "probes": {"general": {"<label>": probe result}, "safety": {"<label>": probe result},
                "forgetting": forgetting_check result | null} | null,
        # probe result: {"n", "passed", "pass_rate", "by_category": {cat: {n, passed, pass_rate}},
        #                "items": [{"id", "category", "lang", "prediction", "passed", "failures"}]}
     "errors": {"<label>": {"k", "files": {metric: relative path}, "facets": {...},
                            "worst": {metric: [rows, text fields cut to 500 chars]}}} | null,
     "training": {"n_rows", "final": {key: value}, "best": {"metric", "step", "value",
                  "greater_is_better"} | null, "series": {key: [[step, value], ...]}} | null,
     "confusion_matrix": {"labels": [...], "matrix": [[...]]} | null,
     "stability": aggregate_seeds result | null,
     "human": import_sheets result | null,
     "predictions": {"<label>": relative path of predictions_<label>.jsonl} | null}
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .report_html import truncate_text, render_html
from .run_logs import read_metrics_jsonl, select_best_checkpoint

SCHEMA_VERSION = 1
_SKIP_SERIES = {"step", "epoch", "total_flos", "train_runtime", "train_samples_per_second",
                "train_steps_per_second", "grad_norm"}


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class RunInfo(_Open):
    name: str
    dir: str
    created_at: str
    seed: int | None = None
    config: dict | None = None


class GenerationSummary(_Open):
    label: str
    n: int
    language: str
    metrics: dict[str, float | None]
    efficiency: dict[str, Any]
    settings: dict[str, Any] = Field(default_factory=dict)


class ProbeResult(_Open):
    n: int
    passed: int
    pass_rate: float | None
    by_category: dict[str, dict[str, Any]]
    items: list[dict]


class ProbesSection(_Open):
    general: dict[str, ProbeResult] = Field(default_factory=dict)
    safety: dict[str, ProbeResult] = Field(default_factory=dict)
    forgetting: dict | None = None


class TrainingSection(_Open):
    n_rows: int
    final: dict[str, float]
    best: dict | None = None
    series: dict[str, list[list[float]]]


class ConfusionMatrix(_Open):
    labels: list[str]
    matrix: list[list[float]]


class ReportSchema(BaseModel):
    """Validates report.json (unknown top-level keys are errors; sections may carry extras)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int
    run: RunInfo
    headline: dict[str, float]
    generation: dict[str, GenerationSummary] = Field(default_factory=dict)
    before_after: dict | None = None
    probes: ProbesSection | None = None
    errors: dict[str, dict] | None = None
    training: TrainingSection | None = None
    confusion_matrix: ConfusionMatrix | None = None
    stability: dict | None = None
    human: dict | None = None
    predictions: dict[str, str] | None = None


def strip_examples(result: dict) -> dict:
    """A result without its per-example rows (those go to predictions_<label>.jsonl)."""
    return {k: v for k, v in result.items() if k != "examples"}


def _load_yaml(path: Path) -> dict | None:
    if not path.exists():
        return None
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def training_section(run_dir: str | Path, metric_for_best: str = "rougeL") -> dict | None:
    """Loss curves, eval_gen_* series and the best step from the run's metrics.jsonl."""
    rows = read_metrics_jsonl(Path(run_dir) / "metrics.jsonl")
    if not rows:
        return None
    series: dict[str, list] = {}
    final: dict[str, float] = {}
    for r in rows:
        step = r.get("step")
        for k, v in r.items():
            if k in _SKIP_SERIES or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            final[k] = float(v)
            if step is not None:
                series.setdefault(k, []).append([float(step), float(v)])
    best = select_best_checkpoint(rows, metric_for_best)
    if best is None and "eval_loss" in series:
        best = select_best_checkpoint(rows, "eval_loss")
    return {"n_rows": len(rows), "final": final, "best": best, "series": series}


def _headline(report: dict) -> dict[str, float]:
    h: dict[str, float] = {}

    def put(k, v):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            h[k] = float(v)

    for label, g in (report.get("generation") or {}).items():
        for m, v in g["metrics"].items():
            put(f"{label}.{m}", v)
        for m in ("latency_p50_s", "latency_p95_s", "ttft_p50_s", "tokens_per_s", "peak_memory_mb"):
            put(f"{label}.efficiency.{m}", g["efficiency"].get(m))
    for kind in ("general", "safety"):
        for label, p in ((report.get("probes") or {}).get(kind) or {}).items():
            put(f"{label}.probes.{kind}.pass_rate", p.get("pass_rate"))
    t = report.get("training")
    if t:
        put("training.final_loss", t["final"].get("loss"))
        put("training.final_eval_loss", t["final"].get("eval_loss"))
        if t.get("best"):
            put(f"training.best.{t['best']['metric']}", t["best"]["value"])
    for c, s in ((report.get("human") or {}).get("overall") or {}).items():
        put(f"human.{c}", s.get("mean"))
    return dict(sorted(h.items()))


def build_report(run_dir: str | Path, *, evals: dict[str, dict] | None = None,
                 baseline: str | None = None, probes_general: dict[str, dict] | None = None,
                 probes_safety: dict[str, dict] | None = None, forgetting: dict | None = None,
                 errors: dict[str, dict] | None = None, stability: dict | None = None,
                 human: dict | None = None, name: str | None = None, seed: int | None = None,
                 metric_for_best: str | None = None) -> dict:
    """Assemble the report dict from evaluation parts plus what the run directory holds.

    `evals` maps model label -> evaluate_generation result (base first); `baseline` names the
    base label for before/after (default: the first of two labels). Per-example rows are written
    to predictions_<label>.jsonl by `write_report`, not kept in report.json.
    """
    from .evaluate import before_after

    run_dir = Path(run_dir)
    config = _load_yaml(run_dir / "config.yaml")
    if metric_for_best is None:
        metric_for_best = (((config or {}).get("eval") or {}).get("during_training") or {}).get(
            "metric_for_best", "rougeL")
    if seed is None:
        s = ((config or {}).get("train") or {}).get("seed")
        seed = s if isinstance(s, int) else None
    evals = evals or {}
    labels = list(evals)
    ba = None
    if len(labels) >= 2:
        base = baseline or labels[0]
        tuned = next(lbl for lbl in labels if lbl != base)
        ba = before_after(evals[base], evals[tuned])
    cm_path = run_dir / "confusion_matrix.json"
    errs = None
    if errors:
        errs = {lbl: {**{k: v for k, v in e.items() if k != "worst"},
                      "worst": {m: [{k: truncate_text(v) for k, v in row.items()} for row in rows]
                                for m, rows in e.get("worst", {}).items()}}
                for lbl, e in errors.items()}
    report = {
        "schema_version": SCHEMA_VERSION,
        "run": {"name": name or run_dir.resolve().name, "dir": str(run_dir),
                "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "seed": seed, "config": config},
        "generation": {lbl: strip_examples(r) for lbl, r in evals.items()},
        "before_after": ba,
        "probes": ({"general": probes_general or {}, "safety": probes_safety or {},
                    "forgetting": forgetting} if (probes_general or probes_safety) else None),
        "errors": errs,
        "training": training_section(run_dir, metric_for_best),
        "confusion_matrix": json.loads(cm_path.read_text(encoding="utf-8")) if cm_path.exists() else None,
        "stability": stability,
        "human": human,
        "predictions": None,
        "_examples": {lbl: r.get("examples", []) for lbl, r in evals.items()},
    }
    report["headline"] = _headline(report)
    return report


def validate_report(report: dict) -> dict:
    """Validate against ReportSchema; returns the report as plain JSON-able dict."""
    return ReportSchema.model_validate(report).model_dump(mode="json", exclude_none=False)


def write_report(run_dir: str | Path, report: dict) -> dict:
    """Write report.json (validated), report.html and predictions_<label>.jsonl into run_dir.

    Sections the caller left out are filled from the run directory (training curves from
    metrics.jsonl, confusion_matrix.json, config.yaml). Returns {"json", "html"} paths.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    report = dict(report)
    examples = report.pop("_examples", {}) or {}
    if "run" not in report:
        report = {**build_report(run_dir), **report}
        report.pop("_examples", None)
    if report.get("training") is None:
        report["training"] = training_section(run_dir)
    if report.get("confusion_matrix") is None and (run_dir / "confusion_matrix.json").exists():
        report["confusion_matrix"] = json.loads((run_dir / "confusion_matrix.json").read_text(encoding="utf-8"))
    preds = {}
    for label, rows in examples.items():
        if not rows:
            continue
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
        p = run_dir / f"predictions_{safe}.jsonl"
        with p.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        preds[label] = p.name
    if preds:
        report["predictions"] = preds
    report["headline"] = _headline(report)
    clean = validate_report(report)
    jp, hp = run_dir / "report.json", run_dir / "report.html"
    jp.write_text(json.dumps(clean, indent=2, ensure_ascii=False), encoding="utf-8")
    hp.write_text(render_html(clean), encoding="utf-8")
    return {"json": str(jp), "html": str(hp)}
