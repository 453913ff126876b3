"""Chat rendering and loss masks: loss covers exactly the assistant turns (with their end marker),
truncation is flagged, examples with nothing to learn are rejected, templates resolve."""

from __future__ import annotations

import copy

import pytest

from tunesmith.data import (
    IGNORE_INDEX,
    NAMED_TEMPLATES,
    RecordError,
    encode_prompt,
    inspection_report,
    render_prompt,
    render_text,
    resolve_chat_template,
    tokenize_conversation,
    tokenize_dataset,
)
from tunesmith.errors import ConfigError, DataError, ModelError

CONVO = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Germany?"},
    {"role": "assistant", "content": "Berlin, the capital."},
]
END_MARKER = {None: "<|im_end|>\n", "chatml": "<|im_end|>\n", "zephyr": "<|im_end|>\n",
              "alpaca": "<|im_end|>\n\n", "llama3": "<|eot_id|>"}


def runs(tokenizer, ex, loss: bool) -> list[str]:
    """Decoded runs of consecutive tokens that do (loss=True) or do not carry loss."""
    out, cur = [], []
    for tok, label in zip(ex.input_ids, ex.labels):
        if (label != IGNORE_INDEX) == loss:
            cur.append(tok)
        elif cur:
            out.append(tokenizer.decode(cur))
            cur = []
    return out + ([tokenizer.decode(cur)] if cur else [])


@pytest.mark.parametrize("template", [None, "chatml", "zephyr", "alpaca", "llama3"])
def test_loss_covers_exactly_the_assistant_turns(tiny_tokenizer, template):
    ex = tokenize_conversation(tiny_tokenizer, CONVO, max_length=4096, chat_template=template)
    assert not ex.truncated and len(ex.input_ids) == ex.original_length == len(ex.labels)
    expected = [m["content"] + END_MARKER[template] for m in CONVO if m["role"] == "assistant"]
    assert runs(tiny_tokenizer, ex, loss=True) == expected
    assert ex.n_loss_tokens == sum(label != IGNORE_INDEX for label in ex.labels)
    assert all(label in (IGNORE_INDEX, tok) for tok, label in zip(ex.input_ids, ex.labels))
    # everything else (system, user turns, headers) carries no loss and is the rest of the text
    full = render_text(tiny_tokenizer, CONVO, chat_template=template)
    rest = full
    for span in expected:
        rest = rest.replace(span, "\0", 1)
    assert runs(tiny_tokenizer, ex, loss=False) == [p for p in rest.split("\0") if p]
    for m in CONVO[:2] + CONVO[3:4]:
        assert all(m["content"] not in run for run in runs(tiny_tokenizer, ex, loss=True))


def test_train_on_prompt_puts_loss_on_every_token(tiny_tokenizer):
    ex = tokenize_conversation(tiny_tokenizer, CONVO, max_length=4096, train_on_prompt=True)
    assert ex.labels == ex.input_ids and ex.n_loss_tokens == len(ex.input_ids)


def test_truncation_keeps_the_first_tokens_and_is_flagged(tiny_tokenizer):
    full = tokenize_conversation(tiny_tokenizer, CONVO, max_length=4096)
    first_loss = next(i for i, label in enumerate(full.labels) if label != IGNORE_INDEX)
    ex = tokenize_conversation(tiny_tokenizer, CONVO, max_length=first_loss + 2)
    assert ex.truncated and ex.original_length == len(full.input_ids)
    assert ex.input_ids == full.input_ids[: first_loss + 2] and ex.n_loss_tokens == 2


def test_no_loss_tokens_after_truncation_is_rejected(tiny_tokenizer):
    with pytest.raises(RecordError) as info:
        tokenize_conversation(tiny_tokenizer, CONVO, max_length=10)
    e = info.value
    assert e.field == "messages"
    assert e.reason.startswith("no assistant tokens within data.max_length=10 (example has ")
    assert e.fix == "raise data.max_length or shorten the example"


