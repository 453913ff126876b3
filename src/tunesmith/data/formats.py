"""Convert raw records to the canonical example shapes of docs/DEVELOPING.md, or say why not.

Formats: ``alpaca``, ``messages`` (OpenAI ``messages`` or ShareGPT ``conversations``, detected per
record), ``preference`` (DPO pairs in several styles, and unpaired KTO rows), ``classification``
and ``ner``. ``columns`` maps a canonical field name to the key used in the file, e.g.
``{"instruction": "question", "output": "answer"}``. A record that does not fit raises
``RecordError(field, reason, fix)``; ``convert_records`` collects those as ``Reject``s.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from typing import Any

from tunesmith.data.quarantine import Reject, reason_kind
from tunesmith.data.readers import Record
from tunesmith.errors import ConfigError, DataError

__all__ = [
    "FORMAT_FIELDS", "RecordError", "Reject", "reason_kind", "convert_records", "convert_with_sources",
    "to_alpaca", "to_messages", "to_preference", "to_kto", "to_classification", "to_ner",
]

FORMAT_FIELDS = {
    "alpaca": ("instruction", "input", "output", "system", "history"),
    "messages": ("messages", "conversations", "role", "content", "from", "value", "system"),
    "preference": ("prompt", "chosen", "rejected", "conversations", "messages", "system",
                   "completion", "label", "role", "content", "from", "value"),
    "classification": ("text", "text_pair", "label"),
    "ner": ("tokens", "tags"),
}
FORMAT_FIELDS["kto"] = FORMAT_FIELDS["preference"]
_ALIASES = {"sharegpt": "messages", "openai": "messages", "chat": "messages", "dpo": "preference"}
PROBLEM_TYPES = ("single_label", "multi_label", "regression")


_MISSING = object()
_ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant",
          "gpt": "assistant"}
_TURN_FIX = ("give each turn role+content (OpenAI) or from+value (ShareGPT), or map your keys "
             "with data.columns: {role: <key>, content: <key>}")


class RecordError(DataError):
    """A record does not fit its format: the field at fault, why, the fix, and what was found."""

    def __init__(self, field: str, reason: str, fix: str, found: Any = _MISSING):
        self.field, self.reason, self.fix, self.found = field, reason, fix, found
        super().__init__(f"{field}: {self.full_reason}; fix: {fix}")

    @property
    def full_reason(self) -> str:
        """The reason plus a short preview of the value found, when there is one."""
        return self.reason if self.found is _MISSING else f"{self.reason}; found {preview(self.found)}"


def preview(value: Any, limit: int = 80) -> str:
    """A short, typed description of a value for error messages: ``str 'abc'``, ``int 3``."""
    text = repr(value)
    text = text if len(text) <= limit else text[:limit] + "..."
    return f"{type(value).__name__} {text}"


class Fields:
    """A record seen through the column mapping: canonical field name -> key in the file."""

    def __init__(self, data: dict, columns: dict | None):
        self.data, self.columns = data, columns or {}

    def name(self, canonical: str) -> str:
        return self.columns.get(canonical, canonical)

    def has(self, canonical: str) -> bool:
        return self.name(canonical) in self.data

    def get(self, canonical: str) -> Any:
        return self.data.get(self.name(canonical))

    def missing(self, canonical: str) -> RecordError:
        key = self.name(canonical)
        keys = ", ".join(map(str, self.data)) or "(none)"
        if key != canonical:
            fix = f"check data.columns.{canonical}: the record has no key {key!r}"
        else:
            fix = f"add the field, or map your column with data.columns: {{{canonical}: <your key>}}"
        return RecordError(key, f"missing field (the record has: {keys})", fix)

    def conversation_key(self) -> str:
        """The key of the turn list: a mapped messages/conversations key, else whichever exists."""
        for canonical in ("messages", "conversations"):
            if canonical in self.columns:
                if not self.has(canonical):
                    raise self.missing(canonical)
                return self.name(canonical)
        for canonical in ("messages", "conversations"):
            if self.has(canonical):
                return canonical
        keys = ", ".join(map(str, self.data)) or "(none)"
        raise RecordError("messages", f"no 'messages' or 'conversations' list (the record has: {keys})",
                          "give an OpenAI 'messages' or ShareGPT 'conversations' list, or map yours "
                          "with data.columns: {messages: <your key>}")


def require_text(f: Fields, canonical: str) -> str:
    """The field's value, which must be a non-empty string."""
    if not f.has(canonical):
        raise f.missing(canonical)
    value = f.get(canonical)
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f.name(canonical), "expected a non-empty string",
                          "fill in the text, or drop the row", value)
    return value


