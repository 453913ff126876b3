"""Chat rendering and loss masking: the one place a conversation becomes text and token ids.

Training, ``tunesmith chat``, evaluation and serving all render through this module so the
model sees the same text at every stage. Assistant turns are located by character spans in
the rendered text (every assistant turn is trained, including its end-of-turn marker so the
model learns to stop); a token carries loss when its first character lies inside such a span.

BOS: the text is tokenized with ``add_special_tokens=False`` because the template writes its
own special tokens. When the tokenizer would normally add a BOS (its post-processor does) and
the rendered text does not already start with it, the BOS id is prepended (with no loss), as
the model saw a BOS before every sequence in pretraining; ``encode_prompt`` does the same for
inference so training and generation agree.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunesmith.data.formats import RecordError
from tunesmith.data.quarantine import reason_kind
from tunesmith.errors import ConfigError, DataError, ModelError

IGNORE_INDEX = -100

NAMED_TEMPLATES: dict[str, str] = {
    "chatml": (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}{% for message in messages %}"
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
        " + message['content'] | trim + '<|eot_id|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
        "{% endif %}"
    ),
    "alpaca": (
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
        "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
        "{% else %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
    ),
    "zephyr": (
        "{% for message in messages %}"
        "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    ),
}


@dataclass
class TokenizedExample:
    """Token ids and labels of one conversation; labels are ``IGNORE_INDEX`` where no loss."""

    input_ids: list[int]
    labels: list[int]
    n_loss_tokens: int
    truncated: bool
    original_length: int


def _resolve(tokenizer, override: str | None) -> tuple[str, str]:
    """(template, a name for messages)."""
    names = ", ".join(NAMED_TEMPLATES)
    if override is None:
        own = getattr(tokenizer, "chat_template", None)
        if isinstance(own, dict):
            own = own.get("default")
        if not own:
            raise ModelError(
                "the tokenizer has no chat template, so conversations cannot be rendered; "
                f"fix: set model.chat_template to one of {names}, or to a Jinja template string")
        return own, "the tokenizer's own chat template"
    if override in NAMED_TEMPLATES:
        return NAMED_TEMPLATES[override], f"chat template {override!r}"
    if override == getattr(tokenizer, "chat_template", None):
        return override, "the tokenizer's own chat template"
    if "{%" in override or "{{" in override:
        return override, "the chat template given in model.chat_template"
    if override.endswith(".jinja") and Path(override).is_file():
        return Path(override).read_text(encoding="utf-8"), f"chat template file {override}"
    raise ConfigError([f"model.chat_template: {override!r} is neither a known template name "
                       f"({names}), a Jinja template string, nor an existing .jinja file"])


def resolve_chat_template(tokenizer, override: str | None) -> str:
    """The Jinja template to use: the tokenizer's own (None), a NAMED_TEMPLATES name, a literal
    Jinja string or a ``.jinja`` file path."""
    return _resolve(tokenizer, override)[0]


def _render(tokenizer, messages, template: str, label: str, add_generation_prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, chat_template=template,
            add_generation_prompt=add_generation_prompt)
    except Exception as e:  # jinja raises for conversations a template refuses (raise_exception)
        raise RecordError("messages", f"{label} could not render this conversation: {e}",
                          "use a chat template that supports these roles (model.chat_template)") from e


def render_text(tokenizer, messages: Sequence[dict], *, chat_template: str | None = None,
                add_generation_prompt: bool = False) -> str:
    """The conversation as text, special tokens included, through the resolved template."""
    template, label = _resolve(tokenizer, chat_template)
    return _render(tokenizer, messages, template, label, add_generation_prompt)


def render_prompt(tokenizer, messages: Sequence[dict], chat_template: str | None = None) -> str:
    """The text that asks the model for the next assistant reply (generation prompt added)."""
    return render_text(tokenizer, messages, chat_template=chat_template, add_generation_prompt=True)


def _bos_to_add(tokenizer) -> int | None:
    """The BOS id when the tokenizer normally prepends one on encode, else None."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return None
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    return bos if with_special[:1] == [bos] and without[:1] != [bos] else None


def encode_prompt(tokenizer, messages: Sequence[dict], chat_template: str | None = None) -> list[int]:
    """Token ids of ``render_prompt`` for generation, with the same BOS rule as training."""
    text = render_prompt(tokenizer, messages, chat_template)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = _bos_for(tokenizer, text)
    return [bos] + ids if bos is not None else ids


def _bos_for(tokenizer, text: str, bos: int | None | bool = True) -> int | None:
    """The BOS id to prepend to ``text``'s ids: only if the tokenizer adds one and the text
    does not already start with it (``bos`` may pass a precomputed ``_bos_to_add``)."""
    bos = _bos_to_add(tokenizer) if bos is True else bos
    return bos if bos is not None and not text.startswith(tokenizer.bos_token) else None


