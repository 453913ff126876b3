"""NER tags: scheme detection/validation (BIO/IOB2, BIOES) and alignment to sub-word tokens."""

from __future__ import annotations

from typing import Sequence

from tunesmith.errors import DataError

IGNORE = -100
_PREFIXES = {"BIO": set("BI"), "IOB2": set("BI"), "BIOES": set("BIES")}


def tag_problem(tag: str, scheme: str) -> str | None:
    """Why `tag` is not valid in `scheme` ("auto": any of BIO/BIOES), or None."""
    if tag == "O":
        return None
    allowed = set("BIES") if scheme == "auto" else _PREFIXES[scheme]
    prefix, dash, kind = tag.partition("-")
    if not dash or not kind or len(prefix) != 1:
        return f"tag {tag!r} has no scheme prefix (expected O or X-TYPE with X in {''.join(sorted(allowed))})"
    if prefix not in allowed:
        name = "BIO/IOB2 or BIOES" if scheme == "auto" else scheme
        return f"tag {tag!r} uses prefix {prefix!r}, unknown in tag scheme {name}"
    return None


def check_tags(examples: Sequence[tuple], scheme: str = "auto") -> str:
    """Validate every tag of (record, {"tokens", "tags"}) pairs; return the detected scheme.

    Raises DataError naming the file and line of the first bad tag (CoNLL: the tag's own line).
    """
    for rec, ex in examples:
        for i, tag in enumerate(ex["tags"]):
            problem = tag_problem(tag, scheme)
            if problem:
                raise DataError(f"{_where(rec, i)}: {problem}; fix: correct the tag or set ner.tag_scheme "
                                "to the data's scheme (BIO, IOB2, BIOES)")
    if scheme != "auto":
        return scheme
    prefixes = {t[0] for _, ex in examples for t in ex["tags"] if t != "O"}
    return "BIOES" if prefixes & {"E", "S"} else "BIO"


def _where(rec, i: int) -> str:
    if rec.line is None:
        return f"{rec.file} record {rec.index} tags[{i}]"
    if rec.file.endswith((".jsonl", ".json")):
        return f"{rec.file}:{rec.line} tags[{i}]"
    return f"{rec.file}:{rec.line + i}"  # CoNLL: one token per line from the sentence's first line


def align_labels(word_ids: Sequence[int | None], word_tags: Sequence[int], label_all_subtokens: bool = False,
                 ) -> list[int]:
    """Per-token label ids: the first sub-token of each word gets its tag, special tokens and (by
    default) later sub-tokens get IGNORE (-100), so loss and metrics count each word once."""
    out, previous = [], None
    for w in word_ids:
        if w is None:
            out.append(IGNORE)
        elif w != previous or label_all_subtokens:
            out.append(word_tags[w])
        else:
            out.append(IGNORE)
        previous = w
    return out


def word_predictions(word_ids: Sequence[int | None], token_preds: Sequence[int]) -> list[int]:
    """Collapse per-token predictions to one per word: the prediction at the word's first sub-token."""
    out: dict[int, int] = {}
    for w, p in zip(word_ids, token_preds):
        if w is not None and w not in out:
            out[w] = int(p)
    return [out[w] for w in sorted(out)]
