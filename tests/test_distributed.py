"""Scale-out without starting processes: the `distributed` section, the generated accelerate /
DeepSpeed files, the launch command of every node (`--dry-run`), validation of unsupported
combinations, the data cache that lets other ranks reuse the main process's tokenisation, and the
failure report. Multi-process runs are in tests/test_distributed_run.py."""

from __future__ import annotations

import json
import shlex

import pytest
import yaml
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.config import validate_config
from tunesmith.errors import ConfigError

ROWS = [{"instruction": f"Say the number {i}.", "input": "", "output": f"The number is {i}."} for i in range(12)]


def _raw(tmp_path, model_dir, **distributed):
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    return {
        "model": {"name_or_path": str(model_dir)},
        "data": {"train_file": str(data), "max_length": 64, "eval_split": 0.0},
        "method": {"name": "lora"},
        "train": {"max_steps": 2, "batch_size": 2, "grad_accum": 3, "precision": "fp32"},
        "output": {"dir": str(tmp_path / "runs")},
        "distributed": distributed,
    }


def _write(tmp_path, raw) -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_schema_defaults_and_machine_checks(tmp_path, tiny_llama_dir):
    cfg = validate_config(_raw(tmp_path, tiny_llama_dir))
    assert cfg.distributed.world_size == 1 and cfg.distributed.strategy == "ddp"
    assert validate_config(_raw(tmp_path, tiny_llama_dir, num_processes=4, num_machines=2,
                                main_process_ip="10.0.0.1")).distributed.world_size == 8
    with pytest.raises(ConfigError) as exc:
        validate_config(_raw(tmp_path, tiny_llama_dir, num_machines=2, machine_rank=2))
    text = str(exc.value)
    assert "machine_rank 2 must be below num_machines 2" in text and "main_process_ip" in text  # both at once
    with pytest.raises(ConfigError, match="distributed.strategy: 'zero9' is not allowed; choose one of"):
        validate_config(_raw(tmp_path, tiny_llama_dir, strategy="zero9"))