def parse_turns(f: Fields, value: Any, key: str) -> list[dict]:
    """A list of OpenAI or ShareGPT turns -> canonical ``[{"role", "content"}]`` (roles and
    content checked; order is checked by ``check_order``)."""
    if not isinstance(value, list) or not value:
        raise RecordError(key, "expected a non-empty list of turns", _TURN_FIX, value)
    rk, ck, fk, vk = (f.name(x) for x in ("role", "content", "from", "value"))
    out = []
    for i, turn in enumerate(value):
        here = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise RecordError(here, "expected an object with a role and content", _TURN_FIX, turn)
        if rk in turn:
            role_key, content_key = rk, ck
        elif fk in turn:
            role_key, content_key = fk, vk
        else:
            raise RecordError(here, f"the turn has neither {rk!r} nor {fk!r} (keys: "
                              f"{', '.join(map(str, turn))})", _TURN_FIX)
        raw_role = turn[role_key]
        role = _ROLES.get(raw_role.strip().lower()) if isinstance(raw_role, str) else None
        if role is None:
            raise RecordError(f"{here}.{role_key}", "unknown role",
                              "use system, user or assistant (ShareGPT: system, human, gpt); tool "
                              "and function turns are not supported: drop them or fold them into "
                              "the text", raw_role)
        out.append({"role": role, "content": _content(turn, content_key, f"{here}.{content_key}")})
    return out


def _content(turn: dict, key: str, here: str) -> str:
    if key not in turn:
        raise RecordError(here, f"missing (the turn has: {', '.join(map(str, turn))})", _TURN_FIX)
    value = turn[key]
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
        value = "".join(str(p.get("text", "")) for p in value)  # OpenAI text content parts
    if not isinstance(value, str):
        raise RecordError(here, "expected text content", "give the content as a string "
                          "(only text parts are supported)", value)
    if not value.strip():
        raise RecordError(here, "empty content", "fill in the turn or remove it (and its reply)",
                          value)
    return value


def check_order(messages: list[dict], key: str, *, first: str, last: str,
                allow_system: bool = True) -> None:
    """Optional system first, then turns alternating from ``first``, ending with ``last``."""
    body_start = 1 if allow_system and messages and messages[0]["role"] == "system" else 0
    for i, m in enumerate(messages[body_start:], start=body_start):
        if m["role"] == "system":
            where = "may only come first" if allow_system else "is not allowed here"
            raise RecordError(f"{key}[{i}]", f"a system turn {where}",
                              "move the system prompt to the start of the prompt")
    body = messages[body_start:]
    if not body:
        raise RecordError(key, "no user/assistant turns", "add the conversation turns")
    expected = first
    for i, m in enumerate(body, start=body_start):
        if m["role"] != expected:
            raise RecordError(f"{key}[{i}]", f"expected {_a(expected)} turn, found {_a(m['role'])} turn",
                              f"user and assistant turns must alternate starting with {first}; "
                              "merge consecutive turns of the same role")
        expected = "assistant" if expected == "user" else "user"
    if body[-1]["role"] != last:
        raise RecordError(f"{key}[{len(messages) - 1}]",
                          f"the conversation ends with {_a(body[-1]['role'])} turn, expected {last}",
                          "end with the assistant reply to train on, or drop the trailing turn"
                          if last == "assistant" else "end the prompt with the user turn")


