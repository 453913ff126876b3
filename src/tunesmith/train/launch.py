"""Start a distributed run: write the accelerate config (and DeepSpeed JSON) into the run directory,
build the launch command of every node, and run this node's through the library's own launcher.

- GPUs (backend nccl): `accelerate launch --config_file RUN/accelerate_config.yaml -m tunesmith.cli train ...`
- CPU (backend gloo): `torchrun ... -m tunesmith.cli train ...`, because `accelerate launch` starts
  several CPU processes only through MPI (`mpirun_hostfile`); without it, its simple launcher runs
  one process (accelerate/commands/launch.py, `launch_command` -> `simple_launcher`).

Each started process re-enters `tunesmith train` with the same config and overrides; seeing
WORLD_SIZE > 1 it trains as one rank instead of launching again (tunesmith.train.distributed).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.config.distributed_schema import DistributedConfig
from tunesmith.errors import TunesmithError
from tunesmith.train.distributed import DEEPSPEED_FILE, deepspeed_config_dict, effective_batch, fsdp_config_dict, resolve_backend

ACCELERATE_FILE = "accelerate_config.yaml"
LAUNCH_FILE = "launch.json"
LAUNCH_FILES = (ACCELERATE_FILE, DEEPSPEED_FILE, LAUNCH_FILE)


class LaunchError(TunesmithError):
    """A distributed run stopped because one of its processes failed."""


@dataclass
class LaunchPlan:
    run_dir: Path
    launcher: str  # "accelerate" or "torchrun"
    commands: list[list[str]]  # one argv per machine rank
    batch: dict
    files: list[Path] = field(default_factory=list)

    def command_text(self, machine_rank: int) -> str:
        return shlex.join(self.commands[machine_rank])


def needs_launch(cfg) -> bool:
    """True when the config asks for more than one process and this process is not one of them yet."""
    from tunesmith.train.distributed import in_worker

    return cfg.distributed.world_size > 1 and not in_worker()


def model_layer_class(cfg) -> str | None:
    """The decoder-layer class named in the accelerate config's FSDP auto-wrap (read from the model's config)."""
    if cfg.distributed.fsdp.layer_class:
        return cfg.distributed.fsdp.layer_class
    import transformers

    from tunesmith.models import resolve_model

    resolved = resolve_model(cfg.model.name_or_path, gguf_file=cfg.model.gguf_file)
    config = transformers.AutoConfig.from_pretrained(resolved.path, trust_remote_code=cfg.model.trust_remote_code)
    for arch in config.architectures or []:
        names = sorted(getattr(getattr(transformers, arch, None), "_no_split_modules", None) or [])
        if names:
            return names[0]
    return None


def accelerate_config(cfg, *, precision: str, layer_class: str | None, deepspeed_file: Path | None):
    """accelerate's own ClusterConfig for this run (written with its `to_yaml_file`)."""
    from accelerate.commands.config.config_args import ClusterConfig

    d: DistributedConfig = cfg.distributed
    gloo = resolve_backend(d) == "gloo"
    kind = {"ddp": "MULTI_CPU" if gloo else "MULTI_GPU", "fsdp": "FSDP"}.get(d.strategy, "DEEPSPEED")
    extra: dict = {}
    if d.strategy == "fsdp":
        fsdp = fsdp_config_dict(d, layer_class)
        extra["fsdp_config"] = {
            "fsdp_version": fsdp["version"],
            "fsdp_reshard_after_forward": fsdp["reshard_after_forward"],
            "fsdp_auto_wrap_policy": fsdp["auto_wrap_policy"],
            "fsdp_offload_params": fsdp["cpu_offload"],
            "fsdp_activation_checkpointing": fsdp["activation_checkpointing"],
            "fsdp_state_dict_type": fsdp["state_dict_type"],
            "fsdp_cpu_ram_efficient_loading": False,
            **({"fsdp_transformer_layer_cls_to_wrap": fsdp["transformer_layer_cls_to_wrap"][0]}
               if "transformer_layer_cls_to_wrap" in fsdp else {}),
        }
    elif d.strategy.startswith("deepspeed"):
        extra["deepspeed_config"] = {"deepspeed_config_file": str(deepspeed_file),
                                     "zero3_init_flag": d.strategy == "deepspeed_zero3"}
    mixed = "no" if precision == "fp32" or (d.strategy == "fsdp" and d.fsdp.mixed_precision == "no") else precision
    if d.strategy.startswith("deepspeed"):
        # with a deepspeed_config_file, accelerate launch refuses mixed_precision in the accelerate config
        # (DeepSpeedPlugin._deepspeed_config_checks); the JSON's "auto" takes it from TrainingArguments
        mixed = None
    return ClusterConfig(
        compute_environment="LOCAL_MACHINE", distributed_type=kind, mixed_precision=mixed, use_cpu=gloo,
        debug=False, num_processes=d.world_size, num_machines=d.num_machines, machine_rank=d.machine_rank,
        main_process_ip=d.main_process_ip, main_process_port=d.main_process_port, rdzv_backend="static",
        same_network=True, **extra,
    )


