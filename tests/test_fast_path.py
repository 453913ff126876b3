"""Smart batching when packing is off, the training defaults (optimiser, gradient checkpointing,
Liger, bf16 autocast) and the tokenisation cache."""

from __future__ import annotations

import pytest
import torch

from tunesmith.config.schema import TrainConfig
from tunesmith.data.batching import length_grouped_batches, padded_tokens, round_up, token_budget_batches


def _lengths(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(10, 500, (n,), generator=g).tolist()


def test_length_grouped_batches_cut_padding_and_place_every_example_once():
    lengths = _lengths()
    batches = length_grouped_batches(lengths, 8, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) == 8 for b in batches[:-1])
    in_order = [list(range(i, min(i + 8, len(lengths)))) for i in range(0, len(lengths), 8)]
    assert padded_tokens(lengths, batches, 8) < 0.8 * padded_tokens(lengths, in_order, 8)
    assert length_grouped_batches(lengths, 8, seed=0) == batches != length_grouped_batches(lengths, 8, seed=1)


def test_token_budget_batches_stay_within_budget_padded_to_multiples_of_8():
    lengths = _lengths()
    batches = token_budget_batches(lengths, 2048, 8)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) * round_up(max(lengths[i] for i in b), 8) <= 2048
    sizes = [len(b) for b in batches]
    assert max(sizes) > 3 * min(sizes)  # short examples travel in bigger batches


def test_padded_plan_pads_to_the_longest_in_the_batch_multiple_of_8(tiny_tokenizer):
    from datasets import Dataset

    from tunesmith.train.batches import plan_sft_batches

    lengths = [5, 13, 30, 7, 21, 9]
    ds = Dataset.from_dict({"input_ids": [[3] * n for n in lengths], "labels": [[3] * n for n in lengths]})
    plan = plan_sft_batches(TrainConfig(packing=False, batch_size=3), ds, ds, tiny_tokenizer)
    assert plan.mode == "length_grouped" and plan.trainer_args["per_device_train_batch_size"] == 1
    batch = plan.collator([plan.train[0]])
    longest = max(len(x) for x in plan.train[0]["input_ids"])
    assert batch["input_ids"].shape == (3, round_up(longest, 8))
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    budget = plan_sft_batches(TrainConfig(packing=False, batch_tokens=64), ds, None, tiny_tokenizer)
    assert budget.mode == "token_budget" and budget.eval is None
    assert all(b.shape[0] * b.shape[1] <= 64 for b in (budget.collator([r])["input_ids"] for r in budget.train))


def test_optimizer_defaults_to_fused_adamw_which_runs_on_this_machine(tmp_path):
    from tunesmith.train import training_arguments

    args = training_arguments(TrainConfig(), tmp_path, has_eval=False)
    assert args.optim == "adamw_torch_fused"
    p = torch.nn.Parameter(torch.ones(4))
    p.grad = torch.ones(4)
    torch.optim.AdamW([p], lr=0.1, fused=True).step()  # fused AdamW exists for this device
    assert (p < 1).all()


def test_gradient_checkpointing_auto_turns_on_only_when_memory_requires():
    from transformers import LlamaConfig

    from tunesmith.train import resolve_gradient_checkpointing
    from tunesmith.train.trainer import activation_bytes, available_memory_bytes

    cfg = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, vocab_size=49152)
    assert resolve_gradient_checkpointing("auto", cfg, 1024) is False  # ~2.6 GB: fits
    huge = available_memory_bytes() // activation_bytes(cfg, 1) + 1
    assert resolve_gradient_checkpointing("auto", cfg, huge) is True
    assert resolve_gradient_checkpointing(True, cfg, 8) is True
    assert resolve_gradient_checkpointing(False, cfg, huge) is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error")
def test_liger_kernel_on_cpu_is_an_error_naming_the_fix(tmp_path):
    from tunesmith.errors import ConfigError
    from tunesmith.train import training_arguments

    with pytest.raises(ConfigError, match="liger_kernel: true needs a CUDA GPU.*set it to false"):
        training_arguments(TrainConfig(liger_kernel=True), tmp_path, has_eval=False)


BF16_TOL = 0.02  # relative: bf16 keeps 8 mantissa bits; the loss is a mean over many tokens


