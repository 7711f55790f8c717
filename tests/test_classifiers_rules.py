"""The Tsetlin rule view: readable AND/NOT clauses; numpy inference equals the package's own."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from classifiers import ClassifierError, TsetlinRuleClassifier

TEXTS = [
    "build a bomb now",
    "history of the bomb",
    "bake bread",
    "build a shed",
    "make a bomb",
    "bomb history book",
    "hack an email",
    "hack email password",
] * 10
LABELS = ["weapons", "benign", "benign", "benign", "weapons", "benign", "cyber", "cyber"] * 10


@pytest.fixture(scope="module")
def tm():
    pytest.importorskip("pyTsetlinMachine")
    return TsetlinRuleClassifier(n_clauses=10, epochs=30, min_df=1).fit(TEXTS, LABELS)


def test_learns_and_agrees_with_native(tm):
    assert tm.native_agreement_ == 1.0  # our numpy clause evaluation = pyTsetlinMachine.predict
    assert tm.train_accuracy_ >= 0.95
    assert tm.predict(["build a bomb", "hack the email", "bake a cake"]).tolist() == [
        "weapons",
        "cyber",
        "benign",
    ]
    assert tm.decision_function(["x"]).shape == (1, 3)


def test_rules_are_readable(tm):
    rules = tm.rules(top=20)
    assert rules and all(" -> " in str(r) for r in rules)
    weapons = [r for r in rules if r.label == "weapons"]
    assert any("bomb" in r.words for r in weapons)
    assert all(0 <= r.precision <= 1 and r.support >= 2 for r in rules)
    assert str(weapons[0]).startswith('"')


def test_save_load_json_without_package(tm, tmp_path):
    path = tm.save(tmp_path / "rules.json")
    loaded = TsetlinRuleClassifier.load(path)
    np.testing.assert_array_equal(loaded.decision_function(TEXTS), tm.decision_function(TEXTS))
    assert [str(r) for r in loaded.rules()] == [str(r) for r in tm.rules()]
    with pytest.raises(ClassifierError, match="not a saved rule set"):
        TsetlinRuleClassifier.load(tmp_path / "missing.json")


def test_contract_and_errors():
    est = TsetlinRuleClassifier(n_clauses=10)
    assert clone(est).get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        est.predict(["x"])
    pytest.importorskip("pyTsetlinMachine")
    with pytest.raises(ClassifierError, match="single class"):
        est.fit(["a b", "c d"], ["x", "x"])
    with pytest.raises(ClassifierError, match="even"):
        TsetlinRuleClassifier(n_clauses=9).fit(TEXTS, LABELS)
    with pytest.raises(ClassifierError, match="string label"):
        est.fit(["a b", "c d"], [0, 1])
    with pytest.raises(ClassifierError, match="list of strings"):
        est.fit("text", ["a"])
