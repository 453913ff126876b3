"""The `classify` and `ner` config sections: labels, splits, imbalance handling, tag schemes.

Text, text-pair and label columns are mapped through `data.columns`; the files come from `data`.
Every field is documented once here (it feeds `--help`, the reference and the example configs).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_ratios(value: str) -> str:
    from tunesmith.config.prepare_schema import parse_ratios

    parse_ratios(value)  # raises ValueError with the accepted forms
    return value


class ClassifyConfig(_Strict):
    """Sequence classification (single-label, multi-label) and regression."""

    problem_type: Literal["single_label", "multi_label", "regression"] = Field(
        "single_label",
        description="`single_label`: one class per text (softmax); `multi_label`: any number of "
        "classes (sigmoid per class); `regression`: one number per text (MSE).",
    )
    labels: list[str] | None = Field(
        None,
        description="Fixed label list, in id order. Default: the sorted distinct labels of the training "
        "split. Rows with other labels are rejected.",
    )
    label_sep: str | None = Field(
        None, description="Multi-label only: split a string label on this separator (e.g. ',')."
    )
    split: str = Field(
        "8:1:1",
        description="Train:validation:test ratios used when only data.train_file is given "
        "(stratified by label, seeded by `seed`).",
    )
    seed: int = Field(42, description="Seed of the train/validation/test split and of resampling.")
    max_length: int = Field(128, ge=8, description="Token limit per text (or text pair); longer ones are truncated.")
    imbalance: Literal["none", "weighted_loss", "oversample", "undersample"] = Field(
        "none",
        description="Class-imbalance handling on the train split: `weighted_loss` (class weights in the "
        "loss), `oversample` minority classes, or `undersample` majority classes.",
    )
    class_weights: dict[str, float] | None = Field(
        None,
        description="Given loss weights per label (with imbalance=weighted_loss). Default: n / (k * n_class) "
        "computed from the train split.",
    )
    layerwise_lr_decay: float | None = Field(
        None, gt=0, le=1,
        description="Layer-wise learning-rate decay: the head trains at train.learning_rate, each layer "
        "below at `decay` times the one above, embeddings lowest. null: one learning rate.",
    )
    error_file_limit: int = Field(
        1000, ge=0, description="Most misclassified test examples written to errors.jsonl."
    )

    _ratios = field_validator("split")(_check_ratios)


class NerConfig(_Strict):
    """Token classification (named entities) from CoNLL or jsonl tokens + tags."""

    tag_scheme: Literal["auto", "BIO", "IOB2", "BIOES"] = Field(
        "auto",
        description="Tag scheme of the data: `BIO`/`IOB2` (B-, I-, O) or `BIOES` (adds E- and S-). "
        "`auto` detects it from the training tags. Other prefixes are an error naming the line.",
    )
    labels: list[str] | None = Field(
        None, description="Fixed tag list, in id order. Default: the sorted tags of the training split (O first)."
    )
    label_all_subtokens: bool = Field(
        False,
        description="Label every sub-word token with its word's tag. Default: only the first sub-token; "
        "the rest are ignored by the loss and the metrics.",
    )
    split: str = Field(
        "8:1:1", description="Train:validation:test sentence ratios used when only data.train_file is given."
    )
    seed: int = Field(42, description="Seed of the train/validation/test split.")
    max_length: int = Field(256, ge=8, description="Sub-word token limit per sentence; longer ones are truncated.")
    imbalance: Literal["none", "weighted_loss"] = Field(
        "none", description="`weighted_loss`: per-tag loss weights from the train split (or class_weights)."
    )
    class_weights: dict[str, float] | None = Field(
        None, description="Given loss weights per tag (with imbalance=weighted_loss)."
    )
    layerwise_lr_decay: float | None = Field(
        None, gt=0, le=1, description="Layer-wise learning-rate decay, as in classify.layerwise_lr_decay."
    )

    _ratios = field_validator("split")(_check_ratios)
