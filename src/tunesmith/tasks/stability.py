"""`tunesmith train cfg.yaml --seeds N`: the same job with N seeds, then mean and standard
deviation of every metric across them (written to <output.dir>/<name>-seeds/stability.json)."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from tunesmith.eval.stability import aggregate_seed_runs
from tunesmith.tasks import run_task
from tunesmith.tasks.evaluate import run_eval


def run_seeds(cfg, n: int) -> dict:
    name = cfg.output.name or f"{cfg.task}-{cfg.method.name}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    run_dirs = []
    for i in range(n):
        seed = cfg.train.seed + i
        seeded = cfg.model_copy(update={
            "train": cfg.train.model_copy(update={"seed": seed}),
            "output": cfg.output.model_copy(update={"name": f"{name}-seed{seed}"}),
        })
        result = run_task(seeded)
        if (result.run_dir / "data" / "validation.jsonl").exists():
            run_eval(result.run_dir, compare_base=False)
        else:  # no held-out rows: aggregate the training metrics alone
            _write_training_only_report(result.run_dir, seed, result.metrics)
        run_dirs.append(result.run_dir)
    summary = aggregate_seed_runs(run_dirs)
    out = Path(cfg.output.dir) / f"{name}-seeds"
    out.mkdir(parents=True, exist_ok=True)
    (out / "stability.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    summary["text"] = _table(summary, out)
    return summary


def _write_training_only_report(run_dir: Path, seed: int, metrics: dict) -> None:
    headline = {f"training.{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}
    (run_dir / "report.json").write_text(json.dumps({"run": {"seed": seed}, "headline": headline}))


def _table(summary: dict, out: Path) -> str:
    metrics = summary.get("metrics", {})
    lines = [f"{'metric':48}{'mean':>12}{'std':>12}{'n':>4}"]
    for key in sorted(metrics):
        m = metrics[key]
        std = m.get("std")
        lines.append(f"{key:48}{m['mean']:>12.4f}{(std if std is not None else float('nan')):>12.4f}{m.get('n', 0):>4}")
    lines.append(f"written: {out / 'stability.json'}")
    return "\n".join(lines)
