"""The `distributed` config section: how many processes and machines, and which engine shards the model.

tunesmith never runs its own distributed layer: these fields become an accelerate config file
(and a DeepSpeed JSON), `TrainingArguments` options (`ddp_backend`, `ddp_timeout`, `fsdp`,
`fsdp_config`, `deepspeed`) and a launch command (`accelerate launch` or `torch.distributed.run`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FsdpOptions(_Strict):
    """PyTorch FSDP through accelerate's FullyShardedDataParallelPlugin (FSDP2 by default)."""

    full_shard: bool = Field(
        True,
        description="Shard parameters, gradients and optimiser state and free the gathered parameters after "
        "each forward (FULL_SHARD); false keeps them until backward (SHARD_GRAD_OP, faster, more memory).",
    )
    auto_wrap: bool = Field(
        True,
        description="Wrap each decoder layer as its own FSDP unit (transformer-based auto-wrap policy).",
    )
    layer_class: str | None = Field(
        None,
        description="Class name of the decoder layer to wrap, e.g. LlamaDecoderLayer; default: read from the "
        "model's `_no_split_modules`.",
    )
    mixed_precision: Literal["train", "no"] = Field(
        "train",
        description="`train`: FSDP computes and reduces in train.precision's dtype (bf16/fp16 mixed precision "
        "policy, fp32 master weights); `no`: full fp32 (train.precision must then be fp32).",
    )
    cpu_offload: bool = Field(False, description="Keep sharded parameters on the CPU between uses (saves GPU memory).")
    activation_checkpointing: bool = Field(
        False, description="FSDP's own activation checkpointing of each wrapped layer (use it instead of "
        "train.gradient_checkpointing under FSDP).",
    )


class DeepSpeedOptions(_Strict):
    """DeepSpeed ZeRO through accelerate's DeepSpeedPlugin (needs `pip install deepspeed` and GPUs)."""

    offload: Literal["none", "cpu"] = Field(
        "none",
        description="ZeRO-Offload: `cpu` keeps the optimiser state (ZeRO-2 and ZeRO-3) and, with ZeRO-3, the "
        "parameters in CPU memory.",
    )


class DistributedConfig(_Strict):
    num_processes: int = Field(
        1, ge=1, description="Processes per machine (one per GPU; on CPU, one per share of the cores). "
        "`tunesmith train --nproc N` sets it. 1 with num_machines 1 means an ordinary single-process run.",
    )
    num_machines: int = Field(1, ge=1, description="Machines (nodes) taking part; each runs the same number of processes.")
    machine_rank: int = Field(0, ge=0, description="This machine's rank, 0 .. num_machines-1 (0 is the main node).")
    main_process_ip: str | None = Field(
        None, description="Address of machine 0 that every node connects to; required with num_machines > 1.",
    )
    main_process_port: int = Field(29500, ge=1, le=65535, description="TCP port on machine 0 for the rendezvous.")
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="torch.distributed backend: `auto` is nccl with CUDA GPUs, gloo on CPU.",
    )
    strategy: Literal["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"] = Field(
        "ddp",
        description="`ddp`: a full replica per process (works on CPU with gloo); `fsdp`: PyTorch FSDP; "
        "`deepspeed_zero2` / `deepspeed_zero3`: DeepSpeed ZeRO stage 2 / 3. FSDP and DeepSpeed need GPUs.",
    )
    fsdp: FsdpOptions = Field(default_factory=FsdpOptions, description="Options of strategy fsdp.")
    deepspeed: DeepSpeedOptions = Field(
        default_factory=DeepSpeedOptions, description="Options of strategies deepspeed_zero2 / deepspeed_zero3."
    )
    timeout_seconds: int = Field(
        1800, ge=10,
        description="Longest wait in a collective operation before the process group gives up (TrainingArguments "
        "ddp_timeout / the process-group timeout). A rank that dies stops the job at once; this bounds hangs.",
    )

    @model_validator(mode="after")
    def _machines(self) -> "DistributedConfig":
        problems = []
        if self.machine_rank >= self.num_machines:
            problems.append(f"machine_rank {self.machine_rank} must be below num_machines {self.num_machines}")
        if self.num_machines > 1 and not self.main_process_ip:
            problems.append("num_machines > 1 needs main_process_ip (the address of machine 0)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def world_size(self) -> int:
        return self.num_processes * self.num_machines
