"""Turn the `data` config section into tokenised SFT train/eval datasets, with a quarantine.

Steps: read every file (located records) -> convert to canonical messages -> hold out a
validation share when no eval file is given -> tokenise with the chat template and the
assistant-only label mask -> reject examples left with no loss tokens. Every rejected row is
written to quarantine.jsonl with its reason, and the run stops above `data.max_bad_fraction`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.config.schema import DataConfig
from tunesmith.data.formats import convert_with_sources
from tunesmith.data.quarantine import Quarantine
from tunesmith.data.readers import Record, fingerprint_files, read_all
from tunesmith.data.render import tokenize_dataset


@dataclass
class SftData:
    train: object  # datasets.Dataset with input_ids / labels
    eval: object | None
    train_examples: list[dict]
    eval_examples: list[dict]
    fingerprint: str
    stats: dict = field(default_factory=dict)


def as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def load_examples(files: list[str], cfg: DataConfig, quarantine: Quarantine) -> list[tuple[Record, dict]]:
    """Read and convert; rejected records go to the quarantine (not dropped silently)."""
    kept, rejects = convert_with_sources(read_all(files), cfg.format, cfg.columns or None)
    quarantine.extend(rejects)
    return kept


def holdout_split(examples: list, share: float, seed: int) -> tuple[list, list]:
    """Seeded random hold-out of `share` of the examples (at least one when share > 0)."""
    if share <= 0 or len(examples) < 2:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(examples) * share))
    eval_ids = set(order[:n_eval])
    return [e for i, e in enumerate(examples) if i not in eval_ids], [examples[i] for i in order[:n_eval]]


def _tokenise(tokenizer, pairs: list[tuple[Record, dict]], cfg: DataConfig, chat_template: str | None,
              quarantine: Quarantine):
    """Tokenise with loss masks; examples left without loss tokens go to the quarantine."""
    from datasets import Dataset

    examples = [ex for _, ex in pairs]
    tokenised, stats = tokenize_dataset(
        tokenizer, examples, max_length=cfg.max_length, train_on_prompt=cfg.train_on_prompt, chat_template=chat_template
    )
    rejected = {r["index"] for r in stats["rejected"]}
    for r in stats["rejected"]:
        quarantine.add(pairs[r["index"]][0], r["field"], r["reason"], r["fix"])
    ds = Dataset.from_dict({"input_ids": [t.input_ids for t in tokenised], "labels": [t.labels for t in tokenised]})
    kept_examples = [ex for i, ex in enumerate(examples) if i not in rejected]
    return ds, kept_examples, {k: v for k, v in stats.items() if k != "rejected"}


def read_splits(cfg: DataConfig, quarantine: Quarantine, seed: int) -> tuple[list, list, int]:
    """(train, eval, total records read): converted (Record, example) pairs, shuffled and sampled
    as the data section says; eval is the eval files or a seeded hold-out of train."""
    train_files, eval_files = as_list(cfg.train_file), as_list(cfg.eval_file)
    train_ex = load_examples(train_files, cfg, quarantine)
    eval_ex = load_examples(eval_files, cfg, quarantine) if eval_files else []
    total = len(train_ex) + len(eval_ex) + len(quarantine)  # every record read, before any sampling
    random.Random(seed).shuffle(train_ex)
    if cfg.max_samples:
        train_ex = train_ex[: cfg.max_samples]
    if not eval_files:
        train_ex, eval_ex = holdout_split(train_ex, cfg.eval_split, seed)
    if cfg.max_eval_samples:
        eval_ex = eval_ex[: cfg.max_eval_samples]
    return train_ex, eval_ex, total


def close_quarantine(quarantine: Quarantine, total: int, cfg: DataConfig, run_dir: Path) -> Path:
    """Write the quarantine file (when anything was rejected) and stop above max_bad_fraction."""
    qpath = Path(run_dir) / "quarantine.jsonl"
    if len(quarantine):
        quarantine.write(qpath)
    quarantine.enforce(total, cfg.max_bad_fraction, qpath)
    return qpath


def build_sft_data(cfg: DataConfig, tokenizer, *, chat_template: str | None, seed: int, run_dir: Path) -> SftData:
    """Everything `train` needs from the data section; quarantine written to run_dir."""
    quarantine = Quarantine()
    train_files, eval_files = as_list(cfg.train_file), as_list(cfg.eval_file)
    train_ex, eval_ex, total = read_splits(cfg, quarantine, seed)
    train_ds, train_ex, train_stats = _tokenise(tokenizer, train_ex, cfg, chat_template, quarantine)
    eval_ds, eval_ex, eval_stats = (_tokenise(tokenizer, eval_ex, cfg, chat_template, quarantine)
                                    if eval_ex else (None, [], {}))
    qpath = close_quarantine(quarantine, total, cfg, run_dir)
    if len(train_ds) == 0:
        from tunesmith.errors import DataError

        raise DataError(f"no usable training examples in {train_files}; see {qpath} for the reasons")
    return SftData(
        train=train_ds,
        eval=eval_ds,
        train_examples=train_ex,
        eval_examples=eval_ex,
        fingerprint=fingerprint_files(train_files + eval_files),
        stats={"train": train_stats, "eval": eval_stats, "rejected": quarantine.counts_by_reason(), "read": total},
    )


def save_held_out(run_dir: Path, data: SftData) -> None:
    """Keep the validation examples beside the run so `tunesmith eval` scores the same rows."""
    if not data.eval_examples:
        return
    folder = Path(run_dir) / "data"
    folder.mkdir(exist_ok=True)
    with (folder / "validation.jsonl").open("w", encoding="utf-8") as fh:
        for ex in data.eval_examples:
            fh.write(json.dumps(ex, ensure_ascii=False) + "\n")
