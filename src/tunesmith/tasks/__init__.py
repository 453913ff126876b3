"""One readable recipe per task; `run_task` dispatches on `cfg.task`."""

from __future__ import annotations

import importlib

# task name -> "module:function" of its recipe; every name in config.schema.TASKS is here.
RECIPES = {
    "sft": "tunesmith.tasks.sft:run_sft",
}


def run_task(cfg, *, resume: bool = False, run_dir=None):
    module, func = RECIPES[cfg.task].split(":")
    return getattr(importlib.import_module(module), func)(cfg, resume=resume, run_dir=run_dir)


__all__ = ["RECIPES", "run_task"]
