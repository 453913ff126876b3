"""The `prepare` config section: the data-quality gate run by `tunesmith prepare` and by `train`.

Every field is documented once here; the CLI help and the reference docs read these descriptions.
Cleaning is an ordered list of small step models told apart by their `step` key; a bare string
such as `html` is shorthand for `{step: html}`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


SPLIT_NAMES = ("train", "validation", "test")


def parse_ratios(ratios: str | list[float] | tuple) -> dict[str, float]:
    """'8:1:1', '7:1.5:1.5', '9:1' or [0.8, 0.1, 0.1] -> {'train': .8, 'validation': .1, 'test': .1}."""
    parts = ratios.replace(",", ":").split(":") if isinstance(ratios, str) else list(ratios)
    try:
        vals = [float(x) for x in parts]
    except (TypeError, ValueError):
        raise ValueError(f"split ratios {ratios!r}: expected numbers like '8:1:1' or [0.8, 0.1, 0.1]") from None
    if not 1 <= len(vals) <= 3 or any(v < 0 for v in vals) or sum(vals) <= 0 or vals[0] <= 0:
        raise ValueError(f"split ratios {ratios!r}: give 1 to 3 non-negative parts (train first, > 0), e.g. '8:1:1'")
    total = sum(vals)
    out = {name: v / total for name, v in zip(SPLIT_NAMES, vals)}
    return {name: out.get(name, 0.0) for name in SPLIT_NAMES}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- cleaning steps
class HtmlStep(_Strict):
    step: Literal["html"] = Field("html", description="Strip HTML tags, comments, script/style blocks and decode entities (&amp; -> &).")
    all_tags: bool = Field(False, description="Strip any <tag>; by default only known HTML tag names, so `List<String>` and `a < b` survive.")


class WhitespaceStep(_Strict):
    step: Literal["whitespace"] = Field("whitespace", description="Normalise whitespace: CRLF/CR to LF, Unicode spaces to ' ', drop trailing spaces, collapse blank lines, trim.")
    collapse_spaces: bool = Field(True, description="Collapse runs of spaces inside a line to one; leading indentation (code) is kept.")
    max_blank_lines: int = Field(1, ge=0, description="Most consecutive blank lines kept.")


class NfkcStep(_Strict):
    step: Literal["nfkc"] = Field("nfkc", description="Unicode NFKC normalisation (compatibility forms, ligatures, full-width ASCII).")
    keep_cjk_punctuation: bool = Field(True, description="Keep Chinese full-width punctuation such as ，：；！？（） which NFKC would turn into ASCII.")


class WidthStep(_Strict):
    step: Literal["width"] = Field("width", description="Full-width/half-width conversion.")
    mode: Literal["half", "half_keep_cjk_punct", "full"] = Field(
        "half_keep_cjk_punct",
        description="half: all full-width forms to ASCII; half_keep_cjk_punct: letters, digits and symbols to ASCII "
        "but Chinese punctuation (，。！？：；（）) kept; full: ASCII to full-width.",
    )


class ControlStep(_Strict):
    step: Literal["control"] = Field("control", description="Remove control and invisible format characters (keeps newline and tab); removes BOMs and zero-width spaces.")


class RegexStep(_Strict):
    step: Literal["regex"] = Field("regex", description="A user regular-expression filter.")
    pattern: str = Field(..., description="Python regular expression searched in every text field.")
    action: Literal["drop", "keep", "replace"] = Field(
        "drop", description="drop: remove records that match; keep: keep only records that match; replace: substitute `replacement`."
    )
    replacement: str = Field("", description="Replacement text for action=replace (may use \\1 groups).")
    name: str = Field("regex", description="Name used in the report for rows removed by this filter (reason `regex:<name>`).")
    ignore_case: bool = Field(False, description="Case-insensitive matching.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"pattern {v!r} is not a valid regular expression: {e}; fix the pattern") from e
        return v


class LengthStep(_Strict):
    step: Literal["length"] = Field("length", description="Drop records whose whole text is outside the limits.")
    min_chars: int | None = Field(None, ge=0, description="Minimum characters (all text fields joined).")
    max_chars: int | None = Field(None, ge=1, description="Maximum characters.")
    min_tokens: int | None = Field(None, ge=0, description="Minimum tokens of the chosen tokenizer (ignored, with a note, when no tokenizer).")
    max_tokens: int | None = Field(None, ge=1, description="Maximum tokens of the chosen tokenizer.")


CleanStep = Annotated[
    Union[HtmlStep, WhitespaceStep, NfkcStep, WidthStep, ControlStep, RegexStep, LengthStep],
    Field(discriminator="step"),
]


def _default_clean() -> list:
    return [ControlStep(), WhitespaceStep()]


# --------------------------------------------------------------------------- sections
PiiType = Literal["email", "phone", "id_card", "bank_card", "ip", "name_zh", "name_en"]


class PiiConfig(_Strict):
    enabled: bool = Field(True, description="Mask personal data with typed placeholders.")
    types: list[PiiType] = Field(
        default_factory=lambda: ["email", "phone", "id_card", "bank_card", "ip"],
        description="What to mask. id_card: Chinese resident ID (checksum verified); bank_card: Luhn verified; "
        "name_zh: Chinese person names via jieba POS tags (nr); name_en: capitalised words in the name list.",
    )
    placeholder: str = Field("[{type}]", description="Placeholder template; {type} becomes EMAIL, PHONE, ID_CARD, BANK_CARD, IP or NAME.")
    name_list: str | None = Field(None, description="File of English first names, one a line, used instead of the built-in list.")
    extra_names: list[str] = Field(default_factory=list, description="Further English names to mask.")


class DedupConfig(_Strict):
    exact: bool = Field(True, description="Drop exact duplicates after normalisation (NFKC, case-folded, whitespace collapsed).")
    near: bool = Field(True, description="Drop near-duplicates found with MinHash LSH.")
    threshold: float = Field(0.85, gt=0, le=1, description="Estimated Jaccard similarity at or above which two records are near-duplicates.")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations.")
    shingle: int = Field(3, ge=1, le=10, description="Shingle size in words (Latin) or characters (CJK).")
    cross_split: Literal["drop_from_eval", "drop_from_train"] = Field(
        "drop_from_eval",
        description="When a validation/test record has a (near-)twin in train: drop it from the eval split (default) or drop the train twin.",
    )


class SplitConfig(_Strict):
    ratios: str | list[float] = Field("8:1:1", description="train:validation:test, e.g. '8:1:1', '7:1.5:1.5' or [0.9, 0.1, 0]. Splits given as files are kept as given.")
    method: Literal["random", "stratified", "group"] = Field("random", description="random; stratified by `by`; group: no value of `by` in two splits.")
    by: str | None = Field(None, description="Column for stratified/group splits: 'label' or any column of the source records (e.g. difficulty, domain, user_id).")

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v):
        parse_ratios(v)
        return v

    @model_validator(mode="after")
    def _needs_by(self):
        if self.method == "group" and not self.by:
            raise ValueError("split.method=group needs split.by, the column that names the group (e.g. by: user_id)")
        return self


class BalanceConfig(_Strict):
    method: Literal["none", "oversample", "undersample"] = Field("none", description="Resample the train split by label (or `by`).")
    target_ratio: float = Field(1.0, gt=0, le=1, description="Wanted smallest-class/largest-class ratio after resampling.")
    by: str = Field("label", description="Column to balance on.")
    class_weights: bool = Field(True, description="Write class_weights.json (n / (k * n_class)) for train when labels exist.")


class DeletionOp(_Strict):
    op: Literal["deletion"] = Field("deletion", description="Random word deletion.")
    p: float = Field(0.05, gt=0, lt=1, description="Share of words deleted.")


class SwapOp(_Strict):
    op: Literal["swap"] = Field("swap", description="Random swap of word pairs.")
    n: int = Field(1, ge=1, description="Number of swaps per text.")


class SynonymOp(_Strict):
    op: Literal["synonym"] = Field("synonym", description="Replace words by synonyms from the built-in (Chinese and English) or a user dictionary.")
    p: float = Field(0.1, gt=0, le=1, description="Share of words with a known synonym that are replaced.")
    dictionary: str | None = Field(None, description="JSON file {word: [synonyms]} merged over the built-in one.")


class BackTranslationOp(_Strict):
    op: Literal["back_translation"] = Field("back_translation", description="Translate to a pivot language and back with the `translate` callable given to run_prepare.")
    source: str = Field("en", description="Language of the data.")
    pivot: str = Field("fr", description="Pivot language.")


AugmentOp = Annotated[Union[DeletionOp, SwapOp, SynonymOp, BackTranslationOp], Field(discriminator="op")]


class AugmentConfig(_Strict):
    ops: list[AugmentOp] = Field(default_factory=list, description="Augmentations, applied to the train split only; new rows carry `_augmented: true`.")
    fraction: float = Field(0.2, gt=0, le=10, description="Augmented rows per train row per op (0.2 = one new row for every five).")
    fields: Literal["input", "all"] = Field("input", description="input: only user/prompt text and classification text; all: also answers.")

    @field_validator("ops", mode="before")
    @classmethod
    def _shorthand(cls, v):
        return [{"op": x} if isinstance(x, str) else x for x in (v or [])]


class AgreementConfig(_Strict):
    columns: list[str] = Field(..., min_length=2, description="Two or more annotator label columns of the source records.")
    policy: Literal["majority", "drop", "first"] = Field("majority", description="Resolve disagreements: majority vote (ties dropped), drop them, or take the first annotator.")
    output: str = Field("label", description="Column that receives the resolved label before format conversion.")


class ReportConfig(_Strict):
    html: bool = Field(True, description="Write report.html with embedded plots.")
    bins: int = Field(30, ge=5, le=200, description="Histogram bins.")
    max_listed: int = Field(20, ge=0, description="Most example rows listed per problem in the report.")


class PrepareConfig(_Strict):
    """The `prepare` section: validate, clean, mask, dedup, split, balance, augment, report."""

    clean: list[CleanStep] = Field(default_factory=_default_clean, description="Ordered cleaning steps; shorthand `- html` means `- {step: html}`.")
    pii: PiiConfig = Field(default_factory=PiiConfig, description="Personal data masking.")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="Exact and near-duplicate removal within and across splits.")
    split: SplitConfig = Field(default_factory=SplitConfig, description="How train/validation/test are made.")
    balance: BalanceConfig = Field(default_factory=BalanceConfig, description="Label balancing of the train split.")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Train-only augmentation.")
    agreement: AgreementConfig | None = Field(None, description="Annotator agreement (Cohen's/Fleiss' kappa) and resolution.")
    report: ReportConfig = Field(default_factory=ReportConfig, description="Report options.")
    seed: int = Field(42, description="Seed for split, balance and augmentation.")
    cache: bool = Field(True, description="Reuse an existing output folder whose fingerprint matches.")

    @field_validator("clean", mode="before")
    @classmethod
    def _shorthand(cls, v):
        return [{"step": x} if isinstance(x, str) else x for x in (v or [])]
