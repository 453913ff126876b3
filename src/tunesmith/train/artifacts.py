"""Save the result of a run and load it back (used by chat, eval, export and serve).

A run directory holds `adapter/` (standard PEFT format, loadable by peft and by transformers)
for adapter methods, or `model/` (a full HF folder) for full and freeze; both carry the tokenizer.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from tunesmith.errors import ModelError


@dataclass
class RunResult:
    """What every task recipe returns: where the run is, its final metrics, the trained model."""

    run_dir: Path
    weights_dir: Path
    metrics: dict
    model: object = None  # the trained model, in memory


def save_final(model, tokenizer, run_dir: Path, *, initial_adapter: Path | None = None, trainer=None) -> Path:
    """Write the trained weights and the tokenizer; return the folder written. In a distributed run
    the main process writes; under FSDP / DeepSpeed every rank takes part in `trainer.save_model`,
    which gathers the sharded weights."""
    from peft import PeftModel

    from tunesmith.train.distributed import is_main_process

    out = run_dir / ("adapter" if isinstance(model, PeftModel) else "model")
    if trainer is not None and (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):
        trainer.save_model(str(out))
        if is_main_process():
            tokenizer.save_pretrained(str(out))
        return out
    if not is_main_process():
        return out
    if isinstance(model, PeftModel):
        out = run_dir / "adapter"
        kwargs = {}
        if initial_adapter is not None:
            # PiSSA/OLoRA: convert to a plain LoRA delta that applies to the original base weights.
            kwargs["path_initial_model_for_weight_conversion"] = str(initial_adapter)
        model.save_pretrained(str(out), **kwargs)
        if initial_adapter is not None:
            shutil.rmtree(initial_adapter, ignore_errors=True)
    else:
        out = run_dir / "model"
        model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


@dataclass
class LoadedRun:
    model: object
    tokenizer: object
    config: object  # TunesmithConfig
    run_dir: Path
    weights_dir: Path


def read_run_config(run_dir: Path):
    from tunesmith.config.load import validate_config

    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise ModelError(f"{run_dir} is not a tunesmith run directory (no config.yaml). Pass the folder `train` created.")
    return validate_config(yaml.safe_load(path.read_text(encoding="utf-8")), source=str(path))


def weights_dir(run_dir: Path) -> Path:
    for name in ("adapter", "model"):
        if (Path(run_dir) / name).is_dir():
            return Path(run_dir) / name
    raise ModelError(f"{run_dir} has no trained weights (adapter/ or model/); did the training finish?")


def load_run(run_dir: str | Path, *, merge: bool = False, auto_class=None, padding_side: str = "left") -> LoadedRun:
    """Base model + trained adapter (or the full trained model) and its tokenizer, in eval mode."""
    from transformers import AutoTokenizer

    from tunesmith.models.load import load_model

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    wdir = weights_dir(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(wdir))
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if wdir.name == "adapter":
        from peft import PeftModel

        base = load_model(cfg.model, auto_class=auto_class)
        model = PeftModel.from_pretrained(base, str(wdir))
        if merge:
            model = model.merge_and_unload()
    else:
        from tunesmith.config.schema import ModelConfig

        model = load_model(ModelConfig(**{**cfg.model.model_dump(), "name_or_path": str(wdir), "gguf_file": None}),
                           auto_class=auto_class)
    model.eval()
    return LoadedRun(model=model, tokenizer=tokenizer, config=cfg, run_dir=run_dir, weights_dir=wdir)


def base_model_of(run_dir: Path) -> str:
    """The base model the run started from, as written in its adapter config or run config."""
    cfg_path = Path(run_dir) / "adapter" / "adapter_config.json"
    if cfg_path.exists():
        return json.loads(cfg_path.read_text())["base_model_name_or_path"]
    return read_run_config(run_dir).model.name_or_path
