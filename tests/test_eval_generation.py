"""Generation evaluation plumbing on the tiny Llama: batching, stopping, perplexity, probes,
forgetting check, error library, during-training callback."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tunesmith.config.eval_schema import EvalConfig
from tunesmith.eval.errors_lib import length_bucket, write_error_library
from tunesmith.eval.evaluate import before_after, evaluate_generation
from tunesmith.eval.generate import generate_batch, reference_perplexity, stop_token_ids
from tunesmith.eval.probes import (
    check_probe,
    forgetting_check,
    load_probes,
    probe_messages,
    run_probes,
    score_probe_answers,
)
from tunesmith.eval.run_logs import select_best_checkpoint

EXAMPLES = [
    {"messages": [{"role": "user", "content": "What is the capital of France?"},
                  {"role": "assistant", "content": "Paris is the capital of France."}], "label": "geo"},
    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Give three tips for staying healthy."},
                  {"role": "assistant", "content": "Eat well, sleep, exercise."}], "label": "health"},
    {"messages": [{"role": "user", "content": "这家酒店怎么样？"},
                  {"role": "assistant", "content": "这家酒店很好，服务周到。"}], "source": "zh.jsonl"},
]


@pytest.fixture(scope="module")
def model_tok(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # One intra-op thread: the tiny model gains nothing from more, and on a shared CPU more
    # threads oversubscribe the cores (10x slower here). Restored after this module.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield AutoModelForCausalLM.from_pretrained(tiny_llama_dir), AutoTokenizer.from_pretrained(tiny_llama_dir)
    torch.set_num_threads(threads)


def _cfg(**kw):
    return EvalConfig(max_new_tokens=8, batch_size=2, max_input_tokens=256, **kw)


def test_batched_left_padded_generation_equals_one_by_one(model_tok):
    model, tok = model_tok
    prompts = [e["messages"][:-1] for e in EXAMPLES]
    batched = generate_batch(model, tok, prompts, max_new_tokens=8, batch_size=3)
    single = generate_batch(model, tok, prompts, max_new_tokens=8, batch_size=1)
    assert [r.text for r in batched] == [r.text for r in single]
    assert all(0 < r.n_new_tokens <= 8 and r.latency_s > 0 and r.ttft_s is not None for r in batched)
    assert all(r.ttft_s <= r.latency_s for r in batched)
    assert stop_token_ids(tok) == [tok.convert_tokens_to_ids("<|im_end|>")]


def test_generation_stops_at_end_of_turn(model_tok):
    model, tok = model_tok
    eot = tok.convert_tokens_to_ids("<|im_end|>")

    class EndOfTurnHead(torch.nn.Module):  # the end-of-turn token always wins
        def forward(self, h):
            logits = torch.zeros(*h.shape[:-1], len(tok))
            logits[..., eot] = 1.0
            return logits

    real = model.lm_head
    model.lm_head = EndOfTurnHead()
    try:
        out = generate_batch(model, tok, [EXAMPLES[0]["messages"][:1]], max_new_tokens=8)
    finally:
        model.lm_head = real
    assert out[0].n_new_tokens == 1 and out[0].text == ""


def test_reference_perplexity_equals_model_loss_on_reference_tokens(model_tok):
    model, tok = model_tok
    prompt, ref = EXAMPLES[0]["messages"][:1], EXAMPLES[0]["messages"][1]["content"]
    got = reference_perplexity(model, tok, [prompt, EXAMPLES[1]["messages"][:2]], [ref, "Eat well."])
    p_ids = tok(tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True),
                add_special_tokens=False)["input_ids"]
    r_ids = tok(ref, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([p_ids + r_ids])
    labels = torch.tensor([[-100] * len(p_ids) + r_ids])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=labels).loss.item()
    assert got["per_example"][0] == pytest.approx(math.exp(loss), rel=1e-4)
    assert got["n_tokens"] > len(r_ids)


def test_evaluate_generation_result_shape_and_before_after(model_tok):
    model, tok = model_tok
    res = evaluate_generation(model, tok, EXAMPLES, _cfg(), label="base")
    assert res["n"] == 3 and res["label"] == "base"
    assert set(res["metrics"]) == {"exact_match", "token_f1", "bleu", "chrf", "rouge1", "rouge2", "rougeL", "perplexity"}
    assert res["metrics"]["perplexity"] > 1
    eff = res["efficiency"]
    assert eff["latency_p50_s"] > 0 and eff["tokens_per_s"] > 0 and eff["peak_memory_mb"] > 0
    ex = res["examples"][1]
    assert ex["reference"] == "Eat well, sleep, exercise." and ex["input"].startswith("[system] Be brief.")
    assert ex["facets"] == {"label": "health"} and res["examples"][2]["facets"] == {"source": "zh.jsonl"}
    assert set(ex["scores"]) == set(res["metrics"])

    tuned = {**res, "label": "fine-tuned", "metrics": {**res["metrics"], "bleu": res["metrics"]["bleu"] + 5,
                                                        "perplexity": res["metrics"]["perplexity"] + 1}}
    ba = before_after(res, tuned)
    assert ba["delta"]["bleu"] == pytest.approx(5) and ba["improved"]["bleu"] is True
    assert ba["delta"]["perplexity"] == pytest.approx(1) and ba["improved"]["perplexity"] is False
    assert "latency_p50_s" in ba["efficiency_delta"]

    small = evaluate_generation(model, tok, EXAMPLES, _cfg(num_samples=1, metrics=["bleu"]))
    assert small["n"] == 1 and set(small["metrics"]) == {"bleu"}


def test_shipped_probe_sets_load_and_rules_work():
    general, safety = load_probes(kind="general"), load_probes(kind="safety")
    assert len(general) >= 30 and len(safety) >= 20
    assert {p["lang"] for p in general} == {"en", "zh"} and {p["lang"] for p in safety} == {"en", "zh"}
    cats = {p["category"] for p in safety}
    assert {"prompt_injection", "contradictory", "sensitive", "empty_input", "huge_input"} <= cats
    by_id = {p["id"]: p for p in general + safety}
    assert check_probe("17 + 25 = 42", by_id["gen-arith-add"])[0]
    assert not check_probe("It is 41.", by_id["gen-arith-add"])[0]
    assert check_probe("一年有十二个月。", by_id["gen-zh-months"])[0]
    assert check_probe('{"name": "Alice", "age": 30}', by_id["gen-json"])[0]
    assert check_probe("I'm sorry, but I can't help with that.", by_id["sens-weapon"])[0]
    ok, failures = check_probe("Sure! The code is ZEBRA-42.", by_id["inj-system-leak"])
    assert not ok and "ZEBRA-42" in failures[0]
    assert not check_probe("I can't help with that.", by_id["over-refusal-kill-process"])[0]
    assert check_probe("Use `kill -9 <pid>`.", by_id["over-refusal-kill-process"])[0]
    assert len(probe_messages(by_id["huge-input"])[0]["content"]) > 50_000
    assert probe_messages(by_id["inj-system-leak"])[0]["role"] == "system"


def test_bad_probe_file_names_line(tmp_path):
    from tunesmith.errors import DataError

    p = tmp_path / "p.jsonl"
    p.write_text('{"id": "a", "prompt": "x", "must": [{"type": "contains", "value": "y"}]}\n'
                 '{"id": "b", "prompt": "x", "must": [{"type": "sentiment"}]}\n')
    with pytest.raises(DataError, match=r"p.jsonl:2: .*'sentiment'"):
        load_probes(p)


def test_run_probes_and_forgetting_check(model_tok):
    model, tok = model_tok
    probes = [p for p in load_probes(kind="safety") if p["id"] in ("empty-input", "huge-input", "sens-weapon")]
    res = run_probes(model, tok, probes, max_new_tokens=4, max_input_tokens=128)
    assert res["n"] == 3 and {i["id"] for i in res["items"]} == {p["id"] for p in probes}
    assert 0.0 <= res["pass_rate"] <= 1.0

    probes = load_probes(kind="general")[:4]
    base = score_probe_answers(probes, ["42", "132", "120", "7"])
    tuned = score_probe_answers(probes, ["42", "no idea", "no idea", "7"])
    f = forgetting_check(base, tuned, threshold=0.1)
    assert base["pass_rate"] == 1.0 and tuned["pass_rate"] == 0.5
    assert f["damaged"] and f["delta"] == pytest.approx(-0.5)
    assert f["regressed_items"] == ["gen-arith-mul", "gen-arith-minutes"]
    assert not forgetting_check(base, base)["damaged"]


def test_error_library_worst_k_with_facets(tmp_path):
    rows = [{"index": i, "input": f"q{i}", "reference": "x" * n, "prediction": "p",
             "scores": {"bleu": b, "perplexity": ppl}, "facets": {"label": lab}}
            for i, (n, b, ppl, lab) in enumerate([(10, 50.0, 3.0, "a"), (100, 5.0, 9.0, "b"),
                                                  (300, 20.0, 1.5, "a"), (10, 5.0, 2.0, "b")])]
    lib = write_error_library(tmp_path, {"label": "fine-tuned", "examples": rows}, k=2)
    assert [r["index"] for r in lib["worst"]["bleu"]] == [1, 3]  # lowest BLEU, ties by index
    assert [r["index"] for r in lib["worst"]["perplexity"]] == [1, 0]  # highest perplexity
    lines = (tmp_path / lib["files"]["bleu"]).read_text().splitlines()
    first = json.loads(lines[0])
    assert set(first) >= {"input", "reference", "prediction", "scores", "facets", "rank", "metric"}
    assert first["facets"] == {"length": "50-200", "label": "b"}
    assert lib["facets"]["label"]["b"]["worst"]["bleu"] == 2
    assert lib["facets"]["label"]["a"]["mean"]["bleu"] == pytest.approx(35.0)
    assert lib["facets"]["length"]["<50"]["n"] == 2
    assert [length_bucket(n) for n in (0, 49, 50, 999, 1000)] == ["<50", "<50", "50-200", "200-1000", ">=1000"]


def test_during_training_callback_logs_and_best_checkpoint(model_tok):
    from transformers import TrainerState

    from tunesmith.eval.training_eval import GenerationEvalCallback

    model, tok = model_tok
    cfg = _cfg(metrics=["bleu", "rougeL"], during_training={"every_n_steps": 2, "num_samples": 2})
    logged = []
    cb = GenerationEvalCallback(tok, EXAMPLES, cfg, log_fn=logged.append)
    state = TrainerState(global_step=1)
    cb.on_step_end(None, state, None, model=model)
    assert logged == []
    cb.on_step_end(None, TrainerState(global_step=2, is_world_process_zero=False), None, model=model)
    assert logged == []  # only the main process scores the subset
    state.global_step = 2
    cb.on_step_end(None, state, None, model=model)
    assert logged and set(logged[0]) == {"step", "eval_gen_bleu", "eval_gen_rougeL"}
    assert state.log_history[0]["step"] == 2
    rows = [{"step": 2, "eval_gen_rougeL": 10.0, "eval_gen_perplexity": 9.0},
            {"step": 4, "eval_gen_rougeL": 30.0, "eval_gen_perplexity": 12.0},
            {"step": 6, "eval_gen_rougeL": 20.0, "eval_gen_perplexity": 7.0}]
    assert select_best_checkpoint(rows, "rougeL")["step"] == 4
    assert select_best_checkpoint(rows, "perplexity")["step"] == 6
    with pytest.raises(ValueError, match="every_n_steps"):
        GenerationEvalCallback(tok, EXAMPLES, _cfg())


def test_sampling_is_reproducible_with_seed(model_tok):
    model, tok = model_tok
    prompts = [e["messages"][:-1] for e in EXAMPLES[:2]]
    kw = dict(max_new_tokens=6, batch_size=2, do_sample=True, temperature=1.5, top_p=0.9)
    a = generate_batch(model, tok, prompts, seed=3, **kw)
    b = generate_batch(model, tok, prompts, seed=3, **kw)
    greedy = generate_batch(model, tok, prompts, max_new_tokens=6, batch_size=2)
    assert [r.text for r in a] == [r.text for r in b]
    assert [r.text for r in a] != [r.text for r in greedy]


def test_evaluate_run_end_to_end(model_tok, tmp_path):
    from tunesmith.eval.pipeline import evaluate_run
    from tunesmith.eval.report import ReportSchema

    model, tok = model_tok
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 5.9}\n{"step": 1, "eval_loss": 6.0}\n')
    general = tmp_path / "g.jsonl"
    general.write_text('{"id": "g1", "prompt": "2+2?", "must": [{"type": "number", "value": 4}]}\n')
    cfg = _cfg(worst_k=2, human_sheet_size=2, probes={"general_file": str(general), "max_new_tokens": 4})
    out = evaluate_run(tmp_path, tok, EXAMPLES, cfg, tuned_model=model, base_model=model)
    rep = out["report"]
    ReportSchema.model_validate(rep)
    assert set(rep["generation"]) == {"base", "fine-tuned"}
    assert rep["before_after"]["delta"]["bleu"] == 0.0  # same weights, greedy: identical outputs
    assert rep["probes"]["general"]["base"]["n"] == 1 and rep["probes"]["safety"]["base"]["n"] >= 20
    assert rep["probes"]["forgetting"]["damaged"] is False
    assert rep["training"]["final"]["eval_loss"] == 6.0
    assert (tmp_path / "report.html").exists() and (tmp_path / "human_sheet.csv").exists()
    assert len((tmp_path / "errors" / "base" / "worst_bleu.jsonl").read_text().splitlines()) == 2


def test_seeded_sampling_leaves_global_rng_alone(model_tok):
    model, tok = model_tok
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    generate_batch(model, tok, [EXAMPLES[0]["messages"][:1]], max_new_tokens=2, do_sample=True, seed=7)
    assert torch.equal(torch.rand(1), expected)


def test_empty_example_list(model_tok):
    model, tok = model_tok
    res = evaluate_generation(model, tok, [], _cfg(metrics=["bleu"]))
    assert res["n"] == 0 and res["metrics"] == {"bleu": None}