def test_dry_run_single_node_writes_reusable_files_and_command(tmp_path, tiny_llama_dir):
    cfg_path = _write(tmp_path, _raw(tmp_path, tiny_llama_dir, main_process_port=29999))
    res = CliRunner().invoke(app, ["train", cfg_path, "output.name=r", "--nproc", "2", "--dry-run"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "r"
    assert "global batch from the config: 12 = train.batch_size 2 x train.grad_accum 3 x 2 processes" in res.output
    acc = yaml.safe_load((run / "accelerate_config.yaml").read_text())
    assert acc["distributed_type"] == "MULTI_CPU" and acc["use_cpu"] is True  # no GPU here: gloo
    assert acc["num_processes"] == 2 and acc["main_process_port"] == 29999
    launch = json.loads((run / "launch.json").read_text())
    argv = shlex.split(launch["commands"]["0"])
    assert argv[:2] == ["torchrun", "--nnodes"] and "--nproc-per-node" in argv
    assert argv[argv.index("--module") + 1:][:3] == ["tunesmith.cli", "train", str((tmp_path / "cfg.yaml").resolve())]
    assert "distributed.num_processes=2" in argv and argv[argv.index("--run-dir") + 1] == str(run.resolve())
    # the printed command is the recorded one, and nothing was trained
    assert launch["commands"]["0"] in res.output.replace("\n", "")
    assert not (run / "config.yaml").exists()
    # the torchrun arguments parse with torch's own parser
    from torch.distributed.run import parse_args

    args = parse_args(argv[1:])
    assert args.nproc_per_node == "2" and args.module and args.training_script == "tunesmith.cli"


def test_dry_run_multi_node_prints_every_node(tmp_path, tiny_llama_dir):
    raw = _raw(tmp_path, tiny_llama_dir, num_processes=2, num_machines=3, main_process_ip="10.1.2.3",
               main_process_port=29400)
    raw["output"]["name"] = "multi"
    res = CliRunner().invoke(app, ["train", _write(tmp_path, raw), "--dry-run"])
    assert res.exit_code == 0, res.output
    commands = json.loads((tmp_path / "runs" / "multi" / "launch.json").read_text())["commands"]
    assert sorted(commands) == ["0", "1", "2"]
    for rank, text in commands.items():
        argv = shlex.split(text)
        assert argv[argv.index("--node-rank") + 1] == rank
        assert argv[argv.index("--nnodes") + 1] == "3" and argv[argv.index("--master-addr") + 1] == "10.1.2.3"
        assert argv[argv.index("--master-port") + 1] == "29400"
        assert f"node {rank}: " in res.output
    acc = yaml.safe_load((tmp_path / "runs" / "multi" / "accelerate_config.yaml").read_text())
    assert acc["num_processes"] == 6 and acc["num_machines"] == 3 and acc["main_process_ip"] == "10.1.2.3"


def test_multi_node_needs_a_shared_run_name(tmp_path, tiny_llama_dir):
    raw = _raw(tmp_path, tiny_llama_dir, num_machines=2, main_process_ip="10.0.0.1")
    res = CliRunner().invoke(app, ["train", _write(tmp_path, raw), "--dry-run"])
    assert res.exit_code == 2 and "output.name" in res.output


def test_gpu_launch_files_fsdp_and_deepspeed(tmp_path, tiny_llama_dir, monkeypatch):
    """What a GPU machine gets: accelerate launch with FSDP wrapping the model's decoder layer, or a
    DeepSpeed ZeRO JSON with offload. Built here with the backend forced to nccl (not run)."""
    from tunesmith.train.launch import plan_launch

    raw = _raw(tmp_path, tiny_llama_dir, num_processes=4, backend="nccl", strategy="fsdp")
    raw["train"]["precision"] = "bf16"
    run = tmp_path / "fsdp"
    run.mkdir()
    plan = plan_launch(validate_config(raw), tmp_path / "cfg.yaml", [], run, resume=False)
    acc = yaml.safe_load((run / "accelerate_config.yaml").read_text())
    assert acc["distributed_type"] == "FSDP" and acc["mixed_precision"] == "bf16" and acc["use_cpu"] is False
    assert acc["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    assert acc["fsdp_config"]["fsdp_reshard_after_forward"] is True and acc["fsdp_config"]["fsdp_version"] == 2
    assert plan.commands[0][:4] == ["accelerate", "launch", "--config_file", str(run.resolve() / "accelerate_config.yaml")]
    # accelerate's own parser reads the command and, with the file, its settings
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    args = launch_command_parser().parse_args(plan.commands[0][2:])
    assert args.module and args.training_script == "tunesmith.cli"
    assert load_config_from_file(args.config_file).fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"

    raw["distributed"] = {"num_processes": 2, "backend": "nccl", "strategy": "deepspeed_zero3",
                          "deepspeed": {"offload": "cpu"}}
    run = tmp_path / "ds"
    run.mkdir()
    plan_launch(validate_config(raw), tmp_path / "cfg.yaml", [], run, resume=False)
    ds = json.loads((run / "deepspeed_config.json").read_text())
    zero = ds["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu" and zero["offload_param"]["device"] == "cpu"
    acc = yaml.safe_load((run / "accelerate_config.yaml").read_text())
    assert acc["distributed_type"] == "DEEPSPEED" and "mixed_precision" not in acc  # accelerate refuses both
    assert acc["deepspeed_config"]["deepspeed_config_file"] == str(run.resolve() / "deepspeed_config.json")


def test_training_arguments_carry_backend_timeout_and_fsdp(tmp_path, tiny_llama_dir, monkeypatch):
    from tunesmith.train.distributed import distributed_training_args

    cfg = validate_config(_raw(tmp_path, tiny_llama_dir, num_processes=2, strategy="fsdp", timeout_seconds=45,
                               fsdp={"full_shard": False}))
    assert distributed_training_args(cfg.distributed, tmp_path) == {}  # not in a worker: nothing changes
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = distributed_training_args(cfg.distributed, tmp_path, layer_class="LlamaDecoderLayer")
    assert args["ddp_backend"] == "gloo" and args["ddp_timeout"] == 45 and args["fsdp"] is True
    assert args["fsdp_config"]["reshard_after_forward"] is False
    assert args["fsdp_config"]["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]


@pytest.mark.parametrize("distributed, method, expected", [
    ({"num_processes": 2, "strategy": "fsdp"}, {"name": "lora"}, "fsdp needs CUDA GPUs"),
    ({"num_processes": 2, "strategy": "deepspeed_zero2"}, {"name": "lora"}, "pip install deepspeed"),
    ({"num_processes": 2, "backend": "nccl"}, {"name": "lora"}, "nccl needs CUDA GPUs"),
    ({"num_processes": 2, "strategy": "fsdp"}, {"name": "lora", "init": "pissa"}, "method.init: pissa"),
])
def test_unsupported_combinations_are_config_errors(tmp_path, tiny_llama_dir, distributed, method, expected):
    import importlib.util

    from tunesmith.tasks.checks import environment_problems

    if expected == "pip install deepspeed" and importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    raw = _raw(tmp_path, tiny_llama_dir, **distributed)
    raw["method"] = method
    problems = environment_problems(validate_config(raw))
    assert any(expected in p for p in problems), problems


def test_non_sft_task_is_refused_with_nproc(tmp_path, tiny_llama_dir):
    from tunesmith.tasks.checks import environment_problems

    raw = _raw(tmp_path, tiny_llama_dir, num_processes=2)
    raw["task"], raw["data"]["format"] = "classify", "classification"
    assert any("wired for task sft; task classify" in p for p in environment_problems(validate_config(raw)))
    raw = _raw(tmp_path, tiny_llama_dir, num_processes=2)
    raw["stages"] = [{"task": "sft"}, {"task": "dpo"}]
    assert any("a `stages` pipeline runs in one process" in p for p in environment_problems(validate_config(raw)))


def test_tokenised_data_is_cached_by_fingerprint(tmp_path, tiny_llama_dir, tiny_tokenizer):
    """The main rank builds and saves; another rank (write=False) loads the same rows instead."""
    from tunesmith.data.sft_cache import load_or_build_sft_data

    cfg = validate_config(_raw(tmp_path, tiny_llama_dir))
    run = tmp_path / "run"
    run.mkdir()
    cache = tmp_path / ".cache"
    main = load_or_build_sft_data(cfg.data, tiny_tokenizer, chat_template=None, seed=1, run_dir=run, cache_dir=cache)
    other = load_or_build_sft_data(cfg.data, tiny_tokenizer, chat_template=None, seed=1, run_dir=run,
                                   cache_dir=cache, write=False)
    assert other.stats.get("from_cache") and "from_cache" not in main.stats
    assert other.train["input_ids"] == main.train["input_ids"] and other.fingerprint == main.fingerprint
    # a different seed is a different key: built again, not served stale
    fresh = load_or_build_sft_data(cfg.data, tiny_tokenizer, chat_template=None, seed=2, run_dir=run,
                                   cache_dir=cache, write=False)
    assert not fresh.stats.get("from_cache")


def test_failure_report_names_the_rank(tmp_path):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from tunesmith.train.launch import describe_failure

    failures = {1: ProcessFailure(local_rank=1, pid=11, exitcode=17, error_file=str(tmp_path / "none.json")),
                0: ProcessFailure(local_rank=0, pid=10, exitcode=-15, error_file=str(tmp_path / "none.json"))}
    failures[1].timestamp, failures[0].timestamp = 100, 101
    text = describe_failure(ChildFailedError("tunesmith.cli", failures), tmp_path)
    assert text.startswith("distributed run stopped: rank 1 (local rank 1, pid 11) failed first: exit code 17")
    assert "rank 0 (killed by signal SIGTERM)" in text and "--resume" in text


def test_fault_injection_env_is_parsed_strictly():
    from tunesmith.train.distributed import parse_fault

    assert parse_fault("1:3") == (1, 3, "exit") and parse_fault("0:2:hang") == (0, 2, "hang")
    assert parse_fault("") is None
    for bad in ("one", "1:2:sleep", "1"):
        with pytest.raises(ValueError, match="RANK:STEP"):
            parse_fault(bad)


def test_dry_run_for_gpu_nodes_from_a_cpu_machine(tmp_path, tiny_llama_dir):
    """A login node without GPUs can still write the FSDP files and print accelerate commands; what it
    lacks is a note, while a real config error still fails."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has GPUs")
    raw = _raw(tmp_path, tiny_llama_dir, num_processes=8, backend="nccl", strategy="fsdp")
    raw["output"]["name"] = "gpu"
    res = CliRunner().invoke(app, ["train", _write(tmp_path, raw), "--dry-run"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "note (this machine, not necessarily the nodes): distributed.strategy: fsdp needs CUDA GPUs" in text
    assert "node 0: accelerate launch --config_file" in text
    res = CliRunner().invoke(app, ["train", _write(tmp_path, raw), "--dry-run", "data.train_file=missing.jsonl"])
    assert res.exit_code == 2 and "file not found" in res.output
    # without --dry-run the same config is refused on this machine
    res = CliRunner().invoke(app, ["train", _write(tmp_path, raw)])
    assert res.exit_code == 2 and "fsdp needs CUDA GPUs" in " ".join(res.output.split())
