"""Preference alignment (dpo, orpo, kto, simpo, reward), top to bottom.

tokenizer -> rendered pairs -> model -> method -> score held-out pairs -> TRL trainer -> train
-> evaluate and score again -> save. The held-out preference accuracy before and after training
goes to final_metrics.json (see eval.preference_metrics for what is measured). The held-out
pairs are also saved as SFT examples (prompt + chosen reply) in data/validation.jsonl, so
`tunesmith eval RUN` scores base and policy generations against the chosen replies.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from tunesmith.config.schema import TunesmithConfig
from tunesmith.data.render import resolve_chat_template
from tunesmith.data.sft_dataset import save_held_out
from tunesmith.eval.preference_metrics import (
    accuracy_from_logprobs, flip_difficulty, paired_change, pair_logprobs, reward_accuracy, reward_model_accuracy,
)
from tunesmith.methods import apply_method, trainable_summary
from tunesmith.models import load_model, load_tokenizer, resolve_model
from tunesmith.train import RunResult, make_run_dir, model_load_kwargs, plot_loss_curve, save_final, save_run_info
from tunesmith.train.preference_data import build_preference_data
from tunesmith.train.preference_trainer import USES_REFERENCE, build_preference_trainer



def run_preference(cfg: TunesmithConfig, *, resume: bool = False, run_dir: str | Path | None = None) -> RunResult:
    from transformers import set_seed

    set_seed(cfg.train.seed)
    run_dir = make_run_dir(cfg, resume=resume, run_dir=run_dir)
    resolved = resolve_model(cfg.model.name_or_path, gguf_file=cfg.model.gguf_file)
    tokenizer = load_tokenizer(cfg.model, resolved)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    chat_template = resolve_chat_template(tokenizer, cfg.model.chat_template)
    tokenizer.chat_template = chat_template

    pref = cfg.preference
    data = build_preference_data(cfg.data, tokenizer, kto=cfg.task == "kto", chat_template=chat_template,
                                 seed=cfg.train.seed, run_dir=run_dir, max_length=pref.max_length,
                                 max_prompt_length=pref.max_prompt_length, prompt_truncation=pref.prompt_truncation)
    held_out = data.eval_pairs[: pref.eval_pairs]
    if cfg.task != "reward":  # the chosen replies are the references of `tunesmith eval RUN`
        save_held_out(run_dir, replace(data, eval_examples=data.eval_examples[: pref.eval_pairs]))

    model = _load(cfg, resolved)
    ref_model = _reference(cfg, resolved)
    model = apply_method(model, cfg.method, task_type="SEQ_CLS" if cfg.task == "reward" else "CAUSAL_LM",
                         head_modules=("score",) if cfg.task == "reward" else (), tokenizer_path=resolved.path,
                         gradient_checkpointing=cfg.train.gradient_checkpointing)
    save_run_info(run_dir, cfg, data_fingerprint=data.fingerprint,
                  extra={"base_model": resolved.path, "trainable": trainable_summary(model), "data": data.stats})
    before = _score(cfg, model, tokenizer, held_out)

    trainer = build_preference_trainer(cfg.task, model, tokenizer, data.train, data.eval, cfg, run_dir,
                                       ref_model=ref_model)
    trainer.train()

    metrics = _final_eval(trainer)
    metrics.update(_score(cfg, trainer.model, tokenizer, held_out, before=before, reference=ref_model))
    metrics.update({f"data_{split}_prompts_cut": data.stats[split]["prompts_cut"] for split in ("train", "eval")})
    trainer.save_state()
    shutil.copy(Path(trainer.args.output_dir) / "trainer_state.json", run_dir / "trainer_state.json")
    weights = save_final(trainer.model, tokenizer, run_dir)
    (run_dir / "final_metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_loss_curve(run_dir / "metrics.jsonl", run_dir / "loss_curve.png")
    return RunResult(run_dir=run_dir, weights_dir=weights, metrics=metrics, model=trainer.model)


def _final_eval(trainer) -> dict:
    """The trainer's eval metrics of the final weights: those logged at the last step when the eval
    schedule ended there and no earlier checkpoint was loaded as the best (evaluating the held-out
    pairs again would only repeat them), else a new pass."""
    if trainer.eval_dataset is None:
        return {}
    last = next((row for row in reversed(trainer.state.log_history) if "eval_loss" in row), None)
    step, best = trainer.state.global_step, trainer.state.best_global_step
    if last is not None and last.get("step") == step and (not trainer.args.load_best_model_at_end
                                                          or best in (None, step)):
        return {k: v for k, v in last.items() if k.startswith("eval_")}
    return trainer.evaluate()


def _load(cfg: TunesmithConfig, resolved):
    if cfg.task != "reward":
        return load_model(cfg.model, resolved=resolved, **model_load_kwargs(cfg.method))
    from transformers import AutoModelForSequenceClassification

    model = load_model(cfg.model, auto_class=AutoModelForSequenceClassification, resolved=resolved, num_labels=1,
                       **model_load_kwargs(cfg.method))
    return model


def _reference(cfg: TunesmithConfig, resolved):
    """A frozen copy for full/freeze dpo and kto (adapter methods disable the adapter instead)."""
    from tunesmith.methods import PEFT_METHODS

    if cfg.task not in USES_REFERENCE or cfg.method.name in PEFT_METHODS or cfg.preference.precompute_ref_log_probs:
        return None
    ref = load_model(cfg.model, resolved=resolved).eval()
    ref.requires_grad_(False)
    return ref


def _score(cfg: TunesmithConfig, model, tokenizer, pairs: list[dict], *, before: dict | None = None,
           reference=None) -> dict:
    """Held-out preference metrics with prefixes ``pref_before_``/``pref_after_``."""
    if not pairs:
        return {}
    max_length = cfg.preference.max_length or cfg.data.max_length
    bs = cfg.train.eval_batch_size or cfg.train.batch_size
    if cfg.task == "reward":
        m = reward_model_accuracy(model, tokenizer, pairs, batch_size=bs, max_length=max_length)
        return {**(before or {}), **{f"pref_{'after' if before is not None else 'before'}_{k}": v for k, v in m.items()}}
    lp = pair_logprobs(model, tokenizer, pairs, batch_size=bs, max_length=max_length)
    stage = "after" if before is not None else "before"
    out = {f"pref_{stage}_{k}": v for k, v in accuracy_from_logprobs(lp).items()}
    out[f"pref_{stage}_per_token_accuracy"] = accuracy_from_logprobs(lp, per_token=True)["accuracy"]
    if before is not None:
        out.update(before)
        out.update({f"pref_{k}": v for k, v in paired_change(before["_logprobs"], lp).items()})
        if cfg.task in USES_REFERENCE:
            ref = (pair_logprobs(reference, tokenizer, pairs, batch_size=bs, max_length=max_length)
                   if reference is not None else before["_logprobs"])
            out.update({f"pref_{k}": v for k, v in reward_accuracy(lp, ref, cfg.preference.beta).items()})
            out.update({f"pref_{k}": v for k, v in flip_difficulty(lp, ref, cfg.preference.beta).items()})
        out.pop("_logprobs", None)
    else:
        out["_logprobs"] = lp
    return out
