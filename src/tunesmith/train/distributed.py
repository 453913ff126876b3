"""Inside a distributed run: this process's rank, the process group, main-process-first, and the
TrainingArguments options (`ddp_backend`, `ddp_timeout`, `fsdp`, `fsdp_config`, `deepspeed`) that
hand the work to accelerate. The launcher that starts the processes is `tunesmith.train.launch`.

A process is a *worker* when a launcher (torch.distributed.run / accelerate launch) set
WORLD_SIZE > 1 in its environment; everything here is a no-op in an ordinary single-process run.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from tunesmith.config.distributed_schema import DistributedConfig

FAULT_ENV = "TUNESMITH_FAULT_INJECT"  # "RANK:STEP[:hang]" -- tests only: that rank exits (or hangs) at that step
FAULT_EXIT_CODE = 17
DEEPSPEED_FILE = "deepspeed_config.json"


@dataclass(frozen=True)
class World:
    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_world() -> World:
    """This process's place, from the variables torch.distributed.run / accelerate launch set."""
    env = os.environ
    return World(int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0")), int(env.get("WORLD_SIZE", "1")))


def in_worker() -> bool:
    return current_world().world_size > 1


def is_main_process() -> bool:
    return current_world().is_main


def resolve_backend(cfg: DistributedConfig) -> str:
    """`auto` -> nccl with CUDA, gloo on CPU."""
    if cfg.backend != "auto":
        return cfg.backend
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def init_process_group(cfg: DistributedConfig):
    """In a worker, set up accelerate's PartialState (the torch process group; under `accelerate launch`
    with DeepSpeed, DeepSpeed's) with the configured backend and timeout, before any data work, so
    main_process_first can order the ranks."""
    if not in_worker():
        return None
    import torch
    from accelerate import PartialState

    if not is_main_process():  # one console: rank 0 logs, the others only report errors
        import datasets
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()
    return PartialState(cpu=not torch.cuda.is_available(), backend=resolve_backend(cfg),
                        timeout=_dt.timedelta(seconds=cfg.timeout_seconds))


def finish_worker() -> None:
    """End a worker cleanly: every rank waits for the others, then the process group is torn down,
    so no rank exits while another is still talking to it (a race that could fail a finished run)."""
    if not in_worker():
        return
    from accelerate import PartialState

    state = PartialState()
    state.wait_for_everyone()
    state.destroy_process_group()


@contextlib.contextmanager
def main_process_first():
    """Run the block on the main process first; the other ranks run it afterwards (and find its cache)."""
    if not in_worker():
        yield
        return
    from accelerate import PartialState

    with PartialState().main_process_first():
        yield


def same_on_all_ranks(value: str) -> str:
    """Rank 0's value on every rank (e.g. a run directory named by the clock)."""
    if not in_worker():
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]


def decoder_layer_class(model) -> str | None:
    """The class FSDP wraps per layer: the model's `_no_split_modules` (its decoder layer), unwrapped from peft."""
    base = model
    if hasattr(base, "get_base_model"):
        base = base.get_base_model()
    names = sorted(getattr(base, "_no_split_modules", None) or [])  # a list or a set, by model
    return names[0] if names else None


def fsdp_config_dict(cfg: DistributedConfig, layer_class: str | None) -> dict:
    """TrainingArguments.fsdp_config (FSDP2) for the fsdp options."""
    opts = cfg.fsdp
    out = {
        "version": 2,
        "reshard_after_forward": opts.full_shard,
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP" if opts.auto_wrap else "NO_WRAP",
        "cpu_offload": opts.cpu_offload,
        "activation_checkpointing": opts.activation_checkpointing,
        "state_dict_type": "FULL_STATE_DICT",
    }
    cls = opts.layer_class or layer_class
    if opts.auto_wrap and cls:
        out["transformer_layer_cls_to_wrap"] = [cls]
    return out


def deepspeed_config_dict(cfg: DistributedConfig) -> dict:
    """The DeepSpeed JSON for ZeRO-2/3; `auto` values are filled in by transformers from TrainingArguments."""
    stage = 3 if cfg.strategy == "deepspeed_zero3" else 2
    zero: dict = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if cfg.deepspeed.offload == "cpu":
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
    }


