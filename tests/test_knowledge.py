"""Knowledge boundaries (issue 14, part 3): the probe reads the Latent Guard's own capture and the
guard abstains on factual questions the host would likely get wrong, and only on those."""

from __future__ import annotations

import numpy as np
import pytest

from guard import Action, Guard, Policy
from guard.errors import ArtifactError
from guard.fitting.knowledge_fit import answer_is_correct, load_factual_qa, selective_table
from guard.whitebox.host import HostModel
from guard.whitebox.knowledge import KnowledgeProbe, looks_factual
from tests.test_integrations_support import tiny_guard


def probe_for(latent, intercept: float) -> KnowledgeProbe:
    p = KnowledgeProbe(layer=latent.layer_, position=0)
    hidden = latent._host().model.config.hidden_size
    p.coef_, p.intercept_, p.threshold_ = np.zeros(hidden), intercept, 0.5
    return p


def test_unsure_factual_questions_abstain_with_an_honest_reply():
    base = tiny_guard()
    g = Guard(base.latent, Policy(threshold=0.99), knowledge=probe_for(base.latent, -3.0))
    d = g.check("What is the capital of Burkina Faso?")
    assert d.action is Action.ABSTAIN and d.category == "knowledge_boundary"
    assert d.response.startswith("I'm not certain")
    assert (
        g.check("Write a short poem about the sea.").category != "knowledge_boundary"
    )  # not a factual question
    sure = Guard(base.latent, Policy(threshold=0.99), knowledge=probe_for(base.latent, 3.0))
    assert sure.check("What is the capital of Burkina Faso?").category != "knowledge_boundary"
    # the policy's threshold replaces the probe's
    strict = Guard(
        base.latent, Policy(threshold=0.99, knowledge_threshold=0.99), knowledge=probe_for(base.latent, 3.0)
    )
    assert strict.check("What is the capital of Burkina Faso?").category == "knowledge_boundary"


def test_the_probe_shares_the_latent_capture(monkeypatch):
    base = tiny_guard()
    g = Guard(base.latent, Policy(threshold=0.99), knowledge=probe_for(base.latent, -3.0))
    calls = []
    real = HostModel.capture
    monkeypatch.setattr(
        HostModel, "capture", lambda self, encs, *a, **k: calls.append(len(encs)) or real(self, encs, *a, **k)
    )
    g.check("Who wrote Pride and Prejudice?")
    assert len(calls) == 1  # one host pass for the latent scores and the knowledge probe


def test_save_load_and_corrupt(tmp_path):
    base = tiny_guard()
    p = probe_for(base.latent, -1.0)
    p.save(tmp_path / "k", {"note": "test"})
    back = KnowledgeProbe.load(tmp_path / "k")
    states = np.random.default_rng(0).normal(size=(3, p.coef_.size))
    assert np.array_equal(back.proba_correct(states), p.proba_correct(states))
    (tmp_path / "k" / "knowledge.json").write_text("{}")
    with pytest.raises(ArtifactError):
        KnowledgeProbe.load(tmp_path / "k")


def test_checker_and_data():
    assert answer_is_correct("It is Canberra, of course.", ["Canberra"])
    assert not answer_is_correct("Eighty", ["eight", "8"])
    rows = load_factual_qa()
    assert len(rows) >= 700 and all(r["answers"] for r in rows)
    assert sum(looks_factual(r["question"]) for r in rows) / len(rows) > 0.9
    t = selective_table(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 1, 0, 1]))
    assert t[0]["accuracy"] == 0.75 and t[-1]["coverage"] == 0.3


def test_shipped_probe_report():
    import json
    from importlib import resources

    meta = json.loads(
        resources.files("guard.resources").joinpath("knowledge_probe", "knowledge.json").read_text()
    )
    r = meta["report"]
    assert r["groups"].startswith("topic") and r["n"] >= 300
    table = r["selective_accuracy_vs_coverage"]
    assert table[-1]["accuracy"] > table[0]["accuracy"]  # abstaining on the least sure raises accuracy


def test_a_probe_at_another_layer_than_the_guard_is_refused():
    from guard.errors import ArtifactError

    base = tiny_guard()
    probe = probe_for(base.latent, 3.0)
    probe.layer = base.latent.layer_ + 1
    with pytest.raises(ArtifactError, match="refit"):
        Guard(base.latent, Policy(threshold=0.99), knowledge=probe)
