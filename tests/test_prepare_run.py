"""run_prepare end to end on hand-made files with nasty cases; cache; report; config schema."""

import json
from collections import Counter

import pytest
from pydantic import ValidationError

from tunesmith.config.prepare_schema import PrepareConfig
from tunesmith.data.prepare import run_prepare
from tunesmith.data.report import REPORT_KEYS
from tunesmith.errors import DataError


def _jsonl(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _alpaca_file(tmp_path, n=40):
    lines = [json.dumps({"instruction": f"Describe topic {i} with care", "input": "",
                         "output": f"Topic {i} is about item {i * 13} and its properties in daily use."}) for i in range(n)]
    lines[3] = lines[3][: len(lines[3]) // 2]  # a JSON line cut in half
    lines.append(json.dumps({"instruction": "Describe topic 5 with care", "input": "",
                             "output": "Topic 5 is about item 65, and its properties in daily use!"}))  # punctuation twin of row 5
    lines.append(json.dumps({"instruction": "", "input": "", "output": "no instruction"}))
    lines.append(json.dumps({"instruction": "Contact", "input": "", "output": "Write to a.b@example.org or 13812345678."}))
    p = tmp_path / "data.jsonl"
    p.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))  # BOM + CRLF
    return p


def test_alpaca_counts_quarantine_dedup_pii_and_cache(tmp_path, tiny_tokenizer):
    src = _alpaca_file(tmp_path)
    cfg = PrepareConfig.model_validate({"split": {"ratios": "8:1:1"}})
    out = tmp_path / "out"
    res = run_prepare({"train": [src]}, "alpaca", None, cfg, out, tokenizer=tiny_tokenizer, max_bad_fraction=0.2)
    assert not res.from_cache
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "quarantine.jsonl", "report.json", "report.html", "fingerprint"):
        assert (out / name).exists(), name
    q = _jsonl(out / "quarantine.jsonl")
    assert len(q) == 2 and {r["line"] for r in q} == {4, 42}
    assert all(r["reason"] and r["fix"] for r in q)
    assert res.removed["near_duplicate"] == 1
    assert sum(v for k, v in res.removed.items() if k.startswith("invalid: ")) == 2
    # every row is accounted for: read = written + removed by reason
    assert res.counts["read"] == 43 == sum(res.splits.values()) + sum(res.removed.values())
    assert res.splits == {"train": 32, "validation": 4, "test": 4}
    report = json.loads((out / "report.json").read_text())
    assert set(REPORT_KEYS) <= set(report)
    assert report["pii"]["counts"] == {"email": 1, "phone": 1}
    assert report["lengths"]["tokens"]["train"]["count"] == 32
    assert "data:image/png;base64," in (out / "report.html").read_text()
    removed = _jsonl(out / "removed.jsonl")
    assert [r["reason"] for r in removed] == ["near_duplicate"] and removed[0]["line"] == 41
    all_text = "".join((out / f"{s}.jsonl").read_text() for s in ("train", "validation", "test"))
    assert "[EMAIL]" in all_text and "a.b@example.org" not in all_text
    again = run_prepare({"train": [src]}, "alpaca", None, cfg, out, tokenizer=tiny_tokenizer, max_bad_fraction=0.2)
    assert again.from_cache and again.splits == res.splits and again.fingerprint == res.fingerprint
    changed = PrepareConfig.model_validate({"split": {"ratios": "8:2"}})
    assert not run_prepare({"train": [src]}, "alpaca", None, changed, out, tokenizer=tiny_tokenizer, max_bad_fraction=0.2).from_cache


def test_fails_above_max_bad_fraction_after_writing_quarantine(tmp_path):
    src = _alpaca_file(tmp_path)
    with pytest.raises(DataError, match="max_bad_fraction"):
        run_prepare({"train": [src]}, "alpaca", None, PrepareConfig(), tmp_path / "o", max_bad_fraction=0.01)
    assert len(_jsonl(tmp_path / "o" / "quarantine.jsonl")) == 2
    assert not (tmp_path / "o" / "fingerprint").exists()


