"""NER: tag schemes, exact sub-word alignment, malformed CoNLL errors naming the line, a tiny run."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from tunesmith.config import validate_config
from tunesmith.data.ner_align import IGNORE, align_labels, check_tags, word_predictions
from tunesmith.errors import DataError, TunesmithError
from tunesmith.tasks import run_task

CONLL = """-DOCSTART- O

John B-PER
lives O
in O
London B-LOC

Acme B-ORG
Corp I-ORG
hired O
Alice B-PER

"""


def test_first_subtoken_gets_the_tag_and_the_rest_are_ignored(tiny_bert_dir):
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    words = ["John", "visited", "London"]  # "visited" is not in the vocab: split into characters
    enc = tok(words, is_split_into_words=True)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    assert pieces[:3] == ["[CLS]", "john", "v"] and pieces[-2:] == ["london", "[SEP]"]
    n_visited = len("visited")
    labels = align_labels(enc.word_ids(), [1, 0, 2])
    assert labels == [IGNORE, 1, 0] + [IGNORE] * (n_visited - 1) + [2, IGNORE]
    every = align_labels(enc.word_ids(), [1, 0, 2], label_all_subtokens=True)
    assert every == [IGNORE, 1] + [0] * n_visited + [2, IGNORE]
    assert word_predictions(enc.word_ids(), [9, 1, 0, 5, 5, 5, 5, 5, 5, 2, 9]) == [1, 0, 2]


def test_chinese_characters_align_one_to_one(tiny_bert_dir):
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    chars = list("酒店很好")
    enc = tok(chars, is_split_into_words=True)
    assert align_labels(enc.word_ids(), [1, 2, 0, 0]) == [IGNORE, 1, 2, 0, 0, IGNORE]


def test_tag_scheme_detection(tmp_path):
    rec = type("R", (), {"file": "x.txt", "line": 3, "index": 0})()
    assert check_tags([(rec, {"tags": ["B-PER", "I-PER", "O"]})]) == "BIO"
    assert check_tags([(rec, {"tags": ["S-PER", "B-LOC", "E-LOC"]})]) == "BIOES"
    with pytest.raises(DataError, match=r"x.txt:4: tag 'E-LOC' uses prefix 'E', unknown in tag scheme BIO"):
        check_tags([(rec, {"tags": ["B-LOC", "E-LOC"]})], "BIO")


def _ner_cfg(model_dir, train, out, **extra):
    return validate_config({
        "task": "ner", "model": {"name_or_path": str(model_dir)},
        "data": {"train_file": str(train), "format": "ner", "max_bad_fraction": 0.0, **extra},
        "method": {"name": "full"},
        "train": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-2, "logging_steps": 1},
        "output": {"dir": str(out), "name": "ner"},
    })


@pytest.mark.parametrize("bad_line, message", [
    ("lives\n", r"train.txt:4.*expected 'token TAG'.*found one column 'lives'"),
    ("lives X-PER\n", r"train.txt:4: tag 'X-PER' uses prefix 'X'"),
    ("lives PER\n", r"train.txt:4: tag 'PER' has no scheme prefix"),
])
def test_malformed_conll_names_the_line(tmp_path, tiny_bert_dir, bad_line, message):
    text = CONLL.replace("lives O\n", bad_line)
    (tmp_path / "train.txt").write_text(text)
    with pytest.raises(TunesmithError, match=message):
        run_task(_ner_cfg(tiny_bert_dir, tmp_path / "train.txt", tmp_path / "runs"))


def test_tiny_ner_run_from_jsonl_saves_tags_and_predicts(tmp_path, tiny_bert_dir):
    from tunesmith.tasks.predict import Predictor

    rows = [{"tokens": ["John", "lives", "in", "London"], "tags": ["B-PER", "O", "O", "B-LOC"]},
            {"tokens": ["Acme", "Corp", "is", "in", "Paris"], "tags": ["B-ORG", "I-ORG", "O", "O", "B-LOC"]}] * 10
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    result = run_task(_ner_cfg(tiny_bert_dir, path, tmp_path / "runs"))
    assert {"eval_f1", "test_f1", "test_precision"} <= set(result.metrics)
    saved = json.loads((result.weights_dir / "config.json").read_text())
    assert saved["id2label"]["0"] == "O" and set(saved["id2label"].values()) == {"O", "B-PER", "B-LOC", "B-ORG", "I-ORG"}
    out = Predictor(result.run_dir).predict_records([{"tokens": ["John", "lives"]}, {"text": "Acme Corp"}])
    assert [len(o["tags"]) for o in out] == [2, 2]
    assert all(t in saved["label2id"] for o in out for t in o["tags"])
