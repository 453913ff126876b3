"""Format conversion: every format and style converts to the canonical shape; every validation
error names the field, the reason and the fix."""

from __future__ import annotations

import json

import pytest
from conftest import shared_data

from tunesmith.data import (
    Record,
    RecordError,
    convert_records,
    convert_with_sources,
    to_alpaca,
    to_classification,
    to_kto,
    to_messages,
    to_ner,
    to_preference,
)
from tunesmith.errors import ConfigError

U = lambda text: {"role": "user", "content": text}  # noqa: E731
A = lambda text: {"role": "assistant", "content": text}  # noqa: E731
S = lambda text: {"role": "system", "content": text}  # noqa: E731


def err(func, *args, **kwargs) -> RecordError:
    with pytest.raises(RecordError) as info:
        func(*args, **kwargs)
    e = info.value
    assert e.field and e.reason and e.fix and "fix:" in str(e)
    return e


# --- alpaca -----------------------------------------------------------------------------------

def test_alpaca_with_input_system_and_history():
    out = to_alpaca({"instruction": "Translate.", "input": "Bonjour", "output": "Hello",
                     "system": "You translate.", "history": [["Hi", "Hello there"]]})
    assert out == {"messages": [S("You translate."), U("Hi"), A("Hello there"),
                                U("Translate.\n\nBonjour"), A("Hello")]}


def test_alpaca_empty_input_omitted_and_default_system():
    assert to_alpaca({"instruction": "Q", "input": "", "output": "R"}) == {"messages": [U("Q"), A("R")]}
    out = to_alpaca({"instruction": "Q", "output": "R"}, system="Be kind.")
    assert out["messages"][0] == S("Be kind.")


def test_alpaca_column_mapping():
    out = to_alpaca({"question": "Q", "answer": "R"}, {"instruction": "question", "output": "answer"})
    assert out == {"messages": [U("Q"), A("R")]}


def test_alpaca_errors_name_field_and_fix():
    e = err(to_alpaca, {"instruction": "Q", "output": ""})
    assert e.field == "output" and "non-empty string" in e.reason and "str ''" in str(e)
    e = err(to_alpaca, {"question": "Q", "output": "R"})
    assert e.field == "instruction" and "question" in e.reason and "data.columns" in e.fix
    e = err(to_alpaca, {"q": "Q", "output": "R"}, {"instruction": "question"})
    assert e.field == "question" and "data.columns.instruction" in e.fix
    e = err(to_alpaca, {"instruction": "Q", "output": "R", "history": [["only one"]]})
    assert e.field == "history[0]" and "[user, assistant]" in e.fix


# --- messages ---------------------------------------------------------------------------------

def test_openai_messages():
    msgs = [S("sys"), U("hi"), A("hello"), U("more"), A("sure")]
    assert to_messages({"messages": msgs}) == {"messages": msgs}


def test_sharegpt_conversations():
    data = {"conversations": [{"from": "system", "value": "sys"}, {"from": "human", "value": "hi"},
                              {"from": "gpt", "value": "hello"}]}
    assert to_messages(data) == {"messages": [S("sys"), U("hi"), A("hello")]}


def test_messages_column_mapping_and_text_parts():
    data = {"dialog": [{"speaker": "user", "text": [{"type": "text", "text": "hi"}]},
                       {"speaker": "assistant", "text": "yo"}], "system": "be brief"}
    cols = {"messages": "dialog", "role": "speaker", "content": "text"}
    assert to_messages(data, cols) == {"messages": [S("be brief"), U("hi"), A("yo")]}


