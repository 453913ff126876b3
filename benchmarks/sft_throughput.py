"""LoRA SFT throughput: the tutorial recipe, TRL's SFTTrainer defaults and tunesmith, in one invocation.

The job (issues #2, #6): bundled SmolLM2-135M-Instruct, N Alpaca rows from ../shared/data/alpaca_en,
LoRA r=16 (alpha 32) on all linear layers, max length 512, batch 8, 1 epoch, lr 2e-4. Recipes:
  padded     the common tutorial: transformers Trainer, chat-template text tokenised with
             padding="max_length" to 512, DataCollatorForLanguageModeling, TrainingArguments defaults
  trl        TRL SFTTrainer defaults (prompt/completion data); on CPUs without bf16 units its default
             bf16 autocast is emulated, so it may run a bounded number of steps (--trl-steps), said in the output
  trl-fp32   the same with bf16 off (--trl-fp32), a fairer baseline on such CPUs
  tunesmith  tunesmith's defaults (`tunesmith train` with only the job's keys set): packing, fused AdamW, ...
Each recipe runs in its own child process (so peak RSS is its own) and reports:
  - real tokens/s: non-padding tokens of the training batches divided by train time,
  - padding share of compute: padding tokens / all tokens the model ran on,
  - wall time of training, peak RSS of the process,
  - held-out loss measured identically for all: mean loss on the response tokens of the held-out
    rows, rendered with the model's chat template (tunesmith's label mask), one shared function,
  - model FLOP/s and its share of the machine's measured fp32 matmul peak. Model FLOPs per real
    token = 4 x (frozen linear weights, lm_head included) + 6 x (trainable LoRA weights): 2 per weight
    forward, 2 backward for the input gradient, 2 more for a trained weight's gradient. Attention
    scores and padding are not counted (useful work only).
Prints a table with ratios (tunesmith / others) and writes benchmarks/results/sft_throughput.json.

    python benchmarks/sft_throughput.py [--rows 256] [--heldout 64] [--only NAME ...] [--trl-fp32]
                                        [--trl-steps K] [--padded-steps K]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALPACA = ROOT.parent / "shared" / "data" / "alpaca_en" / "alpaca_data.json"
RESULTS = ROOT / "benchmarks" / "results" / "sft_throughput.json"
MODEL = "smollm2-135m-instruct"
MAX_LENGTH, BATCH, LR, R, ALPHA = 512, 8, 2e-4, 16, 32
RECIPES = ("tunesmith", "trl-fp32", "padded", "trl")  # run order: the slowest (bounded) ones last


def _rows(n_train: int, n_heldout: int) -> tuple[list[dict], list[dict]]:
    import random

    rows = [r for r in json.loads(ALPACA.read_text(encoding="utf-8")) if r["output"].strip()]
    random.Random(0).shuffle(rows)
    return rows[:n_train], rows[n_train:n_train + n_heldout]


def _messages(row: dict) -> list[dict]:
    user = row["instruction"] + (f"\n\n{row['input']}" if row["input"].strip() else "")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]


def heldout_loss(model, tokenizer, heldout: list[dict]) -> float:
    """Mean cross-entropy over response tokens (tunesmith's assistant-only mask) of the held-out rows."""
    import torch

    from tunesmith.data.render import tokenize_conversation

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in heldout:
            ex = tokenize_conversation(tokenizer, _messages(row), max_length=MAX_LENGTH)
            ids = torch.tensor([ex.input_ids])
            labels = torch.tensor([ex.labels])
            logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum")
            total += loss.item()
            count += int((labels[:, 1:] != -100).sum())
    return total / max(count, 1)


def flops_per_token(model) -> dict:
    """Model FLOPs per real token of a LoRA training step (see the module docstring)."""
    import torch

    frozen = trained = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            if module.weight.requires_grad:
                trained += module.weight.numel()
            else:
                frozen += module.weight.numel()
    return {"frozen_linear_params": frozen, "trained_linear_params": trained,
            "flops_per_token": 4 * frozen + 6 * trained}


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an n x n matmul on this machine (torch's threads as configured)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # Linux: KiB


class CountingCollator:
    """Wraps a collator to count, per batch, the tokens the model runs on and the real (non-padding)
    ones. The Trainer may collate a batch beyond the last step of a bounded run, so `totals(n)` sums
    only the first n batches (steps x gradient accumulation)."""

    def __init__(self, inner):
        self.inner, self.batches = inner, []

    def __call__(self, features):
        batch = self.inner(features)
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        self.batches.append((int(mask.sum()) if mask is not None else ids.numel(), ids.numel()))
        return batch

    def totals(self, n_batches: int) -> tuple[int, int]:
        used = self.batches[:n_batches]
        return sum(r for r, _ in used), sum(c for _, c in used)


def _finish(out: dict, model, tok, heldout, *, real: int, computed: int, train_seconds: float, wall: float,
            steps: int) -> None:
    out.update(real_tokens=real, computed_tokens=computed, padding_share=1 - real / max(computed, 1),
               train_seconds=train_seconds, wall_seconds=wall, steps=steps, **flops_per_token(model))
    out["heldout_loss"] = heldout_loss(model, tok, heldout)
    out["peak_rss_gb"] = _peak_rss_gb()


def run_padded(n_train: int, n_heldout: int, out: dict, max_steps: int = -1) -> None:
    """The tutorial recipe: pad every example to max_length, plain Trainer, TrainingArguments defaults."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from tunesmith.config import ModelConfig
    from tunesmith.models import load_model, load_tokenizer

    train, heldout = _rows(n_train, n_heldout)
    mcfg = ModelConfig(name_or_path=MODEL)
    tok, model = load_tokenizer(mcfg), load_model(mcfg)
    texts = [tok.apply_chat_template(_messages(r), tokenize=False) for r in train]
    ds = Dataset.from_dict(dict(tok(texts, padding="max_length", truncation=True, max_length=MAX_LENGTH)))
    model = get_peft_model(model, LoraConfig(r=R, lora_alpha=ALPHA, target_modules="all-linear", task_type="CAUSAL_LM"))
    collator = CountingCollator(DataCollatorForLanguageModeling(tok, mlm=False))
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=BATCH, num_train_epochs=1,
                             max_steps=max_steps, learning_rate=LR, report_to="none", save_strategy="no",
                             logging_steps=5, disable_tqdm=True, use_cpu=not torch.cuda.is_available())
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collator)
    _train_counted(trainer, collator, tok, heldout, len(train), out)
    # Every step of this recipe has the same shape (8 x 512), so a bounded run's seconds per step hold for
    # the whole epoch; the epoch's real tokens are known. Their ratio is the full run's real tokens/s,
    # free of which rows happened to fall in the measured steps.
    out["full_run_real_tokens"] = sum(sum(m) for m in ds["attention_mask"])


def _train_counted(trainer, collator, tok, heldout, n_train: int, out: dict) -> None:
    """Train a baseline Trainer whose collator counts tokens, then record the same figures for every recipe."""
    start = time.perf_counter()
    output = trainer.train()
    real, computed = collator.totals(trainer.state.global_step * trainer.args.gradient_accumulation_steps)
    _finish(out, trainer.model, tok, heldout, real=real, computed=computed,
            train_seconds=output.metrics["train_runtime"], wall=time.perf_counter() - start,
            steps=trainer.state.global_step)
    out["batches_collated"] = len(collator.batches)
    out["full_steps"] = -(-n_train // BATCH)


def run_trl(n_train: int, n_heldout: int, out: dict, fp32: bool = False, max_steps: int = -1) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from tunesmith.config import ModelConfig
    from tunesmith.models import load_model, load_tokenizer

    train, heldout = _rows(n_train, n_heldout)
    mcfg = ModelConfig(name_or_path=MODEL)
    tok, model = load_tokenizer(mcfg), load_model(mcfg)
    ds = Dataset.from_list([{"prompt": _messages(r)[:1], "completion": _messages(r)[1:]} for r in train])
    # TRL's defaults except what defines the job (length, batch, epochs, lr, LoRA) and use_cpu.
    args = SFTConfig(output_dir=tempfile.mkdtemp(), max_length=MAX_LENGTH, per_device_train_batch_size=BATCH,
                     num_train_epochs=1, max_steps=max_steps, learning_rate=LR, report_to="none",
                     use_cpu=not torch.cuda.is_available(), save_strategy="no", logging_steps=5, disable_tqdm=True,
                     **({"bf16": False} if fp32 else {}))
    peft_config = LoraConfig(r=R, lora_alpha=ALPHA, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config)
    collator = trainer.data_collator = CountingCollator(trainer.data_collator)
    _train_counted(trainer, collator, tok, heldout, len(train), out)
    out["defaults"] = {"gradient_checkpointing": args.gradient_checkpointing, "bf16": args.bf16,
                       "padding_free": args.padding_free, "packing": args.packing}


def run_tunesmith(n_train: int, n_heldout: int, out: dict, overrides: list[str] = ()) -> None:
    from tunesmith.config import validate_config
    from tunesmith.config.load import apply_overrides
    from tunesmith.models import load_tokenizer
    from tunesmith.tasks import run_task

    train, heldout = _rows(n_train, n_heldout)
    tmp = Path(tempfile.mkdtemp())
    path = tmp / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in train))
    cfg = validate_config(apply_overrides({
        "model": {"name_or_path": MODEL},
        "data": {"train_file": str(path), "max_length": MAX_LENGTH, "eval_split": 0.0, "max_bad_fraction": 0.5},
        "method": {"name": "lora", "r": R, "alpha": ALPHA, "target_modules": "all-linear"},
        "train": {"epochs": 1, "batch_size": BATCH, "learning_rate": LR, "logging_steps": 5},
        "output": {"dir": str(tmp / "runs"), "name": "bench"},
    }, list(overrides)))
    start = time.perf_counter()
    result = run_task(cfg)
    wall = time.perf_counter() - start
    state = json.loads((result.run_dir / "trainer_state.json").read_text())
    info = json.loads((result.run_dir / "run_info.json").read_text())
    batches = info["batches"]
    train_runtime = next(h["train_runtime"] for h in state["log_history"] if "train_runtime" in h)
    _finish(out, result.model, load_tokenizer(cfg.model), heldout, real=batches["real_tokens"],
            computed=batches["computed_tokens"], train_seconds=train_runtime, wall=wall, steps=state["global_step"])
    out["batches"] = batches


def _child(name: str, n_train: int, n_heldout: int, bounds: dict, queue) -> None:
    out: dict = {}
    try:
        if name == "padded":
            run_padded(n_train, n_heldout, out, max_steps=bounds.get("padded", -1))
        elif name == "trl":
            run_trl(n_train, n_heldout, out, max_steps=bounds.get("trl", -1))
        elif name == "trl-fp32":  # TRL defaults but bf16 off: bf16 autocast is emulated on CPUs without bf16 units
            run_trl(n_train, n_heldout, out, fp32=True)
        else:
            run_tunesmith(n_train, n_heldout, out, bounds.get("tunesmith_overrides", []))
    except Exception as exc:  # reported in the table, not swallowed
        out["error"] = f"{type(exc).__name__}: {exc}"
    queue.put((name, out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--heldout", type=int, default=64)
    parser.add_argument("--only", choices=RECIPES, nargs="+", default=None)
    parser.add_argument("--trl-fp32", action="store_true", help="also run TRL defaults with bf16 turned off")
    parser.add_argument("--trl-steps", type=int, default=-1,
                        help="stop TRL defaults after this many steps (same per-step shape); -1: the full epoch")
    parser.add_argument("--padded-steps", type=int, default=-1, help="the same bound for the padded recipe")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                        help="dotted config overrides for the tunesmith run, e.g. train.batch_tokens=424 "
                        "train.grad_accum=2 method.dropout=0 (write to another --output)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not ALPACA.exists():
        print(f"skipped: {ALPACA} not found (../shared/data is absent)")
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    peak = matmul_peak_gflops()
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s ({torch.get_num_threads()} threads)", flush=True)
    ctx = mp.get_context("spawn")
    results: dict[str, dict] = {}
    names = args.only or [n for n in RECIPES if n != "trl-fp32" or args.trl_fp32]
    bounds = {"trl": args.trl_steps, "padded": args.padded_steps, "tunesmith_overrides": args.overrides}
    for name in names:
        print(f"running {name} ...", flush=True)
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(name, args.rows, args.heldout, bounds, queue))
        proc.start()
        proc.join()
        results[name] = queue.get()[1] if not queue.empty() else {"error": f"exit code {proc.exitcode}"}
        r = results[name]
        if "real_tokens" in r:
            r["real_tokens_per_s"] = r["real_tokens"] / r["train_seconds"]
            if r.get("full_steps") and r["steps"] < r["full_steps"]:
                r["bounded"] = (f"stopped after {r['steps']} of {r['full_steps']} steps; tokens/s from those "
                                "steps; held-out loss after them is not comparable")
                if "full_run_real_tokens" in r:  # fixed-shape steps: extrapolate to the whole epoch
                    r["real_tokens_per_s_measured_steps"] = r["real_tokens_per_s"]
                    r["real_tokens_per_s"] = r["full_run_real_tokens"] * r["steps"] / (r["full_steps"]
                                                                                      * r["train_seconds"])
                    r["bounded"] = (f"stopped after {r['steps']} of {r['full_steps']} steps of the same 8 x 512 "
                                    "shape; real tokens/s = the epoch's real tokens / (its steps x measured "
                                    "seconds per step); held-out loss after them is not comparable")
            r["model_gflops_per_s"] = r["flops_per_token"] * r["real_tokens_per_s"] / 1e9
            r["share_of_matmul_peak"] = r["model_gflops_per_s"] / peak
        print(json.dumps({name: r}, default=str), flush=True)
        _write(args, bounds, peak, results, quiet=True)  # partial results survive an interrupted run
    _print_table(results, peak)
    _write(args, bounds, peak, results)
    return 0


def _ratios(results: dict) -> dict:
    ratios = {}
    t = results.get("tunesmith", {})
    for other in ("padded", "trl", "trl-fp32"):
        b = results.get(other, {})
        if "real_tokens_per_s" in t and "real_tokens_per_s" in b:
            ratios[other] = {"tokens_per_s": t["real_tokens_per_s"] / b["real_tokens_per_s"],
                             "peak_rss": t["peak_rss_gb"] / b["peak_rss_gb"],
                             "heldout_loss": t["heldout_loss"] / b["heldout_loss"],
                             "heldout_loss_comparable": "bounded" not in b}
    return ratios


def _write(args, bounds: dict, peak: float, results: dict, quiet: bool = False) -> None:
    import torch

    ratios = _ratios(results)
    if not quiet:
        for other, r in ratios.items():
            print(f"ratios tunesmith / {other}: " + ", ".join(
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "job": {"rows": args.rows, "heldout": args.heldout, "max_length": MAX_LENGTH, "batch": BATCH, "lr": LR,
                "lora_r": R, "lora_alpha": ALPHA, "model": MODEL, "bounds": bounds},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "fp32_matmul_peak_gflops": peak},
        "flops_formula": "4 x frozen linear weights + 6 x trainable linear weights, per real token",
        "command": "python benchmarks/sft_throughput.py " + " ".join(sys.argv[1:]),
        "results": results, "ratios": ratios}, indent=2))
    if not quiet:
        print(f"written: {args.output}")


def _print_table(results: dict, peak: float) -> None:
    print(f"\nfp32 matmul peak {peak:.1f} GFLOP/s")
    print(f"{'':11}{'real tok/s':>11}{'train s':>9}{'wall s':>8}{'RSS GB':>8}{'held-out':>10}{'pad %':>7}"
          f"{'GFLOP/s':>9}{'% peak':>8}{'steps':>9}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:11}error: {r['error']}")
            continue
        steps = f"{r['steps']}/{r['full_steps']}" if r.get("full_steps") else str(r["steps"])
        print(f"{name:11}{r['real_tokens_per_s']:>11.1f}{r['train_seconds']:>9.1f}{r['wall_seconds']:>8.1f}"
              f"{r['peak_rss_gb']:>8.2f}{r['heldout_loss']:>10.4f}{100 * r['padding_share']:>7.1f}"
              f"{r['model_gflops_per_s']:>9.2f}{100 * r['share_of_matmul_peak']:>8.1f}{steps:>9}")
        if "bounded" in r:
            print(f"{'':11}({r['bounded']})")


if __name__ == "__main__":
    sys.exit(main())
