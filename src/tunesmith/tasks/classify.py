"""Text classification (single-label, multi-label) and regression, top to bottom.

tokenizer -> dataset (split, labels, resampling) -> model with a head -> method -> trainer
(weighted loss, LLRD) -> train (best checkpoint by validation metric) -> test metrics -> save.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tunesmith.config.schema import TunesmithConfig
from tunesmith.eval.classify_metrics import classification_compute_metrics, write_classification_test
from tunesmith.methods import apply_method, trainable_summary
from tunesmith.models import load_tokenizer, resolve_model
from tunesmith.tasks.predict import load_labelled_model, save_labels
from tunesmith.train import RunResult, build_trainer, length_grouped, predict_in_order, last_checkpoint, make_run_dir, plot_loss_curve, save_final, save_run_info
from tunesmith.train.classify_data import build_classify_data
from tunesmith.train.weighted import classification_trainer_class, llrd_optimizer

# Task heads train under every method (bert: classifier + pooler, llama: score).
HEAD_MODULES = ("classifier", "pooler", "score")
BEST_METRIC = {"single_label": "eval_f1_macro", "multi_label": "eval_f1_micro", "regression": "eval_mse"}



def run_classify(cfg: TunesmithConfig, *, resume: bool = False, run_dir: str | Path | None = None) -> RunResult:
    from transformers import DataCollatorWithPadding, set_seed

    set_seed(cfg.train.seed)
    ccfg = cfg.classify
    run_dir = make_run_dir(cfg, resume=resume, run_dir=run_dir)
    resolved = resolve_model(cfg.model.name_or_path, gguf_file=cfg.model.gguf_file)
    tokenizer = load_tokenizer(cfg.model, resolved)
    data = build_classify_data(cfg.data, ccfg, tokenizer, run_dir)

    model = load_labelled_model(cfg.model, "classify", data.label_map.model_kwargs(), tokenizer, resolved)
    model = apply_method(model, cfg.method, task_type="SEQ_CLS", head_modules=HEAD_MODULES,
                         gradient_checkpointing=cfg.train.gradient_checkpointing)
    save_run_info(run_dir, cfg, data_fingerprint=data.fingerprint,
                  extra={"base_model": resolved.path, "trainable": trainable_summary(model), "data": data.stats,
                         "labels": data.label_map.labels, "class_weights": data.class_weights})

    optimizer = llrd_optimizer(model, cfg.train, ccfg.layerwise_lr_decay) if ccfg.layerwise_lr_decay else None
    trainer = build_trainer(
        model, tokenizer, data.train, data.eval, cfg.train, run_dir,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8),
        compute_metrics=classification_compute_metrics(ccfg.problem_type, data.label_map.labels),
        trainer_class=classification_trainer_class(data.class_weights, ccfg.problem_type, optimizer),
        **length_grouped(cfg.train),
        **_best_metric(cfg, BEST_METRIC[ccfg.problem_type]),
    )
    checkpoint = last_checkpoint(run_dir) if resume else None
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    metrics = trainer.evaluate() if data.eval is not None else {}
    if data.test is not None:
        output = predict_in_order(trainer, data.test)
        metrics.update(write_classification_test(run_dir, output.predictions, data.test_examples, data.label_map,
                                                 ccfg.error_file_limit, label_ids=output.label_ids))
    trainer.save_state()
    shutil.copy(Path(trainer.args.output_dir) / "trainer_state.json", run_dir / "trainer_state.json")
    weights = save_final(trainer.model, tokenizer, run_dir)
    save_labels(weights, "classify", data.label_map.labels, ccfg.problem_type)
    (run_dir / "final_metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_loss_curve(run_dir / "metrics.jsonl", run_dir / "loss_curve.png")
    return RunResult(run_dir=run_dir, weights_dir=weights, metrics=metrics, model=trainer.model)


def _best_metric(cfg: TunesmithConfig, default: str) -> dict:
    """Select the best checkpoint by the task's validation metric unless the config names another."""
    if cfg.train.metric_for_best != "eval_loss":
        return {}
    return {"metric_for_best_model": default, "greater_is_better": "mse" not in default}
