"""Quarantine: the file lists every rejected record with its reason and fix; the bad-fraction
limit fails with a message that says what, where and how to proceed."""

from __future__ import annotations

import json

import pytest

from tunesmith.data import Quarantine, Record, convert_records, read_records
from tunesmith.errors import DataError


def make_rejects(tmp_path, n_bad: int, n_good: int = 2):
    lines = ['{"instruction": "Q", "output": "R"}'] * n_good
    lines += ['{"instruction": "问题", "output": ""}'] * (n_bad - 1) + ['{"instruction": "cut']
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    examples, rejects = convert_records(read_records(path), "alpaca")
    return path, examples, rejects


def test_quarantine_file_contents(tmp_path):
    path, examples, rejects = make_rejects(tmp_path, n_bad=2)
    q = Quarantine(rejects)
    out = q.write(tmp_path / "run")  # a folder: the file goes inside it
    assert out == tmp_path / "run" / "quarantine.jsonl"
    text = out.read_text(encoding="utf-8")
    assert "问题" in text  # ensure_ascii=False
    rows = [json.loads(line) for line in text.splitlines()]
    assert [set(r) for r in rows] == [{"file", "line", "index", "field", "reason", "fix", "record"}] * 2
    assert rows[0]["file"] == str(path) and rows[0]["line"] == 3 and rows[0]["index"] == 2
    assert rows[0]["field"] == "output" and rows[0]["record"] == {"instruction": "问题", "output": ""}
    assert rows[1]["line"] == 4 and rows[1]["field"] == "(record)"
    assert rows[1]["record"] == '{"instruction": "cut' and "cut off" in rows[1]["reason"]


def test_counts_by_reason_groups_the_same_problem():
    q = Quarantine()
    for i in range(3):
        q.add(Record({"x": i}, "f.jsonl", i + 1, i), "messages",
              f"no assistant tokens within data.max_length=8 (example has {20 + i} tokens)", "raise it")
    q.add(Record({}, "f.jsonl", 9, 3), "output", "expected a non-empty string; found str ''", "fill")
    assert q.counts_by_reason() == {
        "messages: no assistant tokens within data.max_length=8": 3,
        "output: expected a non-empty string": 1,
    }


def test_enforce_below_limit_returns_counts(tmp_path):
    _, examples, rejects = make_rejects(tmp_path, n_bad=1, n_good=19)
    counts = Quarantine(rejects).enforce(total=20, max_bad_fraction=0.05)
    assert sum(counts.values()) == 1


def test_enforce_above_limit_explains(tmp_path):
    _, examples, rejects = make_rejects(tmp_path, n_bad=7, n_good=3)
    q = Quarantine(rejects)
    qpath = q.write(tmp_path / "quarantine.jsonl")
    with pytest.raises(DataError) as info:
        q.enforce(total=10, max_bad_fraction=0.1, quarantine_path=qpath)
    msg = str(info.value)
    assert "7 of 10 records were rejected (70.0% bad, more than the limit data.max_bad_fraction=0.1" in msg
    assert "First 5 problems:" in msg
    assert msg.count("train.jsonl:") == 5
    assert f"train.jsonl:4: output: expected a non-empty string; found str '' (fill in" in msg
    assert str(qpath) in msg
    assert "raise data.max_bad_fraction (for example data.max_bad_fraction=1)" in msg


def test_enforce_with_nothing_read_and_everything_bad():
    q = Quarantine()
    q.add(Record(None, "f.jsonl", 1, 0, error="x"), "(record)", "x", "y")
    with pytest.raises(DataError, match="1 of 1 records"):
        q.enforce(total=1, max_bad_fraction=0.5)
    assert Quarantine().enforce(total=0, max_bad_fraction=0.0) == {}
