"""`tunesmith prepare`, and the same step run inline by `train` when the config has `prepare:`.

The prepared folder is keyed by the data fingerprint inside run_prepare, so a second identical
run is served from its cache.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.data.prepare import PrepareResult, run_prepare
from tunesmith.data.sft_dataset import as_list


def prepare_from_config(cfg, out_dir: str | Path | None = None, *, tokenizer=None) -> PrepareResult:
    """Run the `prepare` section on the `data` section's files."""
    files = {"train": [Path(f) for f in as_list(cfg.data.train_file)]}
    if cfg.data.eval_file:
        files["validation"] = [Path(f) for f in as_list(cfg.data.eval_file)]
    if cfg.data.test_file:
        files["test"] = [Path(f) for f in as_list(cfg.data.test_file)]
    out = Path(out_dir) if out_dir else Path(cfg.output.dir) / "prepared"
    return run_prepare(files, cfg.data.format, cfg.data.columns or None, cfg.prepare, out,
                       tokenizer=tokenizer, max_bad_fraction=cfg.data.max_bad_fraction)


def data_config_from_prepared(cfg, result: PrepareResult):
    """The data section rewritten to read the prepared splits (already in canonical form)."""
    update = {"train_file": str(result.paths["train"]), "columns": {}}
    if cfg.data.format in ("alpaca", "messages"):
        update["format"] = "messages"  # prepared SFT rows are canonical {"messages": [...]}
    if result.paths.get("validation") and result.splits.get("validation"):
        update["eval_file"] = str(result.paths["validation"])
    if result.paths.get("test") and result.splits.get("test"):
        update["test_file"] = str(result.paths["test"])
    return cfg.data.model_copy(update=update)
