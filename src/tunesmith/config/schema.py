"""The typed config schema: one nested pydantic model per section, unknown keys rejected.

Every field's description is written once here and feeds `--help`, the generated reference
(`python -m tunesmith.config.docs`) and the example configs.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """Base for every config section: strict keys, validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name_or_path: str = Field(
        description="A bundled alias (see `tunesmith models`), a local Hugging Face folder, a local "
        ".gguf file, or a hub id (needs internet).",
    )
    gguf_file: str | None = Field(
        None, description="File name of a .gguf inside `name_or_path` when it is a folder or hub id."
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) for hub ids.")
    trust_remote_code: bool = Field(
        False, description="Allow custom modelling code shipped with the model. Off unless you trust it."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Weights' dtype when loading. `auto`: float32 on CPU (bf16 compute comes from "
        "train.precision), the checkpoint's dtype on GPU.",
    )
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2", "tunesmith_varlen"] = Field(
        "auto",
        description="Attention kernel. `auto`: transformers' choice (sdpa where available), except that "
        "packed SFT rows use `tunesmith_varlen` (causal SDPA per packed example, no block mask) on "
        "plain causal models. `sdpa` keeps the masked whole-row kernel.",
    )
    chat_template: str | None = Field(
        None,
        description="Chat template override: a name (chatml, llama3, alpaca, zephyr) or a Jinja "
        "string. Default: the tokenizer's own template. Training, chat, eval and serve all use it.",
    )


class DataConfig(Section):
    train_file: str | list[str] = Field(description="Training data file(s): json, jsonl, csv, tsv, parquet.")
    eval_file: str | list[str] | None = Field(
        None, description="Validation file(s). When absent, `eval_split` of the training rows is held out."
    )
    test_file: str | list[str] | None = Field(None, description="Test file(s), used only by final evaluation.")
    format: Literal["alpaca", "messages", "preference", "classification", "ner"] = Field(
        "alpaca",
        description="Record format: `alpaca` (instruction/input/output, optional system and history), "
        "`messages` (OpenAI role/content or ShareGPT from/value, detected), `preference` "
        "(prompt/chosen/rejected), `classification` (text[/text_pair] + label) or `ner` "
        "(tokens + tags, or CoNLL files).",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Column mapping from the format's field names to your file's, e.g. "
        "{instruction: question, output: answer}.",
    )
    max_length: int = Field(1024, ge=8, description="Token limit per example; longer ones are truncated and counted.")
    train_on_prompt: bool = Field(
        False, description="Also compute loss on system/user tokens. Default: assistant tokens only."
    )
    eval_split: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of training rows held out for validation when no eval_file is given."
    )
    max_samples: int | None = Field(None, ge=1, description="Use at most this many training rows (after shuffling).")
    max_eval_samples: int | None = Field(None, ge=1, description="Use at most this many validation rows.")
    cache: bool = Field(
        True,
        description="SFT: keep the tokenised rows under <output.dir>/.cache, keyed by the data files' fingerprint, "
        "this section, the tokenizer, the chat template and the seed; a later run with the same inputs skips "
        "reading and tokenising (the quarantine file is copied into its run directory). false: always rebuild.",
    )
    max_bad_fraction: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Fail the run when more than this share of rows is rejected (rejected rows go to quarantine.jsonl).",
    )


class _LoraFields(Section):
    r: int = Field(8, ge=1, description="LoRA rank.")
    alpha: float = Field(16, gt=0, description="LoRA scaling numerator (scale = alpha / r, or alpha / sqrt(r) with rslora).")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="Dropout on the LoRA input. 0 by default, as in peft: on CPU its random masks took 13% "
        "of a packed LoRA step; raise it (e.g. 0.05) against overfitting on small data.",
    )
    target_modules: Literal["all-linear"] | list[str] = Field(
        "all-linear",
        description="Modules to adapt: `all-linear` (every linear layer but the output head) or names "
        "such as [q_proj, v_proj].",
    )
    use_rslora: bool = Field(False, description="Rank-stabilised LoRA scaling (alpha / sqrt(r)).")
    init: Literal["default", "gaussian", "pissa", "olora"] = Field(
        "default", description="Adapter initialisation; `pissa` starts from the principal singular vectors."
    )
    modules_to_save: list[str] | None = Field(
        None, description="Extra modules trained in full and saved with the adapter (e.g. [lm_head])."
    )


class FullMethod(Section):
    name: Literal["full"] = Field(description="Train every weight.")


