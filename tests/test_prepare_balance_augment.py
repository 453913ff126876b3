"""Balancing, class weights and train-only augmentation (with a fake back-translation model)."""

import random
from collections import Counter

import pytest

from tunesmith.config.prepare_schema import AugmentConfig
from tunesmith.data.augment import augment_examples, random_deletion, random_swap, synonym_replace
from tunesmith.data.balance import class_weights, resample


def test_oversample_to_target_ratio():
    labels = ["a"] * 90 + ["b"] * 10
    idx = resample(labels, "oversample", 1.0, seed=0)
    assert Counter(labels[i] for i in idx) == {"a": 90, "b": 90}
    assert idx[:100] == list(range(100))
    idx = resample(labels, "oversample", 0.5, seed=0)
    assert Counter(labels[i] for i in idx) == {"a": 90, "b": 45}


def test_undersample_to_target_ratio():
    labels = ["a"] * 90 + ["b"] * 10 + ["c"] * 30
    idx = resample(labels, "undersample", 0.5, seed=0)
    assert Counter(labels[i] for i in idx) == {"a": 20, "b": 10, "c": 20}
    assert len(set(idx)) == len(idx)


def test_class_weights_balanced_formula():
    assert class_weights(["a", "a", "a", "b"]) == {"a": pytest.approx(4 / 6), "b": pytest.approx(2.0)}
    assert class_weights([["x", "y"], ["x"]]) == {"x": pytest.approx(0.75), "y": pytest.approx(1.5)}


def test_word_ops():
    rng = random.Random(0)
    text = " ".join(f"w{i}" for i in range(100))
    deleted = random_deletion(text, 0.05, rng).split()
    assert 85 <= len(deleted) < 100 and set(deleted) <= set(text.split())
    swapped = random_swap("a b c d e", 1, rng)
    assert sorted(swapped.split()) == list("abcde") and swapped != "a b c d e"
    assert synonym_replace("Good hotel.", 1.0, {"good": ["fine"], "hotel": ["inn"]}, rng) == "Fine inn."
    assert synonym_replace("房间很干净", 1.0, {"干净": ["整洁"]}, rng) == "房间很整洁"


def _examples():
    return [{"messages": [{"role": "user", "content": f"please explain good idea number {i} in detail"},
                          {"role": "assistant", "content": "an answer that must not change"}]} for i in range(20)]


def test_augment_tags_rows_and_keeps_answers():
    cfg = AugmentConfig.model_validate({"ops": ["deletion", {"op": "swap", "n": 2}, {"op": "synonym", "p": 1.0}],
                                        "fraction": 0.5})
    new = augment_examples(_examples(), cfg.ops, fraction=cfg.fraction, seed=1)
    assert Counter(ex["_augmented"] for ex in new).keys() <= {"deletion", "swap", "synonym"}
    assert Counter(ex["_augmented"] for ex in new)["synonym"] == 10
    assert all(ex["messages"][1]["content"] == "an answer that must not change" for ex in new)


def test_back_translation_uses_the_given_callable():
    calls = []

    def translate(texts, src, tgt):
        calls.append((src, tgt, len(texts)))
        return [t.replace("please", "kindly") if tgt == "en" else t for t in texts]

    cfg = AugmentConfig.model_validate({"ops": [{"op": "back_translation", "source": "en", "pivot": "de"}], "fraction": 0.25})
    new = augment_examples(_examples(), cfg.ops, fraction=cfg.fraction, translate=translate)
    assert calls == [("en", "de", 5), ("de", "en", 5)]
    assert len(new) == 5 and all(ex["messages"][0]["content"].startswith("kindly") for ex in new)
    with pytest.raises(ValueError, match="translate"):
        augment_examples(_examples(), cfg.ops, fraction=0.25)
