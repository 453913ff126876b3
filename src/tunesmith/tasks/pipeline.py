"""Chained training from one config: `stages: [{task: sft}, {task: dpo, overrides: {...}}]`.

Each stage is the top-level config with its overrides applied (dotted paths or nested
sections) and its own run directory ``<output.name>-<i>-<stage>``; from the second stage on,
``model.name_or_path`` is the previous stage's result with any adapter merged into the base
(saved as ``merged/`` in that run), so a new adapter trains on top of the merged weights.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.config.load import apply_overrides, validate_config


def stage_configs(cfg) -> list:
    """The validated config of every stage, before any has run (model paths set while running)."""
    base = cfg.model_dump(exclude={"stages"})
    name = cfg.output.name or "pipeline"
    out = []
    for i, stage in enumerate(cfg.stages or []):
        raw = apply_overrides(base, [f"{k}={_yaml(v)}" for k, v in _flatten(stage.overrides).items()])
        raw["task"] = stage.task
        raw["output"] = {**raw.get("output", {}), "name": f"{name}-{i + 1}-{stage.name or stage.task}"}
        out.append(validate_config(raw, source=f"stages[{i}]"))
    return out


def merged_weights(run_dir: Path) -> Path:
    """The run's weights as a full model folder: `model/`, or the adapter merged into `merged/`."""
    from tunesmith.train import load_run

    run_dir = Path(run_dir)
    if (run_dir / "model").is_dir():
        return run_dir / "model"
    loaded = load_run(run_dir, merge=True)
    out = run_dir / "merged"
    loaded.model.save_pretrained(str(out))
    loaded.tokenizer.save_pretrained(str(out))
    return out


def run_pipeline(cfg, *, resume: bool = False, run_dir=None):
    """Run the stages in order; returns the list of stage results."""
    from tunesmith.tasks import run_task

    results, previous = [], None
    for stage_cfg in stage_configs(cfg):
        if previous is not None:
            stage_cfg = stage_cfg.model_copy(update={"model": stage_cfg.model.model_copy(
                update={"name_or_path": str(merged_weights(previous.run_dir)), "gguf_file": None})})
        previous = run_task(stage_cfg, resume=resume)
        results.append(previous)
    return results


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _yaml(value) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)