class FreezeMethod(Section):
    name: Literal["freeze"] = Field(description="Train only some layers or modules; the rest are frozen.")
    trainable_layers: int | None = Field(
        None, ge=1, description="Train the top N transformer layers (plus the final norm)."
    )
    frozen_layers: int | None = Field(None, ge=1, description="Freeze the bottom N layers and the embeddings; train the rest.")
    trainable_modules: list[str] | None = Field(
        None, description="Train parameters whose name contains any of these strings (e.g. [mlp, norm])."
    )

    @model_validator(mode="after")
    def _one_choice(self) -> "FreezeMethod":
        given = [k for k in ("trainable_layers", "frozen_layers", "trainable_modules") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of trainable_layers, frozen_layers, trainable_modules"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class LoraMethod(_LoraFields):
    name: Literal["lora"] = Field(description="Low-rank adapters (peft LoRA).")


class DoraMethod(_LoraFields):
    name: Literal["dora"] = Field(description="Weight-decomposed LoRA (peft LoRA with use_dora).")


class QloraMethod(_LoraFields):
    name: Literal["qlora"] = Field(description="LoRA on a 4-bit NF4 base (bitsandbytes; needs CUDA).")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit quantisation type.")
    double_quant: bool = Field(True, description="Quantise the quantisation constants too.")
    compute_dtype: Literal["bfloat16", "float16"] = Field("bfloat16", description="Compute dtype of the 4-bit layers.")


class IA3Method(Section):
    name: Literal["ia3"] = Field(description="(IA)^3: learned rescaling vectors (peft IA3).")
    target_modules: list[str] | None = Field(
        None, description="Modules to rescale; default: peft's choice for the architecture."
    )
    feedforward_modules: list[str] | None = Field(
        None, description="Which of target_modules are feed-forward (scaled on their input)."
    )


class PrefixMethod(Section):
    name: Literal["prefix"] = Field(description="Prefix tuning: learned key/value prefixes in every layer.")
    num_virtual_tokens: int = Field(20, ge=1, description="Prefix length.")
    prefix_projection: bool = Field(False, description="Reparametrise the prefix through an MLP.")


class PromptMethod(Section):
    name: Literal["prompt"] = Field(description="Prompt tuning (soft prompt) or P-tuning (with an encoder).")
    num_virtual_tokens: int = Field(20, ge=1, description="Soft prompt length.")
    encoder: Literal["none", "mlp", "lstm"] = Field(
        "none", description="`none`: prompt tuning; `mlp`/`lstm`: P-tuning's prompt encoder."
    )
    init_text: str | None = Field(
        None, description="Initialise the soft prompt from this text's embeddings (prompt tuning only)."
    )


MethodConfig = Annotated[
    Union[FullMethod, FreezeMethod, LoraMethod, DoraMethod, QloraMethod, IA3Method, PrefixMethod, PromptMethod],
    Field(discriminator="name"),
]


class TrainConfig(Section):
    epochs: float = Field(3.0, gt=0, description="Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = Field(-1, description="Stop after this many optimiser steps; -1 means use epochs.")
    batch_size: int = Field(8, ge=1, description="Examples per device per forward pass.")
    grad_accum: int = Field(1, ge=1, description="Forward passes per optimiser step; loss is normalised over all their tokens.")
    eval_batch_size: int | None = Field(None, ge=1, description="Validation batch size (default: batch_size).")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate of AdamW.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not applied to biases and norms).")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Share of steps spent warming the learning rate up.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Decay after warmup."
    )
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 disables).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="`auto`: bf16 on GPUs that support it and on CPUs with native bf16, else fp32. "
        "fp16 needs a GPU.",
    )
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto",
        description="Recompute activations in the backward pass to save memory (about 30% more compute). "
        "`auto`: on only when one micro-batch's estimated activations would not fit in half of the free "
        "memory (RAM on CPU, GPU memory on CUDA); `true`/`false` force it.",
    )
    packing: bool = Field(
        True,
        description="SFT: pack several examples into one row without padding (best-fit-decreasing to "
        "`batch_tokens`), positions restarting per example and attention kept inside each example. "
        "`false`: padded batches grouped by length.",
    )
    batch_tokens: int | None = Field(
        None,
        ge=8,
        description="SFT: tokens per micro-batch (packed row, or padded batch when packing is off). "
        "Default (packing): batch_size x the mean example length, so a step still sees about batch_size "
        "examples, split into gradient-accumulation micro-batches of at most 512 tokens on CPU "
        "(16384 on GPU). Default (no packing): batches of batch_size examples.",
    )
    group_by_length: bool = Field(
        True,
        description="SFT without packing, classify and NER: batch examples of similar length together "
        "(less padding); "
        "the order of batches is still shuffled.",
    )
    pad_to_multiple_of: int = Field(8, ge=1, description="Pad padded batches to a multiple of this many tokens.")
    optim: Literal["auto", "adamw_torch_fused", "adamw_torch", "adamw_8bit", "sgd"] = Field(
        "auto",
        description="Optimiser: `auto` is fused AdamW (one kernel for all parameters, CPU and GPU); "
        "`adamw_torch` is the foreach implementation; `adamw_8bit` needs bitsandbytes and CUDA.",
    )
    torch_compile: bool = Field(False, description="Compile the model with torch.compile (slow first steps; pays off on long GPU runs).")
    liger_kernel: bool = Field(
        False,
        description="Liger Triton kernels (fused linear cross-entropy, RMSNorm, RoPE, SwiGLU): less memory "
        "and faster on CUDA. Needs a GPU and `pip install liger-kernel`.",
    )
    logging_steps: int = Field(10, ge=1, description="Log train loss every N steps.")
    eval_steps: int | None = Field(
        None, ge=1, description="Evaluate every N steps; default: once per epoch (or at the end with max_steps)."
    )
    save_steps: int | None = Field(None, ge=1, description="Checkpoint every N steps; default: with evaluation.")
    save_total_limit: int = Field(2, ge=1, description="Keep at most this many checkpoints (the best one is kept).")
    metric_for_best: str = Field("eval_loss", description="Metric that selects the best checkpoint.")
    greater_is_better: bool | None = Field(None, description="Direction of metric_for_best; default: lower is better for *loss*.")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without improvement of metric_for_best."
    )
    seed: int = Field(42, description="Seed for data order, initialisation and dropout.")
    tensorboard: bool = Field(False, description="Also write TensorBoard logs into the run directory.")
    dataloader_workers: int = Field(0, ge=0, description="Worker processes feeding batches.")