def to_alpaca(data: dict, columns: dict | None = None, *, system: str | None = None) -> dict:
    """``{instruction, input?, output, system?, history?}`` -> ``{"messages": [...]}``.

    A non-empty ``input`` is appended to the instruction after a blank line; ``history`` pairs
    ``[user, assistant]`` come before the final turn; ``system`` (the record's, else the
    default passed here) becomes the first message.
    """
    f = Fields(data, columns)
    instruction = require_text(f, "instruction")
    extra = f.get("input")
    if extra is not None and not isinstance(extra, str):
        raise RecordError(f.name("input"), "expected a string (or empty)", "make the input a string",
                          extra)
    output = require_text(f, "output")
    messages = []
    sys_text = f.get("system")
    if sys_text is not None and not isinstance(sys_text, str):
        raise RecordError(f.name("system"), "expected a string", "make the system prompt a string",
                          sys_text)
    sys_text = sys_text if sys_text and sys_text.strip() else system
    if sys_text:
        messages.append({"role": "system", "content": sys_text})
    messages += _history(f)
    user = instruction + ("\n\n" + extra if extra and extra.strip() else "")
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return {"messages": messages}


def _history(f: Fields) -> list[dict]:
    history = f.get("history")
    if history is None:
        return []
    name = f.name("history")
    fix = "make history a list of [user, assistant] string pairs"
    if not isinstance(history, list):
        raise RecordError(name, "expected a list of [user, assistant] pairs", fix, history)
    out = []
    for i, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise RecordError(f"{name}[{i}]", "expected a [user, assistant] pair", fix, pair)
        for j, (role, text) in enumerate(zip(("user", "assistant"), pair)):
            if not isinstance(text, str) or not text.strip():
                raise RecordError(f"{name}[{i}][{j}]", f"expected a non-empty {role} string", fix, text)
            out.append({"role": role, "content": text})
    return out


def to_messages(data: dict, columns: dict | None = None, *, system: str | None = None) -> dict:
    """OpenAI ``messages`` or ShareGPT ``conversations`` -> ``{"messages": [...]}``, validated:
    optional system first, then user/assistant alternating, ending with an assistant turn."""
    f = Fields(data, columns)
    key = f.conversation_key()
    messages = parse_turns(f, f.data[key], key)
    sys_text = f.get("system")
    if isinstance(sys_text, str) and sys_text.strip():
        system = sys_text
    if system and messages and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
    check_order(messages, key, first="user", last="assistant")
    return {"messages": messages}


def to_preference(data: dict, columns: dict | None = None) -> dict:
    """A preference pair -> ``{"prompt", "chosen", "rejected"}`` (each a message list).

    The prompt is ``prompt`` (string or turns) or ShareGPT ``conversations`` / ``messages``;
    chosen/rejected are strings, one turn, or turns (a repeated prompt at their start is
    removed). Without a prompt both sides are full transcripts: turn lists (or Anthropic-style
    "\n\nHuman: ... \n\nAssistant: ..." strings) share the prompt turns and must first differ
    at an assistant turn; other plain strings are split at the last whitespace inside their
    longest common prefix (prompt = user turn, the rest = assistant replies, both stripped).
    A row with ``completion`` and ``label`` but no ``chosen`` is read as KTO (see ``to_kto``).
    """
    f = Fields(data, columns)
    if not f.has("chosen") and not f.has("rejected") and f.has("completion"):
        return to_kto(data, columns)
    for side in ("chosen", "rejected"):
        if not f.has(side):
            raise f.missing(side)
    prompt = _prompt(f)
    if prompt is None:
        prompt, chosen, rejected = _implicit_prompt(f)
    else:
        chosen, rejected = _side(f, "chosen"), _side(f, "rejected")
        n = len(prompt)
        if len(chosen) > n and len(rejected) > n and chosen[:n] == prompt == rejected[:n]:
            chosen, rejected = chosen[n:], rejected[n:]
    prompt = _with_system(f, prompt)
    check_order(prompt, f.name("prompt"), first="user", last="user")
    for side, turns in (("chosen", chosen), ("rejected", rejected)):
        check_order(turns, f.name(side), first="assistant", last="assistant", allow_system=False)
    if chosen == rejected:
        raise RecordError(f.name("rejected"), "identical to chosen", "drop the pair or correct one side")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def to_kto(data: dict, columns: dict | None = None) -> dict:
    """An unpaired row ``{prompt, completion, label: bool}`` -> same shape with message lists."""
    f = Fields(data, columns)
    prompt = _prompt(f)
    if prompt is None:
        raise f.missing("prompt")
    for key in ("completion", "label"):
        if not f.has(key):
            raise f.missing(key)
    completion = _side(f, "completion")
    prompt = _with_system(f, prompt)
    check_order(prompt, f.name("prompt"), first="user", last="user")
    check_order(completion, f.name("completion"), first="assistant", last="assistant",
                allow_system=False)
    value = f.get("label")
    label = {"true": True, "1": True, "false": False, "0": False}.get(str(value).strip().lower())
    if label is None or isinstance(value, float):
        raise RecordError(f.name("label"), "expected true (desirable) or false (undesirable)",
                          "give the label as a boolean", value)
    return {"prompt": prompt, "completion": completion, "label": label}


