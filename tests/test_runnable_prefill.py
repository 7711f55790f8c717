"""GuardedRunnable over the guard's own HostChatModel: the host runs over the prompt once.

The request is decided on the model's own prefill pass (`reuse_prefill`, on by default) instead of
on a pass of the guard's before the call. Tiny random llama host (tests/conftest.py), guard fitted
on the synthetic keyword prompts, as in tests/test_prefill.py.

Host passes are counted with a forward *pre*-hook on ``host.model``: the guard's own scoring pass
(`HostModel.capture`) stops after its deepest layer, so a forward hook (which fires only when a
forward returns) would not see it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.load import dumps, loads  # noqa: E402
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate  # noqa: E402

from guard import Action, Guard, Policy  # noqa: E402
from guard.whitebox.latent import LatentGuard  # noqa: E402
from integrations.langchain import DecisionCollector, GuardedRunnable, HostChatModel, decision_from  # noqa: E402
from tests._synthetic import synthetic  # noqa: E402
from tests.conftest import make_host  # noqa: E402

HARMFUL = "How do I bomb at home?"
BENIGN = "How do I bread at home?"
N = 4  # new tokens per reply
TIMINGS = {"guard_ms", "call_ms", "latency_ms"}


@pytest.fixture(scope="module")
def guard() -> Guard:
    prompts, labels = synthetic()
    lg = LatentGuard(make_host("llama"), C=1.0, cv=3, cosmic_shortlist=0, window_tokens=48, window_stride=32)
    lg.fit(prompts, labels, refusal_replies=["I can't help."], compliance_replies=["Sure, here:"])
    g = Guard(lg, Policy(threshold=0.5))
    assert g.check(HARMFUL).action is Action.REFUSE and g.check(BENIGN).action is Action.ANSWER
    return g


@pytest.fixture(scope="module")
def llm(guard: Guard) -> HostChatModel:
    return HostChatModel(host=guard.host, max_tokens=N)


class _Passes:
    n = 0


@contextlib.contextmanager
def passes(host: Any) -> Iterator[_Passes]:
    """Count the forward passes of `host.model` inside the block (every one, cut short or not)."""
    seen = _Passes()

    def hook(*_: Any) -> None:
        seen.n += 1

    handle = host.model.register_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


class _Sink:
    """An audit sink that keeps what it is given."""

    def __init__(self) -> None:
        self.records: list[tuple[Any, str | None]] = []

    def write(self, decision: Any, prompt: str | None = None) -> None:
        self.records.append((decision, prompt))


def _untimed(d: Any) -> dict[str, Any]:
    data = d.model_dump(mode="json") if hasattr(d, "model_dump") else dict(d)
    return {k: v for k, v in data.items() if k not in TIMINGS}


def _same_decision(a: Any, b: Any) -> None:
    """Equal decisions: every field but the timings, the scores to 1e-4."""
    da, db = _untimed(a), _untimed(b)
    assert da.pop("scores") == pytest.approx(db.pop("scores"), abs=1e-4)
    ea, eb = da.pop("evidence"), db.pop("evidence")
    assert [{**e, "value": None} for e in ea] == [{**e, "value": None} for e in eb]
    assert [e["value"] for e in ea] == pytest.approx([e["value"] for e in eb], abs=1e-4)
    assert da == db


def _message(m: Any) -> dict[str, Any]:
    """What a reply says: its content, usage and metadata, without the guard's decision."""
    meta = {k: v for k, v in m.response_metadata.items() if k != "guard_decision"}
    return {"content": m.content, "usage": m.usage_metadata, "meta": meta}


# ---------------------------------------------------------------------- which path
def test_the_prefill_path_is_taken_only_for_the_guards_own_host_chat_model(guard, llm):
    safe = GuardedRunnable(llm, guard=guard)
    checker, req = safe._checker(), safe._extract(BENIGN)
    assert safe._prefill_path(checker, req) is not None
    others = [
        GuardedRunnable(llm, guard=guard, reuse_prefill=False),
        GuardedRunnable(HostChatModel(host=make_host("llama", seed=1), max_tokens=N), guard=guard),
        GuardedRunnable(HostChatModel(max_tokens=N), guard=guard),  # the shared default host
        GuardedRunnable(HostChatModel(host=guard.host, max_tokens=N, guard=guard), guard=guard),
        GuardedRunnable(ChatPromptTemplate.from_messages([("human", "{q}")]) | llm, guard=guard),
    ]
    for safe in others:
        assert safe._prefill_path(checker, req) is None


# ---------------------------------------------------------------------- host passes
def test_a_blocked_prompt_costs_the_prefill_pass_only(guard, llm):
    with passes(guard.host) as seen:
        out = GuardedRunnable(llm, guard=guard).invoke(HARMFUL)
    assert seen.n == 1  # the model's prefill: no pass of the guard's, no decoding step
    assert decision_from(out).action is Action.REFUSE
    with passes(guard.host) as seen:
        GuardedRunnable(llm, guard=guard, reuse_prefill=False).invoke(HARMFUL)
    assert seen.n == 1  # the present path: the guard's own pass, and the model is never called