def distributed_training_args(cfg: DistributedConfig, run_dir: Path, *, layer_class: str | None = None) -> dict:
    """TrainingArguments overrides for this run (empty outside a worker)."""
    if not in_worker():
        return {}
    args: dict = {"ddp_backend": resolve_backend(cfg), "ddp_timeout": cfg.timeout_seconds}
    if cfg.strategy == "ddp" or cfg.strategy == "fsdp":
        # keep the process group made by init_process_group (TrainingArguments would drop its timeout on CPU)
        args["accelerator_config"] = {"use_configured_state": True}
    if cfg.strategy == "fsdp":
        args["fsdp"] = True
        args["fsdp_config"] = fsdp_config_dict(cfg, layer_class)
    elif cfg.strategy.startswith("deepspeed"):
        args["deepspeed"] = str(Path(run_dir) / DEEPSPEED_FILE)
    return args


def effective_batch(batch_size: int, grad_accum: int, world_size: int) -> dict:
    """Examples per optimiser step over all processes."""
    return {"per_device": batch_size, "grad_accum": grad_accum, "world_size": world_size,
            "global": batch_size * grad_accum * world_size}


def parse_fault(value: str | None) -> tuple[int, int, str] | None:
    """`"1:3"` -> (rank 1, step 3, "exit"); `"1:3:hang"` -> (1, 3, "hang"); None when unset."""
    if not value:
        return None
    parts = value.split(":")
    try:
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("exit", "hang")):
            raise ValueError
        return int(parts[0]), int(parts[1]), parts[2] if len(parts) == 3 else "exit"
    except ValueError:
        raise ValueError(f"{FAULT_ENV}={value!r}: expected RANK:STEP or RANK:STEP:hang, e.g. 1:3") from None


class FaultInjectionCallback(TrainerCallback):
    """For tests of failure handling only: with TUNESMITH_FAULT_INJECT=RANK:STEP set, that rank exits
    abruptly (os._exit, no cleanup, like a crashed or killed process) when it reaches that step;
    with RANK:STEP:hang it stops responding instead, so the others wait out distributed.timeout_seconds."""

    def __init__(self, rank: int, step: int, mode: str = "exit"):
        self.rank, self.step, self.mode = rank, step, mode

    @classmethod
    def from_env(cls) -> "FaultInjectionCallback | None":
        fault = parse_fault(os.environ.get(FAULT_ENV))
        return cls(*fault) if fault else None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step and current_world().rank == self.rank:
            verb = "hangs" if self.mode == "hang" else "exits"
            print(f"{FAULT_ENV}: rank {self.rank} {verb} at step {self.step} (fault injection)", file=sys.stderr, flush=True)
            if self.mode == "hang":
                import time

                while True:  # alive but silent, until the launcher terminates it
                    time.sleep(1)
            os._exit(FAULT_EXIT_CODE)
        return control


def record_effective_batch(trainer, run_dir: Path, echo=print) -> dict:
    """Print the examples (rows) per optimiser step over all processes and add it, with the world,
    to run_info.json (main process only)."""
    args = trainer.args
    batch = effective_batch(args.per_device_train_batch_size, args.gradient_accumulation_steps, args.world_size)
    if is_main_process():
        echo(f"effective global batch: {batch['global']} rows per optimiser step = {batch['per_device']} per device x "
             f"{batch['grad_accum']} grad accum x {batch['world_size']} process(es)")
        path = Path(run_dir) / "run_info.json"
        if path.exists():
            info = json.loads(path.read_text(encoding="utf-8"))
            info["effective_batch"] = batch
            info["distributed"] = {"world_size": args.world_size, "backend": args.ddp_backend,
                                   "strategy": _strategy_name(trainer)}
            path.write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
    return batch


def _strategy_name(trainer) -> str:
    if getattr(trainer, "is_fsdp_enabled", False):
        return "fsdp"
    if getattr(trainer, "is_deepspeed_enabled", False):
        return "deepspeed"
    return "ddp" if trainer.args.world_size > 1 else "single"
