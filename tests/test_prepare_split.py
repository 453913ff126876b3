"""Splits: stratified exact within one example per stratum, group splits leak no group, seeded."""

import math
from collections import Counter

import pytest

from tunesmith.config.prepare_schema import parse_ratios
from tunesmith.data.split import group_split, random_split, stratified_split


def test_parse_ratios():
    assert parse_ratios("8:1:1") == pytest.approx({"train": .8, "validation": .1, "test": .1})
    assert parse_ratios("7:1.5:1.5") == pytest.approx({"train": .7, "validation": .15, "test": .15})
    assert parse_ratios([9, 1]) == pytest.approx({"train": .9, "validation": .1, "test": 0})
    with pytest.raises(ValueError):
        parse_ratios("a:b")


def test_random_split_sizes_and_seed():
    out = random_split(1000, "7:1.5:1.5", seed=3)
    assert Counter(out) == {"train": 700, "validation": 150, "test": 150}
    assert out == random_split(1000, "7:1.5:1.5", seed=3) and out != random_split(1000, "7:1.5:1.5", seed=4)


@pytest.mark.parametrize("ratios", ["8:1:1", "7:1.5:1.5", "9:1"])
def test_stratified_exact_within_one_per_stratum_and_overall(ratios):
    labels = ["a"] * 503 + ["b"] * 97 + ["c"] * 31 + ["d"] * 7 + ["e"] * 1
    out = stratified_split(labels, ratios, seed=0)
    r = parse_ratios(ratios)
    for lab, n in Counter(labels).items():
        got = Counter(s for s, y in zip(out, labels) if y == lab)
        for split, share in r.items():
            assert math.floor(share * n) <= got.get(split, 0) <= math.ceil(share * n), (lab, split)
    total = Counter(out)
    for split, share in r.items():
        assert abs(total.get(split, 0) - share * len(labels)) < 1 + 1e-9


def test_stratified_by_any_column_value():
    difficulty = ["easy", "hard"] * 50
    out = stratified_split(difficulty, "8:1:1", seed=1)
    assert Counter(zip(out, difficulty)) == {("train", "easy"): 40, ("train", "hard"): 40, ("validation", "easy"): 5,
                                             ("validation", "hard"): 5, ("test", "easy"): 5, ("test", "hard"): 5}


def test_group_split_no_group_in_two_splits():
    groups = [f"user{i % 37}" for i in range(1000)] + ["big"] * 60
    out = group_split(groups, "8:1:1", seed=0)
    where: dict = {}
    for g, s in zip(groups, out):
        where.setdefault(g, set()).add(s)
    assert all(len(v) == 1 for v in where.values())
    sizes = Counter(out)
    assert set(sizes) == {"train", "validation", "test"}
    assert abs(sizes["train"] - 0.8 * len(groups)) < 60