class OutputConfig(Section):
    dir: str = Field("runs", description="Folder under which run directories are created.")
    name: str | None = Field(None, description="Run directory name; default: <task>-<method>-<timestamp>.")
    overwrite: bool = Field(False, description="Allow writing into an existing run directory.")


# Sections owned by other stages, defined beside their code's config files.
from tunesmith.config.classify_schema import ClassifyConfig, NerConfig  # noqa: E402
from tunesmith.config.distributed_schema import DistributedConfig  # noqa: E402
from tunesmith.config.eval_schema import EvalConfig  # noqa: E402
from tunesmith.config.prepare_schema import PrepareConfig  # noqa: E402
from tunesmith.config.serve_schema import ServeConfig  # noqa: E402
from tunesmith.config.preference_schema import PreferenceConfig, StageConfig  # noqa: E402

# Task names; each has a recipe in tunesmith.tasks.
TASKS = ("sft", "dpo", "orpo", "kto", "simpo", "reward", "classify", "ner")


class TunesmithConfig(Section):
    task: Literal[TASKS] = Field(  # type: ignore[valid-type]
        "sft", description="What to train: " + ", ".join(f"`{t}`" for t in TASKS) + ". Each has a recipe in tunesmith.tasks."
    )
    model: ModelConfig = Field(description="The base model and how to load it.")
    data: DataConfig = Field(description="Training and validation data, format and tokenisation limits.")
    method: MethodConfig = Field(
        default_factory=lambda: LoraMethod(name="lora"),
        description="Tuning method; `name` selects it and only its own keys are allowed.",
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="Optimisation and checkpointing.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation: generation metrics, probes, report.")
    prepare: PrepareConfig | None = Field(
        None, description="Data-quality gate run before training (clean, PII, dedup, split...); off when absent."
    )
    classify: ClassifyConfig = Field(
        default_factory=ClassifyConfig, description="Classification and regression (task classify): labels, split, imbalance."
    )
    ner: NerConfig = Field(default_factory=NerConfig, description="Token classification (task ner): tag scheme, labels, split.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Where runs are written.")
    distributed: DistributedConfig = Field(
        default_factory=DistributedConfig,
        description="Scale-out: processes, machines, backend and sharding (DDP, FSDP, DeepSpeed) through accelerate.",
    )
    serve: ServeConfig = Field(default_factory=ServeConfig, description="`tunesmith serve`: network, API keys, limits, batching.")
    preference: PreferenceConfig = Field(
        default_factory=PreferenceConfig,
        description="Preference alignment (tasks dpo, orpo, kto, simpo, reward): beta, loss variant, lengths.",
    )
    stages: list[StageConfig] | None = Field(
        None,
        description="Run several tasks in order, e.g. sft then dpo: each stage is the top-level config with its "
        "overrides applied, and starts from the previous stage's trained (merged) weights. Off when absent.",
    )