def _prompt(f: Fields) -> list[dict] | None:
    if f.has("prompt"):
        value = f.get("prompt")
        if isinstance(value, str):
            return [{"role": "user", "content": require_text(f, "prompt")}]
        return parse_turns(f, value, f.name("prompt"))
    for canonical in ("conversations", "messages"):
        if f.has(canonical):
            return parse_turns(f, f.get(canonical), f.name(canonical))
    return None


def _side(f: Fields, canonical: str) -> list[dict]:
    value, name = f.get(canonical), f.name(canonical)
    if isinstance(value, str):
        return [{"role": "assistant", "content": require_text(f, canonical)}]
    return parse_turns(f, [value] if isinstance(value, dict) else value, name)


def _with_system(f: Fields, prompt: list[dict]) -> list[dict]:
    system = f.get("system")
    if isinstance(system, str) and system.strip() and prompt[0]["role"] != "system":
        return [{"role": "system", "content": system}] + prompt
    return prompt


def _implicit_prompt(f: Fields) -> tuple[list[dict], list[dict], list[dict]]:
    raw_c, raw_r = f.get("chosen"), f.get("rejected")
    nc, nr = f.name("chosen"), f.name("rejected")
    if isinstance(raw_c, str) and isinstance(raw_r, str):
        c, r = _parse_hh(raw_c, nc), _parse_hh(raw_r, nr)
        if c is None or r is None:
            return _split_strings(f, raw_c, raw_r)
    else:
        c, r = parse_turns(f, raw_c, nc), parse_turns(f, raw_r, nr)
    k = 0
    while k < min(len(c), len(r)) and c[k] == r[k]:
        k += 1
    fix = ("give a separate prompt field, or make both transcripts identical up to the final "
           "assistant reply")
    if k == len(c) or k == len(r):
        what = "identical to chosen" if c == r else "chosen and rejected have no distinct reply"
        raise RecordError(nr, what, fix)
    if c[k]["role"] != "assistant" or r[k]["role"] != "assistant":
        raise RecordError(f"{nr}[{k}]", f"chosen and rejected differ at turn {k} ({c[k]['role']}/"
                          f"{r[k]['role']}), before the assistant reply, so they share no prompt", fix)
    return c[:k], c[k:], r[k:]


_HH_MARK = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")


def _parse_hh(text: str, name: str) -> list[dict] | None:
    """Anthropic HH "\n\nHuman: ...\n\nAssistant: ..." text -> turns, or None if not that style."""
    parts = _HH_MARK.split(text)
    if len(parts) < 5 or parts[0].strip() or "Assistant" not in parts[1::2]:
        return None
    turns = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        if not content.strip():
            raise RecordError(name, f"an empty {speaker} turn in the transcript", "fill in or drop it")
        turns.append({"role": "user" if speaker == "Human" else "assistant", "content": content.strip()})
    return turns


