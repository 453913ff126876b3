"""The run directory: resolved config, library versions and data fingerprint beside every run."""

from __future__ import annotations

import datetime as _dt
import json
import platform
import shutil
from importlib import metadata
from pathlib import Path

import yaml

from tunesmith.errors import ConfigError
from tunesmith.train.distributed import in_worker, is_main_process, same_on_all_ranks
from tunesmith.train.launch import LAUNCH_FILES  # written by `train --nproc` / `--dry-run` before the processes start

# What a run that stopped at the data checks leaves behind (before config.yaml is written).
EARLY_FILES = frozenset({"quarantine.jsonl", "truncated_prompts.jsonl"})

_LIBRARIES = ("tunesmith", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers")


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def make_run_dir(cfg, *, resume: bool = False, run_dir: str | Path | None = None) -> Path:
    """Create (or, when resuming, find) the run directory for `cfg`."""
    root = Path(cfg.output.dir)
    if run_dir is not None:
        path = Path(run_dir)
    elif cfg.output.name:
        path = root / cfg.output.name
    elif resume:
        runs = sorted((p for p in root.glob("*") if (p / "config.yaml").exists()), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise ConfigError([f"--resume: no run directory found under {root}; pass --run-dir or set output.name"])
        path = runs[-1]
    else:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = root / f"{cfg.task}-{cfg.method.name}-{stamp}"
    if in_worker() and run_dir is None and not cfg.output.name:
        path = Path(same_on_all_ranks(str(path)))  # started without --run-dir: rank 0's timestamped name
    if resume:
        if not path.exists():
            raise ConfigError([f"--resume: run directory {path} does not exist"])
        return path
    if in_worker() or (path.exists() and {p.name for p in path.iterdir()} <= set(LAUNCH_FILES)):
        path.mkdir(parents=True, exist_ok=True)  # the launcher made (and checked) it for this run
        return path
    if path.exists() and any(path.iterdir()):
        if not cfg.output.overwrite:
            raise ConfigError(
                [f"output: run directory {path} already exists; use --resume to continue it, "
                 "set output.overwrite: true, or choose another output.name"]
            )
        _clear_previous_run(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _clear_previous_run(path: Path) -> None:
    """output.overwrite: the old run's files go, so its metrics, checkpoints and reports cannot mix
    with the new run's. Only a tunesmith run directory is emptied (or one left by a run that stopped at
    the data checks, holding only its quarantine); anything else is refused."""
    names = {p.name for p in path.iterdir()}
    if not ({"config.yaml", "run_info.json"} & names or names <= EARLY_FILES | set(LAUNCH_FILES)):
        raise ConfigError([f"output.overwrite: {path} is not a tunesmith run directory (no config.yaml or "
                           "run_info.json), so it is not emptied; choose another output.dir or output.name"])
    for child in path.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def save_run_info(run_dir: Path, cfg, *, data_fingerprint: str | None, extra: dict | None = None) -> None:
    """Write config.yaml (resolved, reloadable) and run_info.json (versions, fingerprint, ...)."""
    if not is_main_process():
        return
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    info = {
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "versions": library_versions(),
        "data_fingerprint": data_fingerprint,
        **(extra or {}),
    }
    path = run_dir / "run_info.json"
    if path.exists():  # resumed run: keep the history of starts
        old = json.loads(path.read_text())
        info["previous_starts"] = old.get("previous_starts", []) + [old.get("created")]
    path.write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")


def last_checkpoint(run_dir: Path) -> Path | None:
    ckpts = sorted((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return ckpts[-1] if ckpts else None
