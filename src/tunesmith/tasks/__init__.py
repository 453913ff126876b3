"""One readable recipe per task; `run_task` dispatches on `cfg.task`."""

from __future__ import annotations

import importlib

# task name -> "module:function" of its recipe; every name in config.schema.TASKS is here.
RECIPES = {
    "sft": "tunesmith.tasks.sft:run_sft",
    "classify": "tunesmith.tasks.classify:run_classify",
    "ner": "tunesmith.tasks.ner:run_ner",
    "dpo": "tunesmith.tasks.preference:run_preference",
    "orpo": "tunesmith.tasks.preference:run_preference",
    "kto": "tunesmith.tasks.preference:run_preference",
    "simpo": "tunesmith.tasks.preference:run_preference",
    "reward": "tunesmith.tasks.preference:run_preference",
}

# tasks whose result generates text, so `eval.after_training` can run the generation report card
GENERATIVE_TASKS = ("sft", "dpo", "orpo", "kto", "simpo")


def run_task(cfg, *, resume: bool = False, run_dir=None):
    if getattr(cfg, "stages", None):  # a chained pipeline (e.g. sft then dpo); see tasks.pipeline
        from tunesmith.tasks.pipeline import run_pipeline

        return run_pipeline(cfg, resume=resume)
    module, func = RECIPES[cfg.task].split(":")
    result = getattr(importlib.import_module(module), func)(cfg, resume=resume, run_dir=run_dir)
    from tunesmith.train.distributed import is_main_process

    if cfg.eval.after_training and cfg.task in GENERATIVE_TASKS and is_main_process():  # rank 0 of a distributed run
        from tunesmith.tasks.evaluate import run_eval

        run_eval(result.run_dir)  # writes report.json and report.html into the run directory
    return result


__all__ = ["GENERATIVE_TASKS", "RECIPES", "run_task"]
