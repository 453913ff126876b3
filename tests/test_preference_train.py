"""Each preference task trains a few steps on a tiny random model and its trainable weights change;
with LoRA the reference is the adapter-disabled base (no "ref" adapter, no second model); a DPO run
is accepted by the generation evaluation (`eval.after_training`, the same call as `tunesmith eval`).

Each task is trained once per module (``trained``) and every check on it reads that one run.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from tunesmith.config import validate_config
from tunesmith.tasks import run_task

PAIRS = [
    {"prompt": "Say hello.", "chosen": "Hello!", "rejected": "No."},
    {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "London."},
    {"prompt": "2 + 3", "chosen": "5", "rejected": "6"},
    {"prompt": "Translate: the dog", "chosen": "le chien", "rejected": "the cat"},
    {"prompt": "Is this positive?", "chosen": "positive", "rejected": "negative"},
    {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."},
]
# DPO also runs the generation report card when training ends, kept small: 4 new tokens, no probes
AFTER_TRAINING_EVAL = {"after_training": True, "max_new_tokens": 4, "measure_ttft": False,
                       "metrics": ["exact_match", "chrf", "perplexity"], "probes": {"enabled": False}}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """A 32-wide model gains nothing from threads, and on a shared busy CPU their contention makes
    these runs about 3x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in PAIRS) + "\n")
    return path


def pref_cfg(model_dir, data, out, task="dpo", method=None, preference=None, eval=None, **train):
    return validate_config({
        "task": task,
        "model": {"name_or_path": str(model_dir)},
        "data": {"train_file": str(data), "format": "preference", "max_length": 32, "eval_split": 0.34},
        "method": method or {"name": "lora", "r": 4},
        "preference": {"beta": 0.1, **(preference or {})},
        "train": {"max_steps": 2, "batch_size": 2, "learning_rate": 5e-2, "warmup_ratio": 0.0,
                  "lr_scheduler": "constant", "logging_steps": 1, "precision": "fp32", **train},
        "eval": eval or {},
        "output": {"dir": str(out), "name": f"{task}-run"},
    })


