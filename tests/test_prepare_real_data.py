"""Every real file in ../shared/data prepares without error (skipped when the folder is absent)."""

import json

import pytest

from conftest import shared_data
from tunesmith.config.prepare_schema import PrepareConfig
from tunesmith.data.prepare import run_prepare

pytestmark = pytest.mark.integration


def _check(res, out):
    assert res.splits["train"] > 0 and res.splits["validation"] > 0 and res.splits["test"] > 0
    assert res.counts["read"] == sum(res.splits.values()) + sum(res.removed.values())
    assert json.loads((out / "report.json").read_text())["fingerprint"] == res.fingerprint


def test_chnsenticorp_csv_with_doubled_quotes(tmp_path):
    src = shared_data("chnsenticorp", "ChnSentiCorp_htl_all.csv")
    cfg = PrepareConfig.model_validate({"clean": ["control", "whitespace", "nfkc", "width"], "split": {"method": "stratified"}})
    res = run_prepare({"train": [src]}, "classification", {"text": "review"}, cfg, tmp_path)
    _check(res, tmp_path)
    assert set(res.report["label_distribution"]["test"]) == {"0", "1"}
    assert (tmp_path / "class_weights.json").exists()


def test_sst2_three_given_splits_crlf(tmp_path):
    d = shared_data("sst2")
    files = {"train": [d / "train.tsv"], "validation": [d / "dev.tsv"], "test": [d / "test-labeled.tsv"]}
    res = run_prepare(files, "classification", {"text": "sentence"}, PrepareConfig(), tmp_path)
    _check(res, tmp_path)
    assert res.report["quarantine"]["total"] == 0
    assert res.removed.get("cross_split_exact_duplicate", 0) + res.removed.get("cross_split_near_duplicate", 0) > 0


def test_medical_zh_jsonl_named_json(tmp_path):
    res = run_prepare({"train": [shared_data("medical_zh", "huatuo_llama_data.json")]}, "alpaca", None, PrepareConfig(), tmp_path)
    _check(res, tmp_path)


def test_preference_sharegpt(tmp_path):
    src = shared_data("preference", "medicalgpt_dpo_zh_500.jsonl")
    res = run_prepare({"train": [src]}, "preference", None, PrepareConfig(), tmp_path)
    _check(res, tmp_path)


def test_conll2003(tmp_path):
    d = shared_data("ner_conll2003")
    files = {"train": [d / "train.txt"], "validation": [d / "valid.txt"], "test": [d / "test.txt"]}
    res = run_prepare(files, "ner", None, PrepareConfig.model_validate({"pii": {"enabled": False}}), tmp_path)
    _check(res, tmp_path)
    first = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])
    assert len(first["tokens"]) == len(first["tags"])


@pytest.mark.slow
def test_alpaca_52k_full_run_and_cache(tmp_path, tiny_tokenizer):
    src = shared_data("alpaca_en", "alpaca_data.json")
    cfg = PrepareConfig.model_validate({"clean": ["control", "whitespace", "nfkc", {"step": "length", "max_tokens": 4096}]})
    res = run_prepare({"train": [src]}, "alpaca", None, cfg, tmp_path, tokenizer=tiny_tokenizer)
    assert res.counts["read"] == 52002 == sum(res.splits.values()) + sum(res.removed.values())
    assert run_prepare({"train": [src]}, "alpaca", None, cfg, tmp_path, tokenizer=tiny_tokenizer).from_cache
