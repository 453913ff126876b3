"""Show what the model will be trained on: rendered text, tokens, and which tokens carry loss.

Backs ``tunesmith data inspect cfg.yaml -n 3``. Everything goes through ``render`` so the view
is exactly what training sees. Loss tokens are shown in brackets, ``[like this]``; other tokens
plain; whitespace inside tokens is made visible (``␣``, ``\\n``, ``\\t``).
"""

from __future__ import annotations

from collections.abc import Sequence

from tunesmith.data.formats import RecordError
from tunesmith.data.render import (
    IGNORE_INDEX,
    TokenizedExample,
    render_text,
    tokenize_conversation,
    tokenize_dataset,
)

_RULE = "=" * 72


def _show_token(text: str, spaces: bool = True) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return text.replace(" ", "␣") if spaces else text


def token_view(tokenizer, ex: TokenizedExample, text: str | None = None) -> str:
    """The tokens separated by spaces, loss tokens in brackets. With the rendered ``text`` each
    token is shown as the slice of text it covers, which stays readable where a token holds
    part of a multi-byte character (decoding it alone would give a replacement character)."""
    pieces = [tokenizer.decode([t]) for t in ex.input_ids]
    if text is not None:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        sliced = [text[a:b] for a, b in enc["offset_mapping"]]
        extra = ex.original_length - len(sliced)  # a BOS that render prepended
        sliced = pieces[:extra] + sliced if extra >= 0 else sliced
        pieces = sliced[: len(ex.input_ids)] if len(sliced) >= len(ex.input_ids) else pieces
    parts = []
    for piece, label in zip(pieces, ex.labels):
        piece = _show_token(piece)
        parts.append(f"[{piece}]" if label != IGNORE_INDEX else piece)
    return " ".join(parts)


def loss_text(tokenizer, ex: TokenizedExample) -> list[str]:
    """The decoded runs of consecutive loss tokens: what the model learns to write."""
    runs, current = [], []
    for tok_id, label in zip(ex.input_ids, ex.labels):
        if label != IGNORE_INDEX:
            current.append(tok_id)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def _format_stats(stats: dict, max_length: int) -> list[str]:
    length = stats["length"]
    lines = [
        _RULE,
        f"All {stats['n']} examples: {stats['n_kept']} kept, {stats['n_rejected']} rejected, "
        f"{stats['n_truncated']} truncated to data.max_length={max_length}",
        f"Token lengths before truncation: min {length['min']}, mean {length['mean']}, "
        f"p50 {length['p50']}, p95 {length['p95']}, max {length['max']}",
        f"Tokens kept: {stats['tokens']}, of which carry loss: {stats['loss_tokens']}",
    ]
    for reason, count in stats["reasons"].items():
        lines.append(f"  rejected {count}: {reason}")
    return lines


def inspection_report(tokenizer, examples: Sequence[dict], n: int = 3, *, max_length: int,
                      train_on_prompt: bool = False, chat_template: str | None = None) -> str:
    """Plain-text report: for each of the first ``n`` examples the rendered text, the tokens
    (loss tokens in brackets) and the text that carries loss; then the length summary and the
    truncated and rejected counts over all examples."""
    who = "every token carries" if train_on_prompt else "only assistant turns carry"
    lines = [f"Loss tokens are shown [in brackets]; {who} loss "
             f"(data.train_on_prompt={str(train_on_prompt).lower()})."]
    for i, example in enumerate(examples[:n]):
        messages = example.get("messages", [])
        lines += [_RULE, f"Example {i}", "--- rendered text ---"]
        try:
            text = render_text(tokenizer, messages, chat_template=chat_template)
            lines.append(text)
            ex = tokenize_conversation(tokenizer, messages, max_length=max_length,
                                       train_on_prompt=train_on_prompt, chat_template=chat_template)
        except RecordError as e:
            lines.append(f"(rejected) {e}")
            continue
        state = (f"truncated from {ex.original_length} to {len(ex.input_ids)} tokens"
                 if ex.truncated else f"{len(ex.input_ids)} tokens")
        lines += [f"--- tokens ({state}, {ex.n_loss_tokens} with loss) ---", token_view(tokenizer, ex, text),
                  "--- text with loss ---"]
        lines += [f"  {_show_token(run, spaces=False)}" for run in loss_text(tokenizer, ex)]
    _, stats = tokenize_dataset(tokenizer, examples, max_length=max_length,
                                train_on_prompt=train_on_prompt, chat_template=chat_template)
    return "\n".join(lines + _format_stats(stats, max_length))