def _assistant_spans(tokenizer, messages, template: str, label: str) -> tuple[str, list[tuple[int, int]]]:
    full = _render(tokenizer, messages, template, label, False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = _render(tokenizer, messages[:i], template, label, True)
        last = i == len(messages) - 1
        upto = full if last else _render(tokenizer, messages[: i + 1], template, label, False)
        for part, how in ((prefix, "with the generation prompt"), (upto, "")):
            if not full.startswith(part):
                at = next((k for k, (a, b) in enumerate(zip(part, full)) if a != b), len(full))
                raise DataError(
                    f"{label} is not prefix-stable: the conversation rendered up to turn {i} {how} "
                    f"is not a prefix of the whole conversation (they differ at character {at}: "
                    f"{part[at:at + 40]!r} vs {full[at:at + 40]!r}), so the assistant tokens cannot "
                    f"be located for loss masking. Fix: set model.chat_template to one of "
                    f"{', '.join(NAMED_TEMPLATES)} or a template that renders earlier turns the "
                    "same way whatever follows them.")
        spans.append((len(prefix), len(upto)))
    return full, spans


def _label_tokens(ids, offsets, spans, *, max_length, train_on_prompt, bos) -> TokenizedExample:
    ids = np.asarray(ids, dtype=np.int64)
    if train_on_prompt:
        keep = np.ones(len(ids), dtype=bool)
    else:
        starts = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)[:, 0]
        keep = np.zeros(len(ids), dtype=bool)
        for lo, hi in spans:
            keep |= (starts >= lo) & (starts < hi)
    if bos is not None:
        ids, keep = np.concatenate([[bos], ids]), np.concatenate([[train_on_prompt], keep])
    n = len(ids)
    ids, keep = ids[:max_length], keep[:max_length]
    n_loss = int(keep.sum())
    if n_loss == 0:
        raise RecordError("messages", f"no assistant tokens within data.max_length={max_length} "
                          f"(example has {n} tokens)", "raise data.max_length or shorten the example")
    labels = np.where(keep, ids, IGNORE_INDEX)
    return TokenizedExample(ids.tolist(), labels.tolist(), n_loss, n > max_length, n)


def _prepare(tokenizer, messages, template, label, train_on_prompt):
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise RecordError("messages", "expected a non-empty list of {role, content} turns",
                          "convert the data with a chat format first (data.format)", messages)
    if not train_on_prompt and not any(m.get("role") == "assistant" for m in messages):
        raise RecordError("messages", "no assistant turn to learn from",
                          "end the conversation with an assistant reply (or set train_on_prompt)")
    if train_on_prompt:
        return _render(tokenizer, messages, template, label, False), []
    return _assistant_spans(tokenizer, messages, template, label)


def _encode(tokenizer, texts: list[str]):
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError("loss masking needs a fast (Rust) tokenizer for character offsets; "
                         "fix: load the tokenizer with use_fast=True (it needs a tokenizer.json)")
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    return enc["input_ids"], enc["offset_mapping"]


def tokenize_conversation(tokenizer, messages: Sequence[dict], *, max_length: int,
                          train_on_prompt: bool = False, chat_template: str | None = None
                          ) -> TokenizedExample:
    """Render, tokenize and label one conversation (loss on every assistant turn, or on every
    token when ``train_on_prompt``); keeps the first ``max_length`` tokens. Raises RecordError
    when no loss token is left."""
    template, label = _resolve(tokenizer, chat_template)
    full, spans = _prepare(tokenizer, list(messages), template, label, train_on_prompt)
    (ids,), (offsets,) = _encode(tokenizer, [full])
    return _label_tokens(ids, offsets, spans, max_length=max_length,
                         train_on_prompt=train_on_prompt, bos=_bos_for(tokenizer, full))


def length_summary(lengths: Sequence[int]) -> dict:
    """min, mean, p50, p95 and max of token lengths (zeros when empty)."""
    if not lengths:
        return {"min": 0, "mean": 0.0, "p50": 0, "p95": 0, "max": 0}
    s = sorted(lengths)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731 - nearest-rank percentile
    return {"min": s[0], "mean": round(statistics.fmean(s), 1), "p50": pick(0.5),
            "p95": pick(0.95), "max": s[-1]}


def tokenize_dataset(tokenizer, examples: Sequence[dict], *, max_length: int,
                     train_on_prompt: bool = False, chat_template: str | None = None,
                     batch_size: int = 512) -> tuple[list[TokenizedExample], dict]:
    """Tokenize ``{"messages": [...]}`` examples. Returns (kept, stats); stats has n, n_kept,
    n_truncated, n_rejected, rejected ([{index, field, reason, fix}], index into ``examples``),
    reasons (count per reason), length (over all renderable examples), loss_tokens, tokens."""
    template, label = _resolve(tokenizer, chat_template)
    bos = _bos_to_add(tokenizer)
    kept, rejected, lengths = [], [], []
    for lo in range(0, len(examples), batch_size):
        prepared = []
        for i in range(lo, min(lo + batch_size, len(examples))):
            try:
                prepared.append((i, *_prepare(tokenizer, examples[i].get("messages"), template, label,
                                              train_on_prompt)))
            except RecordError as e:
                rejected.append({"index": i, "field": e.field, "reason": e.full_reason, "fix": e.fix})
        if not prepared:
            continue
        all_ids, all_offsets = _encode(tokenizer, [text for _, text, _ in prepared])
        for (i, text, spans), ids, offsets in zip(prepared, all_ids, all_offsets):
            add = _bos_for(tokenizer, text, bos)
            lengths.append(len(ids) + (add is not None))
            try:
                kept.append(_label_tokens(ids, offsets, spans, max_length=max_length,
                                          train_on_prompt=train_on_prompt, bos=add))
            except RecordError as e:
                rejected.append({"index": i, "field": e.field, "reason": e.full_reason, "fix": e.fix})
    rejected.sort(key=lambda r: r["index"])
    stats = {
        "n": len(examples), "n_kept": len(kept), "n_truncated": sum(t.truncated for t in kept),
        "n_rejected": len(rejected), "rejected": rejected,
        "reasons": dict(Counter(reason_kind(r["reason"]) for r in rejected)),
        "length": length_summary(lengths), "loss_tokens": sum(t.n_loss_tokens for t in kept),
        "tokens": sum(len(t.input_ids) for t in kept),
    }
    return kept, stats
