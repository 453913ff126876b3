"""Real data through the real CLI. Quick (integration): 200 SST-2 rows on minilm-l6.
Slow (on demand, each ~10 min, run under the heavy-job lock): the shipped example configs.

  OMP_NUM_THREADS=2 flock /tmp/tunesmith-heavy.lock .venv/bin/python -m pytest -m slow tests/test_classify_integration.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import shared_data

ROOT = Path(__file__).resolve().parents[1]


def _train(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tunesmith.cli", "train", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=3600)


@pytest.mark.integration
def test_sst2_200_rows_beats_chance_and_predicts(tmp_path):
    sst2 = shared_data("sst2")
    cfg = tmp_path / "sst2.yaml"
    cfg.write_text(json.dumps({
        "task": "classify", "model": {"name_or_path": "minilm-l6"},
        "data": {"format": "classification", "train_file": str(sst2 / "train.tsv"), "eval_file": str(sst2 / "dev.tsv"),
                 "columns": {"text": "sentence"}, "max_samples": 200, "max_eval_samples": 200},
        "method": {"name": "full"}, "classify": {"max_length": 48},
        "train": {"epochs": 3, "batch_size": 16, "learning_rate": 3e-4, "warmup_ratio": 0.1, "lr_scheduler": "linear",
                  "precision": "fp32"},
        "output": {"dir": str(tmp_path / "runs"), "name": "sst2"},
    }))
    res = _train([str(cfg)])
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((tmp_path / "runs" / "sst2" / "final_metrics.json").read_text())
    assert metrics["eval_accuracy"] > 0.6, metrics
    pred = subprocess.run([sys.executable, "-m", "tunesmith.cli", "predict", str(tmp_path / "runs" / "sst2"),
                           "--text", "a gorgeous , witty , seductive movie ."], capture_output=True, text=True)
    assert pred.returncode == 0, pred.stderr
    row = json.loads(pred.stdout.strip().splitlines()[-1])
    assert set(row["probabilities"]) == {"0", "1"} and row["label"] in {"0", "1"}


def _example(name: str, tmp_path: Path, *overrides: str) -> dict:
    res = _train([f"examples/{name}.yaml", f"output.dir={tmp_path}", "output.overwrite=true", *overrides])
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads((tmp_path / [p for p in tmp_path.iterdir() if p.is_dir()][0].name / "final_metrics.json").read_text())


@pytest.mark.slow
def test_sst2_example_reaches_088_dev_accuracy(tmp_path):
    shared_data("sst2")
    assert _example("classify_sst2", tmp_path)["eval_accuracy"] >= 0.88


@pytest.mark.slow
def test_chnsenticorp_example(tmp_path):
    shared_data("chnsenticorp")
    assert _example("classify_chnsenticorp", tmp_path)["test_accuracy"] > 0.7


@pytest.mark.slow
def test_conll2003_example_entity_f1(tmp_path):
    shared_data("ner_conll2003")
    assert _example("ner_conll2003", tmp_path)["test_f1"] >= 0.85