def _split_strings(f: Fields, chosen: str, rejected: str):
    common = os.path.commonprefix([chosen, rejected])
    cut = max((m.end() for m in re.finditer(r"\s", common)), default=0)
    prompt, c, r = chosen[:cut].strip(), chosen[cut:].strip(), rejected[cut:].strip()
    nr = f.name("rejected")
    if chosen == rejected:
        raise RecordError(nr, "identical to chosen", "drop the pair or correct one side")
    if not prompt:
        raise RecordError(nr, "chosen and rejected share no prompt text (no prompt field given)",
                          "add a prompt field (data.columns: {prompt: <your key>})")
    if not c or not r:
        raise RecordError(nr, "after removing the shared prompt one side is empty",
                          "add a prompt field so the replies can be told apart")
    return ([{"role": "user", "content": prompt}], [{"role": "assistant", "content": c}],
            [{"role": "assistant", "content": r}])


def to_classification(
    data: dict, columns: dict | None = None, *, problem_type: str = "single_label",
    labels: Iterable[str] | None = None, label_sep: str | None = None,
) -> dict:
    """``{text, text_pair?, label}`` -> ``{"text", "text_pair", "label"}``.

    single_label: str/int label -> str (stripped; 1.0 -> "1"); multi_label: list (or a string
    split on ``label_sep``) -> list[str]; regression: number or numeric string -> float.
    ``labels``, when given, is the allowed label set.
    """
    f = Fields(data, columns)
    text = require_text(f, "text")
    pair = None
    if (columns and "text_pair" in columns) or f.get("text_pair") is not None:
        pair = require_text(f, "text_pair")
    name = f.name("label")
    if not f.has("label"):
        raise f.missing("label")
    value = f.get("label")
    if problem_type == "regression":
        label = _float_label(value, name)
    elif problem_type == "multi_label":
        if isinstance(value, str):
            value = value.split(label_sep) if label_sep else [value]
        if not isinstance(value, (list, tuple)):
            raise RecordError(name, "expected a list of labels (problem_type=multi_label)",
                              "give a list, or a delimited string with label_sep", value)
        label = [_one_label(v, f"{name}[{i}]") for i, v in enumerate(value)]
        label = [v for v in label if v] if label_sep else label
    else:
        if isinstance(value, (list, tuple)):
            raise RecordError(name, "expected one label, found a list",
                              "set problem_type=multi_label for multi-label data", value)
        label = _one_label(value, name)
    if labels is not None and problem_type != "regression":
        allowed = [str(x) for x in labels]
        for one in label if isinstance(label, list) else [label]:
            if one not in allowed:
                raise RecordError(name, f"label {one!r} is not one of the allowed labels {allowed}",
                                  "correct the label or add it to the label list")
    return {"text": text, "text_pair": pair, "label": label}


