"""Group tokenised examples into micro-batches: packed bins or length-grouped padded batches.

Every planner takes the examples' token lengths and returns a list of bins (lists of example
indices). `binned_dataset` turns the bins into a dataset with one row per micro-batch, each row
holding its examples as nested lists; the collators in `tunesmith.train.collators` flatten (packing)
or pad (batching) one row into model inputs. The Trainer then shuffles micro-batches, not examples.

- `best_fit_decreasing`: packing. Longest first, each example goes to the fullest bin it still
  fits in; bins never exceed the token budget, so nothing is padded and nothing is cut.
- `length_grouped_batches`: fixed-size batches of similar lengths (shuffled mega-batches sorted
  by length, the sampler of the former `group_by_length` option).
- `token_budget_batches`: padded batches whose padded size (examples x longest, rounded up to a
  multiple of 8) stays within a token budget; short examples travel in larger batches.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence


def round_up(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def _check_fits(lengths: Sequence[int], budget: int) -> None:
    longest = max(lengths, default=0)
    if longest > budget:
        raise ValueError(f"an example of {longest} tokens is longer than the token budget of {budget}")


def best_fit_decreasing(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Bins of example indices whose lengths sum to at most `budget`; every index placed once."""
    _check_fits(lengths, budget)
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (remaining capacity, bin id), kept sorted
    for i in order:
        n = lengths[i]
        at = bisect.bisect_left(free, (n, -1))  # the tightest bin with room for n
        if at < len(free):
            room, b = free.pop(at)
        else:
            room, b = budget, len(bins)
            bins.append([])
        bins[b].append(i)
        bisect.insort(free, (room - n, b))
    return bins


def first_fit(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Examples in their given order, each into the first bin with room (the naive baseline)."""
    _check_fits(lengths, budget)
    bins: list[list[int]] = []
    used: list[int] = []
    for i, n in enumerate(lengths):
        for b, u in enumerate(used):
            if u + n <= budget:
                bins[b].append(i)
                used[b] += n
                break
        else:
            bins.append([i])
            used.append(n)
    return bins


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int,
                           mega_batches: int = 50) -> list[list[int]]:
    """Batches of `batch_size` examples of similar length: shuffle, cut into mega-batches of
    `mega_batches` x batch_size, sort each by length, split into batches."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    size = batch_size * mega_batches
    batches: list[list[int]] = []
    for lo in range(0, len(order), size):
        mega = sorted(order[lo:lo + size], key=lambda i: -lengths[i])
        batches.extend(mega[j:j + batch_size] for j in range(0, len(mega), batch_size))
    return batches


def token_budget_batches(lengths: Sequence[int], budget: int, pad_to_multiple_of: int = 8) -> list[list[int]]:
    """Length-sorted padded batches with examples x padded longest <= budget."""
    _check_fits([round_up(n, pad_to_multiple_of) for n in lengths], budget)
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    width = 0
    for i in order:
        if batches and (len(batches[-1]) + 1) * width <= budget:
            batches[-1].append(i)
        else:  # longest first, so the first example of a batch sets its padded width
            batches.append([i])
            width = round_up(lengths[i], pad_to_multiple_of)
    return batches


def padded_tokens(lengths: Sequence[int], bins: Sequence[Sequence[int]], pad_to_multiple_of: int) -> int:
    """Tokens the model computes on when each bin is padded to its longest example."""
    return sum(len(b) * round_up(max(lengths[i] for i in b), pad_to_multiple_of) for b in bins if b)


def binned_dataset(dataset, bins: Sequence[Sequence[int]], columns: Sequence[str] = ("input_ids", "labels")):
    """A datasets.Dataset with one row per bin; each column holds the bin's examples as a list."""
    from datasets import Dataset

    cols = {c: dataset[c] for c in columns}
    return Dataset.from_dict({c: [[cols[c][i] for i in b] for b in bins] for c in columns})
