"""Classification data for training: read -> convert -> quarantine -> split -> labels -> resample -> tokenize.

One file given: a stratified, seeded train/validation/test split (`classify.split`, 8:1:1).
Rejected rows go to quarantine.jsonl in the run directory.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.data.balance import class_weights as balanced_weights
from tunesmith.data.balance import resample
from tunesmith.data.formats import convert_with_sources
from tunesmith.data.labels import LabelMap
from tunesmith.data.quarantine import Quarantine
from tunesmith.data.readers import fingerprint_files, read_all
from tunesmith.data.split import parse_ratios, random_split, stratified_split


def as_list(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def read_examples(files, fmt: str, columns: dict | None, opts: dict, max_bad_fraction: float,
                  quarantine_path: Path | None) -> list[tuple]:
    """(record, example) pairs of every good row; raise when too many rows are bad."""
    records = [r for f in as_list(files) for r in read_all([f], fmt=reader_format(f, fmt))]
    kept, rejects = convert_with_sources(records, fmt, columns or None, **opts)
    q = Quarantine(rejects)
    if len(q) and quarantine_path is not None:
        q.write(quarantine_path)
    q.enforce(len(records), max_bad_fraction, quarantine_path if len(q) else None)
    return kept


def reader_format(path: str, data_format: str) -> str | None:
    """NER files that are not json/jsonl/csv/tsv/parquet are CoNLL (e.g. train.txt), even when
    a malformed line would defeat detection by content; otherwise detect from the extension."""
    if data_format == "ner" and Path(path).suffix.lower() not in _TABULAR:
        return "conll"
    return None


_TABULAR = {".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".pq"}


def split_examples(pairs: list[tuple], key, ratios: str | dict, seed: int, stratify: bool = True) -> dict[str, list]:
    """Cut (record, example) pairs into train/validation/test, stratified by `key(example)`."""
    r = parse_ratios(ratios) if isinstance(ratios, str) else ratios
    names = stratified_split([key(ex) for _, ex in pairs], r, seed) if stratify else random_split(len(pairs), r, seed)
    out: dict[str, list] = {k: [] for k in r}
    for pair, name in zip(pairs, names):
        out[name].append(pair)
    return out


def load_splits(data_cfg, key, opts: dict, fmt: str, ratios: str, seed: int, run_dir: Path | None,
                stratify: bool = True) -> dict[str, list]:
    """train/validation/test (record, example) pairs from the data section's files."""
    q = (run_dir / "quarantine.jsonl") if run_dir else None
    read = lambda files: read_examples(files, fmt, data_cfg.columns, opts, data_cfg.max_bad_fraction, q)  # noqa: E731
    train = read(data_cfg.train_file)
    if data_cfg.eval_file is None:
        r = parse_ratios(ratios)
        if data_cfg.test_file is not None:
            r = {"train": 1 - data_cfg.eval_split, "validation": data_cfg.eval_split, "test": 0.0}
        splits = split_examples(train, key, r, seed, stratify)
    else:
        splits = {"train": train, "validation": read(data_cfg.eval_file), "test": []}
    if data_cfg.test_file is not None:
        splits["test"] = read(data_cfg.test_file)
    splits["train"] = _cap(splits["train"], data_cfg.max_samples, seed)
    splits["validation"] = _cap(splits["validation"], data_cfg.max_eval_samples, seed)
    return splits


def _cap(pairs: list, n: int | None, seed: int) -> list:
    if n is None or len(pairs) <= n:
        return pairs
    idx = sorted(random.Random(seed).sample(range(len(pairs)), n))
    return [pairs[i] for i in idx]


def stratum(example) -> object:
    label = example["label"]
    return tuple(sorted(label)) if isinstance(label, list) else label


@dataclass
class ClassifyData:
    train: object
    eval: object | None
    test: object | None
    label_map: LabelMap
    test_examples: list[dict]
    class_weights: list[float] | None
    fingerprint: str
    stats: dict = field(default_factory=dict)


def build_classify_data(data_cfg, ccfg, tokenizer, run_dir: Path | None = None) -> ClassifyData:
    """Tokenized train/validation/test datasets and the label map for `task: classify`."""
    problem = ccfg.problem_type
    opts = {"problem_type": problem, "labels": ccfg.labels, "label_sep": ccfg.label_sep}
    opts = {k: v for k, v in opts.items() if v is not None}
    splits = load_splits(data_cfg, stratum, opts, "classification", ccfg.split, ccfg.seed, run_dir,
                         stratify=problem != "regression")
    train = [ex for _, ex in splits["train"]]
    label_map = LabelMap.from_examples((ex["label"] for ex in train), problem, ccfg.labels)
    weights = None
    if ccfg.imbalance == "weighted_loss" and problem != "regression":
        weights = weight_vector(label_map, ccfg.class_weights or balanced_weights([ex["label"] for ex in train]))
    if ccfg.imbalance in ("oversample", "undersample") and problem == "single_label":
        train = [train[i] for i in resample([ex["label"] for ex in train], ccfg.imbalance, seed=ccfg.seed)]
    sets = {name: tokenize_examples(exs, tokenizer, label_map, ccfg.max_length)
            for name, exs in (("train", train), ("validation", [e for _, e in splits["validation"]]),
                              ("test", [e for _, e in splits["test"]]))}
    files = as_list(data_cfg.train_file) + as_list(data_cfg.eval_file) + as_list(data_cfg.test_file)
    stats = {k: len(v) if v is not None else 0 for k, v in sets.items()}
    return ClassifyData(sets["train"], sets["validation"], sets["test"], label_map,
                        [e for _, e in splits["test"]], weights, fingerprint_files(files), stats)


def weight_vector(label_map: LabelMap, weights: dict[str, float]) -> list[float]:
    """Per-id loss weights; labels absent from `weights` weigh 1."""
    return [float(weights.get(y, 1.0)) for y in label_map.labels]


def tokenize_examples(examples: list[dict], tokenizer, label_map: LabelMap, max_length: int):
    """A datasets.Dataset with input_ids, attention_mask (token_type_ids) and labels; None when empty."""
    from datasets import Dataset

    if not examples:
        return None
    texts = [ex["text"] for ex in examples]
    pairs = [ex.get("text_pair") for ex in examples]
    enc = tokenizer(texts, pairs if all(p is not None for p in pairs) else None, truncation=True,
                    max_length=max_length)
    columns = {k: enc[k] for k in enc.keys()}
    columns["labels"] = [label_map.encode(ex["label"]) for ex in examples]
    return Dataset.from_dict(columns)
