"""Batched generation with the training chat template, efficiency measurements, and the
perplexity of references given their prompts.

Prompts are encoded by `tunesmith.data.render.encode_prompt` (same template, same BOS rule as
training); generation stops at eos and at the template's end-of-turn token.

Measurements (per request):
- latency_s: wall time of the generate() call of the batch the request was in (what a caller
  of a batched server waits).
- ttft_s: time to first token, measured on the same batched call with a streamer that records
  when generate() pushes the first new token (so it includes the batch's prefill).
- n_new_tokens: tokens generated up to and including the first stop token.
Peak memory: CUDA max allocated when the model is on CUDA, else the peak resident set size of
this process sampled every 10 ms during generation.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from tunesmith.data.render import encode_prompt, resolve_chat_template

_END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>",
                       "</s>", "<|end_of_text|>", "<｜end▁of▁sentence｜>")


@dataclass
class GenerationResult:
    text: str
    n_new_tokens: int
    latency_s: float
    ttft_s: float | None = None
    n_prompt_tokens: int = 0
    batch_index: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def split_example(example: dict) -> tuple[list[dict], str]:
    """(prompt messages, reference): the reference is the last assistant turn."""
    msgs = example["messages"]
    for i in range(len(msgs) - 1, -1, -1):
        if msgs[i].get("role") == "assistant":
            return list(msgs[:i]), str(msgs[i].get("content", ""))
    return list(msgs), ""


def stop_token_ids(tokenizer, chat_template: str | None = None) -> list[int]:
    """eos plus the end-of-turn tokens that the chat template uses."""
    ids: list[int] = []
    eos = tokenizer.eos_token_id
    ids.extend(eos if isinstance(eos, list) else ([eos] if eos is not None else []))
    try:
        template = resolve_chat_template(tokenizer, chat_template)
    except Exception:  # no template at all: eos only
        template = ""
    vocab = tokenizer.get_vocab()
    for tok in _END_OF_TURN_TOKENS:
        if tok in template and tok in vocab:
            ids.append(vocab[tok])
    return list(dict.fromkeys(ids))


def _encode_prompts(tokenizer, prompts_messages: Sequence[list[dict]], chat_template: str | None,
                    max_input_tokens: int | None) -> list[list[int]]:
    """Prompt ids exactly as training renders them (tunesmith.data.render.encode_prompt);
    over-long prompts keep their last tokens (and a leading BOS)."""
    out = []
    bos = tokenizer.bos_token_id
    for messages in prompts_messages:
        ids = encode_prompt(tokenizer, messages, chat_template)
        if max_input_tokens and len(ids) > max_input_tokens:
            head = ids[:1] if bos is not None and ids[0] == bos else []
            ids = head + ids[len(ids) - (max_input_tokens - len(head)):]
        out.append(ids)
    return out


def _pad_token_id(tokenizer, stops: list[int]) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return stops[0] if stops else 0


def _left_pad(batch: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(x) for x in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, x in enumerate(batch):
        if x:
            ids[i, width - len(x):] = torch.tensor(x)
            mask[i, width - len(x):] = 1
    return ids.to(device), mask.to(device)


class _FirstTokenTimer:
    """Streamer: generate() pushes the prompt first, then each new token; record the first."""

    def __init__(self, start: float):
        self.start, self.calls, self.ttft = start, 0, None

    def put(self, value):
        self.calls += 1
        if self.calls == 2 and self.ttft is None:
            self.ttft = time.perf_counter() - self.start

    def end(self):
        pass


@contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        if was_training:
            model.train()


@contextmanager
def _seeded(seed: int | None, device: torch.device):
    """Seed sampling without disturbing the caller's RNG state (e.g. a training run's)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def generate_batch(
    model,
    tokenizer,
    prompts_messages: Sequence[list[dict]],
    *,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    chat_template: str | None = None,
    max_input_tokens: int | None = None,
    measure_ttft: bool = True,
    seed: int | None = None,
) -> list[GenerationResult]:
    """Generate one answer per conversation, batched and left padded; stop at eos/end-of-turn."""
    encoded = _encode_prompts(tokenizer, prompts_messages, chat_template, max_input_tokens)
    stops = stop_token_ids(tokenizer, chat_template)
    pad_id = _pad_token_id(tokenizer, stops)
    device = next(model.parameters()).device
    gen_kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=pad_id,
                      eos_token_id=stops or None)
    if do_sample:
        gen_kwargs.update(temperature=temperature, top_p=top_p)
    else:
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    results: list[GenerationResult] = []
    with _eval_mode(model), _seeded(seed if do_sample else None, device):
        for b in range(0, len(encoded), batch_size):
            chunk = encoded[b:b + batch_size]
            ids, mask = _left_pad([c or [pad_id] for c in chunk], pad_id, device)
            start = time.perf_counter()
            timer = _FirstTokenTimer(start) if measure_ttft else None
            out = model.generate(input_ids=ids, attention_mask=mask, streamer=timer, **gen_kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            latency = time.perf_counter() - start
            new = out[:, ids.shape[1]:].tolist()
            for row, prompt in zip(new, chunk):
                kept = []
                for t in row:
                    kept.append(t)
                    if t in stops:
                        break
                if kept and kept[-1] == pad_id and pad_id not in stops:
                    while kept and kept[-1] == pad_id:
                        kept.pop()
                text = tokenizer.decode(kept, skip_special_tokens=True).strip()
                results.append(GenerationResult(text, len(kept), latency,
                                                timer.ttft if timer else None, len(prompt),
                                                b // batch_size))
    return results


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class PeakMemory:
    """Context manager: peak memory in MB during the block (CUDA allocated or process RSS)."""

    def __init__(self, device: torch.device | str = "cpu", interval_s: float = 0.01):
        self.device = torch.device(device)
        self.interval_s = interval_s
        self.peak_mb: float | None = None
        self.kind = "cuda_max_allocated" if self.device.type == "cuda" else "cpu_rss_peak"

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        import psutil

        proc = psutil.Process()
        self._peak = proc.memory_info().rss
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(self.interval_s):
                self._peak = max(self._peak, proc.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            import psutil

            self._peak = max(self._peak, psutil.Process().memory_info().rss)
            self.peak_mb = self._peak / 2**20
        return False


def efficiency_summary(results: Sequence[GenerationResult], peak: PeakMemory | None = None) -> dict:
    """latency p50/p95, TTFT p50/p95, generated tokens/s and peak memory for a set of requests."""
    lat = [r.latency_s for r in results]
    ttft = [r.ttft_s for r in results if r.ttft_s is not None]
    # A batch's wall time is shared by its requests: sum each distinct batch once.
    wall = sum({r.batch_index: r.latency_s for r in results}.values())
    tokens = sum(r.n_new_tokens for r in results)
    return {
        "n_requests": len(results),
        "latency_p50_s": _percentile(lat, 0.5),
        "latency_p95_s": _percentile(lat, 0.95),
        "ttft_p50_s": _percentile(ttft, 0.5),
        "ttft_p95_s": _percentile(ttft, 0.95),
        "generated_tokens": tokens,
        "tokens_per_s": tokens / wall if wall > 0 else None,
        "peak_memory_mb": peak.peak_mb if peak else None,
        "memory_kind": peak.kind if peak else None,
    }


def reference_perplexity(
    model,
    tokenizer,
    prompts_messages: Sequence[list[dict]],
    references: Sequence[str],
    *,
    batch_size: int = 8,
    chat_template: str | None = None,
    max_input_tokens: int | None = None,
) -> dict:
    """Perplexity of each reference given its prompt, from the loss on reference tokens only.

    The scored tokens are the reference followed by the template's end-of-turn token (what SFT
    trains the model to produce). Returns {"corpus": exp(total NLL / total tokens),
    "per_example": [exp(mean NLL)], "n_tokens": total}.
    """
    stops = stop_token_ids(tokenizer, chat_template)
    eot = stops[-1] if stops else None
    prompts = _encode_prompts(tokenizer, prompts_messages, chat_template, max_input_tokens)
    pad_id = _pad_token_id(tokenizer, stops)
    device = next(model.parameters()).device
    per, total_nll, total_n = [], 0.0, 0
    with _eval_mode(model):
        for b in range(0, len(prompts), batch_size):
            seqs, labels = [], []
            for p, ref in zip(prompts[b:b + batch_size], references[b:b + batch_size]):
                r = tokenizer(ref, add_special_tokens=False)["input_ids"] + ([eot] if eot is not None else [])
                seqs.append(p + r)
                labels.append([-100] * len(p) + r)
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
            lab = torch.full((len(seqs), width), -100, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for i, (s, l) in enumerate(zip(seqs, labels)):
                ids[i, :len(s)], lab[i, :len(s)], mask[i, :len(s)] = torch.tensor(s), torch.tensor(l), 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            shift_logits, shift_labels = logits[:, :-1], lab[:, 1:].to(device)
            nll = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                ignore_index=-100, reduction="none").view(shift_labels.shape)
            valid = shift_labels != -100
            for i in range(len(seqs)):
                n = int(valid[i].sum())
                s = float(nll[i][valid[i]].sum()) if n else 0.0
                per.append(math.exp(s / n) if n else None)
                total_nll, total_n = total_nll + s, total_n + n
    corpus = math.exp(total_nll / total_n) if total_n else None
    return {"corpus": corpus, "per_example": per, "n_tokens": total_n}
