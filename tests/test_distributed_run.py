"""Real multi-process runs on CPU (gloo, torchrun) with the tiny Llama, through `tunesmith train --nproc 2`:

- two processes give the same loss curve as one process with the same global batch
  (1 process x grad_accum 2 == 2 processes x grad_accum 1; tolerance 1e-5 absolute per logged step,
  fp32, no dropout, the same seeded data order -- on this machine the curves agree bit for bit);
- the validation loss, gathered over both ranks, equals the one-process figure;
- checkpoints, metrics and final weights are written once, by rank 0;
- when rank 1 dies at step 3 (TUNESMITH_FAULT_INJECT=1:3) the job stops within seconds with an
  error naming rank 1, and `--resume` continues from checkpoint-2 to the same curve;
- when rank 1 hangs instead (1:3:hang), rank 0 gives up after distributed.timeout_seconds (15 s
  here) and the job stops, naming rank 0 and the timeout -- no endless wait.

About 3-4 minutes on 2 CPU cores (process start-up dominates), hence `integration`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import yaml

from tunesmith.config import validate_config
from tunesmith.tasks import run_task

pytestmark = pytest.mark.integration

ROWS = [{"instruction": f"Write the number {i} in words.", "input": "", "output": f"{i} is the number {i}."}
        for i in range(16)]
TOLERANCE = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_llama_dir):
    root = tmp_path_factory.mktemp("dist")
    data = root / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS * 2) + "\n")
    raw = {
        "model": {"name_or_path": str(tiny_llama_dir)},
        "data": {"train_file": str(data), "max_length": 64, "eval_split": 0.25},
        "method": {"name": "full"},  # no dropout anywhere in the tiny Llama
        "train": {"max_steps": 4, "batch_size": 2, "grad_accum": 1, "learning_rate": 1e-3, "warmup_ratio": 0.0,
                  "lr_scheduler": "constant", "logging_steps": 1, "precision": "fp32", "save_steps": 2, "eval_steps": 2,
                  "save_total_limit": 5},
        "output": {"dir": str(root / "runs")},
        "distributed": {"main_process_port": _free_port(), "timeout_seconds": 60},
    }
    cfg_path = root / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    # the reference: one process, two micro-batches per step (the same global batch as 2 x 1)
    one = raw | {"train": raw["train"] | {"grad_accum": 2}, "output": raw["output"] | {"name": "one"}}
    run_task(validate_config(one))
    return root, cfg_path, _losses(root / "runs" / "one"), _losses(root / "runs" / "one", "eval_loss")


def _losses(run_dir, key: str = "loss") -> dict[int, float]:
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if key in row:
            out[row["step"]] = row[key]  # a resumed run logs the replayed steps again: keep the last
    return out


def _train(cfg_path, *args, env=None):
    cmd = [sys.executable, "-m", "tunesmith.cli", "train", str(cfg_path), *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    start = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=full_env)
    return res, time.monotonic() - start


def test_two_processes_match_one_and_write_once(setup):
    root, cfg_path, reference, reference_eval = setup
    res, _ = _train(cfg_path, "output.name=two", "--nproc", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    run = root / "runs" / "two"
    losses = _losses(run)
    assert sorted(losses) == [1, 2, 3, 4] == sorted(reference)
    for step, loss in reference.items():
        assert abs(losses[step] - loss) <= TOLERANCE, (step, losses[step], loss)
    # validation loss gathered over both ranks' shards equals the one-process figure
    evals = _losses(run, "eval_loss")
    assert sorted(evals) == [2, 4] == sorted(reference_eval)
    for step, loss in reference_eval.items():
        assert abs(evals[step] - loss) <= TOLERANCE, (step, evals[step], loss)
    # rank 0 alone writes: one metrics row per step, one folder per checkpoint, each saved once
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert sorted(p.name for p in (run / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    out = res.stdout + res.stderr
    assert out.count("Writing model shards: 100%") == 3, out[-3000:]  # 2 checkpoints + the final model
    assert (run / "model" / "model.safetensors").exists()
    info = json.loads((run / "run_info.json").read_text())
    assert info["effective_batch"]["world_size"] == 2 and info["distributed"]["backend"] == "gloo"
    assert info["effective_batch"]["global"] == info["effective_batch"]["per_device"] * 2
    assert "effective global batch" in res.stdout


def test_dead_rank_stops_the_job_and_resume_continues(setup):
    root, cfg_path, reference, _ = setup
    res, seconds = _train(cfg_path, "output.name=crash", "--nproc", "2", env={"TUNESMITH_FAULT_INJECT": "1:3"})
    assert res.returncode == 2, res.stderr[-3000:]
    assert "rank 1 (local rank 1" in res.stderr and "failed first: exit code 17" in res.stderr
    assert seconds < 180  # start-up included; the stop itself takes well under the 60 s timeout
    run = root / "runs" / "crash"
    assert (run / "checkpoints" / "checkpoint-2").is_dir() and not (run / "model").exists()

    res, _ = _train(cfg_path, "output.name=crash", "--nproc", "2", "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    losses = _losses(run)
    assert sorted(losses) == [1, 2, 3, 4]
    for step, loss in reference.items():
        assert abs(losses[step] - loss) <= TOLERANCE, (step, losses[step], loss)
    state = json.loads((run / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert len(json.loads((run / "run_info.json").read_text())["previous_starts"]) == 1


def test_hung_rank_is_bounded_by_the_timeout(setup):
    root, cfg_path, _, _ = setup
    res, seconds = _train(cfg_path, "output.name=hang", "--nproc", "2", "distributed.timeout_seconds=15",
                          env={"TUNESMITH_FAULT_INJECT": "1:3:hang"})
    assert res.returncode == 2, res.stderr[-3000:]
    assert "rank 1 hangs at step 3" in res.stderr
    assert "distributed run stopped: rank 0 (local rank 0" in res.stderr, res.stderr[-3000:]
    assert seconds < 200  # start-up + 15 s timeout + teardown; without the timeout it would wait 30 minutes