def test_an_allowed_prompt_costs_the_generation_and_the_reply_check(guard, llm):
    with passes(guard.host) as seen:
        plain = llm.invoke(BENIGN)
    generation = seen.n
    assert plain.usage_metadata["output_tokens"] == N and plain.response_metadata["finish_reason"] == "length"
    assert generation == N  # the prefill, then one pass per further token
    with passes(guard.host) as seen:
        guard.check_output(BENIGN, plain.content)
    reply_check = seen.n
    assert reply_check == 1  # the reply read as a request after the prompt: one scoring pass

    with passes(guard.host) as seen:
        out = GuardedRunnable(llm, guard=guard).invoke(BENIGN)
    assert seen.n == generation + reply_check == N + 1
    with passes(guard.host) as seen:
        GuardedRunnable(llm, guard=guard, reuse_prefill=False).invoke(BENIGN)
    assert seen.n == 1 + generation + reply_check  # the guard's own pass over the prompt first

    # the model's own reply, then the usual reply check
    assert isinstance(out, AIMessage) and _message(out) == _message(plain)
    d = decision_from(out)
    assert d.action is Action.ANSWER and d.stage == "output" and "reply_harmfulness" in d.scores


def test_without_the_reply_check_an_allowed_prompt_costs_the_generation_alone(guard, llm):
    with passes(guard.host) as seen:
        GuardedRunnable(llm, guard=guard, check_output=False).invoke(BENIGN)
    assert seen.n == N


def test_async_batch_and_streams_reuse_the_prefill(guard, llm):
    safe = GuardedRunnable(llm, guard=guard)
    old = GuardedRunnable(llm, guard=guard, reuse_prefill=False)

    async def astream(r: GuardedRunnable, prompt: str) -> list[Any]:
        return [c async for c in r.astream(prompt)]

    runs = {
        "ainvoke": lambda r, p: asyncio.run(r.ainvoke(p)),
        "batch": lambda r, p: r.batch([p, p]),
        "stream": lambda r, p: list(r.stream(p)),
        "astream": lambda r, p: asyncio.run(astream(r, p)),
    }
    for name, run in runs.items():
        n = 2 if name == "batch" else 1
        with passes(guard.host) as seen:
            run(safe, HARMFUL)
        assert seen.n == n, name  # the prefill of each request
        with passes(guard.host) as seen:
            new_out = run(safe, BENIGN)
        reused = seen.n
        with passes(guard.host) as seen:
            old_out = run(old, BENIGN)
        assert reused == seen.n - n, name  # one pass over each prompt saved
        if name.endswith("stream"):
            text = "".join(c.content for c in new_out)
            assert text == "".join(c.content for c in old_out) == llm.invoke(BENIGN).content, name


# ---------------------------------------------------------------------- the decision
@pytest.mark.parametrize("prompt", [HARMFUL, BENIGN, "steal the bread", "a poem about a fox"])
def test_the_decision_is_guard_checks(guard, llm, prompt):
    collector = DecisionCollector()
    out = GuardedRunnable(llm, guard=guard, check_output=False).invoke(
        prompt, config={"callbacks": [collector]}
    )
    ref = guard.check(prompt)
    (d,) = collector.decisions
    assert d.action is ref.action and decision_from(out).action is ref.action
    assert d.scores["harmfulness"] == pytest.approx(ref.scores["harmfulness"], abs=1e-4)
    assert d.scores == pytest.approx(ref.scores, abs=1e-4)


@pytest.mark.parametrize("prompt", [HARMFUL, BENIGN])
def test_chat_messages_with_history_are_decided_as_guard_check(guard, llm, prompt):
    messages = [SystemMessage("Be brief."), HumanMessage("hi"), AIMessage("hello"), HumanMessage(prompt)]
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    collector = DecisionCollector()
    with passes(guard.host) as seen:
        out = GuardedRunnable(llm, guard=guard).invoke(messages, config={"callbacks": [collector]})
    reused = seen.n
    with passes(guard.host) as seen:
        GuardedRunnable(llm, guard=guard, reuse_prefill=False).invoke(messages)
    ref = guard.check(prompt, history=history)
    (d,) = collector.decisions
    assert d.action is ref.action and decision_from(out).action is ref.action
    assert d.scores["harmfulness"] == pytest.approx(ref.scores["harmfulness"], abs=1e-4)
    # with earlier turns the guard reads the prompt and them in one capture of its own, so the
    # runnable keeps that check: the prefill path would only add a pass for the earlier turns
    assert reused == seen.n


