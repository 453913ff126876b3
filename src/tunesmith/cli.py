"""The `tunesmith` command: train, validate, models, data inspect, chat, ...

Every verb takes a config file plus dotted overrides (`train.learning_rate=1e-4`) where it
makes sense, and turns tunesmith errors into a clear message and exit code 2 (no traceback).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from tunesmith.errors import TunesmithError

app = typer.Typer(
    help="tunesmith: from raw domain data to a fine-tuned, evaluated, deployed model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Look at the data as the model will see it.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)

CONFIG_ARG = typer.Argument(..., help="YAML config file.", exists=False)
OVERRIDES_ARG = typer.Argument(None, help="Dotted overrides, e.g. train.learning_rate=1e-4 method.r=16.")


def friendly_errors(fn):
    """Show TunesmithError as a message (exit 2) instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TunesmithError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _load(config: Path, overrides: Optional[List[str]]):
    from tunesmith.config import load_config
    from tunesmith.tasks.checks import raise_on_problems

    cfg = load_config(config, overrides or [])
    raise_on_problems(cfg, source=str(config))
    return cfg


@app.command()
@friendly_errors
def train(
    config: Path = CONFIG_ARG,
    overrides: Optional[List[str]] = OVERRIDES_ARG,
    resume: bool = typer.Option(False, "--resume", help="Continue the run from its last checkpoint."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run directory to write (or to resume)."),
    seeds: int = typer.Option(1, "--seeds", help="Train with this many seeds (seed, seed+1, ...) and report mean and std."),
    nproc: Optional[int] = typer.Option(
        None, "--nproc", min=1, help="Processes per machine (sets distributed.num_processes); above 1 the run is "
        "launched through torchrun (CPU, gloo) or accelerate launch (GPUs)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Write the accelerate/DeepSpeed config into the run directory and print the launch "
        "command of every node, without starting anything."),
):
    """Fine-tune a model as the config says.

    Example: tunesmith train examples/sft_lora.yaml train.max_steps=50 method.r=16 --nproc 2
    """
    from tunesmith.tasks import run_task
    from tunesmith.train.distributed import finish_worker, is_main_process
    from tunesmith.train.launch import needs_launch

    overrides = list(overrides or []) + ([f"distributed.num_processes={nproc}"] if nproc else [])
    cfg = _load_for_other_machines(config, overrides) if dry_run else _load(config, overrides)
    if dry_run or needs_launch(cfg):
        _launch(cfg, config, overrides, resume=resume, run_dir=run_dir, dry_run=dry_run, seeds=seeds)
        return
    if seeds > 1:
        from tunesmith.tasks.stability import run_seeds

        summary = run_seeds(cfg, seeds)
        console.print(summary["text"], highlight=False)
        return
    result = run_task(cfg, resume=resume, run_dir=run_dir)
    finish_worker()
    if not is_main_process():  # a rank of a distributed run: rank 0 reports
        return
    console.print(f"[bold green]done[/]: run directory {result.run_dir}")
    for key, value in sorted(result.metrics.items()):
        if isinstance(value, float):
            console.print(f"  {key}: {value:.4f}")


def _load_for_other_machines(config: Path, overrides: list[str]):
    """`--dry-run` prepares commands for GPU nodes, possibly from a machine without GPUs or DeepSpeed:
    what this machine lacks is a note; every other problem is still an error."""
    from tunesmith.config import load_config
    from tunesmith.errors import ConfigError
    from tunesmith.tasks.checks import environment_problems

    cfg = load_config(config, overrides)
    problems = environment_problems(cfg)
    local = [p for p in problems if "CUDA" in p or "pip install deepspeed" in p]
    rest = [p for p in problems if p not in local]
    if rest:
        raise ConfigError(rest, source=str(config))
    for p in local:
        console.print(f"note (this machine, not necessarily the nodes): {p}", highlight=False, markup=False,
                      soft_wrap=True)
    return cfg


def _launch(cfg, config: Path, overrides: list[str], *, resume: bool, run_dir: Optional[Path], dry_run: bool,
            seeds: int) -> None:
    """`train --nproc N` / `--dry-run`: write the launch files, print each node's command, run this node's."""
    from tunesmith.errors import ConfigError
    from tunesmith.train import make_run_dir
    from tunesmith.train.launch import plan_launch, print_plan, run_node

    d = cfg.distributed
    if d.world_size == 1:
        console.print("distributed.num_processes x num_machines is 1: an ordinary single-process run, nothing to "
                      "launch (use --nproc N)")
        return
    if seeds > 1:
        raise ConfigError(["--seeds: repeated seeds run one process each; drop --nproc or --seeds"])
    if d.num_machines > 1 and run_dir is None and not cfg.output.name:
        raise ConfigError(["output.name: a multi-node run needs the same run directory on every node; set "
                           "output.name (or pass --run-dir)"])
    if d.machine_rank > 0:  # machine 0 made (and checked) it; with a shared disk it already exists
        path = Path(run_dir) if run_dir else Path(cfg.output.dir) / cfg.output.name
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = make_run_dir(cfg, resume=resume, run_dir=run_dir)
    plan = plan_launch(cfg, config, overrides, path, resume=resume)
    print_plan(plan, echo=lambda text: console.print(text, highlight=False, markup=False, soft_wrap=True))
    if dry_run:
        console.print("dry run: nothing started. Run each node's command on that node (same paths on every node).",
                      soft_wrap=True)
        return
    run_node(plan, d.machine_rank)  # rank 0 prints "done" and the metrics


@app.command()
@friendly_errors
def prepare(
    config: Path = CONFIG_ARG,
    overrides: Optional[List[str]] = OVERRIDES_ARG,
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: <output.dir>/prepared)."),
    no_tokenizer: bool = typer.Option(False, "--no-tokenizer", help="Skip token counts (no model needed)."),
):
    """Validate, clean, mask PII, dedup, split, balance and augment the data; write a report.

    Example: tunesmith prepare examples/prepare_support.yaml --out prepared/support
    """
    from tunesmith.models import load_tokenizer
    from tunesmith.tasks.prepare import prepare_from_config

    cfg = _load(config, overrides)
    if cfg.prepare is None:
        from tunesmith.config.prepare_schema import PrepareConfig

        cfg = cfg.model_copy(update={"prepare": PrepareConfig()})
    tokenizer = None if no_tokenizer else load_tokenizer(cfg.model)
    result = prepare_from_config(cfg, out, tokenizer=tokenizer)
    state = "from cache" if result.from_cache else "prepared"
    console.print(f"[bold green]{state}[/]: {result.out_dir}")
    console.print(f"  splits: {result.splits}")
    console.print(f"  removed by reason: {result.removed or 'none'}")
    if result.paths.get("report_html"):
        console.print(f"  report: {result.paths['report_html']}")


