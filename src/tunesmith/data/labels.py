"""Label <-> id mapping for classification and NER, saved with the model as id2label.

Single-label rows carry one string, multi-label rows a list of strings (encoded as a 0/1 vector),
regression rows a float (passed through). The order of `labels` is the id order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from tunesmith.errors import DataError


@dataclass
class LabelMap:
    labels: list[str]
    problem_type: str = "single_label"
    label2id: dict[str, int] = field(init=False)

    def __post_init__(self):
        self.labels = [str(x) for x in self.labels]
        if len(set(self.labels)) != len(self.labels):
            raise DataError(f"label list has duplicates: {self.labels}; fix: list each label once")
        self.label2id = {y: i for i, y in enumerate(self.labels)}

    @classmethod
    def from_examples(cls, values: Iterable, problem_type: str = "single_label",
                      given: Sequence[str] | None = None) -> "LabelMap":
        """The given list, or the sorted distinct labels seen (regression: one output, `score`)."""
        if problem_type == "regression":
            return cls(["score"], problem_type)
        if given is not None:
            return cls(list(given), problem_type)
        seen: set[str] = set()
        for v in values:
            seen.update(v if isinstance(v, (list, tuple)) else [v])
        return cls(sorted(seen, key=_natural), problem_type)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def encode(self, value):
        """A label as the model's target: class id, multi-hot float vector, or float."""
        if self.problem_type == "regression":
            return float(value)
        if self.problem_type == "multi_label":
            vec = [0.0] * self.num_labels
            for v in value:
                vec[self._id(v)] = 1.0
            return vec
        return self._id(value)

    def decode(self, target):
        if self.problem_type == "regression":
            return float(target)
        if self.problem_type == "multi_label":
            return [self.labels[i] for i, v in enumerate(target) if v >= 0.5]
        return self.labels[int(target)]

    def _id(self, value) -> int:
        try:
            return self.label2id[str(value)]
        except KeyError:
            raise DataError(f"label {value!r} is not one of {self.labels}; fix: correct it or add it to the label list") from None

    def model_kwargs(self) -> dict:
        """from_pretrained arguments so the config saved with the model carries the mapping."""
        problem = {"single_label": "single_label_classification", "multi_label": "multi_label_classification",
                   "regression": "regression"}[self.problem_type]
        return {"num_labels": self.num_labels, "id2label": self.id2label, "label2id": dict(self.label2id),
                "problem_type": problem}


def ner_label_list(tag_rows: Iterable[Sequence[str]], given: Sequence[str] | None = None) -> list[str]:
    """The given tag list, or the tags seen: `O` first, then by entity type and prefix."""
    if given is not None:
        return list(given)
    seen = {t for row in tag_rows for t in row}
    return sorted(seen, key=lambda t: (t != "O", t[2:], t[:1]))


def _natural(label: str):
    """Numbers sort numerically ("2" < "10"), then strings."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)
