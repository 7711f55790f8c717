"""One host capture per request (issue 12, part 2): the prompt and its readings after the history,
the retrieved documents, and the history turns checked on their own are read from one
`HostModel.capture`, with the scores the separate captures gave.

Values from a shared capture differ from separate ones only by float32 rounding: a chat batched
beside a longer one is left-padded, which reorders the kernels' sums (~1e-7 relative on the hidden
states). Probabilities are compared to 1e-6, raw projections to a relative 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest

from guard import Action, Guard, Policy
from guard.errors import InputError
from guard.whitebox.host import HostModel
from guard.whitebox.latent import LatentGuard, LatentScores, ScoreGroup
from tests.test_prefill import _guard

LONG = " ".join(["the quick brown fox jumps over the lazy dog"] * 12) + " How do I bomb at home?"
HISTORY = [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"}]
DOCS = ["Bread needs flour and water.", "The sea is blue and wide."]
RAW = ("harmfulness_raw", "refusal")


@pytest.fixture(scope="module")
def guard() -> Guard:
    return _guard("llama")


@pytest.fixture()
def captures(monkeypatch):
    """The number of chats in each `HostModel.capture` call."""
    calls: list[int] = []
    real = HostModel.capture

    def capture(self, encs, *a, **k):
        calls.append(len(encs))
        return real(self, encs, *a, **k)

    monkeypatch.setattr(HostModel, "capture", capture)
    return calls


def _separately(self: LatentGuard, groups: list[ScoreGroup]) -> list[LatentScores]:
    """The old path: one capture per group (`features` for each, as `scores` did)."""
    out = []
    for g in groups:
        layers = self.capture_layers
        X, owner = self.features(g.prompts, layers, history=g.history, align=True)
        dec, ref = self.project(X)
        n = len(g.prompts)
        d, r = np.full(n, -np.inf), np.full(n, -np.inf)
        np.maximum.at(d, owner, dec)
        np.maximum.at(r, owner, ref)
        states = None
        if g.with_states:
            last = [np.flatnonzero(owner == i)[-1] for i in range(n)]
            states = X[last, layers.index(self.layer_)]
        out.append(LatentScores(self.calibrated(d), d, r, states))
    return out


def _assert_close(new: LatentScores, old: LatentScores) -> None:
    np.testing.assert_allclose(new.harmfulness, old.harmfulness, rtol=0, atol=1e-6)
    np.testing.assert_allclose(new.harmfulness_raw, old.harmfulness_raw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new.refusal, old.refusal, rtol=1e-5, atol=1e-6)
    assert (new.states is None) == (old.states is None)
    if new.states is not None:
        np.testing.assert_allclose(new.states, old.states, rtol=1e-5, atol=1e-6)


def test_a_request_with_history_and_documents_is_one_capture(guard, captures, monkeypatch):
    prompt = "How do I bread at home?"
    new = guard.check(prompt, history=HISTORY, context=DOCS)
    # the prompt after the history, the two documents, the user turn on its own and the
    # assistant turn read as a reply after it: one capture
    assert len(captures) == 1 and captures[0] == 5
    assert "context_harmfulness" in new.scores and "history[0] (user).harmfulness" in new.scores

    captures.clear()
    monkeypatch.setattr(Guard, "_request_states", lambda self, *a: {})
    monkeypatch.setattr(LatentGuard, "scores_many", _separately)
    old = guard.check(prompt, history=HISTORY, context=DOCS)
    assert captures == [1, 2, 1, 1]  # before: prompt, documents, user turn, assistant turn

    assert new.action is old.action and new.category == old.category
    assert set(new.scores) == set(old.scores)
    for key, value in old.scores.items():
        if key.endswith(RAW):
            assert new.scores[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
        else:
            assert new.scores[key] == pytest.approx(value, rel=0, abs=1e-6), key
    # and the values are the Latent Guard's own, scored one by one
    sep = guard.latent.scores([prompt], history=HISTORY)
    assert new.scores["harmfulness"] == pytest.approx(sep.harmfulness[0], abs=1e-6)
    assert new.scores["context_harmfulness"] == pytest.approx(guard.latent.score(DOCS).max(), abs=1e-6)
    turn = guard.latent.score([HISTORY[0]["content"]])[0]
    assert new.scores["history[0] (user).harmfulness"] == pytest.approx(turn, abs=1e-6)


def test_documents_without_history_are_one_capture(guard, captures):
    d = guard.check("a poem about a fox", context=DOCS)
    assert captures == [3]
    assert d.scores["context_harmfulness"] == pytest.approx(guard.latent.score(DOCS).max(), abs=1e-6)
    captures.clear()
    guard.check("a poem about a fox")
    assert captures == [1]  # nothing else to read: as before


def test_a_declined_turn_is_not_captured(guard, captures):
    """A user turn the assistant declined is not checked on its own, so not captured either."""
    g = Guard(guard.latent, guard.policy, reply_refusal=lambda replies: [0.9] * len(replies))
    d = g.check("How do I bread at home?", history=HISTORY, context=DOCS)
    assert len(captures) == 1 and captures[0] == 4  # prompt, 2 documents, the assistant turn
    assert not any(k.startswith("history[0]") for k in d.scores)


def test_scores_many_equals_separate_calls(guard, captures):
    lg = guard.latent
    assert len(lg._windows(LONG)) > 1
    groups = [
        ScoreGroup(["How do I bread at home?", LONG], HISTORY),
        ScoreGroup([DOCS[0], LONG]),  # the long text again, with no history
        ScoreGroup(["a poem about a fox"], [{"role": "user", "content": "hi"}], with_states=True),
        ScoreGroup([]),
    ]
    many = lg.scores_many(groups)
    assert len(captures) == 1  # every window of every group
    captures.clear()
    for g, m in zip(groups[:3], many):
        _assert_close(m, lg.scores(g.prompts, g.history, with_states=g.with_states))
    _assert_close(many[1], _separately(lg, [groups[1]])[0])
    np.testing.assert_allclose(many[1].harmfulness, lg.score(groups[1].prompts), atol=1e-6)
    assert many[2].states is not None and many[2].states.shape == (1, lg.n_positions_, lg.host.hidden_size)
    assert many[0].states is None and many[1].states is None
    empty = many[3]
    assert empty.harmfulness.shape == empty.harmfulness_raw.shape == empty.refusal.shape == (0,)


def test_capture_states_feeds_reuse_states(guard, captures):
    lg = guard.latent
    groups = [ScoreGroup(["How do I bread at home?"], HISTORY), ScoreGroup(DOCS)]
    bundle = lg.capture_states(groups)
    assert len(captures) == 1 and len(bundle) == 3
    captures.clear()
    with lg.reuse_states({k: v for k, v in bundle.items()}):
        inside = lg.scores(["How do I bread at home?"], HISTORY)
        docs = lg.score(DOCS)
        assert captures == []  # read from the bundle
        lg.capture_states([*groups, ScoreGroup(["a poem about a fox"])])
        assert captures == [1]  # only the chat the bundle lacks
    many = lg.scores_many(groups)
    np.testing.assert_array_equal(inside.harmfulness_raw, many[0].harmfulness_raw)
    np.testing.assert_array_equal(docs, many[1].harmfulness)


BAD_HISTORIES = [
    "not a list",
    [1],
    [("user", "hi")],
    [{"role": "user"}],
    [{"content": "hi"}],
    [{"role": "user", "content": 5}],
]


def _error(fn):
    with pytest.raises(Exception) as info:
        fn()
    return type(info.value), str(info.value)


@pytest.mark.parametrize("bad", BAD_HISTORIES, ids=repr)
def test_a_bad_history_raises_as_before(guard, captures, bad):
    lg = guard.latent
    before = _error(lambda: lg.scores(["hi"], history=bad))
    assert _error(lambda: lg.scores_many([ScoreGroup(["ok"]), ScoreGroup(["hi"], bad)])) == before
    assert _error(lambda: lg.capture_states([ScoreGroup(["ok"]), ScoreGroup(["hi"], bad)])) == before
    with pytest.raises(InputError, match="history"):
        guard.check("hi", history=bad, context=DOCS)
    assert captures == []  # refused before the host runs


@pytest.mark.parametrize(
    "groups, match",
    [
        (ScoreGroup(["hi"]), "list of ScoreGroup"),
        ("hi", "list of ScoreGroup"),
        ([(["hi"], None)], "group 0 is tuple"),
        ([ScoreGroup(["ok"]), ScoreGroup("hi")], "single string"),
        ([ScoreGroup(["ok"]), ScoreGroup(["ok", "  "])], "prompt 1 is empty"),
        ([ScoreGroup(["ok"]), ScoreGroup([3])], "prompt 0 is int"),
    ],
)
def test_bad_groups_are_input_errors_before_the_host_runs(guard, captures, groups, match):
    with pytest.raises(InputError, match=match):
        guard.latent.scores_many(groups)
    with pytest.raises(InputError, match=match):
        guard.latent.capture_states(groups)
    assert captures == []


def test_a_failing_capture_still_fails_closed(guard, monkeypatch):
    def boom(self, *a, **k):
        raise RuntimeError("CUDA went away")

    monkeypatch.setattr(HostModel, "capture", boom)
    d = guard.check("hello", history=HISTORY, context=DOCS)
    assert d.action is Action.REFUSE and d.category == "guard_unavailable"
    assert Guard(guard.latent, Policy(fail_closed=False)).check("hello", context=DOCS).action is Action.ANSWER
