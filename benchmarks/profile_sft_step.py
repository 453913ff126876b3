"""Where the time of a tunesmith SFT step goes: torch.profiler over a few packed LoRA steps.

Same job as benchmarks/sft_throughput.py (SmolLM2-135M-Instruct, Alpaca rows, LoRA r=16 all-linear,
max length 512, batch 8 -> tunesmith's auto token budget), run as a plain loop of the micro-batches the
Trainer would see: forward, backward, fused AdamW step. Prints the share of forward / backward /
optimiser time and the operators with the most self CPU time; writes benchmarks/results/sft_profile.json.

    python benchmarks/profile_sft_step.py [--steps 3] [--rows 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sft_throughput import ALPHA, BATCH, MAX_LENGTH, MODEL, R, _messages, _rows  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "sft_profile.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=64)
    args = parser.parse_args(argv)

    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from torch.profiler import ProfilerActivity, profile, record_function

    from tunesmith.config import ModelConfig
    from tunesmith.config.schema import TrainConfig
    from tunesmith.data.render import tokenize_dataset
    from tunesmith.models import load_model, load_tokenizer
    from tunesmith.models.varlen_attention import use_varlen_attention
    from tunesmith.train.batches import plan_sft_batches

    mcfg = ModelConfig(name_or_path=MODEL)
    tok = load_tokenizer(mcfg)
    train, _ = _rows(args.rows, 0)
    kept, _ = tokenize_dataset(tok, [{"messages": _messages(r)} for r in train], max_length=MAX_LENGTH)
    ds = Dataset.from_dict({"input_ids": [k.input_ids for k in kept], "labels": [k.labels for k in kept]})
    plan = plan_sft_batches(TrainConfig(batch_size=BATCH), ds, None, tok)
    model = load_model(mcfg)
    model.config.use_cache = False
    attention = "tunesmith_varlen" if use_varlen_attention(model) else model.config._attn_implementation
    # tunesmith's defaults: LoRA dropout 0 (peft's default), per-example attention in packed rows
    model = get_peft_model(model, LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    model.train()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, fused=True)
    batches = [plan.collator([plan.train[i]]) for i in range(min(len(plan.train), args.steps + 1))]

    def step(batch):
        with record_function("forward"):
            loss = model(**batch).loss
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer"):
            optim.step()
            optim.zero_grad()

    step(batches[0])  # warm-up, not profiled
    tokens = sum(b["input_ids"].numel() for b in batches[1:])
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in batches[1:]:
            step(b)
    seconds = time.perf_counter() - start
    events = prof.key_averages()
    phases = {e.key: e.cpu_time_total / 1e6 for e in events if e.key in ("forward", "backward", "optimizer")}
    top = sorted((e for e in events if e.key not in phases), key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
    total_self = sum(e.self_cpu_time_total for e in events) / 1e6
    rows = [{"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "share": e.self_cpu_time_total / 1e6 / total_self,
             "calls": e.count} for e in top]
    print(f"{len(batches) - 1} steps, {tokens} tokens, {seconds:.1f} s under the profiler "
          f"({tokens / seconds:.1f} tok/s); micro-batch {plan.batch_tokens} tokens; attention {attention}")
    print("phases (s): " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()))
    for r in rows:
        print(f"  {r['op']:<42}{r['self_s']:>8.2f} s{100 * r['share']:>7.1f} %{r['calls']:>8}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"steps": len(batches) - 1, "tokens": tokens, "seconds": seconds,
                                   "batch_tokens": plan.batch_tokens, "attention": attention,
                                   "phases_s": phases, "top_ops": rows,
                                   "command": "python benchmarks/profile_sft_step.py " + " ".join(sys.argv[1:])},
                                  indent=2))
    print(f"written: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
