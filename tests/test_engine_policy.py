"""Policy: backward-compatible defaults, YAML/JSON files, per-category calibration."""

import json

import numpy as np
import pytest

from guard.decision import Action
from guard.decision.policy import CategoryPolicy, Policy
from guard.decision.risk import Costs
from guard.decision.rules import About, AllOf, AnyOf, Not, Rule
from guard.errors import InputError
from guard.fitting.calibrate import Target, calibrate, calibration_report, threshold_for_refusal_rate


def test_defaults_are_backward_compatible():
    p = Policy()
    assert (p.threshold, p.fail_closed, p.max_prompt_chars, p.context_threshold) == (0.5, True, 32_000, None)
    assert (
        Policy(
            **{"threshold": 0.7, "fail_closed": False, "max_prompt_chars": 10, "context_threshold": None}
        ).threshold
        == 0.7
    )
    with pytest.raises(ValueError):
        Policy(threshold=1.5)
    with pytest.raises(ValueError):
        Policy(unknown_field=1)


def _rich_policy():
    product = About("our product", examples=["How do I reset my Acme router?"], threshold=0.4)
    return Policy(
        threshold=0.6,
        categories={
            "self_harm": CategoryPolicy(threshold=0.2),
            "specialized_advice": CategoryPolicy(
                action=Action.ABSTAIN, costs=Costs(wrong_answer=5, refusal=1, abstention=0.3)
            ),
            "humanizing": CategoryPolicy(enabled=False),
        },
        costs=Costs(wrong_answer=3, refusal=1),
        harm_weights={"harmfulness": 1.0, "embedding_harm": 0.5},
        rules=[
            Rule(name="legal", when=About("legal advice", threshold=0.5), then=Action.ABSTAIN),
            Rule(name="scope", when=Not(product), then=Action.ABSTAIN, category="off_topic"),
            Rule(
                name="combo",
                when=AllOf(AnyOf(About("a", threshold=0.1), About("b", threshold=0.2)), product),
                then=Action.ANSWER,
                override=True,
            ),
        ],
        rule_mode="strictest",
    )


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_file_round_trip(tmp_path, suffix):
    p = _rich_policy()
    path = p.save(tmp_path / f"policy{suffix}")
    q = Policy.load(path)
    assert q == p
    assert isinstance(q.rules[1].when, Not) and isinstance(q.rules[2].when.conditions[0], AnyOf)
    assert q.rules[2].override and q.rules[0].then is Action.ABSTAIN


def test_yaml_written_by_hand():
    text = """
threshold: 0.55
categories:
  drugs: {threshold: 0.3}
rules:
  - name: no-legal
    when: {kind: about, name: legal advice, examples: ["Can I sue my landlord?"], threshold: 0.45}
    then: abstain
  - when: {kind: not, condition: {kind: about, name: cooking, threshold: 0.3}}
    then: abstain
"""
    p = Policy.from_yaml(text)
    assert p.threshold_for("drugs") == 0.3 and p.threshold_for("other_harm") == 0.55
    assert p.rules[1].name == "abstain if not about 'cooking'"


def test_policy_dump_is_plain_json():  # what artifacts.save_latent writes
    p = _rich_policy()
    assert Policy(**json.loads(json.dumps(p.model_dump()))) == p


def test_bad_files(tmp_path):
    with pytest.raises(InputError):
        Policy.load(tmp_path / "missing.yaml")
    with pytest.raises(InputError):
        Policy().save(tmp_path / "p.txt")
    with pytest.raises(ValueError, match="unique"):
        Policy(rules=[Rule(name="x", when=About("a", threshold=0.1), then=Action.ABSTAIN)] * 2)


def test_threshold_for_refusal_rate_exact():
    s = np.linspace(0, 1, 101)
    for rate in (0.0, 0.05, 0.3, 1.0):
        t = threshold_for_refusal_rate(s, rate)
        assert abs((s >= t).mean() - rate) <= 1 / 101


def test_calibrate_hits_targets_within_three_points():
    rng = np.random.default_rng(0)
    data = {
        "drugs": rng.beta(2, 5, 400).tolist(),
        "self_harm": rng.beta(5, 2, 300).tolist(),
        "fraud_deception": rng.uniform(size=250).tolist(),
    }
    labels = {"fraud_deception": (rng.uniform(size=250) < 0.5).astype(int).tolist()}
    targets = {"drugs": 0.10, "self_harm": Target(refusal_rate=0.9), "fraud_deception": Target(recall=0.95)}
    p = calibrate(Policy(), data, targets, labels=labels)
    rep = calibration_report(p, data, labels)
    assert abs(rep["drugs"]["refusal_rate"] - 0.10) <= 0.03
    assert abs(rep["self_harm"]["refusal_rate"] - 0.90) <= 0.03
    assert abs(rep["fraud_deception"]["recall"] - 0.95) <= 0.03
    assert p.threshold == 0.5  # untouched: no "*" target


def test_calibrate_global_and_errors():
    data = {"a": [0.1, 0.2, 0.3, 0.4, 0.5], "b": [0.6, 0.7, 0.8, 0.9, 1.0]}
    assert calibrate(Policy(), data, {"*": 0.2}, min_rows=1).threshold == 0.9
    with pytest.raises(InputError, match="labels"):
        calibrate(Policy(), data, {"a": Target(recall=0.9)}, min_rows=1)
    with pytest.raises(InputError, match="no calibration scores"):
        calibrate(Policy(), data, {"zzz": 0.1}, min_rows=1)
    with pytest.raises(ValueError):
        Target(recall=0.9, refusal_rate=0.1)
    assert calibrate(Policy(), data, {"a": 0.5}, min_rows=10).categories == {}  # too few rows: unchanged