@pytest.mark.parametrize("data,field,reason,fix", [
    ({"messages": []}, "messages", "non-empty list", "role+content"),
    ({"text": "x"}, "messages", "no 'messages' or 'conversations'", "data.columns"),
    ({"messages": ["hi"]}, "messages[0]", "expected an object", "role+content"),
    ({"messages": [U("hi"), A("  ")]}, "messages[1].content", "empty content", "fill in"),
    ({"messages": [U("hi"), {"role": "tool", "content": "x"}]}, "messages[1].role", "unknown role",
     "system, user or assistant"),
    ({"conversations": [{"from": "human", "value": "hi"}, {"from": "observation", "value": "x"}]},
     "conversations[1].from", "unknown role", "human, gpt"),
    ({"messages": [U("hi"), S("late"), A("x")]}, "messages[1]", "system turn may only come first",
     "move"),
    ({"messages": [U("hi"), U("again"), A("x")]}, "messages[1]", "expected an assistant turn",
     "alternate"),
    ({"messages": [A("x")]}, "messages[0]", "expected a user turn", "alternate"),
    ({"messages": [U("hi"), A("x"), U("bye")]}, "messages[2]", "ends with a user turn",
     "end with the assistant reply"),
    ({"messages": [S("only")]}, "messages", "no user/assistant turns", "add"),
    ({"messages": [{"content": "x"}]}, "messages[0]", "neither 'role' nor 'from'", "data.columns"),
])
def test_messages_validation(data, field, reason, fix):
    e = err(to_messages, data)
    assert e.field == field and reason in e.reason and fix in e.fix


# --- preference -------------------------------------------------------------------------------

def test_preference_strings():
    out = to_preference({"prompt": "2+2?", "chosen": "4", "rejected": "5", "system": "math"})
    assert out == {"prompt": [S("math"), U("2+2?")], "chosen": [A("4")], "rejected": [A("5")]}


def test_preference_message_lists_with_repeated_prompt():
    prompt = [U("hi"), A("hello"), U("2+2?")]
    out = to_preference({"prompt": prompt, "chosen": prompt + [A("4")], "rejected": prompt + [A("5")]})
    assert out == {"prompt": prompt, "chosen": [A("4")], "rejected": [A("5")]}


def test_preference_sharegpt_style_with_turn_objects():
    data = {"conversations": [{"from": "human", "value": "q"}],
            "chosen": {"from": "gpt", "value": "good"}, "rejected": {"from": "gpt", "value": "bad"}}
    assert to_preference(data) == {"prompt": [U("q")], "chosen": [A("good")], "rejected": [A("bad")]}


def test_preference_real_sharegpt_line():
    with open(shared_data("preference", "medicalgpt_dpo_zh_500.jsonl"), encoding="utf-8") as f:
        row = json.loads(f.readline())
    out = to_preference(row)
    assert out["prompt"] == [U(row["conversations"][0]["value"])]
    assert out["chosen"] == [A(row["chosen"])] and out["rejected"] == [A(row["rejected"])]


def test_preference_full_transcripts_share_prompt():
    c = [S("s"), U("hi"), A("hello"), U("2+2?"), A("4")]
    r = [S("s"), U("hi"), A("hello"), U("2+2?"), A("5"), U("really?"), A("yes")]
    out = to_preference({"chosen": c, "rejected": r})
    assert out == {"prompt": c[:4], "chosen": [A("4")], "rejected": [A("5"), U("really?"), A("yes")]}


def test_preference_hh_strings_and_plain_strings():
    out = to_preference({"chosen": "\n\nHuman: hi there\n\nAssistant: hello!",
                         "rejected": "\n\nHuman: hi there\n\nAssistant: go away"})
    assert out == {"prompt": [U("hi there")], "chosen": [A("hello!")], "rejected": [A("go away")]}
    out = to_preference({"chosen": "Q: what is 2+2? A: four", "rejected": "Q: what is 2+2? A: fish"})
    assert out == {"prompt": [U("Q: what is 2+2? A:")], "chosen": [A("four")], "rejected": [A("fish")]}


def test_preference_errors():
    e = err(to_preference, {"prompt": "p", "chosen": "same", "rejected": "same"})
    assert e.field == "rejected" and "identical" in e.reason
    e = err(to_preference, {"chosen": [U("a"), A("x")], "rejected": [U("b"), A("y")]})
    assert "before the assistant reply" in e.reason and "prompt field" in e.fix
    e = err(to_preference, {"chosen": "yes", "rejected": "no"})
    assert "share no prompt" in e.reason
    e = err(to_preference, {"prompt": "p", "chosen": "x"})
    assert e.field == "rejected" and "missing" in e.reason
    e = err(to_preference, {"prompt": [U("p"), A("q")], "chosen": "x", "rejected": "y"})
    assert e.field == "prompt[1]" and "ends with an assistant turn" in e.reason