def test_tokenize_dataset_stats_and_same_result_as_single(tiny_tokenizer):
    first_turn = CONVO[:3]
    examples = [{"messages": CONVO}, {"messages": first_turn}, {"messages": CONVO[:2]},
                {"messages": CONVO}, {"text": "not a chat"}]
    short = len(tokenize_conversation(tiny_tokenizer, first_turn, max_length=4096).input_ids)
    kept, stats = tokenize_dataset(tiny_tokenizer, examples, max_length=short, batch_size=2)
    assert stats["n"] == 5 and stats["n_kept"] == 3 and stats["n_truncated"] == 2
    assert stats["n_rejected"] == 2
    assert [(r["index"], r["field"]) for r in stats["rejected"]] == [(2, "messages"), (4, "messages")]
    assert "no assistant turn" in stats["rejected"][0]["reason"]
    single = tokenize_conversation(tiny_tokenizer, CONVO, max_length=short)
    assert kept[0] == single and kept[2] == single
    assert stats["loss_tokens"] == sum(k.n_loss_tokens for k in kept)
    assert stats["length"]["max"] == single.original_length and stats["length"]["min"] == short


def test_resolve_chat_template(tiny_tokenizer):
    assert resolve_chat_template(tiny_tokenizer, None) == tiny_tokenizer.chat_template
    assert resolve_chat_template(tiny_tokenizer, "llama3") == NAMED_TEMPLATES["llama3"]
    literal = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert resolve_chat_template(tiny_tokenizer, literal) == literal
    with pytest.raises(ConfigError, match="chatml, llama3, alpaca, zephyr"):
        resolve_chat_template(tiny_tokenizer, "chatmll")
    bare = copy.copy(tiny_tokenizer)
    bare.chat_template = None
    with pytest.raises(ModelError, match="set model.chat_template to one of chatml"):
        resolve_chat_template(bare, None)
    assert render_prompt(tiny_tokenizer, CONVO[:2]).endswith("<|im_start|>assistant\n")


def test_prefix_unstable_template_is_an_error(tiny_tokenizer):
    unstable = ("{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m['content'] }}\n"
                "{% endfor %}")
    with pytest.raises(DataError, match="not prefix-stable.*model.chat_template"):
        tokenize_conversation(tiny_tokenizer, CONVO, max_length=512, chat_template=unstable)


def test_bos_prepended_once_when_the_tokenizer_adds_one(tiny_tokenizer):
    from tokenizers import processors

    tok = copy.deepcopy(tiny_tokenizer)
    bos = tok.bos_token_id
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{tok.bos_token} $A", special_tokens=[(tok.bos_token, bos)])
    assert tok("a")["input_ids"][0] == bos
    ex = tokenize_conversation(tok, CONVO, max_length=512, chat_template="zephyr")
    plain = tokenize_conversation(tiny_tokenizer, CONVO, max_length=512, chat_template="zephyr")
    assert ex.input_ids == [bos] + plain.input_ids and ex.labels == [IGNORE_INDEX] + plain.labels
    assert encode_prompt(tok, CONVO[:2], "zephyr")[:1] == [bos]
    # ChatML text already starts with this tokenizer's BOS string: no second BOS
    chatml = tokenize_conversation(tok, CONVO, max_length=512)
    assert chatml.input_ids[:2] != [bos, bos]
    assert encode_prompt(tiny_tokenizer, CONVO[:2])[0] == bos


def test_inspection_report(tiny_tokenizer):
    examples = [{"messages": CONVO}, {"messages": CONVO[:2]}]
    report = inspection_report(tiny_tokenizer, examples, n=1, max_length=4096)
    assert "Example 0" in report and "Example 1" not in report
    assert "<|im_start|>system\nBe brief.<|im_end|>" in report  # the rendered text
    assert "[<|im_end|>]" in report and "[Par]" in report  # loss tokens bracketed
    assert "  Paris.<|im_end|>\\n" in report  # the text that carries loss
    assert "All 2 examples: 1 kept, 1 rejected, 0 truncated" in report
    assert "Token lengths before truncation: min" in report
    zh = [{"messages": [{"role": "user", "content": "酒店好吗？"},
                        {"role": "assistant", "content": "房间干净。"}]}]
    report = inspection_report(tiny_tokenizer, zh, n=1, max_length=4096)
    assert "\ufffd" not in report and "[房]" in report  # multi-byte pieces shown as their text
