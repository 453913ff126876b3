"""Build a transformers Trainer from the typed config: optimiser, schedule, precision, cadence."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from transformers import EarlyStoppingCallback, PrinterCallback, ProgressCallback, Trainer, TrainingArguments

from tunesmith.config.schema import TrainConfig
from tunesmith.errors import ConfigError
from tunesmith.train.callbacks import MetricsJsonlCallback, RichProgressCallback
from tunesmith.train.distributed import FaultInjectionCallback, decoder_layer_class, distributed_training_args


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 instructions (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str) -> str:
    """`auto` -> bf16 on GPUs that support it and on CPUs with native bf16, else fp32."""
    cuda = torch.cuda.is_available()
    if requested == "auto":
        if cuda:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if requested == "fp16" and not cuda:
        raise ConfigError(["train.precision: fp16 needs a CUDA GPU; use bf16 or fp32 on CPU"])
    return requested


def resolve_optim(requested: str) -> str:
    """`auto` -> fused AdamW (torch has a fused kernel on CPU and CUDA; 7x faster than the loop here)."""
    if requested == "auto":
        return "adamw_torch_fused"
    if requested == "adamw_8bit" and not torch.cuda.is_available():
        raise ConfigError(["train.optim: adamw_8bit needs bitsandbytes on a CUDA GPU; use auto on CPU"])
    return requested


def check_liger(enabled: bool) -> None:
    """Liger kernels are Triton (CUDA) kernels: say what is missing instead of failing inside."""
    if not enabled:
        return
    import importlib.util

    problems = []
    if not torch.cuda.is_available():
        problems.append("train.liger_kernel: true needs a CUDA GPU (Liger's kernels are Triton); set it to false on CPU")
    if importlib.util.find_spec("liger_kernel") is None:
        problems.append("train.liger_kernel: true needs the liger-kernel package; `pip install 'tunesmith[liger]'` "
                        "or set it to false")
    if problems:
        raise ConfigError(problems)


def activation_bytes(model_config, tokens: int, bytes_per_value: int = 4) -> int:
    """Rough activation memory of one micro-batch without checkpointing: per token and layer about
    16 hidden-size and 6 intermediate-size values are kept for the backward pass, plus three
    vocabulary-size copies of the logits (logits, their fp32 log-softmax and its gradient)."""
    get = lambda k, d=0: getattr(model_config, k, d) or d  # noqa: E731
    hidden, inter = get("hidden_size"), get("intermediate_size", 4 * get("hidden_size"))
    per_token = get("num_hidden_layers") * (16 * hidden + 6 * inter) + 3 * get("vocab_size")
    return int(tokens * per_token * bytes_per_value)


def available_memory_bytes() -> int:
    if torch.cuda.is_available():
        return torch.cuda.mem_get_info()[0]
    import psutil

    return psutil.virtual_memory().available


def resolve_gradient_checkpointing(setting: bool | str, model_config=None, micro_batch_tokens: int | None = None) -> bool:
    """`auto` -> on only when the estimated activations of one micro-batch exceed half of the free memory."""
    if isinstance(setting, bool):
        return setting
    if model_config is None or not micro_batch_tokens:
        return False
    return activation_bytes(model_config, micro_batch_tokens) > available_memory_bytes() // 2


def length_grouped(train_cfg: TrainConfig) -> dict:
    """Trainer arguments for padded tasks (classify, NER): with `train.group_by_length`, batches hold
    examples of similar length (transformers' LengthGroupedSampler), so less of each batch is padding."""
    return {"train_sampling_strategy": "group_by_length"} if train_cfg.group_by_length else {}


def predict_in_order(trainer, dataset, metric_key_prefix: str = "test"):
    """`trainer.predict` with the rows in dataset order. transformers 5 also length-groups the
    evaluation sampler (in a seeded random order) when training does, which keeps metrics right
    (labels move with predictions) but pairs predictions with the wrong texts in an error file."""
    grouped = trainer.args.train_sampling_strategy
    trainer.args.train_sampling_strategy = "random"  # the eval sampler is then sequential
    try:
        return trainer.predict(dataset, metric_key_prefix=metric_key_prefix)
    finally:
        trainer.args.train_sampling_strategy = grouped


def training_arguments(cfg: TrainConfig, run_dir: Path, *, has_eval: bool, **overrides) -> TrainingArguments:
    """TrainingArguments for the run; checkpoints go to run_dir/checkpoints."""
    precision = resolve_precision(cfg.precision)
    check_liger(cfg.liger_kernel)
    eval_steps = cfg.eval_steps
    if has_eval and eval_steps is None and cfg.max_steps > 0:
        eval_steps = cfg.max_steps  # with a fixed step budget, evaluate at least at the end
    strategy = ("steps" if eval_steps else "epoch") if has_eval else "no"
    save_steps = cfg.save_steps or eval_steps
    greater = cfg.greater_is_better
    if greater is None:
        greater = "loss" not in cfg.metric_for_best
    args = dict(
        output_dir=str(run_dir / "checkpoints"),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size or cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type=cfg.lr_scheduler,
        max_grad_norm=cfg.max_grad_norm if cfg.max_grad_norm > 0 else None,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        eval_strategy=strategy,
        eval_steps=eval_steps if strategy == "steps" else None,
        save_strategy=strategy if has_eval else ("steps" if cfg.save_steps else "epoch"),
        save_steps=save_steps if (strategy == "steps" or not has_eval) and save_steps else 500,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=has_eval,
        metric_for_best_model=cfg.metric_for_best if has_eval else None,
        greater_is_better=greater if has_eval else None,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        report_to=["tensorboard"] if cfg.tensorboard else "none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        disable_tqdm=True,
        remove_unused_columns=False,
        activation_checkpointing=cfg.gradient_checkpointing is True,  # transformers 5's name for it
        dataloader_num_workers=cfg.dataloader_workers,
        optim=resolve_optim(cfg.optim),
        torch_compile=cfg.torch_compile,
        use_liger_kernel=cfg.liger_kernel,
    )
    if cfg.max_grad_norm == 0:
        args["max_grad_norm"] = 0.0
    if "gradient_checkpointing" in overrides:  # the recipes' resolved `auto`, under the current name
        overrides["activation_checkpointing"] = overrides.pop("gradient_checkpointing")
    args.update(overrides)
    return TrainingArguments(**args)


def build_trainer(
    model,
    tokenizer,
    train_dataset,
    eval_dataset,
    cfg: TrainConfig,
    run_dir: Path,
    *,
    data_collator=None,
    compute_metrics=None,
    callbacks=(),
    trainer_class=Trainer,
    distributed=None,
    **arg_overrides,
) -> Trainer:
    """A Trainer writing metrics.jsonl into run_dir, with rich progress and optional early stopping."""
    has_eval = eval_dataset is not None and len(eval_dataset) > 0
    if distributed is not None:  # the `distributed` section: backend, timeout, FSDP / DeepSpeed (in a worker)
        arg_overrides = {**distributed_training_args(distributed, run_dir, layer_class=decoder_layer_class(model)),
                         **arg_overrides}
    fault = FaultInjectionCallback.from_env()  # tests of failure handling only
    callbacks = [*callbacks, fault] if fault else callbacks
    args = training_arguments(cfg, run_dir, has_eval=has_eval, **arg_overrides)
    cbs = [MetricsJsonlCallback(run_dir / "metrics.jsonl"), RichProgressCallback(), *callbacks]
    if cfg.early_stopping_patience and has_eval:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset if has_eval else None,
        processing_class=tokenizer,
        data_collator=data_collator,
        compute_metrics=compute_metrics,
        callbacks=cbs,
    )
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    return trainer
