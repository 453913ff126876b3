"""Integration: the real bundled SmolLM2 learns from real data through the real CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import shared_data
from tunesmith.cli import app

pytestmark = pytest.mark.integration


def test_smollm2_lora_on_64_alpaca_rows_lowers_eval_loss(tmp_path):
    alpaca = shared_data("alpaca_en", "alpaca_data.json")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model: {name_or_path: smollm2-135m-instruct}\n"
        f"data: {{train_file: {alpaca}, format: alpaca, max_length: 128, max_samples: 80, eval_split: 0.2, max_bad_fraction: 0.2}}\n"
        "method: {name: lora, r: 16, alpha: 32, dropout: 0.0}\n"
        "train: {max_steps: 12, batch_size: 4, learning_rate: 5.0e-4, warmup_ratio: 0.0, eval_steps: 6, logging_steps: 3}\n"
        f"output: {{dir: {tmp_path / 'runs'}, name: alpaca}}\n"
    )
    res = CliRunner().invoke(app, ["train", str(cfg)])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "alpaca"
    info = json.loads((run / "run_info.json").read_text())
    assert info["data"]["train"]["n"] == 64  # 80 rows, 20% held out
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
    assert len(evals) >= 2
    # Evaluations after 6 and 12 steps; the last must beat the untrained model on the same rows.
    from tunesmith.train import load_run

    base_loss = _eval_loss_of_base(run)
    assert evals[-1] < base_loss, (base_loss, evals)
    assert (run / "loss_curve.png").stat().st_size > 5000
    assert load_run(run).model is not None


def _eval_loss_of_base(run_dir) -> float:
    """Loss of the untrained base on the run's saved validation split, measured like Trainer's eval."""
    import torch

    from tunesmith.data.render import tokenize_dataset
    from tunesmith.models import load_model, load_tokenizer
    from tunesmith.train import read_run_config

    cfg = read_run_config(run_dir)
    tok, model = load_tokenizer(cfg.model), load_model(cfg.model).eval()
    examples = [json.loads(x) for x in (run_dir / "data" / "validation.jsonl").read_text().splitlines()]
    tokenised, _ = tokenize_dataset(tok, examples, max_length=cfg.data.max_length)
    total, count = 0.0, 0
    with torch.no_grad():
        for t in tokenised:
            out = model(input_ids=torch.tensor([t.input_ids]), labels=torch.tensor([t.labels]))
            n = sum(1 for x in t.labels[1:] if x != -100)
            total, count = total + out.loss.item() * n, count + n
    return total / count
