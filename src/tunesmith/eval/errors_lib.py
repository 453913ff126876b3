"""Error library: the worst-k examples per metric, with facets, written as JSONL.

Each JSONL line: {"metric", "rank", "index", "input", "reference", "prediction", "scores",
"facets": {"length": "<50"|"50-200"|..., "label"?, "source"?}}. Facet summaries give, per facet
value, the number of examples, the mean of every metric and how many of the worst-k fall there.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from .metrics import higher_is_better


def length_bucket(n_chars: int, edges: Sequence[int] = (50, 200, 1000)) -> str:
    """Bucket name for a length: '<50', '50-200', '200-1000', '>=1000'."""
    lo = 0
    for e in edges:
        if n_chars < e:
            return f"<{e}" if lo == 0 else f"{lo}-{e}"
        lo = e
    return f">={lo}"


def with_facets(examples: Sequence[dict], edges: Sequence[int] = (50, 200, 1000)) -> list[dict]:
    """Copies of the rows with a reference-length facet added to their facets."""
    return [{**e, "facets": {"length": length_bucket(len(e["reference"]), edges), **e.get("facets", {})}}
            for e in examples]


def _valid(v) -> bool:
    return isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))


def worst_k(examples: Sequence[dict], metric: str, k: int) -> list[dict]:
    """The k worst rows for one metric (lowest, or highest for perplexity); ties by index."""
    scored = [e for e in examples if _valid(e["scores"].get(metric))]
    sign = 1 if higher_is_better(metric) else -1
    ranked = sorted(scored, key=lambda e: (sign * e["scores"][metric], e["index"]))[:k]
    return [{"metric": metric, "rank": r + 1, "index": e["index"], "input": e["input"],
             "reference": e["reference"], "prediction": e["prediction"], "scores": e["scores"],
             "facets": e.get("facets", {})} for r, e in enumerate(ranked)]


def facet_summary(examples: Sequence[dict], worst: dict[str, list[dict]] | None = None) -> dict:
    """{facet: {value: {"n", "mean": {metric: mean}, "worst": {metric: count}}}}."""
    out: dict = {}
    for e in examples:
        for facet, value in e.get("facets", {}).items():
            slot = out.setdefault(facet, {}).setdefault(str(value), {"n": 0, "_sum": {}, "_cnt": {}, "worst": {}})
            slot["n"] += 1
            for m, v in e["scores"].items():
                if _valid(v):
                    slot["_sum"][m] = slot["_sum"].get(m, 0.0) + v
                    slot["_cnt"][m] = slot["_cnt"].get(m, 0) + 1
    for metric, rows in (worst or {}).items():
        for r in rows:
            for facet, value in r["facets"].items():
                w = out[facet][str(value)]["worst"]
                w[metric] = w.get(metric, 0) + 1
    for values in out.values():
        for slot in values.values():
            slot["mean"] = {m: slot["_sum"][m] / slot["_cnt"][m] for m in sorted(slot["_sum"])}
            del slot["_sum"], slot["_cnt"]
    return out


def build_error_library(eval_result: dict, k: int = 10, edges: Sequence[int] = (50, 200, 1000)) -> dict:
    """{"worst": {metric: [rows]}, "facets": facet summary} for one evaluation result."""
    rows = with_facets(eval_result["examples"], edges)
    metrics = sorted({m for r in rows for m in r["scores"]})
    worst = {m: worst_k(rows, m, k) for m in metrics}
    return {"worst": worst, "facets": facet_summary(rows, worst)}


def write_error_library(out_dir: str | Path, eval_result: dict, k: int = 10,
                        edges: Sequence[int] = (50, 200, 1000)) -> dict:
    """Write errors/<label>/worst_<metric>.jsonl; returns {"k", "files": {metric: relative path},
    "facets": ..., "worst": ...} (paths relative to out_dir)."""
    out_dir = Path(out_dir)
    lib = build_error_library(eval_result, k, edges)
    safe_label = "".join(c if c.isalnum() or c in "-_" else "_" for c in eval_result.get("label", "model"))
    folder = out_dir / "errors" / safe_label
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for metric, rows in lib["worst"].items():
        path = folder / f"worst_{metric}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        files[metric] = str(path.relative_to(out_dir))
    return {"k": k, "files": files, **lib}
