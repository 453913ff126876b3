"""Named-entity recognition (token classification), top to bottom.

tokenizer -> CoNLL/jsonl sentences (tag scheme checked, tags on first sub-tokens) -> model with a
token head -> method -> trainer (best checkpoint by entity F1) -> test entity P/R/F1 -> save.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tunesmith.config.schema import TunesmithConfig
from tunesmith.eval.classify_metrics import ner_compute_metrics, write_ner_test
from tunesmith.methods import apply_method, trainable_summary
from tunesmith.models import load_tokenizer, resolve_model
from tunesmith.tasks.predict import load_labelled_model, save_labels
from tunesmith.train import RunResult, build_trainer, length_grouped, predict_in_order, last_checkpoint, make_run_dir, plot_loss_curve, save_final, save_run_info
from tunesmith.train.classify_data import weight_vector
from tunesmith.train.ner_data import build_ner_data
from tunesmith.train.weighted import classification_trainer_class, llrd_optimizer
from tunesmith.data.balance import class_weights as balanced_weights

HEAD_MODULES = ("classifier", "score")



def run_ner(cfg: TunesmithConfig, *, resume: bool = False, run_dir: str | Path | None = None) -> RunResult:
    from transformers import DataCollatorForTokenClassification, set_seed

    set_seed(cfg.train.seed)
    ncfg = cfg.ner
    run_dir = make_run_dir(cfg, resume=resume, run_dir=run_dir)
    resolved = resolve_model(cfg.model.name_or_path, gguf_file=cfg.model.gguf_file)
    tokenizer = load_tokenizer(cfg.model, resolved)
    data = build_ner_data(cfg.data, ncfg, tokenizer, run_dir)
    labels = data.labels

    label_kwargs = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                    "label2id": {t: i for i, t in enumerate(labels)}}
    model = load_labelled_model(cfg.model, "ner", label_kwargs, tokenizer, resolved)
    model = apply_method(model, cfg.method, task_type="TOKEN_CLS", head_modules=HEAD_MODULES,
                         gradient_checkpointing=cfg.train.gradient_checkpointing)
    weights = None
    if ncfg.imbalance == "weighted_loss":
        train_tags = [labels[i] for row in data.train["labels"] for i in row if i != -100]
        weights = weight_vector_from(labels, ncfg.class_weights or balanced_weights(train_tags))
    save_run_info(run_dir, cfg, data_fingerprint=data.fingerprint,
                  extra={"base_model": resolved.path, "trainable": trainable_summary(model), "data": data.stats,
                         "labels": labels, "tag_scheme": data.scheme})

    optimizer = llrd_optimizer(model, cfg.train, ncfg.layerwise_lr_decay) if ncfg.layerwise_lr_decay else None
    trainer = build_trainer(
        model, tokenizer, data.train, data.eval, cfg.train, run_dir,
        data_collator=DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=8),
        compute_metrics=ner_compute_metrics(labels, data.scheme),
        trainer_class=classification_trainer_class(weights, "single_label", optimizer),
        **length_grouped(cfg.train),
        **({"metric_for_best_model": "eval_f1", "greater_is_better": True}
           if cfg.train.metric_for_best == "eval_loss" else {}),
    )
    checkpoint = last_checkpoint(run_dir) if resume else None
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    metrics = trainer.evaluate() if data.eval is not None else {}
    if data.test is not None:
        output = predict_in_order(trainer, data.test)
        metrics.update(write_ner_test(run_dir, output.predictions, output.label_ids, labels, data.scheme,
                                      data.test_examples))
    trainer.save_state()
    shutil.copy(Path(trainer.args.output_dir) / "trainer_state.json", run_dir / "trainer_state.json")
    weights_dir = save_final(trainer.model, tokenizer, run_dir)
    save_labels(weights_dir, "ner", labels, "single_label", data.scheme)
    (run_dir / "final_metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_loss_curve(run_dir / "metrics.jsonl", run_dir / "loss_curve.png")
    return RunResult(run_dir=run_dir, weights_dir=weights_dir, metrics=metrics, model=trainer.model)


def weight_vector_from(labels: list[str], weights: dict[str, float]) -> list[float]:
    from tunesmith.data.labels import LabelMap

    return weight_vector(LabelMap(labels), weights)
