"""Combinations of the `distributed` section with the rest of the config that the libraries do not
support (or tunesmith does not wire yet), reported before any process starts.

Each claim was checked against the pinned sources:
- accelerate 1.15 `AcceleratorState.__init__` (accelerate/state.py) turns FSDP on only for
  multi-GPU-like process groups (MULTI_GPU/NPU/XPU/...), never for MULTI_CPU, and DeepSpeed only
  when `not cpu`: on a CPU-only machine both would silently fall back to plain data parallelism.
- DeepSpeed is an optional package; transformers imports it when TrainingArguments.deepspeed is set.
- torch's nccl backend needs CUDA devices.
"""

from __future__ import annotations

import importlib.util


def distributed_problems(cfg) -> list[str]:
    d = cfg.distributed
    if d.world_size == 1 and d.strategy == "ddp" and d.backend != "nccl":
        return []
    import torch

    cuda = torch.cuda.is_available()
    out: list[str] = []
    if d.world_size > 1 and (cfg.task != "sft" or cfg.stages):
        what = "a `stages` pipeline" if cfg.stages else f"task {cfg.task}"
        out.append(f"distributed.num_processes: distributed runs are wired for task sft; {what} runs in "
                   "one process for now (set distributed.num_processes: 1, or drop --nproc)")
    if d.strategy != "ddp" and not cuda:
        out.append(f"distributed.strategy: {d.strategy} needs CUDA GPUs; accelerate turns FSDP and DeepSpeed on only "
                   "for GPU process groups (on CPU it would silently run plain DDP). Use strategy: ddp on CPU")
    if d.strategy.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        out.append(f"distributed.strategy: {d.strategy} needs DeepSpeed: pip install deepspeed (or use strategy: fsdp)")
    if d.backend == "nccl" and not cuda:
        out.append("distributed.backend: nccl needs CUDA GPUs; use gloo (or auto) on CPU")
    if d.strategy == "fsdp" and d.fsdp.mixed_precision == "no" and cfg.train.precision not in ("fp32", "auto"):
        out.append(f"distributed.fsdp.mixed_precision: `no` keeps FSDP in fp32 but train.precision is "
                   f"{cfg.train.precision}; set train.precision: fp32 or fsdp.mixed_precision: train")
    method = cfg.method
    if method.name == "qlora" and d.strategy != "ddp":
        out.append(f"method.name: qlora with distributed.strategy {d.strategy} needs 4-bit storage in the compute "
                   "dtype (bnb_4bit_quant_storage) and sharding-aware loading, which tunesmith does not set up yet; "
                   "use strategy: ddp, or method lora with fsdp / deepspeed_zero3")
    if d.strategy != "ddp" and getattr(method, "init", "default") in ("pissa", "olora"):
        out.append(f"method.init: {method.init} converts the adapter against the initial one at save time, which "
                   f"needs unsharded weights; use init: default with strategy {d.strategy}, or strategy: ddp")
    if d.strategy != "ddp" and cfg.eval.during_training.every_n_steps:
        out.append(f"eval.during_training.every_n_steps: generation during training runs on the main process only, "
                   f"which deadlocks when {d.strategy} shards the weights; unset it (evaluate after training)")
    return out
