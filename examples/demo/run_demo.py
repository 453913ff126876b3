"""`make demo`: fine-tune the bundled SmolLM2 with LoRA on a task the base model fails, then
compare exact match of the base and the fine-tuned model on held-out examples.

The data is generated here (examples/demo/orders.py), so the demo needs no download.
Usage: python examples/demo/run_demo.py [--train N] [--heldout N] [overrides ...]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from orders import make_dataset, parse_answer, write_jsonl  # noqa: E402

from tunesmith.config import load_config  # noqa: E402
from tunesmith.eval.generate import generate_batch  # noqa: E402
from tunesmith.models import load_model, load_tokenizer  # noqa: E402
from tunesmith.tasks import run_task  # noqa: E402
from tunesmith.train import load_run  # noqa: E402


def exact_match_scores(model, tokenizer, rows: list[dict]) -> dict:
    prompts = [[{"role": "user", "content": f"{r['instruction']}\n\n{r['input']}"}] for r in rows]
    results = generate_batch(model, tokenizer, prompts, max_new_tokens=64, batch_size=16, measure_ttft=False)
    exact = [res.text.strip() == r["output"] for res, r in zip(results, rows)]
    fields = [parse_answer(res.text) == json.loads(r["output"]) for res, r in zip(results, rows)]
    valid = [parse_answer(res.text) is not None for res in results]
    return {
        "exact_match": sum(exact) / len(rows),
        "json_equal": sum(fields) / len(rows),
        "valid_json": sum(valid) / len(rows),
        "example": results[0].text,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=int, default=256, help="training examples to generate")
    parser.add_argument("--heldout", type=int, default=60, help="held-out examples for the comparison")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. train.epochs=2")
    args = parser.parse_args(argv)

    start = time.time()
    data_dir = Path("runs/demo-data")
    data_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(make_dataset(args.train, seed=1), data_dir / "train.jsonl")
    write_jsonl(make_dataset(24, seed=2), data_dir / "valid.jsonl")
    heldout = make_dataset(args.heldout, seed=3)
    write_jsonl(heldout, data_dir / "heldout.jsonl")

    cfg = load_config(HERE / "demo.yaml", args.overrides)
    print(f"Training: tunesmith train examples/demo/demo.yaml ({args.train} generated examples)")
    result = run_task(cfg)
    trained_at = time.time()

    base_tok = load_tokenizer(cfg.model, padding_side="left")
    base = load_model(cfg.model)
    before = exact_match_scores(base, base_tok, heldout)
    del base
    run = load_run(result.run_dir)
    after = exact_match_scores(run.model, run.tokenizer, heldout)

    print(f"\nHeld-out comparison on {len(heldout)} examples (train {trained_at - start:.0f} s, total {time.time() - start:.0f} s)")
    print(f"{'':14}{'exact match':>12}{'same JSON':>11}{'valid JSON':>12}")
    for name, s in (("base", before), ("fine-tuned", after)):
        print(f"{name:14}{s['exact_match']:>12.3f}{s['json_equal']:>11.3f}{s['valid_json']:>12.3f}")
    print(f"\nbase answer:       {before['example'][:160]!r}\nfine-tuned answer: {after['example'][:160]!r}")
    summary = {"base": before, "fine_tuned": after, "train_seconds": trained_at - start,
               "total_seconds": time.time() - start, "run_dir": str(result.run_dir)}
    (result.run_dir / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    won = after["exact_match"] >= before["exact_match"] + 0.3
    print("\nThe fine-tuned model wins clearly." if won else "\nWARNING: the fine-tuned model did not win clearly.")
    prompt = f"{heldout[0]['instruction']}\n\n{heldout[0]['input']}"
    print(f"Try it: tunesmith chat {result.run_dir} --prompt {shlex.quote(prompt)}")
    return 0 if won else 1


if __name__ == "__main__":
    sys.exit(main())