def _one_label(value: Any, name: str) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        raise RecordError(name, "a fractional number is not a class label",
                          "use problem_type=regression for numeric targets", value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise RecordError(name, "expected a non-empty label (string or integer)",
                      "fill in the label or drop the row", value)


def _float_label(value: Any, name: str) -> float:
    try:
        out = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        out = None
    if out is None or math.isnan(out) or math.isinf(out):
        raise RecordError(name, "expected a finite number (problem_type=regression)",
                          "give a numeric target", value)
    return out


def to_ner(
    data: dict, columns: dict | None = None, *, labels: Iterable[str] | None = None,
    tag_names: list[str] | None = None,
) -> dict:
    """``{tokens, tags}`` -> same, validated; integer tags are mapped through ``tag_names``."""
    f = Fields(data, columns)
    out = {}
    for key in ("tokens", "tags"):
        value = f.get(key)
        if not f.has(key):
            raise f.missing(key)
        if not isinstance(value, (list, tuple)) or not value:
            raise RecordError(f.name(key), "expected a non-empty list", f"give {key} as a list", value)
        out[key] = list(value)
    if tag_names is not None:
        out["tags"] = [_tag_name(t, i, tag_names, f.name("tags")) for i, t in enumerate(out["tags"])]
    for key in ("tokens", "tags"):
        for i, v in enumerate(out[key]):
            if not isinstance(v, str) or not v:
                raise RecordError(f"{f.name(key)}[{i}]", "expected a non-empty string",
                                  f"give every entry of {key} as text", v)
    nt, ng = len(out["tokens"]), len(out["tags"])
    if nt != ng:
        raise RecordError(f.name("tags"), f"{nt} tokens but {ng} tags",
                          "give exactly one tag per token")
    if labels is not None:
        allowed = list(labels)
        for i, tag in enumerate(out["tags"]):
            if tag not in allowed:
                raise RecordError(f"{f.name('tags')}[{i}]", f"tag {tag!r} is not one of {allowed}",
                                  "correct the tag or add it to the label list")
    return out


def _tag_name(tag: Any, i: int, names: list[str], field: str) -> Any:
    if isinstance(tag, int) and not isinstance(tag, bool):
        if 0 <= tag < len(names):
            return names[tag]
        raise RecordError(f"{field}[{i}]", f"tag id {tag} is outside 0..{len(names) - 1}",
                          "check tag_names against the data")
    return tag


_CONVERTERS = {
    "alpaca": (to_alpaca, {"system"}),
    "messages": (to_messages, {"system"}),
    "preference": (to_preference, set()),
    "kto": (to_kto, set()),
    "classification": (to_classification, {"problem_type", "labels", "label_sep"}),
    "ner": (to_ner, {"labels", "tag_names"}),
}


def _converter(fmt: str, columns: dict | None, opts: dict):
    name = _ALIASES.get(fmt, fmt)
    problems = []
    if name not in _CONVERTERS:
        choices = ", ".join(sorted(_CONVERTERS) + sorted(_ALIASES))
        raise ConfigError([f"data.format: unknown format {fmt!r}; choose one of {choices}"])
    func, allowed = _CONVERTERS[name]
    for key in columns or {}:
        if key not in FORMAT_FIELDS[name]:
            problems.append(f"data.columns.{key}: not a field of format {name!r}; "
                            f"mappable fields: {', '.join(FORMAT_FIELDS[name])}")
    for key in opts:
        if key not in allowed:
            problems.append(f"option {key!r} does not apply to format {name!r}"
                            + (f"; it takes {', '.join(sorted(allowed))}" if allowed else ""))
    if opts.get("problem_type", "single_label") not in PROBLEM_TYPES:
        problems.append(f"problem_type: {opts['problem_type']!r} is not one of {', '.join(PROBLEM_TYPES)}")
    if problems:
        raise ConfigError(problems)
    return lambda data: func(data, columns, **opts)


def convert_with_sources(
    records: Iterable[Record], fmt: str, columns: dict | None = None, **opts: Any
) -> tuple[list[tuple[Record, dict]], list[Reject]]:
    """Like ``convert_records`` but keeps each example's source record, for later rejects."""
    convert = _converter(fmt, columns, opts)
    kept, rejects = [], []
    for rec in records:
        if rec.error is not None:
            reason, _, fix = rec.error.partition("; fix: ")
            rejects.append(Reject(rec, "(record)", reason, fix or "correct the record in the file"))
            continue
        try:
            kept.append((rec, convert(rec.data)))
        except RecordError as e:
            rejects.append(Reject(rec, e.field, e.full_reason, e.fix))
    return kept, rejects


def convert_records(
    records: Iterable[Record], fmt: str, columns: dict | None = None, **opts: Any
) -> tuple[list[dict], list[Reject]]:
    """Convert every record with format ``fmt``; returns (examples, rejects). Reader error
    records become rejects too. Options: alpaca/messages ``system`` (default system prompt),
    classification ``problem_type``, ``labels``, ``label_sep``; ner ``labels``, ``tag_names``."""
    kept, rejects = convert_with_sources(records, fmt, columns, **opts)
    return [ex for _, ex in kept], rejects



def _a(word: str) -> str:
    return ("an " if word.startswith("a") else "a ") + word  # roles: assistant, user, system
