"""Readers: every format, the nasty cases (BOM, CRLF, quotes, cut lines, bad bytes) and real files."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import shared_data

from tunesmith.data import Record, detect_format, fingerprint_files, read_all, read_conll, read_records
from tunesmith.errors import DataError


def write(tmp_path, name, content) -> str:
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(p)


def test_jsonl_cut_line_becomes_error_record_and_reading_goes_on(tmp_path):
    path = write(tmp_path, "d.jsonl",
                 '{"a": 1}\n\n{"a": "half a li\n{"a": 3}\n[1, 2]\n')
    recs = list(read_records(path))
    assert [r.line for r in recs] == [1, 3, 4, 5]
    assert [r.index for r in recs] == [0, 1, 2, 3]
    assert recs[0].data == {"a": 1} and recs[2].data == {"a": 3}
    cut = recs[1]
    assert cut.data is None and cut.where() == f"{path}:3"
    assert "invalid JSON" in cut.error and "cut off" in cut.error and "fix:" in cut.error
    assert cut.raw == '{"a": "half a li'
    assert recs[3].data is None and "expected a JSON object" in recs[3].error


def test_undecodable_bytes_reported_per_line(tmp_path):
    path = write(tmp_path, "d.jsonl", b'{"a": "ok"}\n{"a": "caf\xe9"}\n{"a": "fine"}\n')
    recs = list(read_records(path))
    assert recs[0].data == {"a": "ok"} and recs[2].data == {"a": "fine"}
    assert recs[1].data is None and recs[1].line == 2
    assert "not valid UTF-8" in recs[1].error and "0xe9" in recs[1].error


def test_bom_and_crlf_in_jsonl(tmp_path):
    path = write(tmp_path, "d.jsonl", b'\xef\xbb\xbf{"a": 1}\r\n{"a": 2}\r\n')
    assert [r.data for r in read_records(path)] == [{"a": 1}, {"a": 2}]


def test_json_holding_jsonl_is_read_as_jsonl(tmp_path):
    path = write(tmp_path, "data.json", '{"q": "a"}\n{"q": "b"}\n')
    recs = list(read_records(path))
    assert [(r.data, r.line) for r in recs] == [({"q": "a"}, 1), ({"q": "b"}, 2)]


def test_json_list_gives_line_numbers(tmp_path):
    text = json.dumps([{"q": "a"}, {"q": "b"}], indent=2)
    path = write(tmp_path, "data.json", "\ufeff" + text)
    recs = list(read_records(path))
    assert [r.data for r in recs] == [{"q": "a"}, {"q": "b"}]
    assert [r.line for r in recs] == [2, 5]
    assert recs[1].where() == f"{path}:5"


def test_json_list_broken_element_reports_and_stops(tmp_path):
    path = write(tmp_path, "data.json", '[{"q": "a"},\n {"q": }\n]')
    recs = list(read_records(path))
    assert recs[0].data == {"q": "a"}
    assert recs[1].data is None and recs[1].line == 2 and "rest of this JSON list" in recs[1].error


def test_single_pretty_json_object(tmp_path):
    path = write(tmp_path, "one.json", '{\n  "q": "a"\n}\n')
    assert [r.data for r in read_records(path)] == [{"q": "a"}]


def test_csv_quotes_crlf_multiline_and_row_lines(tmp_path):
    text = ('\ufefflabel,review\r\n1,"he said ""hi"", then left"\r\n\r\n'
            '0,"two\nlines"\r\n1,plain\r\n1,too,many\r\n')
    recs = list(read_records(write(tmp_path, "r.csv", text)))
    assert recs[0].data == {"label": "1", "review": 'he said "hi", then left'}
    assert recs[1].data == {"label": "0", "review": "two\nlines"}
    assert recs[2].data == {"label": "1", "review": "plain"}
    assert [r.line for r in recs] == [2, 4, 6, 7]
    assert recs[3].data is None and "expected 2 comma-separated fields" in recs[3].error


def test_tsv_keeps_quotes_and_trailing_space_and_handles_crlf(tmp_path):
    path = write(tmp_path, "s.tsv", 'sentence\tlabel\r\nit \'s "great" \t1\r\nbad\t0\r\nno tab here\r\n')
    recs = list(read_records(path))
    assert recs[0].data == {"sentence": 'it \'s "great" ', "label": "1"}
    assert recs[1].data == {"sentence": "bad", "label": "0"}
    assert recs[2].data is None and recs[2].line == 4 and "found 1" in recs[2].error


def test_duplicate_header_is_an_error(tmp_path):
    with pytest.raises(DataError, match="duplicate column name"):
        list(read_records(write(tmp_path, "d.csv", "a,a\n1,2\n")))


def test_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"text": ["x", "y"], "label": [0, 1]}).to_parquet(path)
    recs = list(read_records(path))
    assert [r.data for r in recs] == [{"text": "x", "label": 0}, {"text": "y", "label": 1}]
    assert recs[1].line is None and recs[1].where() == f"{path}#record 1"


def test_conll_docstart_columns_and_one_column_error(tmp_path):
    text = ("-DOCSTART- -X- O O\n\nJohn NNP B-PER\nlives VBZ O\n\n\nParis B-LOC\nBADLINE\n"
            "is O\n\nBerlin\tB-LOC\n")
    path = write(tmp_path, "ner.txt", text)
    recs = list(read_conll(path))
    assert recs[0].data == {"tokens": ["John", "lives"], "tags": ["B-PER", "O"]} and recs[0].line == 3
    assert recs[1].data is None and recs[1].line == 8
    assert "line 8" in recs[1].where() or recs[1].where().endswith(":8")
    assert "one column 'BADLINE'" in recs[1].error and "starting at line 7" in recs[1].error
    assert recs[2].data == {"tokens": ["Berlin"], "tags": ["B-LOC"]}
    assert [r.index for r in recs] == [0, 1, 2]


def test_format_detection(tmp_path):
    with pytest.raises(DataError, match="cannot tell the data format.*pass the format"):
        list(read_records(write(tmp_path, "x.txt", "just some prose\n")))
    conll = write(tmp_path, "ner.txt", "-DOCSTART- O\n\nJohn B-PER\nran O\n")
    assert detect_format(conll) == "conll"
    assert [r.data["tokens"] for r in read_records(conll)] == [["John", "ran"]]
    with pytest.raises(DataError, match="does not exist"):
        list(read_records(tmp_path / "missing.jsonl"))
    assert list(read_records(write(tmp_path, "x.txt", "a O\n"), fmt="conll"))[0].data["tags"] == ["O"]


def test_read_all_and_fingerprint(tmp_path):
    a = write(tmp_path, "a.jsonl", '{"x": 1}\n')
    b = write(tmp_path, "b.jsonl", '{"x": 2}\n{"x": 3}\n')
    assert [r.data["x"] for r in read_all([a, b])] == [1, 2, 3]
    fp = fingerprint_files([a, b])
    assert len(fp) == 16 and fp == fingerprint_files([a, b]) and fp != fingerprint_files([b, a])
    write(tmp_path, "b.jsonl", '{"x": 2}\n')
    assert fingerprint_files([a, b]) != fp


def test_record_where():
    assert Record({}, "f.jsonl", 17, 3).where() == "f.jsonl:17"
    assert Record({}, "f.parquet", None, 3).where() == "f.parquet#record 3"


@pytest.mark.parametrize("parts,fmt,count,first_key", [
    (("sst2", "dev.tsv"), None, 872, "sentence"),
    (("sst2", "test-labeled.tsv"), None, 1821, "sentence"),
    (("chnsenticorp", "ChnSentiCorp_htl_all.csv"), None, 7766, "review"),
    (("medical_zh", "huatuo_llama_data.json"), None, 8658, "instruction"),
    (("preference", "medicalgpt_dpo_zh_500.jsonl"), None, 500, "conversations"),
    (("ner_conll2003", "valid.txt"), "conll", 3250, "tokens"),
])
def test_real_files_read_without_error_records(parts, fmt, count, first_key):
    recs = list(read_records(shared_data(*parts), fmt=fmt))
    assert [r.where() for r in recs if r.error] == []
    assert len(recs) == count and first_key in recs[0].data
    if parts == ("sst2", "dev.tsv"):
        assert recs[0].data["sentence"].endswith(" ")  # the trailing space before the tab is kept
    if parts[0] == "chnsenticorp":
        assert '"蔡陆线"' in recs[0].data["review"]


def test_real_alpaca_json_list_first_rows():
    recs = []
    for rec in read_records(shared_data("alpaca_en", "alpaca_data.json")):
        recs.append(rec)
        if len(recs) == 50:
            break
    assert all(r.error is None for r in recs)
    assert recs[0].line == 2 and set(recs[0].data) == {"instruction", "input", "output"}
