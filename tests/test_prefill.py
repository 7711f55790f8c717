"""Guarded generation reusing the host's prefill: the captured score equals the separate pass.

Tiny random hosts (tests/conftest.py); the guard is fitted on the synthetic prompts.
"""

from __future__ import annotations

import numpy as np
import pytest

from guard import Action, Guard, Policy
from guard.errors import InputError
from guard.whitebox.latent import LatentGuard
from guard.whitebox.prefill import GuardedGeneration, guarded_generate
from tests._synthetic import synthetic
from tests.conftest import make_host

HARMFUL = "How do I bomb at home?"
BENIGN = "How do I bread at home?"


def _guard(arch: str) -> Guard:
    host = make_host(arch)
    prompts, labels = synthetic()
    lg = LatentGuard(host, C=1.0, cv=3, cosmic_shortlist=0, window_tokens=48, window_stride=32)
    lg.fit(prompts, labels, refusal_replies=["I can't help."], compliance_replies=["Sure, here:"])
    return Guard(lg, Policy(threshold=0.5))


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def guard(request):
    return _guard(request.param)


def _count_forwards(host):
    calls = []
    handle = host.model.register_forward_hook(lambda *a: calls.append(1))
    return calls, handle


@pytest.mark.parametrize("prompt", [HARMFUL, BENIGN, "steal the bread", "a poem about a fox"])
def test_prefill_score_equals_separate_pass(guard, prompt):
    out = guarded_generate(guard, prompt, max_new_tokens=3)
    assert out.reused_prefill and out.fallback is None
    sep = guard.latent.scores([prompt])
    np.testing.assert_allclose(
        out.latent_scores["harmfulness_raw"], sep.harmfulness_raw[0], rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(out.latent_scores["refusal"], sep.refusal[0], rtol=1e-4, atol=1e-4)
    # the decision is the guard's own, computed from the reused states
    ref = guard.check(prompt)
    assert out.decision.action is ref.action
    assert out.decision.scores["harmfulness"] == pytest.approx(ref.scores["harmfulness"], abs=1e-4)


def test_refused_prompt_generates_nothing_and_costs_one_pass(guard):
    assert guard.check(HARMFUL).action is Action.REFUSE
    calls, handle = _count_forwards(guard.host)
    try:
        out = guarded_generate(guard, HARMFUL, max_new_tokens=8)
    finally:
        handle.remove()
    assert out.decision.action is Action.REFUSE and out.text == "" and out.new_tokens == 0
    assert len(calls) == 1  # the prefill only: no separate guard pass, no decoding step
    decision, text = out  # unpacks like a (Decision, text) pair
    assert decision is out.decision and text == ""


def test_allowed_prompt_generates_what_the_host_would(guard):
    assert guard.check(BENIGN).action is Action.ANSWER
    calls, handle = _count_forwards(guard.host)
    try:
        out = guarded_generate(guard, BENIGN, max_new_tokens=4)
    finally:
        handle.remove()
    assert out.decision.action is Action.ANSWER and out.reused_prefill
    assert out.text == guard.host.generate(BENIGN, max_new_tokens=4)
    assert out.new_tokens == 4
    assert len(calls) == 4  # prefill + 3 decoding steps: the guard added no forward pass


def test_history_is_read_by_both(guard):
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    out = guarded_generate(guard, BENIGN, max_new_tokens=2, history=history)
    sep = guard.latent.scores([BENIGN], history=history)
    assert out.reused_prefill
    np.testing.assert_allclose(
        out.latent_scores["harmfulness_raw"], sep.harmfulness_raw[0], rtol=1e-4, atol=1e-4
    )


def test_long_prompt_falls_back_to_the_separate_pass(guard):
    long = " ".join(["the quick brown fox jumps over the lazy dog"] * 12) + " " + HARMFUL
    assert len(guard.latent._windows(long)) > 1
    out = guarded_generate(guard, long, max_new_tokens=2)
    assert not out.reused_prefill and "window" in out.fallback and not out.latent_scores
    assert out.decision.action is guard.check(long).action


def test_empty_prompt_abstains_without_generating(guard):
    out = guarded_generate(guard, "   ", max_new_tokens=2)
    assert isinstance(out, GuardedGeneration)
    assert out.decision.action is Action.ABSTAIN and out.text == "" and not out.reused_prefill


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_arguments(guard, bad):
    with pytest.raises(InputError, match="max_new_tokens"):
        guarded_generate(guard, BENIGN, max_new_tokens=bad)
    with pytest.raises(InputError):
        guarded_generate(guard, 42)  # type: ignore[arg-type]


def test_hooks_are_removed(guard):
    blocks_before = sum(len(m._forward_hooks) for m in guard.host.model.modules())
    guarded_generate(guard, HARMFUL, max_new_tokens=2)
    guarded_generate(guard, BENIGN, max_new_tokens=2)
    assert sum(len(m._forward_hooks) for m in guard.host.model.modules()) == blocks_before
    assert not getattr(guard.latent, "_reused_states", None)
