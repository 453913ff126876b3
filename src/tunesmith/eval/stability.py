"""Stability across seeds: mean and standard deviation of every metric over several runs.

Input is a list of flat {metric: value} dicts (one per seed run), or run directories whose
report.json `headline` is used. std is the sample standard deviation (ddof=1); 0.0 for one run.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Sequence


def aggregate_seeds(runs: Sequence[dict], seeds: Sequence[int] | None = None) -> dict:
    """{"n_runs", "seeds", "metrics": {name: {"mean", "std", "min", "max", "values", "n"}}}.

    A metric missing from some runs is aggregated over the runs that have it (n says how many).
    """
    names = sorted({k for r in runs for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    metrics = {}
    for name in names:
        vals = [float(r[name]) for r in runs if isinstance(r.get(name), (int, float)) and not isinstance(r.get(name), bool)]
        metrics[name] = {
            "mean": statistics.fmean(vals),
            "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "min": min(vals), "max": max(vals), "n": len(vals), "values": vals,
        }
    return {"n_runs": len(runs), "seeds": list(seeds) if seeds is not None else None, "metrics": metrics}


def aggregate_seed_runs(run_dirs: Sequence[str | Path]) -> dict:
    """Aggregate the `headline` metrics of several runs' report.json (seed from each config)."""
    runs, seeds = [], []
    for d in run_dirs:
        report = json.loads((Path(d) / "report.json").read_text(encoding="utf-8"))
        runs.append(report.get("headline", {}))
        seeds.append((report.get("run") or {}).get("seed"))
    out = aggregate_seeds(runs, seeds if any(s is not None for s in seeds) else None)
    out["runs"] = [str(d) for d in run_dirs]
    return out