@app.command("eval")
@friendly_errors
def eval_(
    run_dir: Path = typer.Argument(..., help="A run directory made by `tunesmith train`."),
    data: Optional[str] = typer.Option(None, "--data", help="Held-out file (default: the run's saved split)."),
    no_base: bool = typer.Option(False, "--no-base", help="Skip the base model (no before/after)."),
    human_sheet: Optional[List[str]] = typer.Option(None, "--human-sheet", help="Filled rating sheet(s) to import."),
    n: Optional[int] = typer.Option(None, "-n", help="Evaluate at most N examples."),
):
    """Report card: base vs fine-tuned metrics, probes, forgetting, errors, speed; HTML + JSON.

    Example: tunesmith eval runs/demo --human-sheet rated_by_ana.csv
    """
    from tunesmith.tasks.evaluate import run_eval

    out = run_eval(run_dir, data_file=data, compare_base=not no_base, human_sheets=human_sheet, num_samples=n)
    headline = out["report"].get("headline", {})
    for key in sorted(headline):
        value = headline[key]
        console.print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")
    console.print(f"[bold green]report[/]: {run_dir / 'report.html'}")


@app.command()
@friendly_errors
def compare(
    run_dirs: List[Path] = typer.Argument(..., help="Two or more evaluated run directories."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write the A/B table as HTML here."),
):
    """Put evaluated runs side by side, with deltas against the first.

    Example: tunesmith compare runs/lora-r8 runs/lora-r16 --html ab.html
    """
    from tunesmith.eval.compare import compare_runs

    table = compare_runs(run_dirs)
    console.print(table["text"], highlight=False, markup=False)
    if html:
        html.write_text(table["html"], encoding="utf-8")
        console.print(f"written: {html}")


@app.command()
@friendly_errors
def validate(config: Path = CONFIG_ARG, overrides: Optional[List[str]] = OVERRIDES_ARG):
    """Check a config (keys, values, files, hardware) and report every problem at once.

    Example: tunesmith validate examples/sft_lora.yaml data.max_length=2048
    """
    cfg = _load(config, overrides)
    console.print(f"[bold green]ok[/]: {config} is valid (task {cfg.task}, method {cfg.method.name}, model {cfg.model.name_or_path})")


@app.command()
def models():
    """List the bundled model aliases, whether they are installed, and what is cached.

    Example: tunesmith models
    """
    from tunesmith.models import cache_root, list_models

    table = Table(title="bundled models")
    table.add_column("alias", no_wrap=True)
    for col in ("installed", "cached at", "description"):
        table.add_column(col, overflow="fold")
    for row in list_models():
        installed = "yes" if row["installed"] else f"no: {row['install']}"
        table.add_row(row["alias"], installed, row["cached"] or "-", row["description"])
    console.print(table)
    console.print(f"cache folder: {cache_root()} (set TUNESMITH_CACHE to move it)")


@data_app.command("inspect")
@friendly_errors
def data_inspect(
    config: Path = CONFIG_ARG,
    overrides: Optional[List[str]] = OVERRIDES_ARG,
    n: int = typer.Option(3, "-n", help="How many examples to show."),
):
    """Show rendered examples, their tokens, which tokens carry loss, and a length summary.

    Example: tunesmith data inspect examples/sft_lora.yaml -n 3
    """
    from tunesmith.data.formats import convert_records
    from tunesmith.data.inspect import inspection_report
    from tunesmith.data.readers import read_all
    from tunesmith.data.render import resolve_chat_template
    from tunesmith.data.sft_dataset import as_list
    from tunesmith.models import load_tokenizer

    cfg = _load(config, overrides)
    tokenizer = load_tokenizer(cfg.model)
    template = resolve_chat_template(tokenizer, cfg.model.chat_template)
    examples, rejects = convert_records(read_all(as_list(cfg.data.train_file)), cfg.data.format, cfg.data.columns or None)
    console.print(inspection_report(tokenizer, examples, n, max_length=cfg.data.max_length,
                                    train_on_prompt=cfg.data.train_on_prompt, chat_template=template))
    if rejects:
        console.print(f"[yellow]{len(rejects)} record(s) rejected[/]; first: {rejects[0].describe()}")


@app.command()
@friendly_errors
def chat(
    run_dir: Path = typer.Argument(..., help="A run directory made by `tunesmith train`."),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="Answer this one prompt and exit."),
    system: Optional[str] = typer.Option(None, "--system", help="System message."),
    max_new_tokens: int = typer.Option(256, help="Most tokens to generate per answer."),
    temperature: float = typer.Option(0.0, help="0 for greedy decoding."),
):
    """Talk to a trained model with its training chat template.

    Example: tunesmith chat runs/sft-lora-20261123 --prompt "Extract the order: ..."
    """
    from tunesmith.tasks.chat import ChatSession

    session = ChatSession.from_run(run_dir, system=system, max_new_tokens=max_new_tokens, temperature=temperature)
    if prompt is not None:
        console.print(session.reply(prompt), highlight=False, markup=False)
        return
    console.print("[dim]chat: empty line or Ctrl-D to quit, /reset to clear history[/]")
    while True:
        try:
            text = console.input("[bold cyan]you> [/]")
        except (EOFError, KeyboardInterrupt):
            break
        if not text.strip():
            break
        if text.strip() == "/reset":
            session.reset()
            continue
        console.print("[bold magenta]model>[/] " + session.reply(text), highlight=False)


