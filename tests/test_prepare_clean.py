"""Cleaning steps on hand-made records, including CRLF, BOM, HTML that must survive, CJK punctuation."""

from tunesmith.config.prepare_schema import PrepareConfig
from tunesmith.data.clean import (
    TokenCounter, apply_cleaning, convert_width, example_text, map_texts, nfkc, normalize_whitespace,
    remove_control, strip_html,
)


def msgs(user, assistant="ok"):
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def steps(*specs):
    return PrepareConfig.model_validate({"clean": list(specs)}).clean


def test_strip_html_known_tags_entities_and_keeps_code():
    assert strip_html("<p>Caf&eacute; &amp; bar</p><script>x()</script>") == "Café & bar\n"
    assert strip_html("List<String> a; if a < b and b > c") == "List<String> a; if a < b and b > c"
    assert strip_html("<!-- hidden -->x<br/>y") == "x\ny"
    assert strip_html("<custom>t</custom>", all_tags=True) == "t"


def test_whitespace_crlf_unicode_spaces_and_indentation():
    text = "line one  \r\n\r\n\r\n\r\nline\u00a0two   words\r\n    indented  code"
    assert normalize_whitespace(text) == "line one\n\nline two words\n    indented code"


def test_nfkc_keeps_chinese_punctuation_by_default():
    assert nfkc("ＡＢＣ１２３，你好！ﬁ") == "ABC123，你好！fi"
    assert nfkc("ＡＢＣ，你好！", keep_cjk_punctuation=False) == "ABC,你好!"


def test_width_modes():
    s = "Ｈｅｌｌｏ　１２３，好！"
    assert convert_width(s, "half") == "Hello 123,好!"
    assert convert_width(s, "half_keep_cjk_punct") == "Hello 123，好！"
    assert convert_width("ab1", "full") == "ａｂ１"


def test_control_removes_bom_zero_width_and_keeps_newline_tab():
    assert remove_control("\ufeffa\u200bb\x00c\r\nd\te") == "abc\nd\te"


def test_map_texts_covers_every_format_and_leaves_labels():
    up = str.upper
    assert map_texts({"text": "a", "text_pair": "b", "label": "pos"}, up) == {"text": "A", "text_pair": "B", "label": "pos"}
    assert map_texts({"tokens": ["a", "b"], "tags": ["O", "B-x"]}, up) == {"tokens": ["A", "B"], "tags": ["O", "B-x"]}
    pref = {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "c"}],
            "rejected": [{"role": "assistant", "content": "r"}]}
    assert example_text(map_texts(pref, up)) == "Q\nC\nR"
    assert map_texts(msgs("q", "a"), up, roles={"user"})["messages"][1]["content"] == "a"


def test_apply_cleaning_reports_every_removed_row_by_reason(tiny_tokenizer):
    exs = [msgs("<p>hello</p>"), msgs("<br>"), msgs("As an AI language model I cannot"), msgs("x" * 50),
           msgs("fine question", "fine answer")]
    kept, removed, stats = apply_cleaning(
        exs, steps("html", "whitespace", {"step": "regex", "pattern": "as an ai", "ignore_case": True, "name": "refusal"},
                   {"step": "length", "max_chars": 40}),
        token_counter=TokenCounter(tiny_tokenizer))
    assert [e["messages"][0]["content"] for e in kept] == ["hello", "fine question"]
    assert sorted((p, r) for p, r, _ in removed) == [(1, "empty_after_cleaning"), (2, "regex:refusal"), (3, "too_long_chars")]
    assert stats["1:html"]["changed"] == 2


def test_token_length_limits_use_the_tokenizer(tiny_tokenizer):
    exs = [msgs("the quick brown fox", "ok"), msgs(" ".join(["fox"] * 200), "ok")]
    counter = TokenCounter(tiny_tokenizer)
    kept, removed, _ = apply_cleaning(exs, steps({"step": "length", "max_tokens": 50}), token_counter=counter)
    assert len(kept) == 1 and removed[0][:2] == (1, "too_long_tokens")


def test_regex_keep_and_replace():
    exs = [{"text": "order 123", "label": "a"}, {"text": "hello", "label": "b"}]
    kept, removed, _ = apply_cleaning(exs, steps({"step": "regex", "pattern": r"\d+", "action": "keep"}))
    assert kept == [exs[0]] and removed[0][1] == "regex:regex"
    kept, _, _ = apply_cleaning(exs, steps({"step": "regex", "pattern": r"\d+", "action": "replace", "replacement": "N"}))
    assert kept[0]["text"] == "order N"
