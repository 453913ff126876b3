"""One readable recipe per task; `run_task` dispatches on `cfg.task`."""

from __future__ import annotations


def run_task(cfg, *, resume: bool = False, run_dir=None):
    if cfg.task == "sft":
        from tunesmith.tasks.sft import run_sft

        return run_sft(cfg, resume=resume, run_dir=run_dir)
    raise ValueError(f"task {cfg.task!r} has no recipe")


__all__ = ["run_task"]