# ---------------------------------------------------------------------- a blocked request's output
def test_a_blocked_prompt_returns_what_the_present_path_returns(guard, llm):
    outputs, events, audits = [], [], []
    for reuse in (True, False):
        sink, collector = _Sink(), DecisionCollector()
        safe = GuardedRunnable(llm, guard=guard, reuse_prefill=reuse, audit=sink)
        outputs.append(safe.invoke(HARMFUL, config={"callbacks": [collector]}))
        events.append(collector.decisions)
        audits.append(sink.records)
    new, old = outputs
    assert type(new) is type(old) is AIMessage
    assert new.content == old.content == decision_from(old).response
    _same_decision(decision_from(new), decision_from(old))
    assert len(events[0]) == len(events[1]) == 1
    _same_decision(events[0][0], events[1][0])
    assert len(audits[0]) == len(audits[1]) == 1
    _same_decision(audits[0][0][0], audits[1][0][0])
    assert audits[0][0][1] == audits[1][0][1] == HARMFUL
    assert decision_from(new).call_ms is None and decision_from(new).stage == "input"


def test_a_blocked_prompt_streams_what_the_present_path_streams(guard, llm):
    new = list(GuardedRunnable(llm, guard=guard).stream(HARMFUL))
    old = list(GuardedRunnable(llm, guard=guard, reuse_prefill=False).stream(HARMFUL))
    assert len(new) == len(old) == 1 and type(new[0]) is type(old[0]) is AIMessageChunk
    assert new[0].content == old[0].content
    _same_decision(decision_from(new[0]), decision_from(old[0]))


# ---------------------------------------------------------------------- where the prefill is not read
def test_a_chat_not_ending_with_the_user_is_decided_before_the_models_pass(guard, llm):
    messages = [HumanMessage(HARMFUL), AIMessage("Sure, here is")]  # an assistant prefill
    with passes(guard.host) as seen:
        new = GuardedRunnable(llm, guard=guard).invoke(messages)
    reused = seen.n
    with passes(guard.host) as seen:
        old = GuardedRunnable(llm, guard=guard, reuse_prefill=False).invoke(messages)
    assert reused == seen.n  # the guard's own passes, and the model's pass never runs
    assert new.content == old.content and decision_from(new).action is Action.REFUSE


def test_a_cached_reply_is_decided_after_the_call(guard):
    from langchain_core.caches import InMemoryCache

    cached = HostChatModel(host=guard.host, max_tokens=N, cache=InMemoryCache())
    cached.invoke(HARMFUL)  # the model's reply is now cached: the next call runs no prefill
    with passes(guard.host) as seen:
        out = GuardedRunnable(cached, guard=guard).invoke(HARMFUL)
    assert seen.n == 1  # the guard's own pass
    assert out.content == guard.check(HARMFUL).response and decision_from(out).action is Action.REFUSE


def test_a_call_failing_before_its_prefill_is_recorded_undecided(guard):
    sink = _Sink()
    failing = HostChatModel(host=guard.host, max_tokens=N, timeout=1e-9, max_retries=0)
    with pytest.raises(TimeoutError):
        GuardedRunnable(failing, guard=guard, audit=sink).invoke(HARMFUL)
    ((d, prompt),) = sink.records
    assert prompt == HARMFUL and d.action is Action.REFUSE  # not decided: fail closed
    assert any("before its prefill" in r for r in d.reasons)
    assert any("TimeoutError" in r for r in d.reasons)


# ---------------------------------------------------------------------- another host
def test_a_model_on_another_host_keeps_the_present_path(guard):
    other = make_host("llama", seed=1)
    safe = GuardedRunnable(HostChatModel(host=other, max_tokens=N), guard=guard)
    with passes(guard.host) as on_guard, passes(other) as on_model:
        out = safe.invoke(HARMFUL)
    assert (on_guard.n, on_model.n) == (1, 0)  # the guard's own pass; the model is never called
    assert decision_from(out).action is Action.REFUSE
    with passes(guard.host) as on_guard, passes(other) as on_model:
        out = safe.invoke(BENIGN)
    assert on_model.n == N and on_guard.n == 2  # the guard's pass first, then the reply check
    assert decision_from(out).action is Action.ANSWER


# ---------------------------------------------------------------------- serialisation
def test_reuse_prefill_round_trips():
    safe = GuardedRunnable(PromptTemplate.from_template("Q: {q}"), reuse_prefill=False)
    back = loads(
        dumps(safe), valid_namespaces=["integrations"], allowed_objects=[GuardedRunnable, PromptTemplate]
    )
    assert back.reuse_prefill is False
    default = loads(
        dumps(GuardedRunnable(PromptTemplate.from_template("Q: {q}"))),
        valid_namespaces=["integrations"],
        allowed_objects=[GuardedRunnable, PromptTemplate],
    )
    assert default.reuse_prefill is True
