"""Generation evaluation of one model on held-out SFT examples, and before/after deltas.

`evaluate_generation` returns

    {"label": str, "n": int, "language": "en"|"zh",
     "settings": {max_new_tokens, do_sample, temperature, top_p, batch_size, seed},
     "metrics": {metric: value},          # corpus level, text metrics 0-100, perplexity raw
     "efficiency": {latency_p50_s, latency_p95_s, ttft_p50_s, ttft_p95_s, tokens_per_s,
                    generated_tokens, peak_memory_mb, memory_kind, n_requests},
     "examples": [{"index", "input", "reference", "prediction", "scores": {metric: value},
                   "n_new_tokens", "latency_s", "facets": {"label"?, "source"?}}]}
"""

from __future__ import annotations

from typing import Sequence

from tunesmith.config.eval_schema import EvalConfig

from .generate import PeakMemory, efficiency_summary, generate_batch, reference_perplexity, split_example
from .metrics import compute_text_metrics, higher_is_better


def _input_text(prompt_messages: list[dict]) -> str:
    """The human-readable input: the conversation before the reference, one turn per line."""
    if len(prompt_messages) == 1:
        return prompt_messages[0].get("content", "")
    return "\n".join(f"[{m.get('role')}] {m.get('content', '')}" for m in prompt_messages)


def _facets(example: dict) -> dict:
    out = {}
    label = example.get("label", (example.get("meta") or {}).get("label"))
    if label is not None:
        out["label"] = label if isinstance(label, str) else str(label)
    source = example.get("source") or example.get("file") or (example.get("meta") or {}).get("source")
    if source is not None:
        out["source"] = str(source)
    return out


def evaluate_generation(model, tokenizer, examples: Sequence[dict], cfg: EvalConfig, *,
                        label: str = "fine-tuned", chat_template: str | None = None) -> dict:
    """Generate for each example's prompt and score against its last assistant turn."""
    examples = list(examples)[: cfg.num_samples] if cfg.num_samples else list(examples)
    prompts, refs = zip(*(split_example(e) for e in examples)) if examples else ((), ())
    with PeakMemory(next(model.parameters()).device) as peak:
        gens = generate_batch(
            model, tokenizer, list(prompts), max_new_tokens=cfg.max_new_tokens,
            batch_size=cfg.batch_size, do_sample=cfg.do_sample, temperature=cfg.temperature,
            top_p=cfg.top_p, chat_template=chat_template, max_input_tokens=cfg.max_input_tokens,
            measure_ttft=cfg.measure_ttft, seed=cfg.seed,
        )
    preds = [g.text for g in gens]
    text = compute_text_metrics(preds, list(refs), metrics=cfg.metrics, language=cfg.language,
                                zh_tokenizer=cfg.zh_tokenizer, em_normalization=cfg.em_normalization)
    metrics = dict(text["corpus"])
    per = text["per_example"]
    if "perplexity" in cfg.metrics and examples:
        ppl = reference_perplexity(model, tokenizer, list(prompts), list(refs),
                                   batch_size=cfg.batch_size, chat_template=chat_template,
                                   max_input_tokens=cfg.max_input_tokens)
        metrics["perplexity"] = ppl["corpus"]
        for s, p in zip(per, ppl["per_example"]):
            s["perplexity"] = p
    rows = [
        {"index": i, "input": _input_text(p), "reference": r, "prediction": g.text, "scores": s,
         "n_new_tokens": g.n_new_tokens, "latency_s": g.latency_s, "facets": _facets(e)}
        for i, (e, p, r, g, s) in enumerate(zip(examples, prompts, refs, gens, per))
    ]
    return {
        "label": label, "n": len(rows), "language": text["language"],
        "settings": {"max_new_tokens": cfg.max_new_tokens, "do_sample": cfg.do_sample,
                     "temperature": cfg.temperature, "top_p": cfg.top_p,
                     "batch_size": cfg.batch_size, "seed": cfg.seed},
        "metrics": metrics, "efficiency": efficiency_summary(gens, peak), "examples": rows,
    }


def _deltas(a: dict, b: dict) -> dict:
    out = {}
    for k in a.keys() & b.keys():
        if isinstance(a[k], (int, float)) and isinstance(b[k], (int, float)) and not isinstance(a[k], bool):
            out[k] = b[k] - a[k]
    return out


def before_after(base_result: dict, tuned_result: dict) -> dict:
    """Same evaluation of base and fine-tuned side by side, with deltas (tuned - base) and
    whether each metric improved given its direction."""
    delta = _deltas(base_result["metrics"], tuned_result["metrics"])
    return {
        "baseline": base_result["label"], "candidate": tuned_result["label"],
        "metrics": {"base": base_result["metrics"], "tuned": tuned_result["metrics"]},
        "delta": dict(sorted(delta.items())),
        "improved": {k: (v > 0) == higher_is_better(k) if v != 0 else False for k, v in sorted(delta.items())},
        "efficiency_delta": dict(sorted(_deltas(base_result["efficiency"], tuned_result["efficiency"]).items())),
    }


def strip_examples(result: dict) -> dict:
    """A result without its per-example rows (for report.json; rows go to predictions JSONL)."""
    return {k: v for k, v in result.items() if k != "examples"}
