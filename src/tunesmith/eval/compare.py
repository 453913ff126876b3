"""Side-by-side comparison of runs from their report.json `headline` numbers.

`compare_runs(["runs/a", "runs/b"])` returns
    {"runs": [{"name", "dir"}], "rows": [{"metric", "values": [v_a, v_b], "deltas": [None, v_b - v_a],
      "higher_is_better": bool}], "text": plain-text table, "html": self-contained HTML page}
Deltas are against the first run; a metric missing from a run shows as "–".
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Sequence

from tunesmith.errors import TunesmithError

from .metrics import higher_is_better
from .report_html import CSS, delta_cell, fmt


def load_report(run_dir: str | Path) -> dict:
    """A run's report.json, with an error that says how to produce it when it is missing."""
    p = Path(run_dir)
    p = p if p.is_file() else p / "report.json"
    if not p.exists():
        raise TunesmithError(f"{p}: no report.json; run `tunesmith eval` on {p.parent} first")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TunesmithError(f"{p}:{e.lineno}: report.json is not valid JSON ({e.msg}); re-run "
                             "`tunesmith eval` to rewrite it") from e


def comparison_table(reports: Sequence[dict]) -> dict:
    """The A/B table (no rendering)."""
    runs = [{"name": r["run"]["name"], "dir": r["run"]["dir"]} for r in reports]
    names = sorted({k for r in reports for k in r.get("headline", {})})
    rows = []
    for m in names:
        vals = [r.get("headline", {}).get(m) for r in reports]
        base = vals[0]
        deltas = [None] + [v - base if v is not None and base is not None else None for v in vals[1:]]
        rows.append({"metric": m, "values": vals, "deltas": deltas, "higher_is_better": higher_is_better(m)})
    return {"runs": runs, "rows": rows}


def render_text(table: dict) -> str:
    """Plain-text table: metric, each run's value, and Δ vs the first run."""
    names = [r["name"] for r in table["runs"]]
    header = ["metric", *names] + [f"Δ {n}" for n in names[1:]]
    lines = []
    for row in table["rows"]:
        vals = [fmt(v, 3) if v is not None else "–" for v in row["values"]]
        ds = [("+" if d > 0 else "") + fmt(d, 3) if d is not None else "–" for d in row["deltas"][1:]]
        lines.append([row["metric"], *vals, *ds])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)] if lines else [len(h) for h in header]
    fmt_row = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([fmt_row(header), fmt_row(["-" * w for w in widths]), *map(fmt_row, lines)])


def render_html(table: dict) -> str:
    """Self-contained HTML page with the A/B table; deltas coloured by metric direction."""
    names = [r["name"] for r in table["runs"]]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["metric", *names] + [f"Δ {n}" for n in names[1:]])
    rows = []
    for row in table["rows"]:
        vals = "".join(f'<td class="n">{fmt(v, 3)}</td>' for v in row["values"])
        ds = "".join(delta_cell(row["metric"], d) for d in row["deltas"][1:])
        rows.append(f"<tr><td>{html.escape(row['metric'])}</td>{vals}{ds}</tr>")
    runs = "".join(f"<li>{html.escape(r['name'])}: <code>{html.escape(r['dir'])}</code></li>" for r in table["runs"])
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>tunesmith compare</title>"
            f"<style>{CSS}</style></head><body><h1>Run comparison</h1><ul>{runs}</ul>"
            f"<table><tr>{head}</tr>{''.join(rows)}</table></body></html>")


def compare_runs(run_dirs: Sequence[str | Path]) -> dict:
    """Compare runs side by side; deltas vs the first run. Returns table + text + html."""
    if len(run_dirs) < 2:
        raise TunesmithError("compare needs at least two run directories, e.g. "
                             "`tunesmith compare runs/base runs/lora`")
    table = comparison_table([load_report(d) for d in run_dirs])
    return {**table, "text": render_text(table), "html": render_html(table)}