def test_cross_split_near_duplicate_removed_from_test(tmp_path):
    train = tmp_path / "train.jsonl"
    test = tmp_path / "test.jsonl"
    train.write_text("\n".join(json.dumps({"text": f"the hotel room number {i} was clean and quiet", "label": "pos"})
                               for i in range(10)), encoding="utf-8")
    test.write_text(json.dumps({"text": "The hotel room number 3 was clean, and quiet!", "label": "pos"}) + "\n"
                    + json.dumps({"text": "terrible food and a rude reception desk", "label": "neg"}), encoding="utf-8")
    res = run_prepare({"train": [train], "test": [test]}, "classification", None,
                      PrepareConfig.model_validate({"split": {"ratios": "9:1:0"}}), tmp_path / "o")
    assert res.removed == {"cross_split_near_duplicate": 1}
    assert [r["text"] for r in _jsonl(tmp_path / "o" / "test.jsonl")] == ["terrible food and a rude reception desk"]
    assert res.splits == {"train": 9, "validation": 1, "test": 1}


def test_csv_doubled_quotes_stratified_group_balance_and_weights(tmp_path):
    rows = ["text,label,user,ann1,ann2"]
    for i in range(60):
        lab = "pos" if i % 4 else "neg"
        rows.append(f'"review {i} said ""great"" value {i * 31}",{lab},u{i % 12},{lab},{lab if i % 10 else "neu"}')
    src = tmp_path / "reviews.csv"
    src.write_text("\r\n".join(rows) + "\r\n", encoding="utf-8")
    cfg = PrepareConfig.model_validate({
        "split": {"method": "group", "by": "user", "ratios": "8:1:1"},
        "balance": {"method": "oversample"},
        "agreement": {"columns": ["ann1", "ann2"], "policy": "first"},
        "dedup": {"near": False},
    })
    res = run_prepare({"train": [src]}, "classification", None, cfg, tmp_path / "o")
    out = {s: _jsonl(tmp_path / "o" / f"{s}.jsonl") for s in ("train", "validation", "test")}
    assert out["train"][0]["text"].startswith('review ') and '"great"' in out["train"][0]["text"]
    report = res.report
    assert report["agreement"]["statistic"] == "cohen" and report["agreement"]["disagreements"] == 6
    assert res.removed == {}
    train_labels = Counter(r["label"] for r in out["train"])
    assert train_labels["pos"] == train_labels["neg"]
    assert any(r.get("_oversampled") for r in out["train"])
    weights = json.loads((tmp_path / "o" / "class_weights.json").read_text())
    assert weights == {"neg": 1.0, "pos": 1.0}
    # group-aware: rebuild user per text from the source
    user_of = {f'review {i} said "great" value {i * 31}': f"u{i % 12}" for i in range(60)}
    splits_of_user: dict = {}
    for s, exs in out.items():
        for r in exs:
            splits_of_user.setdefault(user_of[r["text"]], set()).add(s)
    assert all(len(v) == 1 for v in splits_of_user.values())


def test_stratified_split_in_run_and_augmented_rows_only_in_train(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text("\n".join(json.dumps({"text": f"sample text {i} has some good words about room {i}",
                                         "label": "a" if i < 70 else "b"}) for i in range(100)), encoding="utf-8")
    cfg = PrepareConfig.model_validate({"split": {"method": "stratified"}, "augment": {"ops": ["swap"], "fraction": 0.5}})
    res = run_prepare({"train": [src]}, "classification", None, cfg, tmp_path / "o")
    dist = res.report["label_distribution"]
    assert dist["validation"] == {"a": 7, "b": 3} and dist["test"] == {"a": 7, "b": 3}
    test_rows = _jsonl(tmp_path / "o" / "test.jsonl")
    assert not any("_augmented" in r for r in test_rows)
    assert res.report["augmentation"]["added"]["swap"] == res.splits["train"] - 80


def test_config_schema_strict_and_shorthand():
    cfg = PrepareConfig.model_validate({"clean": ["html", {"step": "length", "max_tokens": 10}], "augment": {"ops": ["deletion"]}})
    assert [s.step for s in cfg.clean] == ["html", "length"]
    with pytest.raises(ValidationError, match="max_lenght"):
        PrepareConfig.model_validate({"clean": [{"step": "length", "max_lenght": 3}]})
    with pytest.raises(ValidationError):
        PrepareConfig.model_validate({"split": {"method": "group"}})
    with pytest.raises(ValidationError):
        PrepareConfig.model_validate({"clean": [{"step": "regex", "pattern": "("}]})
    for name, f in PrepareConfig.model_fields.items():
        assert f.description, name
