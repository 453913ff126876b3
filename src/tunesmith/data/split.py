"""Seeded train/validation/test splits: random, stratified by any key, or group-aware.

All functions take the number of items (or their keys) and return a list of split names, one per
item, so they work on any row type. Stratified splits give every stratum floor or ceil of its
quota in each split (exact within one example) and keep the global sizes within one of the
ratios; group splits never put one group in two splits.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Hashable, Sequence

from tunesmith.config.prepare_schema import SPLIT_NAMES, parse_ratios

__all__ = ["parse_ratios", "apportion", "random_split", "stratified_split", "group_split", "SPLIT_NAMES"]


def apportion(n: int, ratios: dict[str, float], deficit: dict[str, float] | None = None) -> dict[str, int]:
    """Integer sizes summing to n, each floor or ceil of ratio*n; the extra units go to the splits
    with the largest `deficit` (running shortfall against the global target), then largest remainder."""
    quota = {k: r * n for k, r in ratios.items()}
    sizes = {k: math.floor(q + 1e-9) for k, q in quota.items()}
    left = n - sum(sizes.values())
    deficit = deficit or {}
    order = sorted(
        (k for k in ratios if ratios[k] > 0 and quota[k] - sizes[k] > 1e-9),
        key=lambda k: (-(deficit.get(k, 0.0) + quota[k] - sizes[k]), -(quota[k] - sizes[k]), SPLIT_NAMES.index(k) if k in SPLIT_NAMES else 9),
    )
    for k in order[:left]:
        sizes[k] += 1
    left = n - sum(sizes.values())
    if left:  # only when rounding noise left no fractional parts: give to train
        sizes[next(iter(ratios))] += left
    return sizes


def _assign(indices: list[int], sizes: dict[str, int], out: list[str]) -> None:
    pos = 0
    for name, size in sizes.items():
        for i in indices[pos : pos + size]:
            out[i] = name
        pos += size


def random_split(n: int, ratios, seed: int = 42) -> list[str]:
    """Shuffle n items with `seed` and cut them by `ratios`."""
    r = parse_ratios(ratios) if not isinstance(ratios, dict) else ratios
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    out = [""] * n
    _assign(idx, apportion(n, r), out)
    return out


def stratified_split(keys: Sequence[Hashable], ratios, seed: int = 42) -> list[str]:
    """Split so each stratum (equal key) is cut by `ratios`: per stratum and split, floor or ceil of the quota."""
    r = parse_ratios(ratios) if not isinstance(ratios, dict) else ratios
    rng = random.Random(seed)
    strata: dict = defaultdict(list)
    for i, k in enumerate(keys):
        strata[_hashable(k)].append(i)
    names = sorted(strata, key=repr)
    rng.shuffle(names)
    out = [""] * len(keys)
    done = {k: 0 for k in r}
    seen = 0
    for name in names:
        members = strata[name]
        rng.shuffle(members)
        seen += len(members)
        deficit = {k: r[k] * seen - done[k] - r[k] * len(members) for k in r}
        sizes = apportion(len(members), r, deficit)
        for k, v in sizes.items():
            done[k] += v
        _assign(members, sizes, out)
    return out


def group_split(groups: Sequence[Hashable], ratios, seed: int = 42) -> list[str]:
    """Split whole groups: biggest groups first, each to the split furthest below its target size."""
    r = parse_ratios(ratios) if not isinstance(ratios, dict) else ratios
    members: dict = defaultdict(list)
    for i, g in enumerate(groups):
        members[_hashable(g)].append(i)
    names = sorted(members, key=repr)
    random.Random(seed).shuffle(names)
    names.sort(key=lambda g: -len(members[g]))  # stable: equal sizes stay shuffled
    n = len(groups)
    target = {k: r[k] * n for k in r if r[k] > 0}
    size = {k: 0 for k in target}
    out = [""] * n
    for g in names:
        k = max(target, key=lambda s: (target[s] - size[s]) / target[s])
        size[k] += len(members[g])
        for i in members[g]:
            out[i] = k
    return out


def _hashable(k):
    if isinstance(k, list):
        return tuple(_hashable(x) for x in k)
    if isinstance(k, dict):
        return tuple(sorted((a, _hashable(b)) for a, b in k.items()))
    return k
