"""The pipeline verbs on a tiny model: prepare inline in train (cached), eval's report card,
compare, and --seeds aggregation."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tunesmith.cli import app

runner = CliRunner()


def _config(tmp_path, model_dir, extra: str = "") -> str:
    rows = [{"instruction": f"Repeat the word number {i}.", "input": "", "output": f"word {i}"} for i in range(16)]
    rows.append({"instruction": "", "input": "", "output": "bad row: empty instruction"})
    rows.append(dict(rows[0]))  # an exact duplicate, removed by prepare
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"model: {{name_or_path: {model_dir}}}\n"
        f"data: {{train_file: {data}, max_length: 128, max_bad_fraction: 0.2}}\n"
        "method: {name: lora, r: 4}\n"
        "train: {max_steps: 2, batch_size: 4, logging_steps: 1}\n"
        "eval: {max_new_tokens: 4, batch_size: 4, probes: {enabled: false}, worst_k: 2}\n"
        f"output: {{dir: {tmp_path / 'runs'}}}\n" + extra
    )
    return str(cfg)


def test_prepare_verb_then_cache(tmp_path, tiny_llama_dir):
    cfg = _config(tmp_path, tiny_llama_dir, "prepare: {split: {ratios: '8:1:1', method: random}}\n")
    first = runner.invoke(app, ["prepare", cfg])
    assert first.exit_code == 0, first.output
    assert "prepared" in first.output and "removed by reason" in first.output
    prepared = tmp_path / "runs" / "prepared"
    quarantine = [json.loads(x) for x in (prepared / "quarantine.jsonl").read_text().splitlines()]
    assert len(quarantine) == 1 and quarantine[0]["field"] == "instruction"
    second = runner.invoke(app, ["prepare", cfg])
    assert second.exit_code == 0 and "from cache" in second.output


def test_train_with_inline_prepare_then_eval_and_compare(tmp_path, tiny_llama_dir):
    cfg = _config(tmp_path, tiny_llama_dir, "prepare: {split: {ratios: '7:3:0', method: random}}\n")
    a = runner.invoke(app, ["train", cfg, "output.name=a"])
    assert a.exit_code == 0, a.output
    run_a = tmp_path / "runs" / "a"
    held_out = (run_a / "data" / "validation.jsonl").read_text().splitlines()
    assert len(held_out) >= 4  # the prepared validation split, saved for eval
    res = runner.invoke(app, ["eval", str(run_a)])
    assert res.exit_code == 0, res.output
    report = json.loads((run_a / "report.json").read_text())
    assert set(report["generation"]) == {"base", "fine-tuned"}
    assert report["generation"]["fine-tuned"]["n"] == len(held_out)
    assert "fine-tuned.exact_match" in report["headline"] and "base.exact_match" in report["headline"]
    assert (run_a / "report.html").exists()

    b = runner.invoke(app, ["train", cfg, "output.name=b", "method.r=8"])
    assert b.exit_code == 0, b.output
    assert runner.invoke(app, ["eval", str(tmp_path / "runs" / "b"), "--no-base"]).exit_code == 0
    cmp = runner.invoke(app, ["compare", str(run_a), str(tmp_path / "runs" / "b"), "--html", str(tmp_path / "ab.html")])
    assert cmp.exit_code == 0, cmp.output
    assert "fine-tuned." in cmp.output and (tmp_path / "ab.html").exists()


def test_seeds_reports_mean_and_std(tmp_path, tiny_llama_dir):
    cfg = _config(tmp_path, tiny_llama_dir)
    res = runner.invoke(app, ["train", cfg, "output.name=s", "--seeds", "2"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "runs" / "s-seeds" / "stability.json").read_text())
    assert summary["n_runs"] == 2 and summary["seeds"] == [42, 43]
    loss = summary["metrics"]["training.final_eval_loss"]
    assert loss["n"] == 2 and loss["std"] is not None
