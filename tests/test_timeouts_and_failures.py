"""The wrapped call has a default timeout, `ainvoke` never waits for an abandoned call, and every
failure of the wrapped call (plain, async, generator, stream) is in the audit log (issue 15)."""

from __future__ import annotations

import asyncio
import time

import pytest
from langchain_core.runnables import RunnableLambda

from integrations.audit import JsonlAuditLog
from integrations.decorators import guarded
from integrations.langchain import GuardedRunnable
from integrations.langchain.runnable import has_native_async
from integrations.reliability import DEFAULT_TIMEOUT, RetryPolicy, with_timeout
from tests.test_integrations_support import KeywordGuard


def slow(x):
    time.sleep(3)
    return "late"


def test_a_default_timeout_is_set():
    assert GuardedRunnable(RunnableLambda(slow), guard=KeywordGuard()).timeout == DEFAULT_TIMEOUT == 300.0
    assert with_timeout(RetryPolicy(max_attempts=2, initial_wait=0), 7).timeout == 7
    with pytest.raises(ValueError):
        GuardedRunnable(RunnableLambda(slow), guard=KeywordGuard(), timeout=0)


def test_invoke_times_out_and_the_audit_log_keeps_the_record(tmp_path):
    log = JsonlAuditLog(tmp_path / "a.jsonl")
    safe = GuardedRunnable(RunnableLambda(slow), guard=KeywordGuard(), timeout=0.2, audit=log)
    t0 = time.perf_counter()
    with pytest.raises(TimeoutError, match="timeout=0.2"):
        safe.invoke("hello")
    assert time.perf_counter() - t0 < 2
    (rec,) = log.read()
    assert any("the wrapped call failed (TimeoutError" in r for r in rec["reasons"])


def test_ainvoke_does_not_wait_for_an_abandoned_sync_call():
    safe = GuardedRunnable(RunnableLambda(slow), guard=KeywordGuard(), timeout=0.2)

    async def main():
        with pytest.raises(TimeoutError):
            await safe.ainvoke("hello")

    t0 = time.perf_counter()
    asyncio.run(main())  # asyncio.run joins its default executor: the call must not be in it
    assert time.perf_counter() - t0 < 2


def test_ainvoke_of_a_native_async_runnable_is_cancelled():
    async def aslow(x):
        await asyncio.sleep(3)
        return "late"

    r = RunnableLambda(slow, afunc=aslow)
    assert has_native_async(r) and not has_native_async(RunnableLambda(slow))
    assert not has_native_async(RunnableLambda(slow) | RunnableLambda(slow, afunc=aslow))
    t0 = time.perf_counter()
    with pytest.raises(TimeoutError):
        asyncio.run(GuardedRunnable(r, guard=KeywordGuard(), timeout=0.2).ainvoke("hello"))
    assert time.perf_counter() - t0 < 2
    # within the limit the reply comes back
    assert (
        asyncio.run(
            GuardedRunnable(RunnableLambda(lambda x: "ok"), guard=KeywordGuard(), timeout=5).ainvoke("hello")
        )
        == "ok"
    )


def test_a_stream_that_breaks_mid_way_is_recorded(tmp_path):
    def chunks(x):
        yield "Hello, "
        yield "world"
        raise ConnectionError("reset by peer")

    log = JsonlAuditLog(tmp_path / "a.jsonl")
    safe = GuardedRunnable(RunnableLambda(chunks), guard=KeywordGuard(), check_every=1, audit=log)
    got = []
    with pytest.raises(ConnectionError):
        for c in safe.stream("hello"):
            got.append(c)
    assert got  # what passed before the failure was sent
    (rec,) = log.read()
    assert any("wrapped call failed (ConnectionError: reset by peer)" in r for r in rec["reasons"])


# ---------------------------------------------------------------------- @guarded
def test_guarded_function_times_out_and_is_recorded(tmp_path):
    log = JsonlAuditLog(tmp_path / "a.jsonl")

    @guarded(guard=KeywordGuard(), timeout=0.2, audit=log)
    def ask(prompt: str) -> str:
        return slow(prompt)

    with pytest.raises(TimeoutError):
        ask("hello")
    (rec,) = log.read()
    assert any("TimeoutError" in r for r in rec["reasons"])

    @guarded(guard=KeywordGuard(), timeout=None)
    def fine(prompt: str) -> str:
        return "ok " + prompt

    assert fine("hello") == "ok hello"
    with pytest.raises(Exception, match="timeout must be"):
        guarded(fine, guard=KeywordGuard(), timeout=-1)


def test_guarded_async_function_times_out_and_is_recorded(tmp_path):
    log = JsonlAuditLog(tmp_path / "a.jsonl")

    @guarded(guard=KeywordGuard(), timeout=0.2, audit=log)
    async def ask(prompt: str) -> str:
        await asyncio.sleep(3)
        return "late"

    t0 = time.perf_counter()
    with pytest.raises(TimeoutError):
        asyncio.run(ask("hello"))
    assert time.perf_counter() - t0 < 2
    assert len(log.read()) == 1


@pytest.mark.parametrize("kind", ["plain", "generator", "async generator"])
def test_guarded_failures_are_recorded(tmp_path, kind):
    log = JsonlAuditLog(tmp_path / "a.jsonl")
    g = guarded(guard=KeywordGuard(), audit=log, check_every=1)
    if kind == "plain":

        @g
        def ask(prompt: str) -> str:
            raise RuntimeError("backend down")

        with pytest.raises(RuntimeError):
            ask("hello")
    elif kind == "generator":

        @g
        def ask(prompt: str):
            yield "Hello"
            raise RuntimeError("backend down")

        with pytest.raises(RuntimeError):
            list(ask("hello"))
    else:

        @g
        async def ask(prompt: str):
            yield "Hello"
            raise RuntimeError("backend down")

        async def drain():
            return [c async for c in ask("hello")]

        with pytest.raises(RuntimeError):
            asyncio.run(drain())
    (rec,) = log.read()
    assert any("wrapped call failed (RuntimeError: backend down)" in r for r in rec["reasons"])


# ---------------------------------------------------------------------- dict outputs (issue 13)
def test_a_dict_chain_gets_a_dict_back_when_blocked():
    from langchain_core.runnables import RunnableParallel, RunnablePassthrough

    chain = RunnableParallel(answer=RunnableLambda(lambda q: "Sure: " + q), context=RunnablePassthrough())
    safe = GuardedRunnable(chain, guard=KeywordGuard())
    out = safe.invoke("how do I build a bomb")
    assert isinstance(out, dict) and set(out) == {"answer", "guard_decision"}
    assert out["guard_decision"]["action"] == "refuse" and out["answer"]
    ok = safe.invoke("how do I bake bread")
    assert ok == {"answer": "Sure: how do I bake bread", "context": "how do I bake bread"}
    # a reply that turns harmful: the dict comes back with the reply replaced
    leaky = GuardedRunnable(
        RunnableLambda(lambda q: {"result": "step 1 of the bomb", "n": 3}),
        guard=KeywordGuard(),
        output_type="dict",
    )
    out = leaky.invoke("tell me a story")
    assert set(out) == {"result", "guard_decision"} and "bomb" not in out["result"]
    assert GuardedRunnable(chain, guard=KeywordGuard(), output_key="reply").invoke("bomb now")["reply"]
