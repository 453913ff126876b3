"""Generate the config reference (Markdown) from the schema's field descriptions.

`python -m tunesmith.config.docs` prints it; the README's config reference is this output.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator

from pydantic import BaseModel

from tunesmith.config import schema


def _models_in(annotation) -> list[type[BaseModel]]:
    out = []
    for arg in typing.get_args(annotation) or (annotation,):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            out.append(arg)
        else:
            out.extend(_models_in(arg) if typing.get_args(arg) else [])
    return out


def iter_sections(root: type[BaseModel] = schema.TunesmithConfig, prefix: str = "") -> Iterator[tuple[str, type[BaseModel]]]:
    """(dotted section name, model) for the root and every nested section, method variants included."""
    if not prefix:
        yield "(top level)", root
    for name, field in root.model_fields.items():
        for model in _models_in(field.annotation):
            label = f"{prefix}{name}"
            for tag_name in ("name", "step", "op"):  # discriminator fields of tagged unions
                tag = model.model_fields.get(tag_name)
                if tag is not None and typing.get_origin(tag.annotation) is typing.Literal:
                    label += f" ({tag_name}: {typing.get_args(tag.annotation)[0]})"
                    break
            yield label, model
            yield from iter_sections(model, prefix=f"{label}.")


def _type_name(annotation) -> str:
    text = repr(annotation).replace("typing.", "")
    return text.replace("<class '", "").replace("'>", "")


def _default(field) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
        return "{}" if value == {} else ("[]" if value == [] else f"`{getattr(value, 'name', value)}`" if hasattr(value, "name") else "section defaults")
    return f"`{field.default!r}`"


def reference_markdown() -> str:
    lines = ["# Config reference", "", "Generated from the schema (`python -m tunesmith.config.docs`).", ""]
    for label, model in iter_sections():
        lines += [f"## `{label.rstrip('.')}`", "", "| key | type | default | description |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            if _models_in(field.annotation) and name != "name":
                continue  # nested sections get their own table
            lines.append(f"| `{name}` | `{_type_name(field.annotation)}` | {_default(field)} | {field.description or ''} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown())
