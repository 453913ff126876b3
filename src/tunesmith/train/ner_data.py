"""NER data for training: CoNLL or jsonl -> checked tags -> split -> labels aligned to sub-word tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.data.labels import ner_label_list
from tunesmith.data.ner_align import align_labels, check_tags
from tunesmith.data.readers import fingerprint_files
from tunesmith.errors import DataError
from tunesmith.train.classify_data import as_list, load_splits


@dataclass
class NerData:
    train: object
    eval: object | None
    test: object | None
    labels: list[str]
    scheme: str
    test_examples: list[dict]
    fingerprint: str
    stats: dict = field(default_factory=dict)


def build_ner_data(data_cfg, ncfg, tokenizer, run_dir: Path | None = None) -> NerData:
    """Tokenized train/validation/test datasets, the tag list and the detected tag scheme."""
    splits = load_splits(data_cfg, None, {}, "ner", ncfg.split, ncfg.seed, run_dir, stratify=False)
    scheme = check_tags(splits["train"], ncfg.tag_scheme)
    for name in ("validation", "test"):
        check_tags(splits[name], scheme)
    labels = ner_label_list((ex["tags"] for _, ex in splits["train"]), ncfg.labels)
    label2id = {t: i for i, t in enumerate(labels)}
    sets = {}
    for name, pairs in splits.items():
        sets[name] = tokenize_ner([ex for _, ex in pairs], tokenizer, label2id, ncfg.max_length,
                                  ncfg.label_all_subtokens, [rec for rec, _ in pairs])
    files = as_list(data_cfg.train_file) + as_list(data_cfg.eval_file) + as_list(data_cfg.test_file)
    stats = {k: len(v) if v is not None else 0 for k, v in sets.items()}
    return NerData(sets["train"], sets["validation"], sets["test"], labels, scheme,
                   [ex for _, ex in splits["test"]], fingerprint_files(files), stats)


def tokenize_ner(examples: list[dict], tokenizer, label2id: dict[str, int], max_length: int,
                 label_all_subtokens: bool = False, records=None):
    """input_ids/attention_mask/labels per sentence, tags on first sub-tokens (-100 elsewhere)."""
    from datasets import Dataset

    if not examples:
        return None
    if not getattr(tokenizer, "is_fast", False):
        raise DataError("task ner needs a fast tokenizer (word_ids() maps sub-tokens to words); "
                        "fix: use a model folder with tokenizer.json")
    enc = tokenizer([ex["tokens"] for ex in examples], is_split_into_words=True, truncation=True,
                    max_length=max_length)
    all_labels = []
    for i, ex in enumerate(examples):
        try:
            tag_ids = [label2id[t] for t in ex["tags"]]
        except KeyError as e:
            where = records[i].where() if records else f"sentence {i}"
            raise DataError(f"{where}: tag {e.args[0]!r} is not in the label list {list(label2id)}; "
                            "fix: add it to ner.labels or correct the data") from None
        all_labels.append(align_labels(enc.word_ids(i), tag_ids, label_all_subtokens))
    columns = {k: enc[k] for k in enc.keys()}
    columns["labels"] = all_labels
    return Dataset.from_dict(columns)
