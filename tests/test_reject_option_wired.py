"""The reject option wired into Guard: ambiguity and novelty evidence, fitted with grouped
coverage-risk figures, saved and loaded with the guard (issue 12, part 3)."""

from __future__ import annotations

import numpy as np
import pytest

from classifiers.reject_option import RejectOptionClassifier
from guard import Action, Guard, Policy
from guard.features.reject import RejectOptionEvidence, fit_reject_option
from tests.test_integrations_support import tiny_guard

WORDS = ["bake", "bread", "poem", "sea", "bomb", "steal", "hack", "poison"]


def bag(texts):
    """A deterministic stand-in embedding: word counts, plus a 'strange' axis for unknown words."""
    out = []
    for t in texts:
        toks = t.lower().replace("?", " ").split()
        v = [toks.count(w) for w in WORDS] + [sum(x not in WORDS for x in toks) / max(1, len(toks)) * 10]
        out.append(v)
    return np.asarray(out, dtype=float)


def fitted() -> RejectOptionEvidence:
    rng = np.random.default_rng(0)
    benign = [" ".join(rng.choice(WORDS[:4], 3)) for _ in range(150)]
    harmful = [" ".join(rng.choice(WORDS[4:], 3)) for _ in range(150)]
    texts = benign + harmful
    y = [0] * 150 + [1] * 150
    groups = [f"g{i % 10}" for i in range(300)]
    ro, report = fit_reject_option(texts, y, groups, embed=bag, coverage=0.95, novelty_rate=0.02)
    assert 0.0 <= report["held_out"]["coverage"] <= 1.0
    assert [r["coverage"] for r in report["held_out"]["coverage_risk"]][:2] == [1.0, 0.95]
    assert "held-out groups" in report["split"]
    return ro


def test_novel_prompts_abstain_with_a_named_reason():
    ro = fitted()
    base = tiny_guard()
    g = Guard(base.latent, Policy(threshold=0.5), reject_option=ro)
    d = g.check("zxq vrrp qlkj wwmf")
    assert d.action is Action.ABSTAIN, d.reasons
    assert any(r.startswith("reject option: novelty") for r in d.reasons)
    names = {(e.source, e.name) for e in d.evidence}
    assert {("reject_option", "ambiguity"), ("reject_option", "novelty")} <= names
    # the policy can keep the evidence and not abstain on it
    off = Guard(base.latent, Policy(threshold=0.5, reject_option=False), reject_option=ro)
    d2 = off.check("zxq vrrp qlkj wwmf")
    assert not any(r.startswith("reject option") for r in d2.reasons[:1])
    assert any(e.source == "reject_option" for e in d2.evidence)


def test_a_familiar_prompt_is_not_rejected():
    ro = fitted()
    ev = ro.evidence(["bake bread poem"])[0]
    assert all(e.value < e.threshold for e in ev)


def test_a_failing_reject_option_is_named_not_fatal():
    class Broken(RejectOptionEvidence):
        def evidence(self, texts):
            raise RuntimeError("down")

    ro = fitted()
    base = tiny_guard()
    g = Guard(base.latent, Policy(threshold=0.5), reject_option=Broken(ro.model, bag))
    d = g.check("bake bread")
    assert any("reject-option evidence failed (RuntimeError: down)" in r for r in d.reasons)


def test_saved_with_the_guard_and_loaded_back(tmp_path):
    ro = fitted()
    base = tiny_guard()
    g = Guard(base.latent, Policy(threshold=0.5), reject_option=ro)
    g.save(tmp_path / "g")
    back = RejectOptionEvidence.load(tmp_path / "g" / "reject_option", embed=bag)
    texts = ["zxq vrrp", "bake bread", "bomb hack"]
    assert [[(e.name, e.value, e.threshold) for e in row] for row in back.evidence(texts)] == [
        [(e.name, e.value, e.threshold) for e in row] for row in ro.evidence(texts)
    ]
    loaded = Guard.load(tmp_path / "g", host=base.host, blackbox=False)
    assert isinstance(loaded.reject_option, RejectOptionEvidence)


def test_needs_a_confidence_rule():
    X = np.random.default_rng(0).normal(size=(60, 2))
    m = RejectOptionClassifier(ambiguity="none").fit(X, (X[:, 0] > 0).astype(int))
    with pytest.raises(Exception, match="ambiguity='confidence'"):
        RejectOptionEvidence(m)
