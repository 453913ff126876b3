"""The `preference` config section (tasks dpo, orpo, kto, simpo, reward) and the `stages` pipeline.

Every field is documented once here; the descriptions feed `--help`, the reference docs and the
generated example config.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# DPO loss variants of TRL 1.16's DPOTrainer that tunesmith exposes (each is trained in the tests).
DPO_LOSSES = ("sigmoid", "ipo", "hinge", "robust", "exo_pair", "bco_pair", "apo_zero", "apo_down", "sigmoid_norm")


class PreferenceConfig(BaseModel):
    """Options of the preference-alignment tasks (dpo, orpo, kto, simpo, reward)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    beta: float = Field(
        0.1, gt=0,
        description="Strength of the tie to the reference model (dpo, kto), the odds-ratio weight lambda "
        "(orpo) or the reward scale (simpo). Higher: stay closer to the reference. For loss_type ipo it is tau.",
    )
    loss_type: Literal[DPO_LOSSES] = Field(  # type: ignore[valid-type]
        "sigmoid",
        description="DPO loss variant: `sigmoid` (the DPO paper), `ipo`, `hinge` (SLiC), `robust` (with "
        "label_smoothing), `exo_pair`, `bco_pair`, `apo_zero`, `apo_down`, `sigmoid_norm`. Task dpo only.",
    )
    sft_weight: float = Field(
        0.0, ge=0.0,
        description="dpo: weight of an added negative log-likelihood term on the chosen reply (RPO, TRL's `sft` "
        "loss). It keeps the chosen reply's probability from falling while the margin grows, which plain DPO "
        "allows; 0 is plain DPO.",
    )
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=0.5,
        description="Assumed share of flipped preference labels (dpo robust/exo_pair, simpo). 0 trusts every label.",
    )
    max_prompt_length: int | None = Field(
        None, ge=1,
        description="Token limit of the rendered prompt; longer prompts are quarantined or cut (see "
        "prompt_truncation). Default: no limit other than max_length.",
    )
    prompt_truncation: Literal["quarantine", "left"] = Field(
        "quarantine",
        description="What to do with a prompt over max_prompt_length: `quarantine` the pair, or cut it from the "
        "`left` (earlier turns first, then the start of the system message, then the start of the last user "
        "message; the end of the question and the template markup stay). Cuts are counted in final_metrics.json and listed in "
        "truncated_prompts.jsonl.",
    )
    max_length: int | None = Field(
        None, ge=8,
        description="Token limit of prompt + reply; longer sequences are cut at the end. Default: data.max_length.",
    )
    simpo_gamma: float = Field(
        0.5, ge=0.0, description="SimPO target reward margin gamma (task simpo)."
    )
    desirable_weight: float = Field(
        1.0, gt=0, description="KTO weight of desirable (label true) examples; raise it when they are the minority."
    )
    undesirable_weight: float = Field(
        1.0, gt=0, description="KTO weight of undesirable (label false) examples."
    )
    reward_center_coefficient: float | None = Field(
        None, ge=0,
        description="Reward model: weight of a penalty pulling mean rewards to zero (TRL center_rewards_coefficient); "
        "None disables it.",
    )
    precompute_ref_log_probs: bool = Field(
        False,
        description="dpo/kto with full or freeze: compute reference log-probabilities once before training so no "
        "second model stays in memory. Adapter methods never keep a second model (the reference is the base "
        "with the adapter disabled).",
    )
    eval_pairs: int = Field(
        200, ge=0,
        description="Held-out pairs scored by preference accuracy (policy log-prob of chosen > rejected) before "
        "and after training; 0 skips it.",
    )


class StageConfig(BaseModel):
    """One step of a training pipeline: a task and the config keys that differ from the top level."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(description="Task of this stage (sft, dpo, orpo, kto, simpo).")
    name: str | None = Field(None, description="Stage name, used for its run directory; default: the task.")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Config keys that differ for this stage, as dotted paths or nested sections, e.g. "
        "{data.format: preference, data.train_file: pairs.jsonl, train.learning_rate: 5e-6}.",
    )