@app.command()
@friendly_errors
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory of task classify or ner."),
    text: Optional[List[str]] = typer.Option(None, "--text", "-t", help="Text to label (repeatable)."),
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="JSONL/CSV/TSV file of records to label."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write predictions as JSONL here."),
    batch_size: int = typer.Option(32, help="Texts per forward pass."),
):
    """Label texts with a trained classifier or tagger: label, confidence and per-label probabilities.

    Example: tunesmith predict runs/classify-sst2 --text "a gorgeous, witty film" --input reviews.jsonl
    """
    import json

    from tunesmith.data.readers import read_all
    from tunesmith.errors import DataError
    from tunesmith.tasks.predict import Predictor

    rows = [{"text": t} for t in text or []]
    if input is not None:
        records = read_all([str(input)])
        bad = [r for r in records if r.error is not None]
        if bad:
            raise DataError(f"{bad[0].where()}: {bad[0].error}")
        rows += [r.data for r in records]
    if not rows:
        raise DataError("nothing to predict; fix: give --text \"...\" or --input file.jsonl")
    results = Predictor(run_dir).predict_records(rows, batch_size=batch_size)
    lines = [json.dumps(r, ensure_ascii=False) for r in results]
    if output is not None:
        output.write_text("\n".join(lines) + "\n", encoding="utf-8")
        console.print(f"[bold green]done[/]: {len(lines)} predictions in {output}")
    else:
        for line in lines:
            print(line)


