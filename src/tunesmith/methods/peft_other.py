"""(IA)^3, prefix tuning, prompt tuning and P-tuning through peft."""

from __future__ import annotations

from tunesmith.config.schema import IA3Method, PrefixMethod, PromptMethod


def apply_ia3(model, cfg: IA3Method, task_type: str):
    from peft import IA3Config, get_peft_model

    kwargs = {"task_type": task_type}
    if cfg.target_modules is not None:
        kwargs["target_modules"] = cfg.target_modules
        kwargs["feedforward_modules"] = cfg.feedforward_modules or []
    return get_peft_model(model, IA3Config(**kwargs))


def apply_prefix(model, cfg: PrefixMethod, task_type: str):
    from peft import PrefixTuningConfig, get_peft_model

    conf = PrefixTuningConfig(
        task_type=task_type, num_virtual_tokens=cfg.num_virtual_tokens, prefix_projection=cfg.prefix_projection
    )
    return get_peft_model(model, conf)


def apply_prompt(model, cfg: PromptMethod, task_type: str, tokenizer_path: str | None = None):
    from peft import PromptEncoderConfig, PromptTuningConfig, PromptTuningInit, get_peft_model

    if cfg.encoder != "none":
        conf = PromptEncoderConfig(
            task_type=task_type,
            num_virtual_tokens=cfg.num_virtual_tokens,
            encoder_reparameterization_type=cfg.encoder.upper(),
        )
    elif cfg.init_text:
        conf = PromptTuningConfig(
            task_type=task_type,
            num_virtual_tokens=cfg.num_virtual_tokens,
            prompt_tuning_init=PromptTuningInit.TEXT,
            prompt_tuning_init_text=cfg.init_text,
            tokenizer_name_or_path=tokenizer_path,
        )
    else:
        conf = PromptTuningConfig(task_type=task_type, num_virtual_tokens=cfg.num_virtual_tokens)
    return get_peft_model(model, conf)
