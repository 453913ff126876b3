"""What a server serves: one base model, optionally several LoRA adapters on it (peft's
multi-adapter model, so adapters share the base weights), the tokenizer and the chat template.

Adapter names are checked against a strict pattern and only ever used as dictionary keys;
adapter paths come from the command line (never from requests) and must be run directories
with an ``adapter/`` folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.errors import ConfigError, ModelError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed batch


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name or "") or ".." in name:
        raise ConfigError([f"serve: model/adapter name {name!r} is not allowed; use letters, digits, '.', '_' "
                           "or '-' (at most 64, no '..')"])
    return name


def parse_adapter_arg(arg: str) -> tuple[str, Path]:
    """``name=RUN_DIR`` from the command line."""
    name, sep, path = arg.partition("=")
    if not sep or not path:
        raise ConfigError([f"--adapter {arg!r}: expected name=RUN_DIR"])
    return check_name(name.strip()), Path(path.strip())


@dataclass
class ServedModel:
    model: object
    tokenizer: object
    chat_template: str | None
    base_name: str
    adapters: dict[str, Path] = field(default_factory=dict)  # model id -> adapter folder
    is_classifier: bool = False
    predictor: object = None  # tasks.predict.Predictor for a classify run (its labels, head and max_length)

    @property
    def model_ids(self) -> list[str]:
        return [self.base_name, *self.adapters]

    def adapter_for(self, model_id: str) -> str | None:
        """peft adapter name for a request's ``model`` (None for a model without adapters)."""
        if model_id in self.adapters:
            return model_id
        if model_id == self.base_name:
            return BASE_ADAPTER if self.adapters else None
        from tunesmith.serve.limits import ApiError

        raise ApiError(404, f"model {model_id!r} not found; available: {', '.join(self.model_ids)}",
                       code="model_not_found", param="model")


def _adapter_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise ModelError(f"adapter run {run_dir} does not exist")
    adapter = run_dir / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise ModelError(f"{run_dir} has no adapter/ (adapter_config.json); only adapter runs can be added "
                         "with --adapter; serve a full run as the main model instead")
    return adapter


def load_served(target: str, adapters: list[tuple[str, Path]] = (), *, name: str | None = None) -> ServedModel:
    """Load RUN_DIR or a MODEL (bundled alias, folder, hub id) plus ``adapters`` (name, run dir)."""
    from peft import PeftModel

    from tunesmith.config.schema import ModelConfig
    from tunesmith.models.load import load_model, load_tokenizer
    from tunesmith.train.artifacts import read_run_config, weights_dir

    path = Path(target)
    is_run = (path / "config.yaml").is_file()
    served_adapters: dict[str, Path] = {}
    if is_run:
        cfg = read_run_config(path)
        if cfg.task in ("classify", "ner"):
            return _classifier_run(path, cfg.task, name, adapters)
        wdir = weights_dir(path)
        model_cfg = cfg.model
        template = cfg.model.chat_template
        base_name = check_name(name or path.resolve().name)
        if wdir.name == "adapter":
            from transformers import AutoTokenizer

            base = load_model(model_cfg)
            tokenizer = AutoTokenizer.from_pretrained(str(wdir))
            model = PeftModel.from_pretrained(base, str(wdir), adapter_name=base_name)
            served_adapters[base_name] = wdir
            base_name = check_name(f"{base_name}-base")
        else:
            model_cfg = ModelConfig(**{**model_cfg.model_dump(), "name_or_path": str(wdir), "gguf_file": None})
            model, tokenizer = load_model(model_cfg), load_tokenizer(model_cfg, padding_side="left")
    else:
        model_cfg = ModelConfig(name_or_path=target)
        template = None
        base_name = check_name(name or ("base" if "/" in target or Path(target).exists() else target))
        archs = _architectures(model_cfg)
        auto = None
        if any(a.endswith("ForSequenceClassification") for a in archs):
            from transformers import AutoModelForSequenceClassification as auto
        model, tokenizer = load_model(model_cfg, auto_class=auto), load_tokenizer(model_cfg, padding_side="left")
    for adapter_name, run_dir in adapters:
        check_name(adapter_name)
        if adapter_name in served_adapters or adapter_name == base_name:
            raise ConfigError([f"--adapter {adapter_name}: the name is already used"])
        adir = _adapter_dir(run_dir)
        if isinstance(model, PeftModel):
            model.load_adapter(str(adir), adapter_name=adapter_name)
        else:
            model = PeftModel.from_pretrained(model, str(adir), adapter_name=adapter_name)
        served_adapters[adapter_name] = adir
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    is_classifier = type(getattr(model, "base_model", model)).__name__.endswith("ForSequenceClassification") or \
        type(model).__name__.endswith("ForSequenceClassification")
    return ServedModel(model, tokenizer, template, base_name, served_adapters, is_classifier)


def _classifier_run(path: Path, task: str, name: str | None, adapters) -> ServedModel:
    """A classify run, loaded the way `tunesmith predict` loads it (classification head, the
    run's labels.json, its adapter if any, its max_length), for POST /v1/classify."""
    if task == "ner":
        raise ModelError(f"{path} is an ner run; token tagging has no OpenAI-style route here: "
                         f"use `tunesmith predict {path} --text ...`")
    if adapters:
        raise ConfigError([f"--adapter: {path} is a classify run; extra adapters are only for generative runs"])
    from tunesmith.tasks.predict import Predictor

    predictor = Predictor(path)
    return ServedModel(predictor.model, predictor.tokenizer, None, check_name(name or path.resolve().name),
                       is_classifier=True, predictor=predictor)


def _architectures(model_cfg) -> list[str]:
    import json

    from tunesmith.models.registry import resolve_model

    try:
        cfg = Path(resolve_model(model_cfg.name_or_path, gguf_file=model_cfg.gguf_file).path) / "config.json"
        return json.loads(cfg.read_text()).get("architectures") or []
    except (OSError, ValueError, ModelError):
        return []
