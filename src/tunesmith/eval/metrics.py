"""Text metrics for generation evaluation, computed with sacrebleu and rouge-score.

All text metrics are on a 0-100 scale (sacrebleu's convention), so deltas read alike:

- exact_match: after `em_normalization` (default: strip and collapse whitespace).
- token_f1: SQuAD-style bag-of-tokens F1. English: lowercased whitespace tokens with punctuation
  and articles removed; Chinese: single characters (whitespace and punctuation dropped).
- bleu: `sacrebleu.corpus_bleu` with tokenize="zh" for Chinese, "13a" otherwise; per example
  `sacrebleu.sentence_bleu` (effective order).
- chrf: `sacrebleu.corpus_chrf` / `sentence_chrf`.
- rouge1/rouge2/rougeL: `rouge_score.RougeScorer` F-measure, averaged over examples. rouge-score's
  default tokenizer keeps only [a-z0-9], which silently deletes Chinese; for Chinese the text is
  pre-segmented (jieba words or characters) and scored with a whitespace tokenizer.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Iterable, Sequence

import sacrebleu
from rouge_score import rouge_scorer

TEXT_METRICS = ("exact_match", "token_f1", "bleu", "chrf", "rouge1", "rouge2", "rougeL")
LOWER_IS_BETTER = frozenset({"perplexity"})

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def higher_is_better(metric: str) -> bool:
    """Direction of a metric (by its bare name, e.g. 'bleu' or 'eval_gen_perplexity')."""
    bare = metric.rsplit(".", 1)[-1].removeprefix("eval_gen_")
    return not (bare in LOWER_IS_BETTER or bare.endswith("loss") or "latency" in bare
                or "ttft" in bare or "memory" in bare)


def cjk_share(texts: Iterable[str]) -> float:
    """Share of CJK characters among non-space characters."""
    total = cjk = 0
    for t in texts:
        for ch in t:
            if not ch.isspace():
                total += 1
                cjk += bool(_CJK.match(ch))
    return cjk / total if total else 0.0


def detect_language(texts: Iterable[str], threshold: float = 0.3) -> str:
    """'zh' when at least `threshold` of the non-space characters are CJK, else 'en'."""
    return "zh" if cjk_share(texts) >= threshold else "en"


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


def normalize_text(text: str, mode: str = "whitespace") -> str:
    """Normalise for exact match: none | whitespace | lower | squad."""
    if mode == "none":
        return text
    out = " ".join(text.split())
    if mode in ("lower", "squad"):
        out = out.lower()
    if mode == "squad":
        out = "".join(ch for ch in out if not _is_punct(ch))
        out = " ".join(_ARTICLES.sub(" ", out).split())
    return out


def exact_match(prediction: str, reference: str, normalization: str = "whitespace") -> float:
    """100.0 when the normalised strings are equal, else 0.0."""
    return 100.0 * (normalize_text(prediction, normalization) == normalize_text(reference, normalization))


def f1_tokens(text: str, language: str) -> list[str]:
    """Tokens for token F1: characters for Chinese, SQuAD-normalised words otherwise."""
    if language == "zh":
        return [ch for ch in text.lower() if not ch.isspace() and not _is_punct(ch)]
    return normalize_text(text, "squad").split()


def token_f1(prediction: str, reference: str, language: str = "en") -> float:
    """SQuAD-style F1 over bags of tokens, 0-100."""
    pred, ref = f1_tokens(prediction, language), f1_tokens(reference, language)
    if not pred or not ref:
        return 100.0 * (pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    p, r = common / len(pred), common / len(ref)
    return 100.0 * 2 * p * r / (p + r)


class WhitespaceTokenizer:
    """rouge-score tokenizer for pre-segmented text: lowercase, split on whitespace, drop
    punctuation-only tokens. Unlike rouge-score's default it keeps CJK characters."""

    def tokenize(self, text: str) -> list[str]:
        return [t for t in text.lower().split() if not all(_is_punct(c) for c in t)]


def segment_zh(text: str, zh_tokenizer: str = "jieba") -> str:
    """Space-separated segmentation of (mostly) Chinese text: jieba words or characters."""
    if zh_tokenizer == "char":
        # Keep runs of Latin letters/digits together; split CJK into characters.
        return " ".join(re.findall(r"[A-Za-z0-9]+|\S", text))
    import jieba

    jieba.setLogLevel(60)
    return " ".join(w for w in jieba.lcut(text) if w.strip())


def make_rouge_scorer(language: str, zh_tokenizer: str = "jieba", types: Sequence[str] = ("rouge1", "rouge2", "rougeL")):
    """A RougeScorer and the text preprocessor to apply before scoring."""
    if language == "zh":
        scorer = rouge_scorer.RougeScorer(list(types), tokenizer=WhitespaceTokenizer())
        return scorer, lambda t: segment_zh(t, zh_tokenizer)
    return rouge_scorer.RougeScorer(list(types)), lambda t: t


def sentence_scores(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    metrics: Sequence[str] = TEXT_METRICS,
    language: str = "en",
    zh_tokenizer: str = "jieba",
    em_normalization: str = "whitespace",
) -> list[dict[str, float]]:
    """Per-example scores (0-100) for the error library and per-example output."""
    bleu_tok = "zh" if language == "zh" else "13a"
    rouge_types = [m for m in metrics if m.startswith("rouge")]
    scorer, prep = make_rouge_scorer(language, zh_tokenizer, rouge_types) if rouge_types else (None, None)
    out = []
    for pred, ref in zip(predictions, references, strict=True):
        s: dict[str, float] = {}
        if "exact_match" in metrics:
            s["exact_match"] = exact_match(pred, ref, em_normalization)
        if "token_f1" in metrics:
            s["token_f1"] = token_f1(pred, ref, language)
        if "bleu" in metrics:
            s["bleu"] = sacrebleu.sentence_bleu(pred, [ref], tokenize=bleu_tok).score
        if "chrf" in metrics:
            s["chrf"] = sacrebleu.sentence_chrf(pred, [ref]).score
        if scorer is not None:
            r = scorer.score(prep(ref), prep(pred))
            for t in rouge_types:
                s[t] = 100.0 * r[t].fmeasure
        out.append(s)
    return out


def compute_text_metrics(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    metrics: Sequence[str] = TEXT_METRICS,
    language: str = "auto",
    zh_tokenizer: str = "jieba",
    em_normalization: str = "whitespace",
) -> dict:
    """Corpus metrics and per-example scores.

    Returns {"language": "en"|"zh", "corpus": {metric: value}, "per_example": [{metric: value}]}.
    BLEU and chrF at corpus level are sacrebleu corpus scores; EM, F1 and ROUGE are means of the
    per-example scores.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    lang = detect_language(references) if language == "auto" else language
    metrics = [m for m in metrics if m in TEXT_METRICS]
    per = sentence_scores(predictions, references, metrics=metrics, language=lang,
                          zh_tokenizer=zh_tokenizer, em_normalization=em_normalization)
    corpus: dict[str, float | None] = {}
    n = len(per)
    if n == 0:
        return {"language": lang, "corpus": {m: None for m in metrics}, "per_example": []}
    for m in metrics:
        if m == "bleu":
            corpus[m] = sacrebleu.corpus_bleu(list(predictions), [list(references)],
                                              tokenize="zh" if lang == "zh" else "13a").score
        elif m == "chrf":
            corpus[m] = sacrebleu.corpus_chrf(list(predictions), [list(references)]).score
        else:
            corpus[m] = sum(s[m] for s in per) / n
    return {"language": lang, "corpus": corpus, "per_example": per}
