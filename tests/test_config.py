"""Config: strict keys with suggestions, every problem at once, dotted overrides, method union."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunesmith.config import apply_overrides, load_config, parse_override, validate_config
from tunesmith.config.schema import DoraMethod, FreezeMethod, LoraMethod, PromptMethod
from tunesmith.errors import ConfigError

BASE = {"model": {"name_or_path": "smollm2-135m-instruct"}, "data": {"train_file": "a.jsonl"}}


def _errors(raw) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        validate_config(raw)
    return exc.value.problems


def test_unknown_key_suggests_the_closest_valid_key():
    problems = _errors({**BASE, "data": {"train_file": "a", "max_lenght": 3}})
    assert problems == ["data.max_lenght: unknown key; did you mean data.max_length?"]


def test_all_problems_are_reported_together():
    raw = {
        "model": {"name_or_path": "x", "trust_remote_cod": True},
        "data": {"train_file": "a", "format": "alpacca"},
        "method": {"name": "lora", "r": 0},
        "train": {"learning_rate": -1},
        "trian": {},
    }
    problems = _errors(raw)
    keys = sorted(p.split(":")[0] for p in problems)
    assert keys == ["data.format", "method.r", "model.trust_remote_cod", "train.learning_rate", "trian"]
    assert any("did you mean model.trust_remote_code" in p for p in problems)
    assert any("'alpaca'" in p for p in problems if p.startswith("data.format"))
    assert any("did you mean train" in p for p in problems if p.startswith("trian"))


def test_method_union_rejects_keys_of_other_methods():
    problems = _errors({**BASE, "method": {"name": "prefix", "r": 8}})
    assert problems == [
        "method.r: unknown key; valid keys here: name, num_virtual_tokens, prefix_projection."
    ]


def test_unknown_method_name_suggests():
    problems = _errors({**BASE, "method": {"name": "lorra"}})
    assert len(problems) == 1 and problems[0].startswith("method.name: 'lorra' is not a method; did you mean 'lora'?")


def test_method_sections_parse_to_their_types():
    assert isinstance(validate_config(BASE).method, LoraMethod)  # LoRA is the default
    assert isinstance(validate_config({**BASE, "method": {"name": "dora"}}).method, DoraMethod)
    cfg = validate_config({**BASE, "method": {"name": "freeze", "trainable_layers": 2}})
    assert isinstance(cfg.method, FreezeMethod) and cfg.method.trainable_layers == 2
    cfg = validate_config({**BASE, "method": {"name": "prompt", "encoder": "lstm"}})
    assert isinstance(cfg.method, PromptMethod) and cfg.method.encoder == "lstm"


def test_freeze_needs_exactly_one_choice():
    problems = _errors({**BASE, "method": {"name": "freeze", "trainable_layers": 1, "frozen_layers": 1}})
    assert "exactly one of" in problems[0]


def test_dotted_overrides_parse_yaml_values():
    assert parse_override("train.learning_rate=1e-4") == (["train", "learning_rate"], 1e-4)
    assert parse_override("method.target_modules=[q_proj,v_proj]") == (["method", "target_modules"], ["q_proj", "v_proj"])
    assert parse_override("data.train_on_prompt=true") == (["data", "train_on_prompt"], True)
    raw = apply_overrides(BASE, ["train.learning_rate=1e-4", "method.name=dora", "method.r=4"])
    cfg = validate_config(raw)
    assert cfg.train.learning_rate == 1e-4 and cfg.method.name == "dora" and cfg.method.r == 4
    assert "train" not in BASE  # the input is not modified


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        parse_override("train.learning_rate")


def test_load_config_reports_yaml_syntax_with_line(tmp_path: Path):
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  name_or_path: x\n data: [\n")
    with pytest.raises(ConfigError, match=r"line \d+"):
        load_config(p)


def test_load_config_applies_overrides(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(BASE))
    cfg = load_config(p, ["train.max_steps=7"])
    assert cfg.train.max_steps == 7


def test_every_field_has_a_description():
    from pydantic import BaseModel

    from tunesmith.config.docs import iter_sections

    for section_name, model in iter_sections():
        assert issubclass(model, BaseModel)
        for name, field in model.model_fields.items():
            assert field.description, f"{section_name}.{name} has no description"
