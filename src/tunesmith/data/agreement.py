"""Annotator agreement: Cohen's kappa (two annotators), Fleiss' kappa (more), and resolution.

`agreement(rows)` takes one tuple of labels per record (None for a missing label) and returns the
kappa, the observed agreement, the disagreeing row indices and, under a policy, the resolved label
per row (None = drop the row).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Hashable, Sequence


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa for two annotators' labels of the same items."""
    n = len(a)
    if n == 0 or n != len(b):
        raise ValueError("cohen_kappa needs two equally long, non-empty label lists")
    po = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in ca) / (n * n)
    return 1.0 if pe == 1 else (po - pe) / (1 - pe)


def fleiss_kappa(rows: Sequence[Sequence[Hashable]]) -> float:
    """Fleiss' kappa; every item must have the same number (>= 2) of ratings."""
    if not rows:
        raise ValueError("fleiss_kappa needs at least one item")
    m = len(rows[0])
    if m < 2 or any(len(r) != m for r in rows):
        raise ValueError("fleiss_kappa needs the same number (>= 2) of ratings for every item")
    n = len(rows)
    totals: Counter = Counter()
    p_items = 0.0
    for r in rows:
        c = Counter(r)
        totals.update(c)
        p_items += (sum(v * v for v in c.values()) - m) / (m * (m - 1))
    p_bar = p_items / n
    pe = sum((v / (n * m)) ** 2 for v in totals.values())
    return 1.0 if pe == 1 else (p_bar - pe) / (1 - pe)


@dataclass
class AgreementResult:
    """Kappa over complete rows, disagreements, and the label chosen per row (None = dropped)."""

    kappa: float | None
    statistic: str
    observed_agreement: float | None
    n_items: int
    n_complete: int
    disagreements: list[int] = field(default_factory=list)
    resolved: list = field(default_factory=list)
    dropped: dict[int, str] = field(default_factory=dict)

    def summary(self) -> dict:
        return {
            "statistic": self.statistic, "kappa": self.kappa, "observed_agreement": self.observed_agreement,
            "items": self.n_items, "complete_items": self.n_complete, "disagreements": len(self.disagreements),
            "dropped": dict(Counter(self.dropped.values())),
        }


def agreement(rows: Sequence[Sequence[Hashable]], policy: str = "majority") -> AgreementResult:
    """Kappa over rows with every label present; resolve each row by `policy` (majority, drop, first)."""
    n_ann = len(rows[0]) if rows else 0
    complete = [tuple(r) for r in rows if all(x is not None and x != "" for x in r)]
    if n_ann == 2:
        stat, kappa = "cohen", (cohen_kappa([r[0] for r in complete], [r[1] for r in complete]) if complete else None)
    else:
        stat, kappa = "fleiss", (fleiss_kappa(complete) if complete else None)
    po = (sum(len(set(r)) == 1 for r in complete) / len(complete)) if complete else None
    res = AgreementResult(kappa, stat, po, len(rows), len(complete))
    for i, r in enumerate(rows):
        given = [x for x in r if x is not None and x != ""]
        if not given:
            res.resolved.append(None)
            res.dropped[i] = "no_annotation"
            continue
        if len(set(given)) == 1:
            res.resolved.append(given[0])
            continue
        res.disagreements.append(i)
        if policy == "first":
            res.resolved.append(r[0] if r[0] is not None and r[0] != "" else given[0])
        elif policy == "drop":
            res.resolved.append(None)
            res.dropped[i] = "annotator_disagreement"
        elif policy == "majority":
            (top, c1), *rest = Counter(given).most_common()
            if rest and rest[0][1] == c1:
                res.resolved.append(None)
                res.dropped[i] = "annotator_tie"
            else:
                res.resolved.append(top)
        else:
            raise ValueError(f"agreement policy {policy!r}: use majority, drop or first")
    return res
