"""The data report of `prepare`: JSON for machines, one self-contained HTML page for reviewers.

`length_stats` summarises a list of lengths with a histogram; `write_reports` writes report.json
and report.html (plots drawn with matplotlib and embedded as base64 PNG, so the page is one file).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

REPORT_KEYS = ("fingerprint", "format", "inputs", "steps", "removed_by_reason", "splits", "label_distribution",
               "lengths", "duplicates", "pii", "quarantine", "cleaning", "balance", "augmentation",
               "agreement", "class_weights", "timings_s", "config")


def length_stats(values, bins: int = 30) -> dict:
    """count, min, max, mean and percentiles of `values`, with a histogram (edges, counts)."""
    v = np.asarray(values, dtype=np.int64)
    if v.size == 0:
        return {"count": 0}
    counts, edges = np.histogram(v, bins=min(bins, max(1, int(v.max() - v.min()) + 1)))
    return {
        "count": int(v.size), "min": int(v.min()), "max": int(v.max()), "mean": round(float(v.mean()), 2),
        "p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90)), "p99": float(np.percentile(v, 99)),
        "histogram": {"edges": [round(float(e), 2) for e in edges], "counts": counts.tolist()},
    }


def write_reports(report: dict, out_dir: Path, html_page: bool = True) -> tuple[Path, Path | None]:
    """Write report.json (and report.html); returns their paths."""
    jpath = out_dir / "report.json"
    jpath.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    hpath = None
    if html_page:
        hpath = out_dir / "report.html"
        hpath.write_text(render_html(report), encoding="utf-8")
    return jpath, hpath


# ----------------------------------------------------------------------------- HTML
def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _hist_plot(per_split: dict, title: str) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {k: v["histogram"] for k, v in per_split.items() if v.get("count")}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3))
    for name, h in series.items():
        edges = np.asarray(h["edges"])
        ax.stairs(h["counts"], edges, label=name, fill=False, linewidth=1.5)
    ax.set_title(title)
    ax.set_xlabel("length")
    ax.set_ylabel("records")
    ax.legend()
    return _png(fig)


def _bar_plot(data: dict[str, dict], title: str) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({lab for d in data.values() for lab in d}, key=str)[:40]
    if not labels:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3))
    width = 0.8 / max(1, len(data))
    x = np.arange(len(labels))
    for i, (split, d) in enumerate(data.items()):
        ax.bar(x + i * width, [d.get(lab, 0) for lab in labels], width, label=split)
    ax.set_xticks(x + width * (len(data) - 1) / 2, [str(lab) for lab in labels], rotation=45, ha="right")
    ax.set_title(title)
    ax.legend()
    return _png(fig)


def _funnel_plot(steps: list[dict]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not steps:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 0.4 * len(steps) + 1))
    names = [s["step"] for s in steps][::-1]
    ax.barh(names, [s["out"] for s in steps][::-1], color="#4a7ab5")
    ax.set_title("records after each step")
    return _png(fig)


def _table(rows: list[tuple], head: tuple) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def render_html(report: dict) -> str:
    """One self-contained HTML page with the report's tables and embedded plots."""
    parts = [f"<h1>tunesmith prepare report</h1><p>format <b>{html.escape(str(report.get('format')))}</b>, "
             f"fingerprint <code>{html.escape(str(report.get('fingerprint')))}</code></p>"]
    parts.append("<h2>Steps</h2>" + _table(
        [(s["step"], s["in"], s["out"], ", ".join(f"{k}: {v}" for k, v in s.get("removed", {}).items()))
         for s in report.get("steps", [])], ("step", "in", "out", "removed by reason")))
    parts.append("<h2>Removed rows by reason</h2>" + _table(sorted(report.get("removed_by_reason", {}).items()),
                                                               ("reason", "rows")))
    parts.append("<h2>Splits</h2>" + _table(sorted(report.get("splits", {}).items()), ("split", "rows")))
    images = [_funnel_plot(report.get("steps", []))]
    lengths = report.get("lengths", {})
    images.append(_hist_plot(lengths.get("chars", {}), "length in characters"))
    if lengths.get("tokens"):
        images.append(_hist_plot(lengths["tokens"], "length in tokens"))
    if report.get("label_distribution"):
        images.append(_bar_plot(report["label_distribution"], "label distribution"))
    parts.append("<h2>Plots</h2>" + "".join(f'<img src="{src}">' for src in images if src))
    pii = report.get("pii", {})
    parts.append("<h2>PII masked</h2>" + _table(sorted(pii.get("counts", {}).items()), ("type", "masked")))
    dup = report.get("duplicates", {})
    parts.append("<h2>Duplicates</h2>" + _table(sorted(dup.get("counts", {}).items()), ("kind", "rows"))
                 + _table([(d["removed"], d["kept"], d["kind"], d["similarity"]) for d in dup.get("examples", [])],
                          ("removed", "kept twin", "kind", "similarity")))
    q = report.get("quarantine", {})
    parts.append(f"<h2>Quarantine ({q.get('total', 0)} rows)</h2>"
                 + _table(sorted(q.get("by_reason", {}).items()), ("reason", "rows"))
                 + _table([(e["where"], e["field"], e["reason"], e["fix"]) for e in q.get("examples", [])],
                          ("where", "field", "reason", "fix")))
    if report.get("agreement"):
        a = report["agreement"]
        parts.append("<h2>Annotator agreement</h2>" + _table([(k, v) for k, v in a.items() if k != "disagreeing"],
                                                            ("measure", "value")))
    for key in ("lengths",):
        rows = [(kind, split, s.get("count"), s.get("min"), s.get("mean"), s.get("p50"), s.get("p90"), s.get("max"))
                for kind, d in report.get(key, {}).items() for split, s in d.items()]
        parts.append("<h2>Lengths</h2>" + _table(rows, ("unit", "split", "n", "min", "mean", "p50", "p90", "max")))
    style = ("body{font-family:sans-serif;max-width:960px;margin:auto;padding:1em}table{border-collapse:collapse;"
             "margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}img{max-width:100%;display:block}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>tunesmith prepare report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