def _trainable(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.fixture(scope="module")
def trained(tiny_llama_dir, pairs_file, tmp_path_factory):
    """task -> (result, trainable weights when the trainer was built, the trained model); each task
    runs once, on first use."""
    import tunesmith.train.preference_trainer as pt

    runs: dict = {}

    def get(task: str):
        if task in runs:
            return runs[task]
        seen = {}
        real = pt.build_preference_trainer

        def spy(*args, **kwargs):  # records the weights the trainer starts from
            trainer = real(*args, **kwargs)
            seen["before"], seen["model"] = _trainable(trainer.model), trainer.model
            return trainer

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("tunesmith.tasks.preference.build_preference_trainer", spy)
            cfg = pref_cfg(tiny_llama_dir, pairs_file, tmp_path_factory.mktemp(task), task=task,
                           eval=AFTER_TRAINING_EVAL if task == "dpo" else None)
            result = run_task(cfg)
        runs[task] = (result, seen["before"], seen["model"])
        return runs[task]

    return get


@pytest.mark.parametrize("task", ["dpo", "orpo", "kto", "simpo", "reward"])
def test_each_task_trains_and_its_weights_change(task, trained):
    result, before, model = trained(task)
    after = _trainable(model)
    assert before and set(after) == set(before)
    assert any(not torch.equal(before[n], after[n]) for n in after)
    assert "ref" not in getattr(model, "peft_config", {})
    assert (result.run_dir / "adapter").is_dir()
    metrics = json.loads((result.run_dir / "final_metrics.json").read_text())
    assert 0.0 <= metrics["pref_after_accuracy"] <= 1.0
    assert metrics["pref_before_pairs"] == metrics["pref_after_pairs"] == 2  # the same held-out pairs
    assert "eval_loss" in metrics  # the trainer's own eval of the final weights, run once (at the last step)
    log = json.loads((result.run_dir / "trainer_state.json").read_text())["log_history"]
    assert sum("eval_loss" in row for row in log) == 1
    if task == "dpo":
        assert {"pref_reward_accuracy", "pref_reward_margin", "pref_before_accuracy",
                "pref_after_chosen_logps", "pref_after_rejected_logps", "pref_flipped_to_chosen",
                "pref_sign_test_p", "pref_sigmoid_loss", "pref_reference_misranked"} <= set(metrics)
        # with beta 0.1, a pair the base misranks by m nats flips only below -log sigmoid(0.1 m) < log 2
        if metrics["pref_reference_misranked"]:
            assert 0 < metrics["pref_flip_loss_needed_median"] < math.log(2)


def test_dpo_run_gets_the_generation_report_card(trained):
    """The held-out pairs are saved as prompt + chosen reply, and the evaluation that `tunesmith eval
    RUN` runs scored base and policy generations against the chosen replies."""
    result, _, _ = trained("dpo")
    held_out = [json.loads(line) for line in (result.run_dir / "data" / "validation.jsonl").read_text().splitlines()]
    by_prompt = {p["prompt"]: p["chosen"] for p in PAIRS}
    assert len(held_out) == 2
    assert all(ex["messages"][-1] == {"role": "assistant", "content": by_prompt[ex["messages"][0]["content"]]}
               for ex in held_out)
    report = json.loads((result.run_dir / "report.json").read_text())
    gen = report["generation"]
    assert set(gen) == {"base", "fine-tuned"}
    for label in gen:
        assert gen[label]["n"] == 2 and {"exact_match", "chrf", "perplexity"} <= set(gen[label]["metrics"])
        rows = (result.run_dir / report["predictions"][label]).read_text().splitlines()
        refs = [json.loads(row)["reference"] for row in rows]
        assert sorted(refs) == sorted(ex["messages"][-1]["content"] for ex in held_out)
    # the adapter changed the model, so the reference perplexities differ
    assert gen["base"]["metrics"]["perplexity"] != pytest.approx(gen["fine-tuned"]["metrics"]["perplexity"])


def test_reward_run_has_no_generation_data(trained):
    result, _, _ = trained("reward")
    assert not (result.run_dir / "data" / "validation.jsonl").exists()


def test_full_dpo_keeps_a_frozen_reference(tiny_llama_dir, pairs_file, tmp_path):
    from transformers import AutoModelForCausalLM

    result = run_task(pref_cfg(tiny_llama_dir, pairs_file, tmp_path, method={"name": "full"},
                               learning_rate=1e-3, max_steps=1))
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).state_dict()
    trained_state = result.model.state_dict()
    assert any(not torch.equal(base[k], trained_state[k]) for k in base if k in trained_state)
    assert (result.run_dir / "model").is_dir()


def test_pipeline_sft_then_dpo_starts_from_the_sft_result(tiny_llama_dir, pairs_file, tmp_path):
    sft = tmp_path / "sft.jsonl"
    sft.write_text("\n".join(json.dumps({"instruction": r["prompt"], "output": r["chosen"]}) for r in PAIRS) + "\n")
    cfg = pref_cfg(tiny_llama_dir, pairs_file, tmp_path, max_steps=1).model_dump(exclude={"stages"})
    cfg["stages"] = [{"task": "sft", "overrides": {"data": {"format": "alpaca", "train_file": str(sft)}}},
                     {"task": "dpo", "overrides": {"train.learning_rate": 1e-2}}]
    cfg["output"]["name"] = "chain"
    results = run_task(validate_config(cfg))
    assert [r.run_dir.name for r in results] == ["chain-1-sft", "chain-2-dpo"]
    assert (results[0].run_dir / "merged" / "config.json").is_file()
    dpo_cfg = (results[1].run_dir / "config.yaml").read_text()
    assert str(results[0].run_dir / "merged") in dpo_cfg and "learning_rate: 0.01" in dpo_cfg