def _target_precision(cfg) -> str:
    """train.precision as the nodes will resolve it. Commands for GPU nodes may be prepared on a
    machine without one: there `auto` is written as bf16 (the workers still resolve it themselves,
    and TrainingArguments' bf16/fp16 decide)."""
    import torch

    from tunesmith.train.trainer import resolve_precision

    requested = cfg.train.precision
    if resolve_backend(cfg.distributed) == "gloo" or torch.cuda.is_available():
        return resolve_precision(requested)
    return "bf16" if requested == "auto" else requested


def worker_args(config_path: Path, overrides: list[str], run_dir: Path, resume: bool) -> list[str]:
    """What each process runs: `python -m tunesmith.cli train ...` with the same config and overrides."""
    args = ["tunesmith.cli", "train", str(Path(config_path).resolve()), *overrides, "--run-dir", str(run_dir)]
    return args + (["--resume"] if resume else [])


def node_command(cfg, launcher: str, machine_rank: int, run_dir: Path, worker: list[str]) -> list[str]:
    d: DistributedConfig = cfg.distributed
    if launcher == "accelerate":
        return ["accelerate", "launch", "--config_file", str(run_dir / ACCELERATE_FILE),
                "--machine_rank", str(machine_rank), "--module", *worker]
    addr = d.main_process_ip or "127.0.0.1"
    return ["torchrun", "--nnodes", str(d.num_machines), "--nproc-per-node", str(d.num_processes),
            "--node-rank", str(machine_rank), "--master-addr", addr, "--master-port", str(d.main_process_port),
            "--module", *worker]


def plan_launch(cfg, config_path: Path, overrides: list[str], run_dir: Path, *, resume: bool) -> LaunchPlan:
    """Write the launcher files into `run_dir` and return the command of every node."""
    d: DistributedConfig = cfg.distributed
    run_dir = Path(run_dir).resolve()
    launcher = "torchrun" if resolve_backend(d) == "gloo" else "accelerate"
    files = []
    ds_file = None
    if d.strategy.startswith("deepspeed"):
        ds_file = run_dir / DEEPSPEED_FILE
        ds_file.write_text(json.dumps(deepspeed_config_dict(d), indent=2) + "\n", encoding="utf-8")
        files.append(ds_file)
    layer = model_layer_class(cfg) if d.strategy == "fsdp" else None
    acc = accelerate_config(cfg, precision=_target_precision(cfg), layer_class=layer, deepspeed_file=ds_file)
    acc.to_yaml_file(run_dir / ACCELERATE_FILE)
    files.append(run_dir / ACCELERATE_FILE)
    worker = worker_args(config_path, overrides, run_dir, resume)
    commands = [node_command(cfg, launcher, rank, run_dir, worker) for rank in range(d.num_machines)]
    batch = effective_batch(cfg.train.batch_size, cfg.train.grad_accum, d.world_size)
    plan = LaunchPlan(run_dir=run_dir, launcher=launcher, commands=commands, batch=batch, files=files)
    (run_dir / LAUNCH_FILE).write_text(json.dumps({
        "launcher": launcher, "backend": resolve_backend(d), "strategy": d.strategy,
        "commands": {str(r): plan.command_text(r) for r in range(d.num_machines)}, "effective_batch": batch,
    }, indent=2) + "\n", encoding="utf-8")
    plan.files.append(run_dir / LAUNCH_FILE)
    return plan


def run_node(plan: LaunchPlan, machine_rank: int) -> None:
    """Run this machine's command in-process through the library launcher; a failed rank becomes a
    LaunchError naming it (the launcher has already stopped the other ranks)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    argv = plan.commands[machine_rank]
    try:
        if plan.launcher == "torchrun":
            from torch.distributed.run import parse_args, run

            run(parse_args(argv[1:]))
        else:
            from accelerate.commands.launch import launch_command, launch_command_parser

            launch_command(launch_command_parser().parse_args(argv[2:]))
    except ChildFailedError as exc:
        raise LaunchError(describe_failure(exc, plan.run_dir)) from None


def describe_failure(exc, run_dir: Path) -> str:
    """'rank 1 (local rank 1, pid 123) failed first: exit code 17 ...' from torch's ChildFailedError."""
    first_rank, first = exc.get_first_failure()
    lines = [f"distributed run stopped: rank {first_rank} (local rank {first.local_rank}, pid {first.pid}) "
             f"failed first: {_exit_text(first.exitcode)}."]
    others = sorted(r for r in exc.failures if r != first_rank)
    if others:
        lines.append("then stopped: " + ", ".join(f"rank {r} ({_exit_text(exc.failures[r].exitcode)})" for r in others))
    lines.append(f"The other ranks were terminated by the launcher. Its log is above; resume from the last "
                 f"checkpoint with: tunesmith train CONFIG --resume --run-dir {run_dir}")
    return "\n".join(lines)


def _exit_text(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def print_plan(plan: LaunchPlan, echo=print) -> None:
    b = plan.batch
    echo(f"global batch from the config: {b['global']} = train.batch_size {b['per_device']} x train.grad_accum "
         f"{b['grad_accum']} x {b['world_size']} processes (each rank prints the trainer's figure)")
    for path in plan.files:
        echo(f"wrote {path}")
    for rank, _ in enumerate(plan.commands):
        echo(f"node {rank}: {plan.command_text(rank)}")

