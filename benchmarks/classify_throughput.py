"""SST-2 with minilm-l6: tunesmith `task: classify` vs the common tutorial recipe (transformers
Trainer, padding to max_length=128), same rows, model, steps and learning rate, one run each.

Each leg runs in its own process so peak RSS is its own. Prints a table and writes
benchmarks/results/classify_throughput.json. Real tokens = non-pad tokens of the training rows
seen (epochs x rows), so padding work does not count as throughput.

  OMP_NUM_THREADS=2 flock /tmp/tunesmith-heavy.lock python benchmarks/classify_throughput.py --rows 2000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2"


def _config(rows: int, out: Path, seed: int) -> dict:
    return {
        "task": "classify", "model": {"name_or_path": "minilm-l6"},
        "data": {"format": "classification", "train_file": str(DATA / "train.tsv"), "eval_file": str(DATA / "dev.tsv"),
                 "columns": {"text": "sentence"}, "max_samples": rows},
        "method": {"name": "full"}, "classify": {"max_length": 128},
        "train": {"epochs": 1, "batch_size": 32, "eval_batch_size": 64, "learning_rate": 1e-4, "warmup_ratio": 0.06,
                  "lr_scheduler": "linear", "precision": "fp32", "seed": seed, "logging_steps": 50},
        "output": {"dir": str(out), "name": "bench", "overwrite": True},
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_tunesmith(rows: int, out: str, seed: int, q) -> None:
    from tunesmith.config import validate_config
    from tunesmith.tasks import run_task

    cfg = validate_config(_config(rows, Path(out), seed))
    start = time.perf_counter()
    result = run_task(cfg)
    wall = time.perf_counter() - start
    info = json.loads((result.run_dir / "run_info.json").read_text())
    q.put({"wall_s": wall, "accuracy": result.metrics["eval_accuracy"], "peak_rss_mb": _peak_rss_mb(),
           "train_rows": info["data"]["train"]})


def run_tutorial(rows: int, out: str, seed: int, q) -> None:
    """The recipe of the transformers text-classification tutorial, padding='max_length'."""
    import numpy as np
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    from tunesmith.data.readers import read_all
    from tunesmith.models import resolve_model
    from tunesmith.train.classify_data import _cap

    path = resolve_model("minilm-l6").path
    start = time.perf_counter()
    train = _cap([(None, r.data) for r in read_all(str(DATA / "train.tsv"))], rows, seed)
    train = [d for _, d in train]
    dev = [r.data for r in read_all(str(DATA / "dev.tsv"))]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)

    def encode(batch):
        return tok(batch["sentence"], padding="max_length", truncation=True, max_length=128)

    to_ds = lambda rs: Dataset.from_dict({"sentence": [r["sentence"] for r in rs],  # noqa: E731
                                          "label": [int(r["label"]) for r in rs]}).map(encode, batched=True)
    args = TrainingArguments(output_dir=out, per_device_train_batch_size=32, per_device_eval_batch_size=64,
                             learning_rate=1e-4, num_train_epochs=1, warmup_steps=0.06, lr_scheduler_type="linear",
                             eval_strategy="epoch", save_strategy="no", report_to="none", seed=seed,
                             use_cpu=True, disable_tqdm=True, logging_steps=50)
    acc = lambda p: {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}  # noqa: E731
    trainer = Trainer(model=model, args=args, train_dataset=to_ds(train), eval_dataset=to_ds(dev), compute_metrics=acc)
    trainer.train()
    metrics = trainer.evaluate()
    q.put({"wall_s": time.perf_counter() - start, "accuracy": metrics["eval_accuracy"], "peak_rss_mb": _peak_rss_mb(),
           "train_rows": len(train)})


def real_tokens(rows: int, seed: int) -> int:
    from transformers import AutoTokenizer

    from tunesmith.data.readers import read_all
    from tunesmith.models import resolve_model
    from tunesmith.train.classify_data import _cap

    tok = AutoTokenizer.from_pretrained(resolve_model("minilm-l6").path)
    train = _cap([(None, r.data) for r in read_all(str(DATA / "train.tsv"))], rows, seed)
    enc = tok([d["sentence"] for _, d in train], truncation=True, max_length=128)
    return sum(len(x) for x in enc["input_ids"])


def _leg(fn, *args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=fn, args=(*args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000, help="SST-2 training rows (one epoch).")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default="/tmp/tunesmith-bench")
    a = ap.parse_args()
    tokens = real_tokens(a.rows, a.seed)
    results = {"tunesmith": _leg(run_tunesmith, a.rows, a.out + "/ts", a.seed),
               "tutorial_max_length_128": _leg(run_tutorial, a.rows, a.out + "/tut", a.seed)}
    for r in results.values():
        r["real_tokens_per_s"] = tokens / r["wall_s"]
    ts, tut = results["tunesmith"], results["tutorial_max_length_128"]
    ratios = {"tokens_per_s": ts["real_tokens_per_s"] / tut["real_tokens_per_s"], "wall": ts["wall_s"] / tut["wall_s"],
              "peak_rss": ts["peak_rss_mb"] / tut["peak_rss_mb"], "accuracy_delta": ts["accuracy"] - tut["accuracy"]}
    report = {"job": f"SST-2 minilm-l6, {a.rows} rows, 1 epoch, batch 32, lr 1e-4, dev accuracy",
              "real_train_tokens": tokens, "results": results, "ratios_tunesmith_over_tutorial": ratios}
    print(f"{'recipe':<26}{'tokens/s':>10}{'wall s':>9}{'peak RSS MB':>13}{'dev acc':>9}")
    for name, r in results.items():
        print(f"{name:<26}{r['real_tokens_per_s']:>10.0f}{r['wall_s']:>9.1f}{r['peak_rss_mb']:>13.0f}{r['accuracy']:>9.4f}")
    print("ratios (tunesmith / tutorial):", {k: round(v, 3) for k, v in ratios.items()})
    out = ROOT / "benchmarks" / "results" / "classify_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
