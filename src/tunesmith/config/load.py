"""Load a YAML config, apply dotted CLI overrides, validate, and report every problem at once."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from tunesmith.config.schema import TunesmithConfig
from tunesmith.errors import ConfigError

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.learning_rate=1e-4` -> (["train", "learning_rate"], 1e-4); values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError([f"override {text!r}: expected KEY.PATH=VALUE, e.g. train.learning_rate=1e-4"])
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError([f"override {text!r}: empty key"])
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-4 as a string
    return parts, value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Set each dotted override into a copy of the raw config dict."""
    out = _deep_copy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


def _deep_copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError([f"config file not found: {path}"], source=str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"invalid YAML{where}: {getattr(exc, 'problem', exc)}"], source=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError([f"the top level must be a mapping of sections, found {type(data).__name__}"], source=str(path))
    return data


def validate_config(raw: dict, source: str | None = None, schema: type[BaseModel] = TunesmithConfig):
    """Validate a raw dict; on failure raise ConfigError listing every problem with its fix."""
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        merged: dict[str, list[str]] = {}
        for err in exc.errors():
            key, text = _describe(err, raw, schema)
            merged.setdefault(key, [])
            if text not in merged[key]:
                merged[key].append(text)
        # Several branches of one union fail for the same key: say it once, as alternatives.
        problems = [f"{key}: " + "; or ".join(texts) for key, texts in merged.items()]
        raise ConfigError(problems, source=source) from None


def load_config(path: str | Path, overrides: list[str] | None = None, schema: type[BaseModel] = TunesmithConfig):
    """Read `path`, apply `overrides`, validate. Relative data paths stay relative to the CWD."""
    raw = apply_overrides(read_yaml(path), list(overrides or []))
    return validate_config(raw, source=str(path), schema=schema)


def _schema_path(loc: tuple, raw: dict) -> tuple[list[str], list[Any]]:
    """Turn a pydantic error location into the user's key path, dropping union tags."""
    path: list[str] = []
    node: Any = raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(str(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(str(part))
            node = node[part]
        elif isinstance(part, str) and not path:
            path.append(part)
            node = None
        elif isinstance(part, str) and part.endswith("]") or part in _UNION_TAGS:
            continue  # discriminator tag or union branch name
        else:
            path.append(str(part))
            node = None
    return path, []


_UNION_TAGS = {"full", "freeze", "lora", "dora", "qlora", "ia3", "prefix", "prompt", "str", "list[str]", "literal['all-linear']"}


def _fields_at(schema: type[BaseModel], path: list[str], raw: dict) -> list[str]:
    """Valid keys of the section at `path` (for did-you-mean)."""
    model: Any = schema
    node: Any = raw
    for part in path:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(part)
        if field is None:
            return []
        node = node.get(part) if isinstance(node, dict) else None
        model = _pick_model(field.annotation, node)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _pick_model(annotation: Any, node: Any) -> Any:
    """The pydantic model a field holds; for the method union, the branch named by `name`."""
    candidates = [a for a in _flatten(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    if len(candidates) == 1:
        return candidates[0]
    name = node.get("name") if isinstance(node, dict) else None
    for cand in candidates:
        tag = cand.model_fields.get("name")
        if tag is not None and name in get_args(tag.annotation):
            return cand
    return None


def _flatten(annotation: Any) -> list[Any]:
    args = get_args(annotation)
    if not args:
        return [annotation]
    out: list[Any] = []
    for a in args:
        out.extend(_flatten(a))
    return out


def _describe(err: dict, raw: dict, schema: type[BaseModel]) -> tuple[str, str]:
    """(key path, what is wrong and how to fix it) for one pydantic error."""
    path, _ = _schema_path(tuple(err["loc"]), raw)
    key = ".".join(path) or "(top level)"
    etype = err["type"]
    ctx = err.get("ctx", {})
    if etype == "extra_forbidden":
        valid = _fields_at(schema, path[:-1], raw)
        hint = difflib.get_close_matches(path[-1], valid, n=1, cutoff=0.6)
        parent = ".".join(path[:-1])
        suggestion = f"; did you mean {parent + '.' if parent else ''}{hint[0]}?" if hint else ""
        allowed = f"; valid keys here: {', '.join(valid)}." if valid and not hint else ""
        return key, f"unknown key{suggestion}{allowed}"
    if etype == "missing":
        return key, "required key is missing"
    found = err.get("input")
    if etype == "union_tag_invalid":
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        hint = difflib.get_close_matches(str(ctx.get("tag")), tags, n=1, cutoff=0.6)
        return key + ".name", (
            f"{ctx.get('tag')!r} is not a method" + (f"; did you mean {hint[0]!r}?" if hint else "")
            + f" Choose one of {ctx.get('expected_tags')}."
        )
    if etype == "literal_error":
        return key, f"{found!r} is not allowed; choose one of {ctx.get('expected')}"
    if etype == "union_tag_not_found":
        return key + ".name", "missing; choose one of full, freeze, lora, dora, qlora, ia3, prefix, prompt"
    msg = err.get("msg", "invalid value").removeprefix("Value error, ")
    return key, f"{msg} (found {found!r})" if not isinstance(found, (dict, list)) else msg
