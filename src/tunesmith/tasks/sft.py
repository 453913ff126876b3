"""Supervised fine-tuning of a chat model, top to bottom.

tokenizer -> dataset -> model -> method -> trainer -> train -> evaluate -> save.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tunesmith.config.schema import TunesmithConfig
from tunesmith.data.render import resolve_chat_template
from tunesmith.data.sft_cache import load_or_build_sft_data
from tunesmith.data.sft_dataset import save_held_out
from tunesmith.methods import apply_method, save_initial_adapter, trainable_summary
from tunesmith.models import load_model, load_tokenizer, resolve_model
from tunesmith.models.varlen_attention import use_varlen_attention
from tunesmith.tasks.prepare import data_config_from_prepared, prepare_from_config
from tunesmith.train import (
    RunResult,
    build_trainer,
    last_checkpoint,
    make_run_dir,
    plot_loss_curve,
    save_final,
    save_run_info,
    model_load_kwargs,
    plan_sft_batches,
    resolve_gradient_checkpointing,
)
from tunesmith.train.distributed import (
    in_worker, init_process_group, is_main_process, main_process_first, record_effective_batch,
)


def run_sft(cfg: TunesmithConfig, *, resume: bool = False, run_dir: str | Path | None = None) -> RunResult:
    from transformers import set_seed

    set_seed(cfg.train.seed)
    init_process_group(cfg.distributed)  # a no-op unless started by `train --nproc N`
    run_dir = make_run_dir(cfg, resume=resume, run_dir=run_dir)
    resolved = resolve_model(cfg.model.name_or_path, gguf_file=cfg.model.gguf_file)
    tokenizer = load_tokenizer(cfg.model, resolved)
    chat_template = resolve_chat_template(tokenizer, cfg.model.chat_template)
    tokenizer.chat_template = chat_template  # saved with the weights, so chat/serve use the same one

    data_cfg = cfg.data
    with main_process_first():  # prepared and tokenised once; the other ranks reuse it by fingerprint
        if cfg.prepare is not None:  # the data-quality gate, cached by fingerprint
            data_cfg = data_config_from_prepared(cfg, prepare_from_config(cfg, tokenizer=tokenizer))
        cache_dir = Path(cfg.output.dir) / ".cache" if (data_cfg.cache or in_worker()) else None
        data = load_or_build_sft_data(data_cfg, tokenizer, chat_template=chat_template, seed=cfg.train.seed,
                                      run_dir=run_dir, cache_dir=cache_dir, write=is_main_process())
    if is_main_process():
        save_held_out(run_dir, data)

    train_cfg = cfg.train
    if cfg.method.name in ("prefix", "prompt"):  # virtual tokens go before the whole row: no packing
        train_cfg = cfg.train.model_copy(update={"packing": False})
    batches = plan_sft_batches(train_cfg, data.train, data.eval, tokenizer,
                               attn_implementation=cfg.model.attn_implementation)
    model = load_model(cfg.model, resolved=resolved, **model_load_kwargs(cfg.method))
    if batches.mode == "packed":
        model.config.use_cache = False  # packed rows need it: the cache path ignores example boundaries
        use_varlen_attention(model, cfg.model.attn_implementation)
    checkpointing = resolve_gradient_checkpointing(cfg.train.gradient_checkpointing, model.config,
                                                   batches.stats["largest_micro_batch_tokens"])
    model = apply_method(model, cfg.method, task_type="CAUSAL_LM", tokenizer_path=resolved.path,
                         gradient_checkpointing=checkpointing)
    initial_adapter = _initial_adapter(model, run_dir, resume)
    save_run_info(run_dir, cfg, data_fingerprint=data.fingerprint,
                  extra={"base_model": resolved.path, "trainable": trainable_summary(model), "data": data.stats,
                         "batches": {**batches.stats, "gradient_checkpointing": checkpointing,
                                     "attention": getattr(model.config, "_attn_implementation", None)}})

    trainer = build_trainer(model, tokenizer, batches.train, batches.eval, cfg.train, run_dir,
                            data_collator=batches.collator,
                            callbacks=generation_callbacks(cfg, tokenizer, data.eval_examples, chat_template, run_dir),
                            distributed=cfg.distributed,
                            gradient_checkpointing=checkpointing, **batches.trainer_args)
    record_effective_batch(trainer, run_dir)
    checkpoint = last_checkpoint(run_dir) if resume else None
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if batches.mode == "packed":  # saved for inference, where the KV cache is wanted
        trainer.model.config.use_cache = True

    metrics = trainer.evaluate() if data.eval is not None else {}
    trainer.save_state()
    weights = save_final(trainer.model, tokenizer, run_dir, initial_adapter=initial_adapter, trainer=trainer)
    if is_main_process():  # one writer for the run's files
        shutil.copy(Path(trainer.args.output_dir) / "trainer_state.json", run_dir / "trainer_state.json")
        (run_dir / "final_metrics.json").write_text(json.dumps(metrics, indent=2))
        plot_loss_curve(run_dir / "metrics.jsonl", run_dir / "loss_curve.png")
    return RunResult(run_dir=run_dir, weights_dir=weights, metrics=metrics, model=trainer.model)


def _initial_adapter(model, run_dir: Path, resume: bool) -> Path | None:
    """PiSSA/OLoRA runs keep their initial adapter until the final save converts the result."""
    from peft import PeftModel

    folder = run_dir / "_initial_adapter"
    if not is_main_process():  # only the main process writes the final weights
        return None
    if resume:
        return folder if folder.exists() else None
    if isinstance(model, PeftModel) and hasattr(model.peft_config.get("default"), "init_lora_weights"):
        return save_initial_adapter(model, folder)
    return None


def generation_callbacks(cfg, tokenizer, eval_examples: list[dict], chat_template: str, run_dir: Path) -> list:
    """Generative metrics (eval_gen_*) on a validation subset every N steps, when configured;
    they go to metrics.jsonl beside the losses."""
    if not cfg.eval.during_training.every_n_steps or not eval_examples:
        return []
    from tunesmith.eval.training_eval import GenerationEvalCallback

    def log_row(row: dict) -> None:
        with (run_dir / "metrics.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    return [GenerationEvalCallback(tokenizer, eval_examples, cfg.eval, chat_template=chat_template, log_fn=log_row)]
