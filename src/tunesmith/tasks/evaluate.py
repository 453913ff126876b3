"""`tunesmith eval RUN_DIR`: the report card of a run — base vs fine-tuned on held-out data,
probes, forgetting check, error library, human sheet, HTML + JSON report."""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.errors import DataError
from tunesmith.eval.pipeline import evaluate_run
from tunesmith.models import load_model
from tunesmith.train import load_run


def held_out_examples(run_dir: Path, data_file: str | None = None) -> list[dict]:
    """Examples to evaluate on: an explicit file, else the run's saved test or validation split."""
    if data_file:
        from tunesmith.data.formats import convert_records
        from tunesmith.data.readers import read_all
        from tunesmith.train import read_run_config

        cfg = read_run_config(run_dir)
        examples, rejects = convert_records(read_all([data_file]), cfg.data.format, cfg.data.columns or None)
        if rejects:
            raise DataError(f"{len(rejects)} record(s) of {data_file} cannot be used; first: {rejects[0].describe()}")
        return examples
    for name in ("test.jsonl", "validation.jsonl"):
        path = run_dir / "data" / name
        if path.exists():
            return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    raise DataError(f"{run_dir} has no held-out split saved (data/test.jsonl or data/validation.jsonl); pass --data FILE")


def run_eval(run_dir: str | Path, *, data_file: str | None = None, compare_base: bool = True,
             human_sheets: list[str] | None = None, num_samples: int | None = None) -> dict:
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    cfg = run.config
    eval_cfg = cfg.eval if num_samples is None else cfg.eval.model_copy(update={"num_samples": num_samples})
    examples = held_out_examples(run_dir, data_file)
    base = load_model(cfg.model) if compare_base else None
    return evaluate_run(run_dir, run.tokenizer, examples, eval_cfg, tuned_model=run.model, base_model=base,
                        chat_template=run.tokenizer.chat_template, human_sheets=human_sheets)