def test_kto_rows():
    assert to_kto({"prompt": "q", "completion": "a", "label": True}) == {
        "prompt": [U("q")], "completion": [A("a")], "label": True}
    assert to_preference({"prompt": "q", "completion": "a", "label": "false"})["label"] is False
    e = err(to_kto, {"prompt": "q", "completion": "a", "label": "maybe"})
    assert e.field == "label" and "true (desirable)" in e.reason


# --- classification and ner -------------------------------------------------------------------

def test_classification_single_multi_regression():
    assert to_classification({"sentence": "good ", "label": "1"}, {"text": "sentence"}) == {
        "text": "good ", "text_pair": None, "label": "1"}
    assert to_classification({"text": "a", "text_pair": "b", "label": 2})["label"] == "2"
    assert to_classification({"text": "a", "text_pair": "b", "label": 2})["text_pair"] == "b"
    multi = to_classification({"text": "a", "label": ["x", 3]}, problem_type="multi_label")
    assert multi["label"] == ["x", "3"]
    split = to_classification({"text": "a", "label": "x|y"}, problem_type="multi_label", label_sep="|")
    assert split["label"] == ["x", "y"]
    assert to_classification({"text": "a", "label": "0.25"}, problem_type="regression")["label"] == 0.25


def test_classification_errors():
    e = err(to_classification, {"text": "a", "label": "2"}, labels=["0", "1"])
    assert "not one of the allowed labels ['0', '1']" in e.reason
    e = err(to_classification, {"text": "a", "label": ["x"]})
    assert "multi_label" in e.fix
    e = err(to_classification, {"text": "a", "label": 0.5})
    assert "regression" in e.fix
    e = err(to_classification, {"text": "a", "label": "n/a"}, problem_type="regression")
    assert "finite number" in e.reason
    e = err(to_classification, {"review": "", "label": "1"}, {"text": "review"})
    assert e.field == "review"


def test_ner():
    assert to_ner({"tokens": ["John", "ran"], "tags": ["B-PER", "O"]}) == {
        "tokens": ["John", "ran"], "tags": ["B-PER", "O"]}
    assert to_ner({"words": ["a"], "ner_tags": [1]}, {"tokens": "words", "tags": "ner_tags"},
                  tag_names=["O", "B-X"])["tags"] == ["B-X"]
    e = err(to_ner, {"tokens": ["a", "b", "c"], "tags": ["O", "O"]})
    assert e.field == "tags" and "3 tokens but 2 tags" in e.reason
    e = err(to_ner, {"tokens": ["a"], "tags": ["B-BAD"]}, labels=["O"])
    assert e.field == "tags[0]"


# --- convert_records --------------------------------------------------------------------------

def test_convert_records_collects_rejects_including_reader_errors():
    recs = [Record({"instruction": "Q", "output": "R"}, "f.jsonl", 1, 0),
            Record(None, "f.jsonl", 2, 1, error="invalid JSON: x; fix: put it on one line", raw="{"),
            Record({"instruction": "Q"}, "f.jsonl", 3, 2)]
    examples, rejects = convert_records(recs, "alpaca")
    assert examples == [{"messages": [U("Q"), A("R")]}]
    assert [(r.record.line, r.field) for r in rejects] == [(2, "(record)"), (3, "output")]
    assert rejects[0].fix == "put it on one line"
    assert rejects[1].describe().startswith("f.jsonl:3: output: missing field")
    kept, _ = convert_with_sources(recs, "sharegpt")
    assert kept == []


def test_convert_records_config_errors():
    with pytest.raises(ConfigError, match="unknown format 'alpacca'"):
        convert_records([], "alpacca")
    with pytest.raises(ConfigError, match="data.columns.instrction"):
        convert_records([], "alpaca", {"instrction": "q"})
    with pytest.raises(ConfigError, match="'labels' does not apply"):
        convert_records([], "alpaca", labels=["a"])


def test_real_files_convert(tmp_path):
    from tunesmith.data import read_records

    ex, rej = convert_records(read_records(shared_data("sst2", "dev.tsv")), "classification",
                              {"text": "sentence"}, labels=["0", "1"])
    assert len(ex) == 872 and rej == []
    ex, rej = convert_records(read_records(shared_data("ner_conll2003", "valid.txt"), fmt="conll"), "ner")
    assert len(ex) == 3250 and rej == []