def test_bf16_autocast_loss_matches_fp32(tiny_llama_dir):
    """What `precision: auto` picks on bf16-capable hardware must not change the loss."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, model.config.vocab_size, (2, 64), generator=g)
    with torch.no_grad():
        fp32 = model(input_ids=ids, labels=ids).loss
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(input_ids=ids, labels=ids).loss
    assert abs(bf16.float() - fp32) / fp32 < BF16_TOL


def test_a_second_run_on_the_same_data_reuses_the_tokenised_rows(tiny_llama_dir, tmp_path):
    """Tokenisation is cached by fingerprint under <output.dir>/.cache: the second run loads it,
    trains on the same rows (same loss), and still gets the quarantine file; changed data rebuilds."""
    import json

    from tunesmith.config import validate_config
    from tunesmith.tasks import run_task

    rows = [{"instruction": f"Count to {n}.", "input": "", "output": " ".join(str(i) for i in range(n))}
            for n in range(1, 13)] + [{"instruction": "", "input": "", "output": ""}]  # one bad row
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))

    def run(name):
        cfg = validate_config({"model": {"name_or_path": str(tiny_llama_dir)},
                               "data": {"train_file": str(data), "max_length": 128, "eval_split": 0.25,
                                        "max_bad_fraction": 0.5},
                               "method": {"name": "lora", "r": 4},
                               "train": {"max_steps": 1, "batch_size": 4, "logging_steps": 1},
                               "output": {"dir": str(tmp_path / "runs"), "name": name}})
        result = run_task(cfg)
        return result, json.loads((result.run_dir / "run_info.json").read_text())["data"]

    first, first_stats = run("a")
    second, second_stats = run("b")
    assert "from_cache" not in first_stats and second_stats["from_cache"] is True
    assert second.metrics["eval_loss"] == pytest.approx(first.metrics["eval_loss"], abs=1e-6)
    q = [(first.run_dir / "quarantine.jsonl").read_text(), (second.run_dir / "quarantine.jsonl").read_text()]
    assert q[0] and q[0] == q[1]
    data.write_text("\n".join(json.dumps(r) for r in rows[:-2]))  # new contents, new fingerprint
    _, third_stats = run("c")
    assert "from_cache" not in third_stats


def test_torch_compile_trains_packed_rows_to_the_same_losses(tiny_llama_dir, tmp_path):
    """`train.torch_compile` (inductor) on the default packed path, per-example attention included:
    the same train and held-out losses as eager after the same steps."""
    import json
    import shutil

    from tunesmith.config import validate_config
    from tunesmith.tasks import run_task

    if not (shutil.which("c++") or shutil.which("g++")):
        pytest.skip("torch.compile's CPU backend (inductor) needs a C++ compiler; none on PATH")
    # rows of one length, so every packed micro-batch has the same shape: one compile, no recompiles
    rows = [{"instruction": f"Say {c}.", "input": "", "output": f"{c} {c} {c}"} for c in "abcdefghijklmnop"]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))

    def run(compiled):
        cfg = validate_config({"model": {"name_or_path": str(tiny_llama_dir)},
                               "data": {"train_file": str(data), "max_length": 128, "eval_split": 0.25},
                               "method": {"name": "lora", "r": 4},
                               "train": {"max_steps": 3, "batch_size": 4, "logging_steps": 1,
                                         "torch_compile": compiled},
                               "output": {"dir": str(tmp_path / "runs"), "name": f"compiled-{compiled}"}})
        result = run_task(cfg)
        info = json.loads((result.run_dir / "run_info.json").read_text())
        logged = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
        return {**result.metrics, "train_losses": [r["loss"] for r in logged if "loss" in r]}, info

    eager, eager_info = run(False)
    compiled, compiled_info = run(True)
    assert eager_info["batches"]["mode"] == compiled_info["batches"]["mode"] == "packed"
    assert compiled_info["batches"]["attention"] == "tunesmith_varlen"
    assert compiled["eval_loss"] == pytest.approx(eager["eval_loss"], rel=1e-4)
    assert len(eager["train_losses"]) == 3
    assert compiled["train_losses"] == pytest.approx(eager["train_losses"], rel=1e-4)