@app.command()
@friendly_errors
def export(
    run_dir: Path = typer.Argument(..., help="A run directory made by `tunesmith train`."),
    to: Path = typer.Option(..., "--to", help="Output folder (one sub-folder per format, README.md model card)."),
    formats: List[str] = typer.Option(["merged"], "--format", "-f",
                                      help="merged, int8, onnx, gguf; repeat for several (merged is always written)."),
    gguf_type: List[str] = typer.Option(["f16", "q8_0"], "--gguf-type", help="GGUF types to write: f16, q8_0."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip reloading the GGUF files to compare logits."),
):
    """Export a trained run: merged safetensors, int8, ONNX or GGUF, with a model card.

    Example: tunesmith export runs/sft-lora-20261123 --to exports/orders --format gguf --format int8
    """
    from tunesmith.export import export_run

    reports = export_run(run_dir, to, tuple(formats), gguf_types=tuple(gguf_type), verify=not no_verify)
    table = Table("format", "path", "size MB", "check")
    for r in reports:
        check = r.get("roundtrip") or r.get("quality") or r.get("probe") or {}
        note = ", ".join(f"{k}={v:.3g}" for k, v in check.items() if k in ("max_abs_diff", "top1_agreement"))
        if r.get("speedup"):
            note += f", speed-up x{r['speedup']:.2f}"
        table.add_row(r["format"], r["path"], f"{r['size_bytes'] / 2**20:.1f}", note)
    console.print(table)
    console.print(f"model card: {to / 'README.md'}")


@app.command()
@friendly_errors
def serve(
    target: str = typer.Argument(..., help="A run directory, or a model (bundled alias, folder, hub id)."),
    adapter: Optional[List[str]] = typer.Option(None, "--adapter", help="Extra LoRA adapter as name=RUN_DIR (repeatable)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML whose `serve:` section sets the defaults."),
    host: Optional[str] = typer.Option(None, help="Interface (serve.host)."),
    port: Optional[int] = typer.Option(None, help="Port (serve.port)."),
    api_key: Optional[List[str]] = typer.Option(None, "--api-key", help="Accepted Bearer key (repeatable; serve.api_keys)."),
    rate_limit_per_minute: Optional[int] = typer.Option(None, help="Requests per minute per key (serve.rate_limit_per_minute)."),
    max_concurrency: Optional[int] = typer.Option(None, help="Requests generated at once (serve.max_concurrency)."),
    max_queue: Optional[int] = typer.Option(None, help="Requests allowed to wait (serve.max_queue)."),
    max_tokens_limit: Optional[int] = typer.Option(None, help="Largest max_tokens accepted (serve.max_tokens_limit)."),
    batch_wait_ms: Optional[float] = typer.Option(None, help="Batch collection window (serve.batch_wait_ms)."),
    max_batch_size: Optional[int] = typer.Option(None, help="Most requests per batch (serve.max_batch_size)."),
):
    """Serve a run or model with an OpenAI-compatible API (several adapters on one base).

    Example: tunesmith serve runs/sft-lora-orders --adapter support=runs/sft-lora-support --api-key sk-local --port 8000
    """
    import yaml

    from tunesmith.config.serve_schema import ServeConfig
    from tunesmith.serve import load_served, parse_adapter_arg, run_server

    base = {}
    if config is not None:
        base = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("serve") or {}
    flags = dict(host=host, port=port, api_keys=api_key or None, rate_limit_per_minute=rate_limit_per_minute,
                 max_concurrency=max_concurrency, max_queue=max_queue, max_tokens_limit=max_tokens_limit,
                 batch_wait_ms=batch_wait_ms, max_batch_size=max_batch_size)
    cfg = ServeConfig(**{**base, **{k: v for k, v in flags.items() if v is not None}})
    served = load_served(target, [parse_adapter_arg(a) for a in adapter or []])
    console.print(f"serving {', '.join(served.model_ids)} on http://{cfg.host}:{cfg.port}/v1")
    run_server(served, cfg)


def main():  # pragma: no cover - console script entry
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
