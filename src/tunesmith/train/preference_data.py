"""Turn the `data` section into preference datasets that TRL trainers take as they are.

Steps: read -> convert with the `preference` format (pairs in every supported style, or unpaired
KTO rows) -> hold out a validation share -> render each side with the one chat template
(``data.render``) -> check lengths -> quarantine what cannot be used.

The rendered form is TRL's documented string form, already templated, so TRL never applies a
template of its own: ``prompt`` = ``render_prompt(prompt turns)`` and each reply = the text the
template adds for the assistant turn, ending at the end-of-turn marker (trailing whitespace after
an EOS end-of-turn is dropped so TRL does not append a second EOS). KTO rows are
``{prompt, completion, label}``; for task kto every pair also yields a desirable and an
undesirable row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.config.schema import DataConfig
from tunesmith.data.formats import RecordError
from tunesmith.data.quarantine import Quarantine
from tunesmith.data.readers import fingerprint_files
from tunesmith.data.render import render_prompt, render_text
from tunesmith.data.sft_dataset import as_list, close_quarantine, read_splits
from tunesmith.errors import DataError


@dataclass
class PreferenceData:
    train: object  # datasets.Dataset of rendered strings
    eval: object | None
    eval_pairs: list[dict]  # rendered held-out pairs {prompt, chosen, rejected}, for preference accuracy
    fingerprint: str
    stats: dict = field(default_factory=dict)


def render_reply(tokenizer, prompt: list[dict], reply: list[dict], chat_template: str | None) -> tuple[str, str]:
    """(prompt text, reply text): the reply is what the template adds after the generation prompt."""
    prompt_text = render_prompt(tokenizer, prompt, chat_template)
    full = render_text(tokenizer, list(prompt) + list(reply), chat_template=chat_template)
    if not full.startswith(prompt_text):
        raise RecordError("prompt", "the chat template renders the prompt differently when a reply follows",
                          "use a chat template whose generation prompt is a prefix of the full conversation")
    reply_text = full[len(prompt_text):]
    eos = tokenizer.eos_token or ""
    if eos and reply_text.rstrip().endswith(eos):
        reply_text = reply_text.rstrip()
    return prompt_text, reply_text


def render_pair(tokenizer, example: dict, chat_template: str | None = None) -> dict:
    """A canonical pair -> ``{"prompt", "chosen", "rejected"}`` strings, templated."""
    prompt, chosen = render_reply(tokenizer, example["prompt"], example["chosen"], chat_template)
    _, rejected = render_reply(tokenizer, example["prompt"], example["rejected"], chat_template)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def render_kto(tokenizer, example: dict, chat_template: str | None = None) -> list[dict]:
    """A canonical pair or KTO row -> KTO rows ``{"prompt", "completion", "label"}`` (strings)."""
    if "completion" in example:
        prompt, completion = render_reply(tokenizer, example["prompt"], example["completion"], chat_template)
        return [{"prompt": prompt, "completion": completion, "label": bool(example["label"])}]
    pair = render_pair(tokenizer, example, chat_template)
    return [{"prompt": pair["prompt"], "completion": pair["chosen"], "label": True},
            {"prompt": pair["prompt"], "completion": pair["rejected"], "label": False}]


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def render_examples(tokenizer, pairs, *, kto: bool, chat_template: str | None, max_length: int,
                    max_prompt_length: int | None, quarantine: Quarantine) -> tuple[list[dict], dict]:
    """Render (record, example) pairs; unusable ones go to the quarantine. Returns (rows, stats)."""
    rows, truncated = [], 0
    prompt_limit = min(max_prompt_length or max_length, max_length - 1)
    for rec, ex in pairs:
        if not kto and "completion" in ex:
            quarantine.add(rec, "completion", "an unpaired (KTO) row, but this task trains on pairs",
                           "give chosen and rejected replies, or use task kto")
            continue
        try:
            rendered = render_kto(tokenizer, ex, chat_template) if kto else [render_pair(tokenizer, ex, chat_template)]
        except RecordError as e:
            quarantine.add(rec, e.field, e.full_reason, e.fix)
            continue
        n_prompt = _n_tokens(tokenizer, rendered[0]["prompt"])
        if n_prompt > prompt_limit:
            quarantine.add(rec, "prompt", f"the rendered prompt has {n_prompt} tokens, over the limit of {prompt_limit}",
                           "shorten the prompt or raise preference.max_prompt_length / preference.max_length")
            continue
        replies = [r[k] for r in rendered for k in ("chosen", "rejected", "completion") if k in r]
        truncated += any(n_prompt + _n_tokens(tokenizer, t) > max_length for t in replies)
        rows.extend(rendered)
    return rows, {"rows": len(rows), "truncated": truncated}


def build_preference_data(cfg: DataConfig, tokenizer, *, kto: bool, chat_template: str | None, seed: int,
                          run_dir: Path, max_length: int | None = None,
                          max_prompt_length: int | None = None) -> PreferenceData:
    """Train/eval datasets for a preference task; quarantine written to run_dir."""
    from datasets import Dataset

    quarantine = Quarantine()
    train_files, eval_files = as_list(cfg.train_file), as_list(cfg.eval_file)
    train_ex, eval_ex, total = read_splits(cfg, quarantine, seed)
    opts = dict(chat_template=chat_template, max_length=max_length or cfg.max_length,
                max_prompt_length=max_prompt_length, quarantine=quarantine)
    train_rows, train_stats = render_examples(tokenizer, train_ex, kto=kto, **opts)
    eval_rows, eval_stats = render_examples(tokenizer, eval_ex, kto=kto, **opts)
    eval_pairs, _ = render_examples(tokenizer, [p for p in eval_ex if "chosen" in p[1]], kto=False,
                                    **{**opts, "quarantine": Quarantine()})
    qpath = close_quarantine(quarantine, total, cfg, run_dir)
    if not train_rows:
        raise DataError(f"no usable preference examples in {train_files}; see {qpath} for the reasons")
    return PreferenceData(
        train=Dataset.from_list(train_rows),
        eval=Dataset.from_list(eval_rows) if eval_rows else None,
        eval_pairs=eval_pairs,
        fingerprint=fingerprint_files(train_files + eval_files),
        stats={"train": train_stats, "eval": eval_stats, "rejected": quarantine.counts_by_reason(), "read": total},
    )
