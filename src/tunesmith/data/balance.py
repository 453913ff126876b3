"""Label balancing of the train split (over/undersampling) and class weights for `train`.

Works on label keys, one per row, and returns the row indices to keep (with repeats for
oversampling), so the caller can carry any row type. Oversampled copies are marked by the caller.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from typing import Hashable, Sequence


def resample(labels: Sequence[Hashable], method: str, target_ratio: float = 1.0, seed: int = 42) -> list[int]:
    """Row indices after resampling so that smallest/largest class >= `target_ratio`.

    oversample: minority classes get random repeats (whole copies first) up to ceil(ratio * largest);
    undersample: majority classes are cut at random to floor(smallest / ratio).
    Indices of original rows come first, in order; extra copies follow.
    """
    if method == "none" or not labels:
        return list(range(len(labels)))
    rng = random.Random(seed)
    by: dict = defaultdict(list)
    for i, y in enumerate(labels):
        by[y].append(i)
    sizes = {y: len(v) for y, v in by.items()}
    if method == "oversample":
        want = math.ceil(target_ratio * max(sizes.values()))
        extra: list[int] = []
        for y in sorted(by, key=repr):
            need = want - sizes[y]
            if need > 0:
                full, rest = divmod(need, sizes[y])
                extra += by[y] * full + rng.sample(by[y], rest)
        return list(range(len(labels))) + extra
    if method == "undersample":
        cap = max(1, math.floor(min(sizes.values()) / target_ratio))
        keep: set[int] = set()
        for y in sorted(by, key=repr):
            keep.update(by[y] if sizes[y] <= cap else rng.sample(by[y], cap))
        return sorted(keep)
    raise ValueError(f"balance.method {method!r}: use none, oversample or undersample")


def class_weights(labels: Sequence) -> dict[str, float]:
    """'Balanced' weights n / (k * n_class) per label; multi-label rows count each label."""
    counts: Counter = Counter()
    for y in labels:
        if isinstance(y, (list, tuple)):
            counts.update(str(v) for v in y)
        elif y is not None:
            counts[str(y)] += 1
    if not counts:
        return {}
    n, k = sum(counts.values()), len(counts)
    return {y: round(n / (k * c), 6) for y, c in sorted(counts.items())}
