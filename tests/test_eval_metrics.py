"""Text metrics against direct sacrebleu / rouge-score calls on fixed English and Chinese strings,
and the eval config section."""

from __future__ import annotations

import jieba
import pytest
import sacrebleu
from pydantic import ValidationError
from rouge_score import rouge_scorer

from tunesmith.config.eval_schema import EvalConfig
from tunesmith.eval.metrics import (
    WhitespaceTokenizer,
    compute_text_metrics,
    detect_language,
    exact_match,
    higher_is_better,
    segment_zh,
    token_f1,
)

EN_PRED = ["The cat sat on the mat.", "Paris is the capital of France", "completely unrelated words"]
EN_REF = ["The cat is sitting on the mat.", "Paris is the capital of France.", "The answer is 42."]
ZH_PRED = ["这家酒店很好，服务周到。", "患者咳嗽发热，建议休息。", "今天天气不错"]
ZH_REF = ["这家酒店非常好，服务很周到。", "患者咳嗽发热，建议就医。", "房间干净，位置方便。"]


def test_english_corpus_metrics_match_libraries():
    out = compute_text_metrics(EN_PRED, EN_REF)
    assert out["language"] == "en"
    c = out["corpus"]
    assert c["bleu"] == pytest.approx(sacrebleu.corpus_bleu(EN_PRED, [EN_REF], tokenize="13a").score)
    assert c["chrf"] == pytest.approx(sacrebleu.corpus_chrf(EN_PRED, [EN_REF]).score)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    for t in ("rouge1", "rouge2", "rougeL"):
        want = sum(scorer.score(r, p)[t].fmeasure for p, r in zip(EN_PRED, EN_REF)) / 3 * 100
        assert c[t] == pytest.approx(want)
    # EM: only the second pair differs solely by the final period -> not equal under "whitespace"
    assert c["exact_match"] == 0.0
    per = out["per_example"]
    assert per[0]["bleu"] == pytest.approx(sacrebleu.sentence_bleu(EN_PRED[0], [EN_REF[0]]).score)
    assert per[2]["chrf"] == pytest.approx(sacrebleu.sentence_chrf(EN_PRED[2], [EN_REF[2]]).score)


def test_chinese_metrics_use_zh_tokenizers_and_keep_cjk():
    out = compute_text_metrics(ZH_PRED, ZH_REF, zh_tokenizer="jieba")
    assert out["language"] == "zh"
    c = out["corpus"]
    assert c["bleu"] == pytest.approx(sacrebleu.corpus_bleu(ZH_PRED, [ZH_REF], tokenize="zh").score)
    assert c["bleu"] != pytest.approx(sacrebleu.corpus_bleu(ZH_PRED, [ZH_REF], tokenize="13a").score)
    assert c["chrf"] == pytest.approx(sacrebleu.corpus_chrf(ZH_PRED, [ZH_REF]).score)
    # rouge-score's default tokenizer drops CJK: every Chinese pair would score 0.
    default = rouge_scorer.RougeScorer(["rouge1"])
    assert default.score(ZH_REF[0], ZH_PRED[0])["rouge1"].fmeasure == 0.0
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=WhitespaceTokenizer())
    seg = lambda t: " ".join(w for w in jieba.lcut(t) if w.strip())  # noqa: E731
    for t in ("rouge1", "rouge2", "rougeL"):
        want = sum(scorer.score(seg(r), seg(p))[t].fmeasure for p, r in zip(ZH_PRED, ZH_REF)) / 3 * 100
        assert c[t] == pytest.approx(want)
    assert c["rouge1"] > 20


def test_chinese_rouge_by_character():
    out = compute_text_metrics(ZH_PRED[:1], ZH_REF[:1], zh_tokenizer="char", metrics=["rouge1"])
    scorer = rouge_scorer.RougeScorer(["rouge1"], tokenizer=WhitespaceTokenizer())
    want = scorer.score(" ".join(ZH_REF[0]), " ".join(ZH_PRED[0]))["rouge1"].fmeasure * 100
    assert out["corpus"]["rouge1"] == pytest.approx(want)
    assert segment_zh("GPT4模型", "char") == "GPT4 模 型"


def test_token_f1_squad_english_and_per_character_chinese():
    assert token_f1("The Cat sat.", "cat sat") == 100.0  # articles, case and punctuation ignored
    # pred {cat, sat, down} vs ref {cat, sat, on, mat}: P=2/3, R=2/4
    assert token_f1("cat sat down", "the cat sat on a mat") == pytest.approx(100 * 2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    # chars: pred 酒店很好 (4) vs ref 酒店非常好 (5); common 酒 店 好 = 3
    assert token_f1("酒店很好", "酒店非常好", "zh") == pytest.approx(100 * 2 * 0.75 * 0.6 / 1.35)
    assert token_f1("", "") == 100.0 and token_f1("a b", "") == 0.0


def test_exact_match_normalisation_modes():
    assert exact_match("  Paris \n is  nice ", "Paris is nice") == 100.0
    assert exact_match("Paris", "paris") == 0.0
    assert exact_match("Paris", "paris", "lower") == 100.0
    assert exact_match("The Paris!", "paris", "squad") == 100.0
    assert exact_match(" Paris", "Paris", "none") == 0.0


def test_language_detection_and_directions():
    assert detect_language(["hello world"]) == "en"
    assert detect_language(["你好，世界", "ok"]) == "zh"
    assert compute_text_metrics(["x"], ["你好"], language="en")["language"] == "en"
    assert not higher_is_better("perplexity") and not higher_is_better("eval_gen_perplexity")
    assert higher_is_better("fine-tuned.bleu") and not higher_is_better("base.efficiency.latency_p50_s")
    assert not higher_is_better("training.final_eval_loss")


def test_eval_config_defaults_and_strictness():
    cfg = EvalConfig()
    assert cfg.language == "auto" and "bleu" in cfg.metrics and cfg.during_training.every_n_steps is None
    with pytest.raises(ValidationError, match="max_new_token"):
        EvalConfig(max_new_token=5)
    with pytest.raises(ValidationError):
        EvalConfig(language="fr")
    with pytest.raises(ValidationError):
        EvalConfig(metrics=["bleu", "meteor"])
    with pytest.raises(ValidationError):
        EvalConfig(probes={"enable": True})
    with pytest.raises(ValidationError, match="increasing"):
        EvalConfig(length_buckets=[200, 50])
    for name, field in EvalConfig.model_fields.items():
        assert field.description, name
