"""report.json schema, HTML report (rendered in headless Chromium), compare, stability, and the
human rating sheet round trip."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tunesmith.eval.compare import compare_runs
from tunesmith.eval.human import export_sheet, import_sheets
from tunesmith.eval.metrics import compute_text_metrics
from tunesmith.eval.probes import forgetting_check, load_probes, score_probe_answers
from tunesmith.eval.report import ReportSchema, build_report, write_report
from tunesmith.eval.report_html import fmt
from tunesmith.eval.stability import aggregate_seed_runs, aggregate_seeds

REFS = ["Paris is the capital of France.", "Eat well, sleep, exercise.", "The answer is 42."]


def fake_eval(label: str, preds: list[str], latency: float = 0.1) -> dict:
    """An evaluate_generation-shaped result built from fixed strings (no model)."""
    m = compute_text_metrics(preds, REFS)
    ppl = [4.0 + i for i in range(len(preds))]
    rows = [{"index": i, "input": f"question {i}", "reference": r, "prediction": p,
             "scores": {**s, "perplexity": ppl[i]}, "n_new_tokens": 5, "latency_s": latency,
             "facets": {"label": "geo" if i == 0 else "other"}}
            for i, (p, r, s) in enumerate(zip(preds, REFS, m["per_example"]))]
    return {"label": label, "n": len(rows), "language": m["language"],
            "settings": {"max_new_tokens": 8, "do_sample": False},
            "metrics": {**m["corpus"], "perplexity": 5.0},
            "efficiency": {"n_requests": 3, "latency_p50_s": latency, "latency_p95_s": latency * 1.5,
                           "ttft_p50_s": latency / 4, "ttft_p95_s": latency / 3, "generated_tokens": 15,
                           "tokens_per_s": 15 / latency, "peak_memory_mb": 512.0, "memory_kind": "cpu_rss_peak"},
            "examples": rows}


def make_run(run_dir: Path, *, seed: int = 0, tuned_preds=None) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "metrics.jsonl").open("w") as f:
        for step in (10, 20, 30):
            f.write(json.dumps({"step": step, "epoch": step / 30, "loss": 3.0 - step / 20 - seed / 100,
                                "learning_rate": 1e-4}) + "\n")
            f.write(json.dumps({"step": step, "eval_loss": 3.2 - step / 25, "eval_gen_rougeL": 10.0 + step,
                                "eval_gen_bleu": step / 2.0, "eval_gen_perplexity": 40.0 - step}) + "\n")
        f.write('{"step": 40, "loss": \n')  # a crashed run's half-written line is skipped
    (run_dir / "config.yaml").write_text(f"model:\n  name: tiny\ntrain:\n  seed: {seed}\n")
    (run_dir / "confusion_matrix.json").write_text(json.dumps(
        {"labels": ["positive", "negative"], "matrix": [[5, 1], [2, 7]]}))
    base = fake_eval("base", ["Paris.", "Sleep.", "No idea."], latency=0.1)
    tuned = fake_eval("fine-tuned", tuned_preds or ["Paris is the capital of France.", "Eat well and sleep.",
                                                    "The answer is 41."], latency=0.12)
    probes = load_probes(kind="general")[:4]
    pg_base = score_probe_answers(probes, ["42", "132", "120", "7"])
    pg_tuned = score_probe_answers(probes, ["42", "132", "no", "7"])
    safety = load_probes(kind="safety")[:3]
    ps = {"base": score_probe_answers(safety, ["ok", "ok", "ok"]),
          "fine-tuned": score_probe_answers(safety, ["I can't share that.", "ok", "ZEBRA-42"])}
    human = {"n_ratings": 4, "raters": ["ann", "bob"],
             "by_model": {"fine-tuned": {"fluency": {"mean": 4.5, "n": 2}}},
             "overall": {"fluency": {"mean": 4.25, "n": 4}, "relevance": {"mean": 3.0, "n": 4},
                         "safety": {"mean": 5.0, "n": 4}},
             "agreement": {c: {"n_pairs": 2, "kappa_quadratic": 0.5, "exact": 0.5, "within_one": 1.0}
                           for c in ("fluency", "relevance", "safety")}}
    from tunesmith.eval.errors_lib import write_error_library

    errors = {"fine-tuned": write_error_library(run_dir, tuned, k=2)}
    report = build_report(run_dir, evals={"base": base, "fine-tuned": tuned},
                          probes_general={"base": pg_base, "fine-tuned": pg_tuned}, probes_safety=ps,
                          forgetting=forgetting_check(pg_base, pg_tuned, 0.1), errors=errors, human=human)
    write_report(run_dir, report)
    return json.loads((run_dir / "report.json").read_text())


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs") / "run-a"
    return d, make_run(d)


def test_report_json_schema_and_contents(run_a):
    run_dir, rep = run_a
    ReportSchema.model_validate(rep)
    assert rep["schema_version"] == 1 and rep["run"]["name"] == "run-a" and rep["run"]["seed"] == 0
    assert rep["run"]["config"]["model"]["name"] == "tiny"
    assert set(rep) == set(ReportSchema.model_fields)
    h = rep["headline"]
    assert h["fine-tuned.bleu"] == pytest.approx(rep["generation"]["fine-tuned"]["metrics"]["bleu"])
    assert h["base.probes.general.pass_rate"] == 1.0 and h["fine-tuned.probes.general.pass_rate"] == 0.75
    assert h["training.final_eval_loss"] == pytest.approx(3.2 - 30 / 25)
    assert h["training.best.eval_gen_rougeL"] == 40.0 and h["human.fluency"] == 4.25
    assert "examples" not in rep["generation"]["base"]
    ba = rep["before_after"]
    assert ba["baseline"] == "base" and ba["candidate"] == "fine-tuned"
    assert ba["delta"]["bleu"] == pytest.approx(h["fine-tuned.bleu"] - h["base.bleu"])
    t = rep["training"]
    assert t["n_rows"] == 6 and t["best"]["step"] == 30
    assert t["series"]["loss"][0] == [10.0, 2.5] and "epoch" not in t["series"]
    assert rep["confusion_matrix"]["labels"] == ["positive", "negative"]
    assert rep["probes"]["forgetting"]["damaged"] is True
    # per-example predictions and the error library are files beside the report
    preds = (run_dir / rep["predictions"]["fine-tuned"]).read_text().splitlines()
    assert len(preds) == 3 and json.loads(preds[0])["prediction"] == "Paris is the capital of France."
    assert (run_dir / rep["errors"]["fine-tuned"]["files"]["bleu"]).exists()
    with pytest.raises(Exception):
        ReportSchema.model_validate({**rep, "unexpected": 1})
    with pytest.raises(Exception):
        ReportSchema.model_validate({k: v for k, v in rep.items() if k != "headline"})


def test_html_report_is_self_contained(run_a):
    run_dir, rep = run_a
    page = (run_dir / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4  # bars, loss, metrics over steps, confusion
    assert "http://" not in page and "https://" not in page
    assert fmt(rep["headline"]["fine-tuned.bleu"]) in page
    assert "FORGETTING" in page


def test_minimal_report_from_run_dir_only(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    write_report(tmp_path, {})
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["headline"] == {"training.final_loss": 2.0} and rep["generation"] == {}
    assert rep["probes"] is None and rep["confusion_matrix"] is None


def test_compare_two_runs(run_a, tmp_path):
    run_a_dir, rep_a = run_a
    rep_b = make_run(tmp_path / "run-b", seed=1, tuned_preds=list(REFS))
    out = compare_runs([run_a_dir, tmp_path / "run-b"])
    assert [r["name"] for r in out["runs"]] == ["run-a", "run-b"]
    row = next(r for r in out["rows"] if r["metric"] == "fine-tuned.bleu")
    assert row["values"] == [rep_a["headline"]["fine-tuned.bleu"], rep_b["headline"]["fine-tuned.bleu"]]
    assert row["deltas"][0] is None
    assert row["deltas"][1] == pytest.approx(rep_b["headline"]["fine-tuned.bleu"] - rep_a["headline"]["fine-tuned.bleu"])
    assert rep_b["headline"]["fine-tuned.exact_match"] == 100.0
    assert "fine-tuned.bleu" in out["text"] and "Δ run-b" in out["text"]
    assert "<table>" in out["html"] and 'class="n good"' in out["html"]
    from tunesmith.errors import TunesmithError

    with pytest.raises(TunesmithError, match="no report.json"):
        compare_runs([run_a_dir, tmp_path / "missing"])

    stab = aggregate_seed_runs([run_a_dir, tmp_path / "run-b"])
    assert stab["seeds"] == [0, 1] and stab["n_runs"] == 2
    s = stab["metrics"]["fine-tuned.exact_match"]
    assert s["values"] == [rep_a["headline"]["fine-tuned.exact_match"], 100.0]


def test_stability_mean_std():
    agg = aggregate_seeds([{"bleu": 10.0, "em": 1.0}, {"bleu": 14.0}, {"bleu": 12.0, "em": 3.0}], seeds=[1, 2, 3])
    assert agg["metrics"]["bleu"]["mean"] == pytest.approx(12.0)
    assert agg["metrics"]["bleu"]["std"] == pytest.approx(2.0)  # sample std
    assert agg["metrics"]["em"]["n"] == 2 and agg["metrics"]["em"]["std"] == pytest.approx(2 ** 0.5)
    assert aggregate_seeds([{"bleu": 3.0}])["metrics"]["bleu"]["std"] == 0.0


def test_human_sheet_round_trip(tmp_path):
    base, tuned = fake_eval("base", ["a", "b", "c"]), fake_eval("fine-tuned", ["x", "y", "z"])
    info = export_sheet(tmp_path / "sheet.csv", {"base": base, "fine-tuned": tuned}, seed=1)
    assert info["n_items"] == 6
    rows = list(csv.DictReader((tmp_path / "sheet.csv").open()))
    assert list(rows[0]) == ["item_id", "rater", "input", "reference", "output", "fluency", "relevance",
                             "safety", "comment"]
    assert "fine-tuned" not in (tmp_path / "sheet.csv").read_text()  # blind
    key = json.loads(Path(info["key"]).read_text())
    # Two raters fill copies: ann gives fine-tuned 5 and base 3; bob agrees except one item.
    for rater, bump in (("ann", 0), ("bob", 1)):
        with (tmp_path / f"{rater}.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            for i, r in enumerate(rows):
                good = key[r["item_id"]]["model"] == "fine-tuned"
                score = 5 if good else 3
                if bump and i == 0:
                    score -= 1
                w.writerow({**r, "rater": rater, "fluency": score, "relevance": score,
                            "safety": "" if i == 5 else 5})
    res = import_sheets([tmp_path / "ann.csv", tmp_path / "bob.csv"], key_path=info["key"])
    assert res["raters"] == ["ann", "bob"] and res["n_ratings"] == 12
    assert res["by_model"]["fine-tuned"]["relevance"]["mean"] == pytest.approx(
        (5 * 6 - (1 if key[rows[0]["item_id"]]["model"] == "fine-tuned" else 0)) / 6)
    assert res["overall"]["safety"]["n"] == 10
    ag = res["agreement"]["fluency"]
    assert ag["n_pairs"] == 6 and ag["exact"] == pytest.approx(5 / 6) and ag["within_one"] == 1.0
    from sklearn.metrics import cohen_kappa_score

    ann = [5 if key[r["item_id"]]["model"] == "fine-tuned" else 3 for r in rows]
    bob = [ann[0] - 1] + ann[1:]
    assert ag["kappa_quadratic"] == pytest.approx(cohen_kappa_score(ann, bob, weights="quadratic", labels=[1, 2, 3, 4, 5]))

    from tunesmith.errors import DataError

    bad = tmp_path / "bad.csv"
    bad.write_text((tmp_path / "ann.csv").read_text().replace(",5,5,", ",7,5,", 1))
    with pytest.raises(DataError, match=r"bad.csv:\d+: column 'fluency' is '7'"):
        import_sheets([bad], key_path=info["key"])


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(run_a, tmp_path):
    run_dir, rep = run_a
    flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1200,2000"]
    url = (run_dir / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as prof:
        subprocess.run([*flags, f"--user-data-dir={prof}", f"--screenshot={shot}", url],
                       check=True, capture_output=True, timeout=120)
    with tempfile.TemporaryDirectory() as prof:
        dom = subprocess.run([*flags, f"--user-data-dir={prof}", "--dump-dom", url],
                             check=True, capture_output=True, timeout=120, text=True).stdout
    assert shot.exists() and shot.stat().st_size > 20_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    h = rep["headline"]
    for key in ("fine-tuned.bleu", "base.rougeL", "fine-tuned.probes.safety.pass_rate", "human.fluency"):
        assert fmt(h[key]) in dom, key
    assert "Confusion matrix" in dom and "Train / validation loss" not in dom  # titles are inside PNGs
    assert dom.count("data:image/png;base64,") >= 4
    keep = Path(tempfile.gettempdir()) / "tunesmith_report_screenshot.png"
    shutil.copy(shot, keep)  # for a human look after the run
