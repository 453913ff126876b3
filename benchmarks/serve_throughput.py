"""Serving throughput: `tunesmith serve` (batched, bundled SmolLM2 + a LoRA adapter, over HTTP on
loopback) against a plain transformers `generate` loop that serves one request at a time (client
threads take turns on a lock), at 1, 8 and 32 concurrent clients.

Prints a table and writes benchmarks/results/serve_throughput.json: generated tokens/s, p50/p95
latency per request, and the tunesmith / baseline ratios.
Run (heavy; shares the machine): flock /tmp/tunesmith-heavy.lock env OMP_NUM_THREADS=2 python benchmarks/serve_throughput.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

PROMPTS = ["What is the capital of France?", "Give three tips for staying healthy.",
           "Translate 'good morning' into French.", "Summarise: the quick brown fox jumps over the lazy dog."]


def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def build_served():
    import torch
    from peft import LoraConfig, get_peft_model

    from tunesmith.config.schema import ModelConfig
    from tunesmith.models.load import load_model, load_tokenizer
    from tunesmith.serve.adapters import ServedModel

    torch.manual_seed(0)
    cfg = ModelConfig(name_or_path="smollm2-135m-instruct")
    base, tok = load_model(cfg), load_tokenizer(cfg, padding_side="left")
    # A non-zero LoRA (as after training) so the adapter path really runs.
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base, lora, adapter_name="adapter").eval()
    return ServedModel(model, tok, None, "base", {"adapter": Path("adapter")})


def bench_server(served, clients: int, per_client: int, max_tokens: int) -> dict:
    import httpx2 as httpx
    import uvicorn

    from test_serve import _free_port
    from tunesmith.config.serve_schema import ServeConfig
    from tunesmith.serve import create_app

    conf = ServeConfig(port=_free_port(), api_keys_env=None, rate_limit_per_minute=0, max_concurrency=64,
                       max_queue=64, max_tokens_limit=max_tokens, batch_wait_ms=10, max_batch_size=32)
    server = uvicorn.Server(uvicorn.Config(create_app(served, conf), host="127.0.0.1", port=conf.port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{conf.port}/v1/chat/completions"

    async def one_client(c, k, lat, toks):
        for i in range(per_client):
            body = {"model": "adapter", "max_tokens": max_tokens, "temperature": 0,
                    "messages": [{"role": "user", "content": PROMPTS[(k + i) % len(PROMPTS)]}]}
            t = time.perf_counter()
            r = await c.post(url, json=body)
            lat.append(time.perf_counter() - t)
            r.raise_for_status()
            toks.append(r.json()["usage"]["completion_tokens"])

    async def go():
        lat, toks = [], []
        async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients)) as c:
            t = time.perf_counter()
            await asyncio.gather(*(one_client(c, k, lat, toks) for k in range(clients)))
            return lat, toks, time.perf_counter() - t
    try:
        lat, toks, wall = asyncio.run(go())
    finally:
        server.should_exit = True
        th.join(timeout=30)
    return {"requests": len(lat), "tokens": sum(toks), "wall_s": wall, "tokens_per_s": sum(toks) / wall,
            "p50_s": _pct(lat, 0.5), "p95_s": _pct(lat, 0.95)}


def bench_baseline(served, clients: int, per_client: int, max_tokens: int) -> dict:
    """Plain transformers: apply_chat_template + generate, one request at a time."""
    import torch

    model, tok = served.model, served.tokenizer
    model.set_adapter("adapter")
    lock, lat, toks = threading.Lock(), [], []

    def client(k):
        for i in range(per_client):
            msgs = [{"role": "user", "content": PROMPTS[(k + i) % len(PROMPTS)]}]
            t = time.perf_counter()
            with lock, torch.inference_mode():
                ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
                out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            lat.append(time.perf_counter() - t)
            toks.append(int(out.shape[1] - ids["input_ids"].shape[1]))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    return {"requests": len(lat), "tokens": sum(toks), "wall_s": wall, "tokens_per_s": sum(toks) / wall,
            "p50_s": _pct(lat, 0.5), "p95_s": _pct(lat, 0.95)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests-per-client", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()
    served = build_served()
    rows = []
    for c in args.clients:
        s = bench_server(served, c, args.requests_per_client, args.max_tokens)
        b = bench_baseline(served, c, args.requests_per_client, args.max_tokens)
        rows.append({"clients": c, "tunesmith": s, "baseline": b,
                     "tokens_per_s_ratio": s["tokens_per_s"] / b["tokens_per_s"],
                     "p95_ratio": s["p95_s"] / b["p95_s"]})
    print(f"{'clients':>7} | {'tunesmith tok/s':>15} {'p95 s':>7} | {'baseline tok/s':>14} {'p95 s':>7} | {'tok/s x':>7} {'p95 x':>6}")
    for r in rows:
        s, b = r["tunesmith"], r["baseline"]
        print(f"{r['clients']:>7} | {s['tokens_per_s']:>15.1f} {s['p95_s']:>7.2f} | {b['tokens_per_s']:>14.1f} "
              f"{b['p95_s']:>7.2f} | {r['tokens_per_s_ratio']:>7.2f} {r['p95_ratio']:>6.2f}")
    out = ROOT / "benchmarks" / "results" / "serve_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": "smollm2-135m-instruct + LoRA r=8", "max_tokens": args.max_tokens,
                               "requests_per_client": args.requests_per_client, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
