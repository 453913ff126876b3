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

A prompt over ``max_prompt_length`` tokens is quarantined, or with ``prompt_truncation="left"``
cut from the left (TRL 1.16's DPO only cuts at the end, which would drop the reply): earlier
turns go first, then the start of the system message, then the start of the last user message,
so the end of the question and the template's markup stay. Every cut is counted in the stats and listed in
``truncated_prompts.jsonl`` (file, line, tokens before and after).
"""

from __future__ import annotations

import json
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
    # the same held-out pairs as SFT examples {"messages": prompt + chosen}, for the generation eval
    eval_examples: list[dict] = field(default_factory=list)


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


def _drop_leading_tokens(tokenizer, text: str, n: int) -> str:
    """``text`` without its first ``n`` tokens, cut at a character boundary (no broken characters)."""
    if not getattr(tokenizer, "is_fast", False):  # slow tokenizers have no offsets: decode the rest
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return tokenizer.decode(ids[n:]) if n < len(ids) else ""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    if n <= 0:
        return text
    # byte-level BPE splits one character over several tokens: cut after the whole character
    end = offsets[min(n, len(offsets)) - 1][1]
    return next((text[start:] for start, _ in offsets[n:] if start >= end), "")


def truncate_prompt_left(tokenizer, messages: list[dict], limit: int,
                         chat_template: str | None) -> list[dict] | None:
    """Prompt turns whose rendered prompt fits in ``limit`` tokens, cut from the left: whole turns
    before the last user message first, then the start of the system message, then the start of
    the last user message (so as much of the question's end as possible stays). None when even
    the template markup does not fit."""
    msgs = [dict(m) for m in messages]
    last_user = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=None)
    if last_user is None:
        return None
    for _ in range(32):  # a cut can re-tokenize a few tokens differently; re-measure and cut again
        excess = _n_tokens(tokenizer, render_prompt(tokenizer, msgs, chat_template)) - limit
        if excess <= 0:
            return msgs
        first = next(i for i, m in enumerate(msgs) if m["role"] != "system")
        if first < last_user:  # an earlier turn: drop it whole, keeping the prompt starting at a user turn
            nxt = next((i for i in range(first + 1, last_user + 1) if msgs[i]["role"] == "user"), last_user)
            del msgs[first:nxt]
            last_user -= nxt - first
            continue
        i = next((k for k in range(last_user) if msgs[k]["role"] == "system" and msgs[k]["content"]), last_user)
        if not msgs[i]["content"]:
            return None
        msgs[i]["content"] = _drop_leading_tokens(tokenizer, msgs[i]["content"], excess)
    return None


def render_examples(tokenizer, pairs, *, kto: bool, chat_template: str | None, max_length: int,
                    max_prompt_length: int | None, quarantine: Quarantine,
                    prompt_truncation: str = "quarantine") -> tuple[list[dict], dict]:
    """Render (record, example) pairs; unusable ones go to the quarantine, over-long prompts are
    cut from the left when ``prompt_truncation="left"``. Returns (rows, stats); stats["cuts"] lists
    each cut prompt."""
    rows, truncated, cuts = [], 0, []
    prompt_limit = min(max_prompt_length or max_length, max_length - 1)
    for rec, ex in pairs:
        if not kto and "completion" in ex:
            quarantine.add(rec, "completion", "an unpaired (KTO) row, but this task trains on pairs",
                           "give chosen and rejected replies, or use task kto")
            continue
        try:
            rendered = render_kto(tokenizer, ex, chat_template) if kto else [render_pair(tokenizer, ex, chat_template)]
            n_prompt = _n_tokens(tokenizer, rendered[0]["prompt"])
            if n_prompt > prompt_limit and prompt_truncation == "left":
                cut = truncate_prompt_left(tokenizer, ex["prompt"], prompt_limit, chat_template)
                if cut is not None:
                    ex = {**ex, "prompt": cut}
                    rendered = (render_kto(tokenizer, ex, chat_template) if kto
                                else [render_pair(tokenizer, ex, chat_template)])
                    n_cut = _n_tokens(tokenizer, rendered[0]["prompt"])
                    cuts.append({"file": rec.file, "line": rec.line, "index": rec.index,
                                 "prompt_tokens": n_prompt, "kept_tokens": n_cut})
                    n_prompt = n_cut
        except RecordError as e:
            quarantine.add(rec, e.field, e.full_reason, e.fix)
            continue
        if n_prompt > prompt_limit:
            quarantine.add(rec, "prompt", f"the rendered prompt has {n_prompt} tokens, over the limit of {prompt_limit}",
                           "shorten the prompt, raise preference.max_prompt_length / preference.max_length, "
                           "or set preference.prompt_truncation: left")
            continue
        replies = [r[k] for r in rendered for k in ("chosen", "rejected", "completion") if k in r]
        truncated += any(n_prompt + _n_tokens(tokenizer, t) > max_length for t in replies)
        rows.extend(rendered)
    return rows, {"rows": len(rows), "truncated": truncated, "prompts_cut": len(cuts), "cuts": cuts}


def build_preference_data(cfg: DataConfig, tokenizer, *, kto: bool, chat_template: str | None, seed: int,
                          run_dir: Path, max_length: int | None = None,
                          max_prompt_length: int | None = None,
                          prompt_truncation: str = "quarantine") -> PreferenceData:
    """Train/eval datasets for a preference task; quarantine and prompt cuts written to run_dir."""
    from datasets import Dataset

    quarantine = Quarantine()
    train_files, eval_files = as_list(cfg.train_file), as_list(cfg.eval_file)
    train_ex, eval_ex, total = read_splits(cfg, quarantine, seed)
    opts = dict(chat_template=chat_template, max_length=max_length or cfg.max_length,
                max_prompt_length=max_prompt_length, quarantine=quarantine, prompt_truncation=prompt_truncation)
    train_rows, train_stats = render_examples(tokenizer, train_ex, kto=kto, **opts)
    eval_rows, eval_stats = render_examples(tokenizer, eval_ex, kto=kto, **opts)
    eval_pairs, eval_examples = [], []
    for rec, ex in eval_ex:  # one at a time, to keep each rendered pair beside its source example
        rendered, _ = render_examples(tokenizer, [(rec, ex)], kto=False, **{**opts, "quarantine": Quarantine()})
        if rendered:
            eval_pairs.append(rendered[0])
            eval_examples.append({"messages": list(ex["prompt"]) + list(ex["chosen"])})
    qpath = close_quarantine(quarantine, total, cfg, run_dir)
    cuts = train_stats.pop("cuts") + eval_stats.pop("cuts")
    if cuts:
        (Path(run_dir) / "truncated_prompts.jsonl").write_text(
            "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cuts), encoding="utf-8")
    if not train_rows:
        raise DataError(f"no usable preference examples in {train_files}; see {qpath} for the reasons")
    return PreferenceData(
        train=Dataset.from_list(train_rows),
        eval=Dataset.from_list(eval_rows) if eval_rows else None,
        eval_pairs=eval_pairs,
        eval_examples=eval_examples,
        fingerprint=fingerprint_files(train_files + eval_files),
        stats={"train": train_stats, "eval": eval_stats, "rejected": quarantine.counts_by_reason(), "read": total},
    )
