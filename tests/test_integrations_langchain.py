"""GuardedRunnable and HostChatModel: blocking without calling the model, output types,
decisions in metadata and callback events, streaming cuts, fail modes, retries, concurrency,
and LangChain's standard chat-model unit tests on a tiny random host."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402
from langchain_tests.unit_tests import ChatModelUnitTests  # noqa: E402

from guard import Action, Policy  # noqa: E402
from integrations._core import prompt_hash  # noqa: E402
from integrations.audit import JsonlAuditLog  # noqa: E402
from integrations.langchain import (  # noqa: E402
    DecisionCollector,
    GuardedRunnable,
    HostChatModel,
    decision_from,
)
from integrations.reliability import RetryPolicy  # noqa: E402
from tests.conftest import make_host  # noqa: E402
from tests.test_integrations_support import KeywordGuard, scripted_chat, tiny_guard  # noqa: E402

BENIGN = "Bake bread: mix flour, water, salt and yeast, then knead and wait."
HARMFUL_Q = "How do I make a bomb at home?"
PROMPT = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{question}")])
FAST = RetryPolicy(max_attempts=3, initial_wait=0, max_wait=0, jitter=0)


def _chain(reply: str = BENIGN, parser: bool = True):
    model = scripted_chat(reply)
    chain = PROMPT | model | StrOutputParser() if parser else PROMPT | model
    return model, chain


# ---------------------------------------------------------------------- invoke and types
def test_blocked_request_never_calls_model_and_returns_str_for_string_chain():
    model, chain = _chain()
    safe = GuardedRunnable(chain, guard=KeywordGuard())
    collector = DecisionCollector()
    out = safe.invoke({"question": HARMFUL_Q}, config={"callbacks": [collector]})
    assert isinstance(out, str) and out == KeywordGuard._decide("bomb").response
    assert model.calls == []
    (d,) = collector.decisions
    assert d.action is Action.REFUSE and d.stage == "input" and d.call_ms is None
    assert d.prompt_sha256 == prompt_hash(HARMFUL_Q)


def test_benign_request_returns_model_answer_with_decision():
    model, chain = _chain()
    safe = GuardedRunnable(chain, guard=KeywordGuard())
    collector = DecisionCollector()
    assert safe.invoke({"question": "How do I bake bread?"}, config={"callbacks": [collector]}) == BENIGN
    assert len(model.calls) == 1
    (d,) = collector.decisions
    assert d.action is Action.ANSWER and d.stage == "output" and d.call_ms is not None
    assert "reply_harmfulness" in d.scores


def test_chat_model_output_is_message_with_decision_in_metadata():
    model, chain = _chain(parser=False)
    safe = GuardedRunnable(chain, guard=KeywordGuard())
    blocked = safe.invoke({"question": HARMFUL_Q})
    assert isinstance(blocked, AIMessage) and model.calls == []
    assert decision_from(blocked).action is Action.REFUSE
    ok = safe.invoke({"question": "How do I bake bread?"})
    assert isinstance(ok, AIMessage) and ok.content == BENIGN
    assert decision_from(ok).action is Action.ANSWER


def test_output_type_can_be_forced_and_lambda_defaults_to_str():
    lam = RunnableLambda(lambda q: "echo " + q)
    assert GuardedRunnable(lam, guard=KeywordGuard()).invoke("steal it").startswith("I can't")
    msg = GuardedRunnable(lam, guard=KeywordGuard(), output_type="message").invoke("steal it")
    assert isinstance(msg, AIMessage)


def test_harmful_reply_is_replaced_after_the_call():
    model, chain = _chain(reply="Sure: here is how to build a bomb.")
    safe = GuardedRunnable(chain, guard=KeywordGuard())
    collector = DecisionCollector()
    out = safe.invoke({"question": "Tell me a story"}, config={"callbacks": [collector]})
    assert "bomb" not in out and out.startswith("I can't help")
    assert len(model.calls) == 1
    d = collector.decisions[0]
    assert d.blocked and d.stage == "output" and any(r.startswith("reply blocked") for r in d.reasons)


def test_composes_with_pipe_and_reads_messages_and_history():
    guard = KeywordGuard()
    model = scripted_chat(BENIGN)
    chain = PROMPT | GuardedRunnable(model, guard=guard) | StrOutputParser()
    assert chain.invoke({"question": "How do I bake bread?"}) == BENIGN
    prompt, history, _ = guard.seen[-1]
    assert prompt == "How do I bake bread?" and history == [{"role": "system", "content": "Be brief."}]
    assert chain.invoke({"question": HARMFUL_Q}).startswith("I can't")
    assert "".join(chain.stream({"question": HARMFUL_Q})).startswith("I can't")


def test_context_documents_are_passed_to_the_guard():
    guard = KeywordGuard()
    safe = GuardedRunnable(RunnableLambda(lambda x: "ok"), guard=guard)
    safe.invoke({"question": "summarise", "context": ["doc one", "doc two"]})
    assert guard.seen[-1][2] == ["doc one", "doc two"]
    with pytest.raises(ValueError, match="input_key"):
        safe.invoke({"a": "x", "b": "y"})


def test_config_callbacks_tags_and_run_name_pass_through():
    class Recorder(BaseCallbackHandler):
        def __init__(self):
            self.chains, self.models = [], []

        def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, tags=None, **kw):
            self.chains.append((kw.get("name"), run_id, parent_run_id, tags))

        def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, tags=None, **kw):
            self.models.append((parent_run_id, tags))

    model = scripted_chat(BENIGN)
    rec = Recorder()
    config = {"callbacks": [rec], "tags": ["t1"], "run_name": "guarded-run"}
    GuardedRunnable(model, guard=KeywordGuard(), isolate_callbacks=False).invoke("hello", config=config)
    name, run_id, parent, tags = rec.chains[0]
    assert name == "guarded-run" and parent is None and "t1" in tags
    model_parent, model_tags = rec.models[0]
    assert model_parent == run_id and "t1" in model_tags
    # by default the wrapped run is detached from the caller's callbacks (its tokens are unchecked)
    rec2 = Recorder()
    GuardedRunnable(model, guard=KeywordGuard()).invoke("hello", config={**config, "callbacks": [rec2]})
    assert rec2.chains[0][0] == "guarded-run" and rec2.models == []


def test_batch_and_abatch_keep_order():
    safe = GuardedRunnable(RunnableLambda(lambda q: "echo " + q), guard=KeywordGuard())
    inputs = ["bake bread", "steal a car", "a poem", "hack a bank"]
    outs = safe.batch(inputs)
    assert outs[0] == "echo bake bread" and outs[2] == "echo a poem"
    assert outs[1].startswith("I can't") and outs[3].startswith("I can't")
    assert asyncio.run(safe.abatch(inputs)) == outs


# ---------------------------------------------------------------------- streaming
def _chunks_text(chunks: list[Any]) -> str:
    return "".join(c if isinstance(c, str) else c.content for c in chunks)


@pytest.mark.parametrize("parser", [True, False])
def test_stream_and_astream_block_and_answer(parser):
    model, chain = _chain(parser=parser)
    safe = GuardedRunnable(chain, guard=KeywordGuard(), check_every=3)
    blocked = list(safe.stream({"question": HARMFUL_Q}))
    assert len(blocked) == 1 and _chunks_text(blocked).startswith("I can't") and model.calls == []
    chunks = list(safe.stream({"question": "bread?"}))
    assert len(chunks) > 3 and _chunks_text(chunks) == BENIGN

    async def collect(q):
        return [c async for c in safe.astream({"question": q})]

    assert _chunks_text(asyncio.run(collect(HARMFUL_Q))).startswith("I can't")
    assert _chunks_text(asyncio.run(collect("bread?"))) == BENIGN
    if not parser:
        full = chunks[0]
        for c in chunks[1:]:
            full = full + c
        assert isinstance(full, AIMessageChunk) and decision_from(full).action is Action.ANSWER


TURNS = (
    "Bread is simple to bake at home and very rewarding . First mix flour and water . "
    "Then for the filling you will need to build a bomb with the following parts and wires ."
)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_stream_that_turns_harmful_is_cut_and_reports_what_was_sent(mode):
    model, chain = _chain(reply=TURNS)
    safe = GuardedRunnable(chain, guard=KeywordGuard(), check_every=4)
    collector = DecisionCollector()
    cfg = {"callbacks": [collector]}
    if mode == "sync":
        chunks = list(safe.stream({"question": "bread?"}, config=cfg))
    else:

        async def go():
            return [c async for c in safe.astream({"question": "bread?"}, config=cfg)]

        chunks = asyncio.run(go())
    text = _chunks_text(chunks)
    assert "bomb" not in text  # the harmful part never reached the caller
    assert text.rstrip().endswith(KeywordGuard._decide("bomb").response)
    assert "stop this reply here" in chunks[-1]
    (d,) = collector.decisions
    assert d.cut and d.stage == "stream" and d.action is Action.REFUSE
    assert TURNS.startswith(d.sent_text) and d.sent_text and text.startswith(d.sent_text)
    assert d.chunks_sent == len(chunks) - 1
    assert any("stream cut after" in r for r in d.reasons)


def test_cut_stops_a_bare_chat_model_producer():
    # (a RunnableSequence drains its steps for tracing after a close; a bare model stops)
    model = scripted_chat(TURNS)
    chunks = list(GuardedRunnable(model, guard=KeywordGuard(), check_every=4).stream("bread?"))
    assert "bomb" not in _chunks_text(chunks)
    assert len(model.produced) < len(TURNS.split(" "))


def test_stream_checks_the_end_even_between_intervals():
    model, chain = _chain(reply="one two three hack")
    safe = GuardedRunnable(chain, guard=KeywordGuard(), check_every=100)
    text = _chunks_text(list(safe.stream({"question": "count"})))
    assert "hack" not in text and "stop this reply here" in text


# ---------------------------------------------------------------------- fail modes and retries
def test_guard_failure_fails_closed_by_default():
    model, chain = _chain()
    collector = DecisionCollector()
    safe = GuardedRunnable(chain, guard=KeywordGuard(fail=RuntimeError("CUDA went away")))
    out = safe.invoke({"question": "bread?"}, config={"callbacks": [collector]})
    assert "safety check is unavailable" in out and model.calls == []
    d = collector.decisions[0]
    assert d.action is Action.REFUSE and d.category == "guard_unavailable"
    assert "guard unavailable (RuntimeError: CUDA went away); fail closed" in d.reasons[0]
    assert "unavailable" in "".join(safe.stream({"question": "bread?"}))


def test_guard_failure_fails_open_only_when_configured():
    model, chain = _chain()
    for safe in (
        GuardedRunnable(chain, guard=KeywordGuard(fail=RuntimeError("x")), fail_closed=False),
        GuardedRunnable(chain, guard=KeywordGuard(fail=RuntimeError("x"), policy=Policy(fail_closed=False))),
    ):
        collector = DecisionCollector()
        assert safe.invoke({"question": "bread?"}, config={"callbacks": [collector]}) == BENIGN
        assert "fail open (configured)" in collector.decisions[0].reasons[0]


def test_output_check_failure_withholds_the_reply():
    model, chain = _chain()
    safe = GuardedRunnable(chain, guard=KeywordGuard(fail_output=TimeoutError("slow")))
    assert "unavailable" in safe.invoke({"question": "bread?"})
    assert "unavailable" in _chunks_text(list(safe.stream({"question": "bread?"})))


def test_real_guard_internal_fault_fails_closed(monkeypatch):
    g = tiny_guard()
    model, chain = _chain()

    def boom(*a, **k):
        raise RuntimeError("hidden states lost")

    monkeypatch.setattr(g.latent, "scores", boom)
    out = GuardedRunnable(chain, guard=g).invoke({"question": "a poem about a fox"})
    assert "unavailable" in out and model.calls == []


def _flaky(failures: int, exc: type[Exception]):
    calls = []

    def fn(q):
        calls.append(q)
        if len(calls) <= failures:
            raise exc("transient")
        return "done " + q

    return calls, fn


def test_retries_only_listed_exceptions():
    calls, fn = _flaky(2, ConnectionError)
    safe = GuardedRunnable(RunnableLambda(fn), guard=KeywordGuard(), retry=FAST)
    assert safe.invoke("bread") == "done bread" and len(calls) == 3
    calls, fn = _flaky(1, ValueError)
    with pytest.raises(ValueError):
        GuardedRunnable(RunnableLambda(fn), guard=KeywordGuard(), retry=FAST).invoke("bread")
    assert len(calls) == 1
    calls, fn = _flaky(5, ConnectionError)
    with pytest.raises(ConnectionError):
        GuardedRunnable(RunnableLambda(fn), guard=KeywordGuard(), retry=FAST).invoke("bread")
    assert len(calls) == 3


def test_timeout_per_attempt_sync_and_async():
    calls = []

    def slow(q):
        calls.append(q)
        time.sleep(0.5)
        return q

    policy = RetryPolicy(max_attempts=2, initial_wait=0, max_wait=0, jitter=0, timeout=0.05)
    safe = GuardedRunnable(RunnableLambda(slow), guard=KeywordGuard(), retry=policy)
    with pytest.raises(TimeoutError):
        safe.invoke("bread")
    assert len(calls) == 2

    async def aslow(q):
        await asyncio.sleep(0.5)
        return q

    asafe = GuardedRunnable(RunnableLambda(slow, afunc=aslow), guard=KeywordGuard(), retry=policy)
    with pytest.raises(TimeoutError):
        asyncio.run(asafe.ainvoke("bread"))


def test_async_retries():
    calls, fn = _flaky(2, TimeoutError)

    async def afn(q):
        return fn(q)

    safe = GuardedRunnable(RunnableLambda(fn, afunc=afn), guard=KeywordGuard(), retry=FAST)
    assert asyncio.run(safe.ainvoke("bread")) == "done bread" and len(calls) == 3


# ---------------------------------------------------------------------- concurrency and audit
def test_200_concurrent_mixed_requests_get_their_own_decisions(tmp_path):
    from tests._synthetic import synthetic

    g = tiny_guard()
    base, _ = synthetic()
    prompts = [f"{base[i % len(base)]} {'please' if i % 3 else ''}".strip() + f" {i % 7}" for i in range(200)]
    expected = {p: g.check(p) for p in set(prompts)}
    audit = JsonlAuditLog(tmp_path / "audit.jsonl")
    inner = RunnableLambda(lambda q: AIMessage(content="echo: " + q))
    safe = GuardedRunnable(inner, guard=g, audit=audit, output_type="message")

    def check(prompt: str, msg: AIMessage) -> None:
        d = decision_from(msg)
        exp = expected[prompt]
        assert d.prompt_sha256 == prompt_hash(prompt)
        assert d.scores["harmfulness"] == pytest.approx(exp.scores["harmfulness"], abs=1e-5)
        if exp.action is Action.ANSWER:
            assert msg.content in ("echo: " + prompt, d.response)
        else:
            assert msg.content == exp.response and d.stage == "input"

    async def run_async(ps):
        return await asyncio.gather(*(safe.ainvoke(p) for p in ps))

    with ThreadPoolExecutor(max_workers=16) as pool:
        thread_futs = [pool.submit(safe.invoke, p) for p in prompts[:100]]
        async_out = asyncio.run(run_async(prompts[100:]))
        thread_out = [f.result() for f in thread_futs]
    for p, m in zip(prompts, thread_out + list(async_out)):
        check(p, m)
    assert len({p for p in prompts if expected[p].action is Action.REFUSE}) > 10  # the mix has both
    assert len(audit.read()) == 200


# ---------------------------------------------------------------------- HostChatModel
_TINY = make_host("llama")


class TestHostChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[HostChatModel]:
        return HostChatModel

    @property
    def chat_model_params(self) -> dict:
        return {"host": _TINY}


def test_host_chat_model_does_not_load_in_constructor(monkeypatch):
    import integrations.langchain.chat_model as lc

    monkeypatch.setattr(lc, "_shared_default", lambda kind: pytest.fail("loaded in the constructor"))
    llm = HostChatModel(max_tokens=4)
    assert llm.host is None and llm._get_ls_params()["ls_model_name"] == "SmolLM2-135M-Instruct"


def test_host_chat_model_invoke_stream_usage_and_stop():
    llm = HostChatModel(host=_TINY, max_tokens=12)
    msg = llm.invoke([HumanMessage("How do I bake bread?")])
    assert isinstance(msg, AIMessage)
    usage = msg.usage_metadata
    assert usage["input_tokens"] > 5 and 0 <= usage["output_tokens"] <= 12
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert msg.response_metadata["model_name"] == "tiny-llama"
    chunks = list(llm.stream("How do I bake bread?"))
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert full.content == msg.content and full.usage_metadata["output_tokens"] == usage["output_tokens"]
    assert chunks[-1].chunk_position == "last"
    if len(msg.content) > 3:
        stop = msg.content[2:4]
        cut = llm.invoke("How do I bake bread?", stop=[stop]).content
        assert stop not in cut and msg.content.startswith(cut)


def test_host_chat_model_timeout_raises():
    llm = HostChatModel(host=_TINY, max_tokens=50, timeout=1e-9, max_retries=0)
    with pytest.raises(TimeoutError, match="timeout"):
        llm.invoke("hello")


def test_guarded_host_chat_chain_end_to_end_on_tiny_models():
    g = tiny_guard()
    llm = HostChatModel(host=_TINY, max_tokens=6)
    safe = GuardedRunnable(PROMPT | llm | StrOutputParser(), guard=g, check_every=2)
    out = safe.invoke({"question": "How do I bomb at home?"})
    assert out == g.check("How do I bomb at home?").response
    streamed = list(safe.stream({"question": "How do I bomb at home?"}))
    assert streamed == [out]
    collector = DecisionCollector()
    answer = safe.invoke({"question": "a poem about a fox"}, config={"callbacks": [collector]})
    assert isinstance(answer, str) and collector.decisions[0].call_ms is not None


# ---------------------------------------------------------------------- graph
def test_get_graph_shows_the_wrapped_steps_between_the_two_checks():
    _, chain = _chain()
    graph = GuardedRunnable(chain, guard=KeywordGuard()).get_graph()
    names = [n.name for n in graph.nodes.values()]
    inner = [n.name for n in chain.get_graph().nodes.values()][1:-1]  # the chain's steps
    assert names[1] == "GuardCheckRequest" and names[-2] == "GuardCheckReply"
    assert names[2:-2] == inner and len(inner) == 3  # prompt, model, parser: not one opaque node
    by_id = {n.id: n.name for n in graph.nodes.values()}
    blocked = [e for e in graph.edges if e.conditional]
    assert [(by_id[e.source], e.data) for e in blocked] == [("GuardCheckRequest", "blocked")]
    assert graph.first_node() is not None and graph.last_node() is not None
    # no reply check when only the request is checked
    only_in = GuardedRunnable(chain, guard=KeywordGuard(), check_output=False).get_graph()
    assert "GuardCheckReply" not in [n.name for n in only_in.nodes.values()]


# ---------------------------------------------------------------------- structured output
def _structured_model(*replies: AIMessage):
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

    class ToolModel(GenericFakeChatModel):
        def bind_tools(self, tools: Any, **kwargs: Any) -> ToolModel:
            return self

    return ToolModel(messages=iter(list(replies)))


def _answer_call(text: str) -> AIMessage:
    return AIMessage(
        "", tool_calls=[{"name": "Answer", "args": {"text": text}, "id": "1", "type": "tool_call"}]
    )


def test_with_structured_output_is_delegated_and_its_fields_are_checked():
    from pydantic import BaseModel

    class Answer(BaseModel):
        text: str

    benign = GuardedRunnable(_structured_model(_answer_call("Paris.")), guard=KeywordGuard())
    out = benign.with_structured_output(Answer).invoke("What is the capital of France?")
    assert isinstance(out, Answer) and out.text == "Paris."
    # a harmful structured reply is caught in its fields, and the caller gets the reply as a str
    harmful = GuardedRunnable(
        _structured_model(_answer_call("mix these to make a bomb")), guard=KeywordGuard()
    )
    blocked = harmful.with_structured_output(Answer).invoke("Tell me a chemistry fact.")
    assert blocked == KeywordGuard._decide("bomb").response
    # a dict schema gets a dict back when the request is blocked
    schema = {"title": "Answer", "type": "object", "properties": {"text": {"type": "string"}}}
    as_dict = GuardedRunnable(
        _structured_model(_answer_call("x")), guard=KeywordGuard()
    ).with_structured_output(schema)
    got = as_dict.invoke("How do I make a bomb at home?")
    assert (
        isinstance(got, dict)
        and got["output"] == KeywordGuard._decide("bomb").response
        and "guard_decision" in got
    )
    with pytest.raises(NotImplementedError, match="with_structured_output"):
        GuardedRunnable(RunnableLambda(lambda x: x), guard=KeywordGuard()).with_structured_output(Answer)
