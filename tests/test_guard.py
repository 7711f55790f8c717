import asyncio
import json

import numpy as np
import pytest

from guard import Action, Decision, Guard, Policy
from guard.errors import ArtifactError, InputError
from guard.io.artifact_io import write_manifest
from guard.whitebox.latent import LatentGuard
from tests._synthetic import synthetic
from tests.conftest import make_host


@pytest.fixture(scope="module")
def guard():
    host = make_host("llama")
    prompts, labels = synthetic()
    lg = LatentGuard(host, C=1.0, cv=3, cosmic_shortlist=2, cosmic_samples=4)
    lg.fit(prompts, labels, refusal_replies=["I can't help."], compliance_replies=["Sure, here:"])
    return Guard(lg, Policy(threshold=0.5))


def test_check_refuses_harmful_and_answers_benign(guard):
    d = guard.check("How do I bomb at home?")
    assert isinstance(d, Decision) and d.action is Action.REFUSE
    assert d.response and d.reasons and d.category
    assert 0 <= d.scores["harmfulness"] <= 1
    ok = guard.check("How do I bread at home?")
    assert ok.action is Action.ANSWER and ok.response is None


def test_batch_equals_single(guard):
    prompts = ["How do I bomb at home?", "a poem about a fox", "steal the bread"]
    batch = guard.check_batch(prompts)
    for p, b in zip(prompts, batch):
        s = guard.check(p)
        assert s.action == b.action
        assert s.scores["harmfulness"] == pytest.approx(b.scores["harmfulness"], abs=1e-5)


def test_async_check(guard):
    d = asyncio.run(guard.acheck("How do I bomb at home?"))
    assert d.action is Action.REFUSE


@pytest.mark.parametrize("prompt", ["", "   \n\t "])
def test_empty_prompt_abstains_with_question(guard, prompt):
    d = guard.check(prompt)
    assert d.action is Action.ABSTAIN and d.category == "empty" and d.response.endswith("?")


@pytest.mark.parametrize("bad", [None, 42, b"bytes", ["list"]])
def test_non_string_is_input_error(guard, bad):
    with pytest.raises(InputError, match="must be a str"):
        guard.check(bad)


def test_huge_prompt_gets_a_decision(guard):
    d = guard.check("a" * 200_000)
    assert d.action is Action.ABSTAIN and d.category == "too_long"
    assert "200000" in " ".join(d.reasons)


def test_surrogates_and_controls_are_replaced_and_reported(guard):
    d = guard.check("How do I \ud800 bomb\x00 at home?\x07")
    assert d.action is Action.REFUSE
    text = " ".join(d.reasons)
    assert "surrogate" in text and "control character" in text


def test_fail_closed_by_default_and_open_when_configured(guard, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("CUDA went away")

    monkeypatch.setattr(guard.latent, "scores", boom)
    d = guard.check("hello")
    assert d.action is Action.REFUSE and d.category == "guard_unavailable"
    assert "guard unavailable" in d.reasons[-1] and d.response
    open_guard = Guard(guard.latent, Policy(fail_closed=False))
    assert open_guard.check("hello").action is Action.ANSWER


def test_history_and_context_are_used(guard):
    hist = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    with_hist = guard.check("How do I bomb at home?", history=hist)
    without = guard.check("How do I bomb at home?")
    assert with_hist.scores["harmfulness_raw"] != pytest.approx(without.scores["harmfulness_raw"])
    d = guard.check("a poem about a fox", context=["How do I bomb at home? bomb bomb"])
    assert "context_harmfulness" in d.scores
    with pytest.raises(InputError):
        guard.check("hi", history=[{"role": "robot", "content": "x"}])
    with pytest.raises(InputError):
        guard.check("hi", history="not a list")


def test_check_output(guard):
    assert guard.check_output("hi", "How do I bomb at home? steal hack").action is Action.REFUSE
    assert guard.check_output("hi", "").action is Action.ANSWER


def test_save_load_roundtrip(guard, tmp_path):
    guard.save(tmp_path / "g")
    loaded = Guard.load(tmp_path / "g", host=guard.host)
    prompts, _ = synthetic(2)
    assert np.allclose(loaded.latent.score(prompts), guard.latent.score(prompts), atol=1e-7)
    assert loaded.policy == guard.policy
    assert loaded.latent.layer_ == guard.latent.layer_


def test_missing_corrupt_and_mismatched_artifacts(guard, tmp_path):
    path = tmp_path / "g"
    guard.save(path)
    other = make_host("llama", seed=1)
    with pytest.raises(ArtifactError, match="fitted on host"):
        Guard.load(path, host=other)
    (path / "latent.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ArtifactError, match="corrupt"):
        Guard.load(path, host=guard.host)
    write_manifest(path)  # the bytes trusted as they are: the safetensors reader speaks
    with pytest.raises(ArtifactError, match="corrupt"):
        Guard.load(path, host=guard.host)
    guard.save(path)
    meta = json.loads((path / "guard.json").read_text())
    meta["format_version"] = 999
    (path / "guard.json").write_text(json.dumps(meta))
    write_manifest(path)
    with pytest.raises(ArtifactError, match="format version"):
        Guard.load(path, host=guard.host)
    (path / "guard.json").write_text("{not json")
    write_manifest(path)
    with pytest.raises(ArtifactError, match="corrupt"):
        Guard.load(path, host=guard.host)
    (path / "guard.json").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        Guard.load(path, host=guard.host)
    with pytest.raises(ArtifactError):
        Guard.load(tmp_path / "nowhere", host=guard.host)


def test_policy_validation():
    with pytest.raises(ValueError):
        Policy(threshold=1.5)
    with pytest.raises(ValueError):
        Policy(unknown=1)


def test_check_output_lets_refusals_through(guard):
    g = Guard(guard.latent, guard.policy, reply_refusal=lambda replies: [0.9 for _ in replies])
    d = g.check_output("hi", "How do I bomb at home? steal hack")
    assert d.action is Action.ANSWER and d.scores["reply_refusal"] == 0.9
    g2 = Guard(guard.latent, guard.policy, reply_refusal=lambda replies: [0.1 for _ in replies])
    assert g2.check_output("hi", "How do I bomb at home? steal hack").action is Action.REFUSE


def test_engine_rules_and_noncompliance_evidence_reach_the_decision(guard):
    from guard.features.evidence import DecisionEngine

    class FixedNoncompliance:
        def proba_dicts(self, prompts):
            return [{"humanizing": 0.95, "benign": 0.05} for _ in prompts]

    g = Guard(
        guard.latent, guard.policy, engine=DecisionEngine(guard.policy, noncompliance=FixedNoncompliance())
    )
    d = g.check("a poem about a fox")
    assert d.action is Action.ABSTAIN and d.category == "humanizing"
    assert any(e.source == "noncompliance" for e in d.evidence) and d.response
