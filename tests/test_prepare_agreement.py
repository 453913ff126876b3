"""Cohen's and Fleiss' kappa against known values; disagreement policies."""

import pytest
from sklearn.metrics import cohen_kappa_score

from tunesmith.data.agreement import agreement, cohen_kappa, fleiss_kappa

# Fleiss (1971) worked example as given on Wikipedia: 10 items, 14 raters, 5 categories, kappa 0.210
_FLEISS_TABLE = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]


def test_cohen_hand_computed_and_sklearn():
    a, b = [1, 1, 0, 0, 1, 0], [1, 0, 0, 0, 1, 1]
    assert cohen_kappa(a, b) == pytest.approx(1 / 3)  # po 4/6, pe 1/2
    a = list("aabbccabcabcaa")
    b = list("abbbcaabcacbab")
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_fleiss_known_value():
    rows = [[c for c, n in enumerate(counts) for _ in range(n)] for counts in _FLEISS_TABLE]
    assert fleiss_kappa(rows) == pytest.approx(0.20993, abs=1e-4)


def test_perfect_agreement_is_one():
    assert cohen_kappa(["x", "y"], ["x", "y"]) == 1.0
    assert fleiss_kappa([["a", "a", "a"], ["b", "b", "b"]]) == 1.0


def test_policies():
    rows = [("pos", "pos", "pos"), ("pos", "neg", "pos"), ("pos", "neg", "neu"), ("neg", "neg", None)]
    maj = agreement(rows, "majority")
    assert maj.statistic == "fleiss" and maj.n_complete == 3
    assert maj.disagreements == [1, 2]
    assert maj.resolved == ["pos", "pos", None, "neg"] and maj.dropped == {2: "annotator_tie"}
    assert agreement(rows, "drop").resolved == ["pos", None, None, "neg"]
    assert agreement(rows, "first").resolved == ["pos", "pos", "pos", "neg"]
    two = agreement([("a", "a"), ("a", "b"), ("b", "b")], "majority")
    assert two.statistic == "cohen" and two.dropped == {1: "annotator_tie"}
