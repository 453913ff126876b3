"""Classification library pieces: label maps, class weights and weighted loss, stratified splits,
LLRD groups, and metrics checked against hand-computed values on a fixed prediction set."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from tunesmith.data.balance import class_weights
from tunesmith.data.labels import LabelMap
from tunesmith.eval.classify_metrics import classification_metrics, confusion, error_rows, ner_metrics
from tunesmith.train.classify_data import split_examples, stratum, weight_vector
from tunesmith.train.weighted import llrd_param_groups, weighted_loss


def test_label_map_round_trips_single_multi_and_regression():
    lm = LabelMap.from_examples(["pos", "neg", "pos", "neutral"])
    assert lm.labels == ["neg", "neutral", "pos"]
    assert [lm.decode(lm.encode(y)) for y in ["pos", "neg", "neutral"]] == ["pos", "neg", "neutral"]
    assert lm.model_kwargs()["id2label"] == {0: "neg", 1: "neutral", 2: "pos"}
    assert LabelMap.from_examples(["10", "2", "1"]).labels == ["1", "2", "10"]  # numeric labels sort numerically
    ml = LabelMap.from_examples([["a", "c"], ["b"]], "multi_label")
    assert ml.encode(["c", "a"]) == [1.0, 0.0, 1.0] and ml.decode([0.9, 0.1, 0.7]) == ["a", "c"]
    reg = LabelMap.from_examples([0.5, 2.0], "regression")
    assert reg.num_labels == 1 and reg.encode("2.5") == 2.5
    with pytest.raises(Exception, match="not one of"):
        lm.encode("unknown")


def test_class_weights_equal_the_formula_and_weight_the_loss():
    labels = ["a"] * 6 + ["b"] * 3 + ["c"] * 1
    w = class_weights(labels)
    n, k, counts = len(labels), 3, Counter(labels)
    assert w == pytest.approx({y: n / (k * counts[y]) for y in counts})
    vec = torch.tensor(weight_vector(LabelMap(["a", "b", "c"]), w))
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.0, -1.0, 0.0]])
    target = torch.tensor([0, 2, 1])
    per = -torch.log_softmax(logits, -1)[torch.arange(3), target]
    expected = (vec[target] * per).sum() / vec[target].sum()
    assert weighted_loss(logits, target, vec) == pytest.approx(expected.item(), rel=1e-6)
    # -100 positions (NER sub-tokens) are ignored
    t2 = torch.tensor([0, -100, 1])
    exp2 = (vec[0] * per[0] + vec[1] * (-torch.log_softmax(logits[2], -1)[1])) / (vec[0] + vec[1])
    assert weighted_loss(logits, t2, vec) == pytest.approx(exp2.item(), rel=1e-6)


def test_stratified_split_keeps_label_ratios_within_one_example():
    labels = ["a"] * 53 + ["b"] * 31 + ["c"] * 16
    pairs = [(None, {"label": y}) for y in labels]
    splits = split_examples(pairs, stratum, "8:1:1", seed=3)
    assert sum(len(v) for v in splits.values()) == 100
    for name, ratio in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        got = Counter(ex["label"] for _, ex in splits[name])
        for y, total in Counter(labels).items():
            assert abs(got[y] - ratio * total) <= 1, (name, y, got[y])
    again = split_examples(pairs, stratum, "8:1:1", seed=3)
    assert [id(p) for p in again["test"]] == [id(p) for p in splits["test"]]  # seeded


def test_metrics_match_hand_computed_values_on_a_fixed_prediction_set():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per class P: a 2/2, b 1/2, c 1/2; R: a 2/3, b 1/2, c 1/1
    p = [1.0, 0.5, 0.5]
    r = [2 / 3, 0.5, 1.0]
    f = [2 * pi * ri / (pi + ri) for pi, ri in zip(p, r)]
    assert m["precision_macro"] == pytest.approx(sum(p) / 3)
    assert m["recall_macro"] == pytest.approx(sum(r) / 3)
    assert m["f1_macro"] == pytest.approx(sum(f) / 3)
    assert m["f1_micro"] == pytest.approx(4 / 6)
    assert m["f1_weighted"] == pytest.approx((3 * f[0] + 2 * f[1] + f[2]) / 6)
    assert confusion(y_true, y_pred, ["a", "b", "c"])["matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    auc = classification_metrics([0, 0, 1, 1], [0, 0, 1, 1], ["n", "p"], probs)["auc_roc"]
    assert auc == 1.0
    probs = np.array([[0.4, 0.6], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])
    # positive scores .7 and .2 vs negative .6 and .4: 2 of 4 pairs ordered right
    assert classification_metrics([0, 0, 1, 1], [1, 0, 1, 0], ["n", "p"], probs)["auc_roc"] == 0.5


def test_error_rows_hold_text_gold_predicted_confidence():
    rows = error_rows([{"text": "x"}, {"text": "y"}], ["a", "b"], ["a", "a"], [0.9, 0.8])
    assert rows == [{"text": "y", "gold": "b", "predicted": "a", "confidence": 0.8}]


def test_entity_level_ner_metrics():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"]]
    m = ner_metrics(gold, pred)
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)
    assert m["per_type"]["PER"]["f1-score"] == 1.0
    bioes = ner_metrics([["S-PER", "B-LOC", "E-LOC"]], [["S-PER", "B-LOC", "I-LOC"]], "BIOES")
    assert (bioes["precision"], bioes["recall"]) == (1.0, 0.5)  # strict: B-LOC I-LOC is not an entity


def test_llrd_groups_decay_per_layer(tiny_bert_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    groups = llrd_param_groups(model, 1.0, 0.5, weight_decay=0.01)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["classifier.weight"])] == 1.0
    assert lr_of[id(named["bert.encoder.layer.1.attention.self.query.weight"])] == 0.5
    assert lr_of[id(named["bert.encoder.layer.0.attention.self.query.weight"])] == 0.25
    assert lr_of[id(named["bert.embeddings.word_embeddings.weight"])] == 0.125
    assert len(lr_of) == len(named)
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(named["classifier.bias"]) in no_decay and id(named["classifier.weight"]) not in no_decay
    assert math.isclose(sum(p.numel() for g in groups for p in g["params"]), sum(p.numel() for p in model.parameters()))
