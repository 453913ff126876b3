"""The `eval` config section: generation evaluation, probes, error library, during-training eval.

Every field is documented once here; the descriptions feed `--help`, the reference docs and the
generated example config.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MetricName = Literal[
    "exact_match", "token_f1", "bleu", "chrf", "rouge1", "rouge2", "rougeL", "perplexity"
]
ALL_METRICS: tuple[str, ...] = (
    "exact_match", "token_f1", "bleu", "chrf", "rouge1", "rouge2", "rougeL", "perplexity"
)


class ProbesConfig(BaseModel):
    """General-ability (forgetting) and safety/boundary probe suites."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Run the probe suites on base and fine-tuned models.")
    general_file: str | None = Field(
        None,
        description="JSONL of general-ability probes; null uses the shipped set "
        "(tunesmith/eval/probes/general.jsonl).",
    )
    safety_file: str | None = Field(
        None,
        description="JSONL of safety/boundary probes with must/must_not rules; null uses the "
        "shipped set (tunesmith/eval/probes/safety.jsonl).",
    )
    max_new_tokens: int = Field(96, ge=1, description="Generation budget per probe answer.")
    forgetting_threshold: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Flag forgetting when the general-probe pass rate drops by more than this "
        "(absolute, 0.1 = 10 points) from base to fine-tuned.",
    )


class DuringTrainingConfig(BaseModel):
    """Generative metrics on a small validation subset while training runs."""

    model_config = ConfigDict(extra="forbid")

    every_n_steps: int | None = Field(
        None, ge=1, description="Generate and score the validation subset every N optimizer "
        "steps; null turns evaluation during training off."
    )
    num_samples: int = Field(
        16, ge=1, description="Size of the validation subset (its first N examples)."
    )
    max_new_tokens: int | None = Field(
        None, ge=1, description="Generation budget during training; null uses eval.max_new_tokens."
    )
    metric_for_best: MetricName = Field(
        "rougeL",
        description="Metric that selects the best checkpoint (logged as eval_gen_<metric>); "
        "perplexity is minimised, every other metric maximised.",
    )


class EvalConfig(BaseModel):
    """Held-out generation evaluation and the report."""

    model_config = ConfigDict(extra="forbid")

    after_training: bool = Field(
        False,
        description="Generative tasks (sft, dpo, orpo, kto, simpo): when training ends, run the `tunesmith eval` "
        "report card on the run (base vs tuned generations on the held-out prompts, probes; report.json/html).",
    )
    max_new_tokens: int = Field(128, ge=1, description="Maximum tokens generated per example.")
    max_input_tokens: int = Field(
        2048, ge=8, description="Prompts longer than this many tokens keep their last N tokens."
    )
    batch_size: int = Field(8, ge=1, description="Prompts per generate() call (left padded).")
    do_sample: bool = Field(False, description="Sample instead of greedy decoding.")
    temperature: float = Field(1.0, gt=0.0, description="Sampling temperature (do_sample only).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass (do_sample only).")
    seed: int = Field(0, description="Random seed for sampling and for the human-sheet shuffle.")
    metrics: list[MetricName] = Field(
        default_factory=lambda: list(ALL_METRICS),
        description="Metrics to compute: exact_match, token_f1, bleu, chrf, rouge1, rouge2, "
        "rougeL, perplexity. Text metrics are on a 0-100 scale.",
    )
    language: Literal["auto", "en", "zh"] = Field(
        "auto",
        description="Language of the references: 'auto' picks zh when at least 30% of "
        "non-space characters are CJK. zh uses sacrebleu's 'zh' tokenizer and per-character F1.",
    )
    zh_tokenizer: Literal["jieba", "char"] = Field(
        "jieba", description="How Chinese is segmented for ROUGE: jieba words or single characters."
    )
    em_normalization: Literal["none", "whitespace", "lower", "squad"] = Field(
        "whitespace",
        description="Normalisation before exact match: none; whitespace (strip + collapse runs); "
        "lower (whitespace + lowercase); squad (lower + drop punctuation and English articles).",
    )
    num_samples: int | None = Field(
        None, ge=1, description="Evaluate only the first N held-out examples; null = all."
    )
    measure_ttft: bool = Field(
        True, description="Measure time to first token with a streamer on the batched call."
    )
    worst_k: int = Field(10, ge=0, description="Worst examples per metric kept in the error library.")
    length_buckets: list[int] = Field(
        default_factory=lambda: [50, 200, 1000],
        description="Reference-length edges in characters for the error library's length facet.",
    )
    human_sheet_size: int = Field(
        0, ge=0, description="Examples per model exported to the human rating sheet; 0 = no sheet."
    )
    probes: ProbesConfig = Field(
        default_factory=ProbesConfig, description="Forgetting and safety probe suites."
    )
    during_training: DuringTrainingConfig = Field(
        default_factory=DuringTrainingConfig, description="Evaluation during training."
    )

    @model_validator(mode="after")
    def _check(self) -> "EvalConfig":
        if not self.metrics:
            raise ValueError("eval.metrics is empty; list at least one metric, e.g. [bleu, rougeL]")
        if sorted(self.length_buckets) != self.length_buckets:
            raise ValueError("eval.length_buckets must be increasing, e.g. [50, 200, 1000]")
        return self
