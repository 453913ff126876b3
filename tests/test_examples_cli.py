"""Every shipped example config validates; the CLI verbs work and fail with clear messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.config import load_config
from tunesmith.tasks.checks import environment_problems

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.yaml"))
runner = CliRunner()


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(ROOT)) for p in EXAMPLES])
def test_every_example_config_loads_and_validates(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(path)
    problems = environment_problems(cfg)
    if any("../shared/data" in p for p in problems):
        pytest.skip("the example uses ../shared/data, which is absent here")
    if "runs/demo-data" in str(cfg.data.train_file):
        problems = [p for p in problems if "runs/demo-data" not in p]  # run_demo.py writes these first
    if cfg.method.name == "qlora":
        import torch

        if not torch.cuda.is_available():
            assert problems and all("qlora" in p or "bitsandbytes" in p for p in problems)
            assert "use method.name: lora" in problems[0]
            return
    assert problems == []


def test_validate_ok_and_error_exit_codes(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    ok = runner.invoke(app, ["validate", "examples/sft_lora.yaml", "train.learning_rate=1e-4"])
    assert ok.exit_code == 0, ok.output
    assert "is valid" in ok.output
    bad = runner.invoke(app, ["validate", "examples/sft_lora.yaml", "data.max_lenght=3", "method.r=0"])
    assert bad.exit_code == 2
    text = bad.output
    assert "did you mean data.max_length" in text and "method.r" in text
    assert "Traceback" not in text


def test_validate_reports_missing_data_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {name_or_path: smollm2-135m-instruct}\ndata: {train_file: nowhere.jsonl}\n")
    res = runner.invoke(app, ["validate", str(cfg)])
    assert res.exit_code == 2 and "data.train_file: file not found: nowhere.jsonl" in res.output


def test_models_lists_aliases():
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0 and "smollm2-135m-instruct" in res.output and "minilm-l6" in res.output


def test_every_verb_has_an_example_in_help():
    for verb in ["train", "validate", "models", "chat"]:
        res = runner.invoke(app, [verb, "--help"])
        assert res.exit_code == 0 and "Example:" in res.output, verb
    res = runner.invoke(app, ["data", "inspect", "--help"])
    assert "Example:" in res.output


def _write_cfg(tmp_path, model_dir) -> Path:
    data = tmp_path / "d.jsonl"
    rows = [{"instruction": f"Repeat the number {i}.", "input": "", "output": str(i)} for i in range(12)]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"model: {{name_or_path: {model_dir}}}\n"
        f"data: {{train_file: {data}, max_length: 128, eval_split: 0.25}}\n"
        "method: {name: lora, r: 4}\n"
        "train: {max_steps: 2, batch_size: 4, logging_steps: 1}\n"
        f"output: {{dir: {tmp_path / 'runs'}, name: cli}}\n"
    )
    return cfg


def test_train_inspect_and_chat_through_the_cli(tmp_path, tiny_llama_dir):
    cfg = _write_cfg(tmp_path, tiny_llama_dir)
    res = runner.invoke(app, ["data", "inspect", str(cfg), "-n", "1"])
    assert res.exit_code == 0, res.output
    assert "Repeat the number" in res.output
    res = runner.invoke(app, ["train", str(cfg), "train.max_steps=1"])
    assert res.exit_code == 0, res.output
    run_dir = tmp_path / "runs" / "cli"
    assert (run_dir / "adapter" / "adapter_config.json").exists()
    assert json.loads((run_dir / "trainer_state.json").read_text())["global_step"] == 1  # the override applied
    res = runner.invoke(app, ["chat", str(run_dir), "--prompt", "Repeat the number 3.", "--max-new-tokens", "5"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", str(cfg)])
    assert res.exit_code == 2 and "already exists" in res.output and "--resume" in res.output
    (run_dir / "stale.txt").write_text("from an older run")
    res = runner.invoke(app, ["train", str(cfg), "output.overwrite=true"])
    assert res.exit_code == 0, res.output
    assert not (run_dir / "stale.txt").exists()  # the old run is gone, not mixed into the new one
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum("train_runtime" in r for r in rows) == 1 and max(r["step"] for r in rows) == 2


def test_overwrite_refuses_to_empty_a_folder_that_is_not_a_run(tmp_path, tiny_llama_dir):
    cfg = _write_cfg(tmp_path, tiny_llama_dir)
    keep = tmp_path / "runs" / "cli" / "thesis.tex"
    keep.parent.mkdir(parents=True)
    keep.write_text("precious")
    res = runner.invoke(app, ["train", str(cfg), "output.overwrite=true"])
    assert res.exit_code == 2 and "not a tunesmith run directory" in res.output
    assert keep.read_text() == "precious"


def test_overwrite_accepts_the_folder_of_a_run_that_stopped_at_the_data_checks(tmp_path, tiny_llama_dir):
    """A run rejected for bad data leaves only quarantine.jsonl; re-running it with overwrite works."""
    cfg = _write_cfg(tmp_path, tiny_llama_dir)
    run_dir = tmp_path / "runs" / "cli"
    run_dir.mkdir(parents=True)
    (run_dir / "quarantine.jsonl").write_text('{"line": 3, "reason": "from the failed run"}\n')
    res = runner.invoke(app, ["train", str(cfg), "output.overwrite=true"])
    assert res.exit_code == 0, res.output
    quarantine = run_dir / "quarantine.jsonl"
    assert not quarantine.exists() or "from the failed run" not in quarantine.read_text()
    assert (run_dir / "config.yaml").exists()


def test_readme_generated_references_are_up_to_date():
    from tunesmith.docs import render

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [line for line in text.splitlines()[:8] if line.startswith("make ")]
    assert [c.split()[1] for c in commands] == ["demo", "test"], "README must open with make demo and make test"
    assert render(text) == text, "README.md is stale: run `python -m tunesmith.docs README.md`"
