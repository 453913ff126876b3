"""Reading a run's metrics.jsonl and picking the best checkpoint from logged metrics
(no torch import, so `compare` and report rendering stay fast)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

from .metrics import higher_is_better

PREFIX = "eval_gen_"


def read_metrics_jsonl(path: str | Path) -> list[dict]:
    """Rows of a run's metrics.jsonl; unreadable lines are skipped (a crashed run's last line)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def select_best_checkpoint(rows: Iterable[dict], metric: str = "rougeL") -> dict | None:
    """{"metric", "step", "value", "greater_is_better"} of the best logged value of
    eval_gen_<metric> (or `metric` as given if already prefixed / e.g. eval_loss)."""
    key = metric if metric.startswith("eval_") else PREFIX + metric
    better = higher_is_better(key)
    best = None
    for r in rows:
        v, step = r.get(key), r.get("step")
        if not isinstance(v, (int, float)) or step is None or math.isnan(v):
            continue
        if best is None or (v > best["value"] if better else v < best["value"]):
            best = {"metric": key, "step": step, "value": float(v), "greater_is_better": better}
    return best
