"""Continuous request batching: one background thread owns the model; requests arriving within
``batch_wait_ms`` of each other are generated together in one left-padded ``generate`` call per
group of equal sampling settings. Different adapters share a batch through peft's mixed-batch
``adapter_names=`` argument, so no adapter needs its own model copy. A per-row stopping
criterion (transformers' per-step hook over the ids) hands each new token to its request as it is
produced (streams ride in the same batches), ends a row at its end-of-turn token, its own
``max_tokens`` or its first ``stop`` string, and answers that request at once rather than when
the whole batch is done.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from tunesmith.serve.adapters import BASE_ADAPTER
from tunesmith.serve.stops import find_stop


@dataclass
class Job:
    prompt_ids: list[int]
    adapter: str | None
    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_p: float
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    on_token: object = None  # callable(token_id) called from the worker thread, or None
    stop: tuple[str, ...] = ()  # stop strings: the row ends once its decoded text contains one
    tokens: list[int] = field(default_factory=list)
    finish_reason: str = "length"
    done: bool = False

    def key(self):
        return (self.do_sample, round(self.temperature, 4), round(self.top_p, 4)) if self.do_sample else (False,)


class _RowTracker(StoppingCriteria):
    """Called by generate() once per decoding step with all ids so far: takes each row's new token
    and reports which rows are finished, so generate() pads those rows and stops when all are."""

    def __init__(self, jobs: list[Job], stops: set[int], decode):
        self.jobs, self.stops, self.decode = jobs, stops, decode

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        for job, tok in zip(self.jobs, input_ids[:, -1].tolist()):
            _accept(job, tok, self.stops, self.decode)
        return torch.tensor([j.done for j in self.jobs], dtype=torch.bool, device=input_ids.device)


def _accept(job: Job, tok: int, stops: set[int], decode) -> None:
    if job.done:
        return
    if tok in stops:
        _finish(job, "stop")
        return
    job.tokens.append(tok)
    if job.on_token is not None:
        job.loop.call_soon_threadsafe(job.on_token, tok)
    if job.stop and decode is not None and find_stop(decode(job.tokens), job.stop) is not None:
        _finish(job, "stop")
    elif len(job.tokens) >= job.max_new_tokens:
        _finish(job, "length")


def _finish(job: Job, reason: str) -> None:
    job.done, job.finish_reason = True, reason
    job.loop.call_soon_threadsafe(_set_result, job.future, job)


class Batcher:
    """Owns the model; ``submit`` returns a future with the finished Job."""

    def __init__(self, model, *, stops: list[int], pad_id: int, batch_wait_ms: float, max_batch_size: int,
                 metrics=None, uses_adapters: bool = False, decode=None):
        """``decode(token_ids) -> str`` is needed for jobs with ``stop`` strings."""
        self.model, self.stops, self.pad_id, self.decode = model, set(stops), pad_id, decode
        self.wait_s, self.max_batch = batch_wait_ms / 1000.0, max_batch_size
        self.metrics, self.uses_adapters = metrics, uses_adapters
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.batches_run = 0
        self._thread = threading.Thread(target=self._loop, name="tunesmith-batcher", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> asyncio.Future:
        self.queue.put(job)
        return job.future

    def close(self):
        self.queue.put(None)
        self._thread.join(timeout=30)

    def _collect(self) -> list[Job] | None:
        first = self.queue.get()
        if first is None:
            return None
        jobs, deadline = [first], time.monotonic() + self.wait_s
        while len(jobs) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self.queue.put(None)
                break
            jobs.append(job)
        return jobs

    def _loop(self):
        while True:
            jobs = self._collect()
            if jobs is None:
                return
            groups: dict[tuple, list[Job]] = {}
            for job in jobs:
                groups.setdefault(job.key(), []).append(job)
            for group in groups.values():
                try:
                    self._generate(group)
                except Exception as exc:  # answer every request of the failed batch, keep serving
                    for job in group:
                        job.loop.call_soon_threadsafe(_set_exception, job.future, exc)

    @torch.inference_mode()
    def _generate(self, jobs: list[Job]):
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(jobs))
        width = max(len(j.prompt_ids) for j in jobs)
        ids = torch.full((len(jobs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(jobs), width), dtype=torch.long)
        for i, j in enumerate(jobs):
            ids[i, width - len(j.prompt_ids):] = torch.tensor(j.prompt_ids)
            mask[i, width - len(j.prompt_ids):] = 1
        device = next(self.model.parameters()).device
        first = jobs[0]
        kwargs = dict(max_new_tokens=max(j.max_new_tokens for j in jobs), do_sample=first.do_sample,
                      pad_token_id=self.pad_id, eos_token_id=sorted(self.stops) or None,
                      stopping_criteria=StoppingCriteriaList([_RowTracker(jobs, self.stops, self.decode)]))
        if first.do_sample:
            kwargs.update(temperature=max(first.temperature, 1e-5), top_p=first.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with self._adapters_for(jobs, kwargs):
            self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
        self.batches_run += 1
        for j in jobs:
            if not j.done:  # generate() ended it (its overall max_new_tokens): a length stop
                _finish(j, "length")


    def _adapters_for(self, jobs: list[Job], kwargs: dict):
        """One adapter for the whole batch: make it the active one (or switch adapters off for the
        base model) so LoRA layers skip peft's per-adapter gather/scatter; a mix of adapters goes
        through ``adapter_names=``."""
        if not self.uses_adapters:
            return nullcontext()
        names = {j.adapter for j in jobs}
        if len(names) > 1:
            kwargs["adapter_names"] = [j.adapter for j in jobs]
            return nullcontext()
        name = names.pop()
        if name == BASE_ADAPTER:
            return self.model.disable_adapter()
        self.model.set_adapter(name)
        return nullcontext()


def _set_result(future: asyncio.Future, job: Job):
    if not future.done():
        future.set_result(job)


def _set_exception(future: asyncio.Future, exc: Exception):
    if not future.done():
        future.set_exception(exc)
