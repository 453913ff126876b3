"""Evaluation during training: generative metrics on a small validation subset every N steps,
and best-checkpoint selection from the logged values.

`GenerationEvalCallback` is a transformers TrainerCallback; the trainer wiring adds it when
`eval.during_training.every_n_steps` is set. Metrics are logged as `eval_gen_<metric>` (so they
land in metrics.jsonl and TensorBoard beside eval_loss) and plotted by the report.
"""

from __future__ import annotations

from typing import Sequence

from transformers import TrainerCallback

from tunesmith.config.eval_schema import EvalConfig

from .run_logs import PREFIX, read_metrics_jsonl, select_best_checkpoint

__all__ = ["GenerationEvalCallback", "generation_metrics_for_step", "read_metrics_jsonl",
           "select_best_checkpoint", "training_eval_config", "PREFIX"]


def training_eval_config(cfg: EvalConfig) -> EvalConfig:
    """The EvalConfig used during training: the subset size and budget of `during_training`,
    greedy decoding, no TTFT measurement."""
    dt = cfg.during_training
    return cfg.model_copy(update={
        "num_samples": dt.num_samples, "max_new_tokens": dt.max_new_tokens or cfg.max_new_tokens,
        "do_sample": False, "measure_ttft": False,
    })


def generation_metrics_for_step(model, tokenizer, examples: Sequence[dict], cfg: EvalConfig,
                                chat_template: str | None = None) -> dict[str, float]:
    """{eval_gen_<metric>: value} on the validation subset."""
    from .evaluate import evaluate_generation

    res = evaluate_generation(model, tokenizer, examples, training_eval_config(cfg),
                              label="during-training", chat_template=chat_template)
    return {PREFIX + k: float(v) for k, v in res["metrics"].items() if v is not None}


class GenerationEvalCallback(TrainerCallback):
    """Every `every_n_steps` global steps: generate on the subset and log eval_gen_* metrics."""

    def __init__(self, tokenizer, examples: Sequence[dict], cfg: EvalConfig,
                 chat_template: str | None = None, log_fn=None):
        if not cfg.during_training.every_n_steps:
            raise ValueError("eval.during_training.every_n_steps is not set; set it to e.g. 50 "
                             "or do not add GenerationEvalCallback")
        self.tokenizer, self.cfg, self.chat_template = tokenizer, cfg, chat_template
        self.examples = list(examples)[: cfg.during_training.num_samples]
        self.log_fn = log_fn
        self.history: list[dict] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        n = self.cfg.during_training.every_n_steps
        if model is None or state.global_step == 0 or state.global_step % n:
            return control
        if not state.is_world_process_zero:  # distributed (DDP) run: the main process scores the subset once
            return control
        metrics = generation_metrics_for_step(model, self.tokenizer, self.examples, self.cfg,
                                              self.chat_template)
        row = {"step": state.global_step, **metrics}
        self.history.append(row)
        state.log_history.append(dict(row))
        if self.log_fn is not None:
            self.log_fn(row)
        return control
