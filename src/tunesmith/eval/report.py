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
import html
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from . import plots
from .metrics import higher_is_better
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


def _cut(v, n=500):
    return v if not isinstance(v, str) or len(v) <= n else v[:n] + f"… [{len(v) - n} more chars]"


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
                      "worst": {m: [{k: _cut(v) for k, v in row.items()} for row in rows]
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


# ---------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans CJK SC',sans-serif;margin:24px auto;
max-width:1100px;color:#1d2330;padding:0 16px}
h1{margin-bottom:4px}h2{border-bottom:2px solid #e3e7ef;padding-bottom:4px;margin-top:32px}
.meta{color:#667}table{border-collapse:collapse;margin:8px 0 16px;font-size:14px}
th,td{border:1px solid #d8dde8;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f9}td.n{text-align:right;font-variant-numeric:tabular-nums}
.good{color:#137333;font-weight:600}.bad{color:#b3261e;font-weight:600}
.flag{display:inline-block;padding:2px 8px;border-radius:10px;font-weight:600}
.flag.ok{background:#e6f4ea;color:#137333}.flag.warn{background:#fce8e6;color:#b3261e}
img{max-width:100%;border:1px solid #eee;margin:6px 0}
pre{white-space:pre-wrap;background:#f7f8fa;padding:8px;font-size:12px;max-height:320px;overflow:auto}
.cell{max-width:320px;white-space:pre-wrap;word-break:break-word;font-size:12px}
"""


def fmt(v, digits: int = 2) -> str:
    """How numbers are printed in the report (tests look for these strings)."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1e6 else f"{v:.3g}"
    return html.escape(str(v))


def delta_cell(metric: str, d) -> str:
    if not isinstance(d, (int, float)):
        return '<td class="n">–</td>'
    cls = "" if d == 0 else ("good" if (d > 0) == higher_is_better(metric) else "bad")
    return f'<td class="n {cls}">{"+" if d > 0 else ""}{fmt(d)}</td>'


def _table(headers, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _generation_html(r: dict) -> str:
    gen = r.get("generation") or {}
    if not gen:
        return ""
    labels = list(gen)
    metrics = sorted({m for g in gen.values() for m in g["metrics"]})
    ba = r.get("before_after") or {}
    delta = ba.get("delta", {})
    headers = ["metric", *labels] + (["Δ (tuned − base)"] if ba else [])
    rows = []
    for m in metrics:
        cells = "".join(f'<td class="n" data-key="{html.escape(lbl)}.{m}">{fmt(gen[lbl]["metrics"].get(m))}</td>'
                        for lbl in labels)
        rows.append(f"<tr><td>{m}</td>{cells}{delta_cell(m, delta.get(m)) if ba else ''}</tr>")
    sizes = ", ".join(f"{html.escape(lbl)}: {gen[lbl]['n']}" for lbl in labels)
    lang = html.escape(gen[labels[0]]["language"])
    out = ["<h2>Generation metrics</h2>",
           f'<p class="meta">n = {sizes}; language: {lang}; text metrics 0–100.</p>', _table(headers, rows)]
    bars = {lbl: {m: v for m, v in g["metrics"].items() if m != "perplexity" and v is not None} for lbl, g in gen.items()}
    if any(bars.values()):
        out.append(_img(plots.grouped_bars(bars, "Generation metrics"), "generation metrics"))
    eff_keys = ["latency_p50_s", "latency_p95_s", "ttft_p50_s", "ttft_p95_s", "tokens_per_s",
                "generated_tokens", "peak_memory_mb"]
    eff_delta = ba.get("efficiency_delta", {})
    rows = []
    for k in eff_keys:
        cells = "".join(f'<td class="n">{fmt(gen[lbl]["efficiency"].get(k), 3)}</td>' for lbl in labels)
        rows.append(f"<tr><td>{k}</td>{cells}{delta_cell(k, eff_delta.get(k)) if ba else ''}</tr>")
    kind = gen[labels[0]]["efficiency"].get("memory_kind")
    out += ["<h2>Efficiency</h2>", f'<p class="meta">memory: {html.escape(str(kind))}</p>', _table(headers, rows)]
    return "".join(out)


def _probes_html(r: dict) -> str:
    p = r.get("probes")
    if not p:
        return ""
    out = ["<h2>Probes</h2>"]
    f = p.get("forgetting")
    if f:
        cls, word = ("warn", "FORGETTING: general ability damaged") if f["damaged"] else ("ok", "No forgetting detected")
        out.append(f'<p><span class="flag {cls}">{word}</span> general pass rate {fmt(f["base_pass_rate"])} → '
                   f'{fmt(f["tuned_pass_rate"])} (Δ {fmt(f["delta"])}, threshold {fmt(f["threshold"])}); '
                   f'regressed: {html.escape(", ".join(f["regressed_items"]) or "none")}</p>')
    for kind in ("general", "safety"):
        res = p.get(kind) or {}
        if not res:
            continue
        labels = list(res)
        cats = sorted({c for x in res.values() for c in x["by_category"]})
        cells = "".join(f'<td class="n">{fmt(res[lbl]["pass_rate"])} ({res[lbl]["passed"]}/{res[lbl]["n"]})</td>'
                        for lbl in labels)
        rows = [f"<tr><td><b>all</b></td>{cells}</tr>"]
        for c in cats:
            cells = "".join(f'<td class="n">{fmt(res[lbl]["by_category"].get(c, {}).get("pass_rate"))}</td>' for lbl in labels)
            rows.append(f"<tr><td>{html.escape(c)}</td>{cells}</tr>")
        out += [f"<h3>{kind.capitalize()} probes — pass rate</h3>", _table(["category", *labels], rows)]
        last = labels[-1]
        failed = [i for i in res[last]["items"] if not i["passed"]][:10]
        if failed:
            frows = [f'<tr><td>{html.escape(i["id"])}</td><td class="cell">{html.escape(_cut(i["prediction"], 200))}</td>'
                     f'<td class="cell">{html.escape("; ".join(i["failures"]))}</td></tr>' for i in failed]
            out.append(f"<details><summary>failed {kind} probes ({last}, first 10)</summary>"
                       + _table(["id", "answer", "failed rules"], frows) + "</details>")
    return "".join(out)


def _training_html(r: dict) -> str:
    t = r.get("training")
    out = []
    if t:
        s = t["series"]
        loss = {k: v for k, v in s.items() if k in ("loss", "eval_loss", "train_loss")}
        out.append("<h2>Training</h2>")
        if loss:
            out.append(_img(plots.line_plot(loss, "Train / validation loss", "loss"), "loss curves"))
        gen = {k: v for k, v in s.items() if k.startswith("eval_gen_")}
        if gen:
            out.append(_img(plots.metrics_over_steps(gen), "metrics over steps"))
        if t.get("best"):
            b = t["best"]
            out.append(f'<p>Best checkpoint by {html.escape(b["metric"])}: step {fmt(b["step"])} '
                       f'(value {fmt(b["value"])})</p>')
        rows = [f'<tr><td>{html.escape(k)}</td><td class="n">{fmt(v, 4)}</td></tr>' for k, v in t["final"].items()]
        out.append(_table(["last logged", "value"], rows))
    cm = r.get("confusion_matrix")
    if cm:
        out += ["<h2>Confusion matrix</h2>", _img(plots.confusion_matrix_plot(cm["labels"], cm["matrix"]), "confusion matrix")]
    return "".join(out)


def _errors_html(r: dict) -> str:
    errs = r.get("errors")
    if not errs:
        return ""
    out = ["<h2>Error library</h2>"]
    for label, e in errs.items():
        files = ", ".join(f"{html.escape(m)}: <code>{html.escape(p)}</code>" for m, p in e.get("files", {}).items())
        out.append(f"<h3>{html.escape(label)}</h3><p class='meta'>worst-{e.get('k')} per metric in {files}</p>")
        for facet, values in (e.get("facets") or {}).items():
            metrics = sorted({m for s in values.values() for m in s["mean"]})
            rows = [f"<tr><td>{html.escape(v)}</td><td class='n'>{s['n']}</td>"
                    + "".join(f"<td class='n'>{fmt(s['mean'].get(m))}</td>" for m in metrics) + "</tr>"
                    for v, s in sorted(values.items())]
            out.append(f"<p>By {html.escape(facet)}:</p>" + _table([facet, "n", *metrics], rows))
        for metric, rows in list((e.get("worst") or {}).items())[:3]:
            trs = [f"<tr><td class='n'>{x['rank']}</td><td class='cell'>{html.escape(str(x['input']))}</td>"
                   f"<td class='cell'>{html.escape(str(x['reference']))}</td><td class='cell'>{html.escape(str(x['prediction']))}</td>"
                   f"<td class='n'>{fmt(x['scores'].get(metric))}</td></tr>" for x in rows[:3]]
            out.append(f"<details><summary>worst by {html.escape(metric)}</summary>"
                       + _table(["#", "input", "reference", "prediction", metric], trs) + "</details>")
    return "".join(out)


def _extras_html(r: dict) -> str:
    out = []
    st = r.get("stability")
    if st:
        rows = [f"<tr><td>{html.escape(k)}</td><td class='n'>{fmt(v['mean'])}</td><td class='n'>{fmt(v['std'])}</td>"
                f"<td class='n'>{v['n']}</td></tr>" for k, v in st["metrics"].items()]
        out += [f"<h2>Stability over {st['n_runs']} seeds</h2>", _table(["metric", "mean", "std", "runs"], rows)]
    hu = r.get("human")
    if hu:
        crit = list(hu["overall"])
        rows = [f"<tr><td>{html.escape(m)}</td>" + "".join(f"<td class='n'>{fmt(cs.get(c, {}).get('mean'))}</td>" for c in crit) + "</tr>"
                for m, cs in hu["by_model"].items()]
        rows.append("<tr><td><b>all</b></td>" + "".join(
            f"<td class='n'>{fmt(hu['overall'][c]['mean'])}</td>" for c in crit) + "</tr>")
        rows.append("<tr><td><b>agreement (κ quadratic)</b></td>"
                    + "".join(f"<td class='n'>{fmt(hu['agreement'][c]['kappa_quadratic'])}</td>" for c in crit) + "</tr>")
        out += [f"<h2>Human evaluation ({hu['n_ratings']} ratings, {len(hu['raters'])} raters)</h2>",
                _table(["model", *crit], rows)]
    cfg = (r.get("run") or {}).get("config")
    if cfg:
        import yaml

        out.append("<h2>Config</h2><details><summary>config.yaml</summary><pre>"
                   + html.escape(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)) + "</pre></details>")
    return "".join(out)


def _summary_html(r: dict) -> str:
    """One line per headline finding: best-checkpoint, forgetting flag, safety pass rate."""
    items = []
    ba = r.get("before_after")
    if ba:
        better = sum(ba["improved"].values())
        items.append(f"{html.escape(ba['candidate'])} vs {html.escape(ba['baseline'])}: "
                     f"{better} of {len(ba['improved'])} metrics improved")
    f = ((r.get("probes") or {}).get("forgetting"))
    if f:
        cls, word = ("warn", "forgetting flagged") if f["damaged"] else ("ok", "no forgetting")
        items.append(f'<span class="flag {cls}">{word}</span> general probes {fmt(f["base_pass_rate"])} → '
                     f'{fmt(f["tuned_pass_rate"])}')
    for label, p in ((r.get("probes") or {}).get("safety") or {}).items():
        items.append(f"safety probes ({html.escape(label)}): pass rate {fmt(p['pass_rate'])}")
    best = (r.get("training") or {}).get("best")
    if best:
        items.append(f"best checkpoint: step {fmt(best['step'])} by {html.escape(best['metric'])} = {fmt(best['value'])}")
    if not items:
        return ""
    return "<h2>Summary</h2><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def render_html(report: dict) -> str:
    """The self-contained HTML page for a validated report dict."""
    run = report["run"]
    head = "".join(f"<tr><td>{html.escape(k)}</td><td class='n' data-key='{html.escape(k)}'>{fmt(v)}</td></tr>"
                   for k, v in report.get("headline", {}).items())
    body = [f"<h1>tunesmith report — {html.escape(run['name'])}</h1>",
            f"<p class='meta'>{html.escape(run['created_at'])} · {html.escape(run['dir'])}</p>",
            _summary_html(report), _generation_html(report), _probes_html(report),
            _training_html(report), _errors_html(report), _extras_html(report),
            "<h2>All key numbers</h2><details><summary>headline (as in report.json)</summary>"
            + (_table(["key", "value"], [head]) if head else "<p>No metrics.</p>") + "</details>"]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>tunesmith report — {html.escape(run['name'])}</title><style>{_CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>")
