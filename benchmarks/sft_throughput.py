"""LoRA SFT throughput: tunesmith against TRL's SFTTrainer defaults, in one invocation.

The job (issue #2): bundled SmolLM2-135M-Instruct, N Alpaca rows from ../shared/data/alpaca_en,
LoRA r=16 on all linear layers, max length 512, batch 8, 1 epoch, lr 2e-4. Each framework runs
in its own child process (so peak RSS is its own) and reports:
  - real tokens/s: non-padding tokens of the training set processed per second of train time,
  - wall time of training, peak RSS of the process,
  - held-out loss measured identically for both: mean loss on the response tokens of 64
    held-out rows, rendered with the model's chat template (tunesmith's label mask).
Prints a table with ratios (tunesmith / TRL) and writes benchmarks/results/sft_throughput.json.

    python benchmarks/sft_throughput.py [--rows 256] [--heldout 64] [--only tunesmith|trl]
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
MAX_LENGTH, BATCH, LR, R, ALPHA = 512, 8, 2e-4, 16, 32


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
            logits = model(input_ids=ids).logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum")
            total += loss.item()
            count += int((labels[:, 1:] != -100).sum())
    return total / max(count, 1)


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # Linux: KiB


def run_tunesmith(n_train: int, n_heldout: int, out: dict) -> None:
    from tunesmith.config import validate_config
    from tunesmith.tasks import run_task

    train, heldout = _rows(n_train, n_heldout)
    tmp = Path(tempfile.mkdtemp())
    path = tmp / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in train))
    cfg = validate_config({
        "model": {"name_or_path": "smollm2-135m-instruct"},
        "data": {"train_file": str(path), "max_length": MAX_LENGTH, "eval_split": 0.0, "max_bad_fraction": 0.5},
        "method": {"name": "lora", "r": R, "alpha": ALPHA, "target_modules": "all-linear"},
        "train": {"epochs": 1, "batch_size": BATCH, "learning_rate": LR, "logging_steps": 5},
        "output": {"dir": str(tmp / "runs"), "name": "bench"},
    })
    start = time.perf_counter()
    result = run_task(cfg)
    wall = time.perf_counter() - start
    state = json.loads((result.run_dir / "trainer_state.json").read_text())
    train_runtime = next(h["train_runtime"] for h in state["log_history"] if "train_runtime" in h)
    from tunesmith.data.render import tokenize_dataset
    from tunesmith.models import load_tokenizer

    tok = load_tokenizer(cfg.model)
    examples = [{"messages": _messages(r)} for r in train]
    _, stats = tokenize_dataset(tok, examples, max_length=MAX_LENGTH)
    out.update(real_tokens=stats["tokens"], train_seconds=train_runtime, wall_seconds=wall,
               heldout_loss=heldout_loss(result.model, tok, heldout), peak_rss_gb=_peak_rss_gb(),
               steps=state["global_step"])


def run_trl(n_train: int, n_heldout: int, out: dict, fp32: bool = False) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from tunesmith.config import ModelConfig
    from tunesmith.models import load_model, load_tokenizer

    train, heldout = _rows(n_train, n_heldout)
    mcfg = ModelConfig(name_or_path="smollm2-135m-instruct")
    tok, model = load_tokenizer(mcfg), load_model(mcfg)
    ds = Dataset.from_list([{"prompt": _messages(r)[:1], "completion": _messages(r)[1:]} for r in train])
    tmp = tempfile.mkdtemp()
    # TRL's defaults except what defines the job (length, batch, epochs, lr, LoRA) and use_cpu.
    args = SFTConfig(output_dir=tmp, max_length=MAX_LENGTH, per_device_train_batch_size=BATCH, num_train_epochs=1,
                     learning_rate=LR, report_to="none", use_cpu=not torch.cuda.is_available(), save_strategy="no",
                     logging_steps=5, disable_tqdm=True, **({"bf16": False} if fp32 else {}))
    peft_config = LoraConfig(r=R, lora_alpha=ALPHA, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config)
    real_tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
    start = time.perf_counter()
    output = trainer.train()
    wall = time.perf_counter() - start
    out.update(real_tokens=real_tokens, train_seconds=output.metrics["train_runtime"], wall_seconds=wall,
               heldout_loss=heldout_loss(trainer.model, tok, heldout), peak_rss_gb=_peak_rss_gb(),
               steps=trainer.state.global_step,
               defaults={"gradient_checkpointing": args.gradient_checkpointing, "bf16": args.bf16,
                         "padding_free": args.padding_free, "packing": args.packing})


def _child(name: str, n_train: int, n_heldout: int, queue) -> None:
    out: dict = {}
    try:
        if name == "trl-fp32":  # TRL defaults but bf16 off: bf16 autocast is emulated on CPUs without bf16 units
            run_trl(n_train, n_heldout, out, fp32=True)
        else:
            {"tunesmith": run_tunesmith, "trl": run_trl}[name](n_train, n_heldout, out)
    except Exception as exc:  # reported in the table, not swallowed
        out["error"] = f"{type(exc).__name__}: {exc}"
    queue.put((name, out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--heldout", type=int, default=64)
    parser.add_argument("--only", choices=["tunesmith", "trl", "trl-fp32"], default=None)
    parser.add_argument("--trl-fp32", action="store_true", help="also run TRL defaults with bf16 turned off")
    args = parser.parse_args(argv)
    if not ALPACA.exists():
        print(f"skipped: {ALPACA} not found (../shared/data is absent)")
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ctx = mp.get_context("spawn")
    results: dict[str, dict] = {}
    names = [args.only] if args.only else ["tunesmith", "trl"] + (["trl-fp32"] if args.trl_fp32 else [])
    for name in names:
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(name, args.rows, args.heldout, queue))
        proc.start()
        proc.join()
        results[name] = queue.get()[1] if not queue.empty() else {"error": f"exit code {proc.exitcode}"}
        r = results[name]
        if "real_tokens" in r:
            r["real_tokens_per_s"] = r["real_tokens"] / r["train_seconds"]
    _print_table(results)
    ratios = {}
    for other in ("trl", "trl-fp32"):
        if all("real_tokens_per_s" in results.get(k, {}) for k in ("tunesmith", other)):
            t, b = results["tunesmith"], results[other]
            ratios[other] = {"tokens_per_s": t["real_tokens_per_s"] / b["real_tokens_per_s"],
                             "train_seconds": t["train_seconds"] / b["train_seconds"],
                             "peak_rss": t["peak_rss_gb"] / b["peak_rss_gb"],
                             "heldout_loss": t["heldout_loss"] / b["heldout_loss"]}
            print(f"\nratios tunesmith / {other}: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios[other].items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "job": {"rows": args.rows, "heldout": args.heldout, "max_length": MAX_LENGTH, "batch": BATCH, "lr": LR,
                "lora_r": R, "model": "smollm2-135m-instruct"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "results": results, "ratios": ratios}, indent=2))
    print(f"written: {RESULTS}")
    return 0


def _print_table(results: dict) -> None:
    print(f"\n{'':12}{'real tok/s':>12}{'train s':>10}{'peak RSS GB':>13}{'held-out loss':>15}{'steps':>7}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:12}error: {r['error']}")
            continue
        print(f"{name:12}{r['real_tokens_per_s']:>12.1f}{r['train_seconds']:>10.1f}{r['peak_rss_gb']:>13.2f}"
              f"{r['heldout_loss']:>15.4f}{r['steps']:>7}")


if __name__ == "__main__":
    sys.exit(main())
