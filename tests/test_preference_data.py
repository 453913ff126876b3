"""Preference data: every supported style renders through the one chat template into TRL's string
form; KTO rows and pairs-as-KTO; unusable rows are quarantined with their reason."""

from __future__ import annotations

import json

from tunesmith.config.schema import DataConfig
from tunesmith.data.render import render_prompt
from tunesmith.train.preference_data import build_preference_data, render_kto, render_pair

ROWS = [
    {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "London."},
    {"conversations": [{"from": "human", "value": "2 + 3"}], "chosen": "5", "rejected": "6"},
    {"chosen": "\n\nHuman: Say hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Say hi\n\nAssistant: Go away."},
    {"prompt": [{"role": "user", "content": "Colour?"}], "chosen": [{"role": "assistant", "content": "Blue."}],
     "rejected": [{"role": "assistant", "content": "Seven."}]},
    {"prompt": "Same?", "chosen": "yes", "rejected": "yes"},  # bad: identical sides
    {"prompt": "Unpaired", "completion": "ok", "label": True},
]


def _write(tmp_path, rows):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_render_pair_is_templated_and_ends_at_eos(tiny_tokenizer):
    msgs = [{"role": "user", "content": "Hi"}]
    pair = render_pair(tiny_tokenizer, {"prompt": msgs, "chosen": [{"role": "assistant", "content": "Hello"}],
                                        "rejected": [{"role": "assistant", "content": "Bye"}]})
    assert pair["prompt"] == render_prompt(tiny_tokenizer, msgs)
    assert pair["chosen"] == "Hello<|im_end|>" and pair["rejected"] == "Bye<|im_end|>"


def test_pair_becomes_two_kto_rows(tiny_tokenizer):
    ex = {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "A"}],
          "rejected": [{"role": "assistant", "content": "B"}]}
    rows = render_kto(tiny_tokenizer, ex)
    assert [(r["completion"], r["label"]) for r in rows] == [("A<|im_end|>", True), ("B<|im_end|>", False)]


def test_all_styles_and_quarantine(tiny_tokenizer, tmp_path):
    cfg = DataConfig(train_file=str(_write(tmp_path, ROWS)), format="preference", eval_split=0.0,
                     max_length=64, max_bad_fraction=0.5)
    data = build_preference_data(cfg, tiny_tokenizer, kto=False, chat_template=None, seed=0, run_dir=tmp_path)
    prompts = sorted(r["prompt"] for r in data.train)
    assert len(prompts) == 4
    assert any("user\nSay hi<|im_end|>" in p for p in prompts)  # hh transcript: shared prefix is the prompt
    assert any("user\n2 + 3<|im_end|>" in p for p in prompts)  # ShareGPT conversations
    quarantined = [json.loads(line) for line in (tmp_path / "quarantine.jsonl").read_text().splitlines()]
    assert {q["line"] for q in quarantined} == {5, 6}
    assert any("identical to chosen" in q["reason"] for q in quarantined)
    assert any("unpaired" in q["reason"] for q in quarantined)


def test_kto_takes_pairs_and_unpaired_rows(tiny_tokenizer, tmp_path):
    cfg = DataConfig(train_file=str(_write(tmp_path, ROWS)), format="preference", eval_split=0.0,
                     max_length=64, max_bad_fraction=0.5)
    data = build_preference_data(cfg, tiny_tokenizer, kto=True, chat_template=None, seed=0, run_dir=tmp_path)
    labels = [r["label"] for r in data.train]
    assert len(labels) == 9 and labels.count(True) == 5


def test_too_long_prompt_is_quarantined(tiny_tokenizer, tmp_path):
    rows = [{"prompt": "word " * 80, "chosen": "a", "rejected": "b"}] + ROWS[:4]
    cfg = DataConfig(train_file=str(_write(tmp_path, rows)), format="preference", eval_split=0.0,
                     max_length=64, max_bad_fraction=0.5)
    data = build_preference_data(cfg, tiny_tokenizer, kto=False, chat_template=None, seed=0, run_dir=tmp_path,
                                 max_prompt_length=32)
    assert len(data.train) == 4
    assert "over the limit" in (tmp_path / "quarantine.jsonl").read_text()


def test_long_prompt_is_cut_from_the_left_counted_and_listed(tiny_tokenizer, tmp_path):
    from tunesmith.train.preference_data import truncate_prompt_left

    question = "The quick brown fox jumps over the lazy dog. " * 10 + "What is the capital of France?"
    rows = [{"prompt": [{"role": "system", "content": "Answer the question."},
                        {"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"},
                        {"role": "user", "content": question}],
             "chosen": "Paris.", "rejected": "London."}] + ROWS[:4]
    cfg = DataConfig(train_file=str(_write(tmp_path, rows)), format="preference", eval_split=0.0,
                     max_length=96, max_bad_fraction=0.0)
    data = build_preference_data(cfg, tiny_tokenizer, kto=False, chat_template=None, seed=0, run_dir=tmp_path,
                                 max_prompt_length=48, prompt_truncation="left")
    assert len(data.train) == 5 and data.stats["train"]["prompts_cut"] == 1
    cut = next(r["prompt"] for r in data.train if "capital of France?" in r["prompt"])
    assert len(tiny_tokenizer(cut, add_special_tokens=False)["input_ids"]) <= 48
    assert cut.startswith("<|im_start|>system\n")  # the markup stays; the system text is cut before the question
    assert cut.endswith("What is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    assert "Say hi" not in cut  # the earlier turn went first
    listed = [json.loads(line) for line in (tmp_path / "truncated_prompts.jsonl").read_text().splitlines()]
    assert [(c["line"], c["kept_tokens"] <= 48 < c["prompt_tokens"]) for c in listed] == [(1, True)]
    assert not (tmp_path / "quarantine.jsonl").exists()
    # a limit below the template's own markup cannot be met: quarantined, not emptied silently
    assert truncate_prompt_left(tiny_tokenizer, rows[0]["prompt"], 4, None) is None


def test_left_cut_keeps_whole_characters_of_chinese(tiny_tokenizer):
    """Byte-level BPE spreads a Chinese character over several tokens; a cut never splits one."""
    from tunesmith.train.preference_data import truncate_prompt_left

    question = "患者咳嗽发热，建议就医。" * 6 + "这家酒店很好？"
    msgs = [{"role": "user", "content": question}]
    for limit in range(12, 40, 3):
        cut = truncate_prompt_left(tiny_tokenizer, msgs, limit, None)
        rendered = render_prompt(tiny_tokenizer, cut)
        assert len(tiny_tokenizer(rendered, add_special_tokens=False)["input_ids"]) <= limit
        assert question.endswith(cut[0]["content"]) and "\ufffd" not in cut[0]["content"]
