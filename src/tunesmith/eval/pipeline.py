"""The whole evaluation of a run in one call: what `tunesmith eval` runs after training.

    evaluate_run(run_dir, tokenizer, examples, cfg, tuned_model=model, base_model=base)

1. generation evaluation of the base (if given) and fine-tuned model on the held-out examples;
2. general probes on both + forgetting check; safety probes on both;
3. error library (worst-k per metric, facets) for each model;
4. the blind human rating sheet when eval.human_sheet_size > 0;
5. report.json + report.html (training curves and confusion matrix read from run_dir).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from tunesmith.config.eval_schema import EvalConfig

from .errors_lib import write_error_library
from .evaluate import evaluate_generation
from .human import export_sheet, import_sheets
from .probes import forgetting_check, load_probes, run_probes
from .report import build_report, write_report


def evaluate_run(run_dir: str | Path, tokenizer, examples: Sequence[dict], cfg: EvalConfig, *,
                 tuned_model, base_model=None, chat_template: str | None = None,
                 base_label: str = "base", tuned_label: str = "fine-tuned",
                 human_sheets: Sequence[str | Path] | None = None,
                 stability: dict | None = None) -> dict:
    """Evaluate, write the report into run_dir, and return {"report", "paths"}.

    `human_sheets`: filled rating sheets to import into this report (exported earlier by this
    function as run_dir/human_sheet.csv). The returned report is report.json as written.
    """
    run_dir = Path(run_dir)
    models = {tuned_label: tuned_model} if base_model is None else {base_label: base_model, tuned_label: tuned_model}
    evals = {lbl: evaluate_generation(m, tokenizer, examples, cfg, label=lbl, chat_template=chat_template)
             for lbl, m in models.items()}

    probes_general = probes_safety = forgetting = None
    if cfg.probes.enabled:
        general = load_probes(cfg.probes.general_file, kind="general")
        safety = load_probes(cfg.probes.safety_file, kind="safety")
        kw = dict(max_new_tokens=cfg.probes.max_new_tokens, batch_size=cfg.batch_size,
                  chat_template=chat_template, max_input_tokens=cfg.max_input_tokens)
        probes_general = {lbl: run_probes(m, tokenizer, general, **kw) for lbl, m in models.items()}
        probes_safety = {lbl: run_probes(m, tokenizer, safety, **kw) for lbl, m in models.items()}
        if base_model is not None:
            forgetting = forgetting_check(probes_general[base_label], probes_general[tuned_label],
                                          cfg.probes.forgetting_threshold)

    errors = ({lbl: write_error_library(run_dir, r, cfg.worst_k, cfg.length_buckets) for lbl, r in evals.items()}
              if cfg.worst_k else None)
    paths: dict[str, str] = {}
    if cfg.human_sheet_size:
        sheet = export_sheet(run_dir / "human_sheet.csv", evals, n=cfg.human_sheet_size, seed=cfg.seed)
        paths.update(human_sheet=sheet["sheet"], human_key=sheet["key"])
    human = import_sheets(human_sheets, key_path=run_dir / "human_sheet.csv.key.json") if human_sheets else None

    report = build_report(run_dir, evals=evals, baseline=base_label if base_model is not None else None,
                          probes_general=probes_general, probes_safety=probes_safety,
                          forgetting=forgetting, errors=errors, human=human, stability=stability,
                          metric_for_best=cfg.during_training.metric_for_best)
    paths.update(write_report(run_dir, report))
    return {"report": json.loads(Path(paths["json"]).read_text(encoding="utf-8")), "paths": paths}
