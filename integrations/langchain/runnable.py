"""`GuardedRunnable`: a Runnable that wraps any Runnable and checks what goes in and out.

Needs the `langchain` extra (`pip install 'latent-guardrail[langchain]'`).

Example:
    >>> from langchain_core.prompts import ChatPromptTemplate  # doctest: +SKIP
    >>> from langchain_core.output_parsers import StrOutputParser  # doctest: +SKIP
    >>> chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | HostChatModel() | StrOutputParser()  # doctest: +SKIP
    >>> safe = GuardedRunnable(chain, guard=Guard.default())  # doctest: +SKIP
    >>> safe.invoke({"question": "How do I build a pipe bomb?"})  # doctest: +SKIP
    "I can't help with making weapons or hurting anyone. ..."
"""

from __future__ import annotations

import threading
import time
import typing
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

from guard._deps import require

require("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.callbacks.manager import adispatch_custom_event, dispatch_custom_event  # noqa: E402
from langchain_core.messages import (  # noqa: E402
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    convert_to_messages,
)
from langchain_core.prompt_values import PromptValue  # noqa: E402
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable  # noqa: E402
from langchain_core.runnables.config import ensure_config  # noqa: E402
from pydantic import ConfigDict, Field  # noqa: E402

from guard.errors import InputError  # noqa: E402
from integrations._core import (  # noqa: E402
    DEFAULT_CHECK_EVERY,
    Checker,
    GuardedDecision,
    StreamGate,
    closing_sentence,
    merge,
    text_of,
)
from integrations.reliability import (  # noqa: E402
    EMPTY,
    RetryPolicy,
    acall_with_retry,
    afirst_with_retry,
    call_with_retry,
    first_with_retry,
)


#: Name of the custom callback event that carries every decision.
DECISION_EVENT = "guard_decision"
#: Key of the decision in a message's `response_metadata`.
DECISION_KEY = "guard_decision"

_PROMPT_KEYS = ("input", "question", "query", "prompt", "text", "message", "messages")
_CONTEXT_KEYS = ("context", "documents", "docs")

from integrations._core import shared_default as _shared_default  # noqa: E402

__all__ = ["DECISION_EVENT", "DECISION_KEY", "DecisionCollector", "GuardedRunnable", "decision_from"]

def decision_from(message: Any) -> GuardedDecision | None:
    """The guard's decision attached to a message by `GuardedRunnable`, or `None`.

    Example:
        >>> from langchain_core.messages import AIMessage
        >>> decision_from(AIMessage("hi")) is None
        True
    """
    meta = getattr(message, "response_metadata", None) or {}
    data = meta.get(DECISION_KEY)
    return GuardedDecision.model_validate(data) if data is not None else None


class DecisionCollector(BaseCallbackHandler):
    """A callback handler that keeps every guard decision of the runs it is passed to.

    Example:
        >>> collector = DecisionCollector()
        >>> safe.invoke("hi", config={"callbacks": [collector]})  # doctest: +SKIP
        >>> collector.decisions[-1].action  # doctest: +SKIP
        <Action.ANSWER: 'answer'>
    """

    def __init__(self) -> None:
        self.decisions: list[GuardedDecision] = []
        self._lock = threading.Lock()

    def on_custom_event(self, name: str, data: Any, *, run_id: Any, tags: Any = None, metadata: Any = None,
                        **kwargs: Any) -> None:
        if name == DECISION_EVENT:
            with self._lock:
                self.decisions.append(data)


def _is_message_type(tp: Any) -> bool:
    if isinstance(tp, type):
        return issubclass(tp, BaseMessage)
    return any(_is_message_type(a) for a in typing.get_args(tp))


def _role(m: BaseMessage) -> str | None:
    if isinstance(m, HumanMessage):
        return "user"
    if isinstance(m, AIMessage):
        return "assistant"
    if isinstance(m, SystemMessage):
        return "system"
    if isinstance(m, ChatMessage) and m.role in {"user", "assistant", "system"}:
        return m.role
    return None


def _attach(message: BaseMessage, decision: GuardedDecision) -> BaseMessage:
    meta = {**(message.response_metadata or {}), DECISION_KEY: decision.model_dump(mode="json")}
    return message.model_copy(update={"response_metadata": meta})


class GuardedRunnable(RunnableSerializable[Any, Any]):
    """A Runnable that guards another: checks the request first, the reply after (or while it streams).

    When the request is not answered, the wrapped runnable is never called and the constructive
    reply comes back in its output type: an `AIMessage` for chat models and message-producing
    chains, a `str` for string chains. Every decision is sent as the custom callback event
    `"guard_decision"` (see `DecisionCollector`) and, for message outputs, stored in
    `response_metadata["guard_decision"]` (read it with `decision_from`). Streams are checked
    every `check_every` chunks and at the end; chunks are released only after the text they
    complete has passed, so a harmful reply is cut before it is sent and ends with a
    constructive sentence.

    Args:
        bound: the runnable to guard (a chat model, a chain, any Runnable).
        guard: a `Guard`; `None` loads `Guard.default()` once, on first use.
        check_output: check the reply as well (default True).
        check_every: in streams, check the growing reply every this many chunks.
        output_type: "auto" (from the wrapped runnable's output type), "message" or "str": the
            type of the constructive reply when the request is blocked.
        input_key: for dict inputs, the key holding the user's text (default: the first of
            input/question/query/prompt/text/message/messages present).
        context_key: for dict inputs, the key holding retrieved documents (default: the first
            of context/documents/docs present).
        fail_closed: when the guard raises, refuse (True) or answer (False); `None` follows the
            guard's `policy.fail_closed` (True by default).
        retry: retries with backoff and a per-attempt timeout for the wrapped call.
        audit: an optional `JsonlAuditLog` (anything with `write(decision, prompt=...)`).

    Example:
        >>> from langchain_core.runnables import RunnableLambda
        >>> safe = GuardedRunnable(RunnableLambda(lambda q: "echo " + q), guard=my_guard)  # doctest: +SKIP
        >>> safe.invoke("How do I build a pipe bomb?")  # doctest: +SKIP
        "I can't help with making weapons or hurting anyone. ..."
        >>> (safe | StrOutputParser()).invoke("Write a poem about the sea.")  # doctest: +SKIP
        'echo Write a poem about the sea.'
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    bound: Runnable[Any, Any]
    guard: Any = None
    check_output: bool = True
    check_every: int = Field(DEFAULT_CHECK_EVERY, ge=1)
    output_type: Literal["auto", "message", "str"] = "auto"
    input_key: str | None = None
    context_key: str | None = None
    fail_closed: bool | None = None
    retry: RetryPolicy | None = None
    audit: Any = None

    def __init__(self, bound: Runnable[Any, Any], guard: Any = None, **kwargs: Any) -> None:
        super().__init__(bound=bound, guard=guard, **kwargs)

    # ------------------------------------------------------------------ Runnable metadata
    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return self.bound.InputType

    @property
    def OutputType(self) -> Any:  # noqa: N802
        return self.bound.OutputType

    def get_input_schema(self, config: RunnableConfig | None = None) -> Any:
        return self.bound.get_input_schema(config)

    def get_output_schema(self, config: RunnableConfig | None = None) -> Any:
        return self.bound.get_output_schema(config)

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return super().get_name(suffix, name=name or self.name or f"Guarded{self.bound.get_name()}")

    # ------------------------------------------------------------------ helpers
    def _checker(self) -> Checker:
        guard = self.guard if self.guard is not None else _shared_default("guard")
        return Checker(guard, fail_closed=self.fail_closed, audit=self.audit)

    def _extract(self, value: Any) -> tuple[str, list[dict[str, str]] | None, list[Any] | None]:
        """(prompt, history, context) from any input a chain accepts."""
        context = None
        if isinstance(value, dict):
            ckey = self.context_key or next((k for k in _CONTEXT_KEYS if k in value), None)
            if ckey is not None and value.get(ckey) is not None:
                raw = value[ckey]
                context = [raw] if isinstance(raw, str) else list(raw)
            key = self.input_key or next((k for k in _PROMPT_KEYS if k in value), None)
            if key is None:
                texts = [k for k, v in value.items() if isinstance(v, str) and k != ckey]
                key = texts[0] if len(texts) == 1 else None
            if key is None or key not in value:
                raise InputError(f"cannot tell which key of {sorted(value)} holds the user's text; "
                                 f"pass GuardedRunnable(..., input_key='...')")
            value = value[key]
        if isinstance(value, str):
            return value, None, context
        if isinstance(value, PromptValue):
            value = value.to_messages()
        if isinstance(value, BaseMessage):
            value = [value]
        if isinstance(value, (list, tuple)):
            messages = convert_to_messages(value)
            last = max((i for i, m in enumerate(messages) if _role(m) == "user"), default=None)
            if last is None:
                raise InputError("the input messages contain no user message to check")
            history = [{"role": r, "content": text_of(m)} for m in messages[:last] if (r := _role(m))]
            return text_of(messages[last]), history or None, context
        raise InputError(f"cannot read a prompt from a {type(value).__name__}; pass a str, messages, "
                         f"a PromptValue or a dict with input_key")

    def _wants_message(self, sample: Any = None) -> bool:
        if sample is not None and not isinstance(sample, str):
            return isinstance(sample, BaseMessage)
        if self.output_type != "auto":
            return self.output_type == "message"
        try:
            return _is_message_type(self.bound.OutputType)
        except Exception:  # noqa: BLE001 - some runnables cannot say; fall back to str
            return False

    def _reply(self, decision: GuardedDecision, sample: Any = None, *, chunk: bool = False) -> Any:
        text = decision.response or ""
        if not self._wants_message(sample):
            return text
        meta = {DECISION_KEY: decision.model_dump(mode="json")}
        if chunk:
            return AIMessageChunk(content=text, response_metadata=meta, chunk_position="last")
        return AIMessage(content=text, response_metadata=meta)

    def _deliver(self, output: Any, decision: GuardedDecision) -> Any:
        if decision.blocked:
            return self._reply(decision, output)
        return _attach(output, decision) if isinstance(output, BaseMessage) else output

    # ------------------------------------------------------------------ invoke
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:  # noqa: A002
        return self._call_with_config(self._invoke, input, ensure_config(config), **kwargs)

    def _invoke(self, value: Any, run_manager: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        checker = self._checker()
        prompt, history, context = self._extract(value)
        d = checker.check_input(prompt, history, context)
        if not d.blocked:
            start = time.perf_counter()
            output = call_with_retry(lambda: self.bound.invoke(value, config, **kwargs), self.retry)
            call_ms = (time.perf_counter() - start) * 1000
            reply = checker.check_output(prompt, text_of(output)) if self.check_output else None
            d = merge(d, reply, call_ms=call_ms)
            result = self._deliver(output, d)
        else:
            result = self._reply(d)
        checker.finish(d, prompt)
        dispatch_custom_event(DECISION_EVENT, d, config=config)
        return result

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:  # noqa: A002
        return await self._acall_with_config(self._ainvoke, input, ensure_config(config), **kwargs)

    async def _ainvoke(self, value: Any, run_manager: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        checker = self._checker()
        prompt, history, context = self._extract(value)
        d = await checker.acheck_input(prompt, history, context)
        if not d.blocked:
            start = time.perf_counter()
            output = await acall_with_retry(lambda: self.bound.ainvoke(value, config, **kwargs), self.retry)
            call_ms = (time.perf_counter() - start) * 1000
            reply = await checker.acheck_output(prompt, text_of(output)) if self.check_output else None
            d = merge(d, reply, call_ms=call_ms)
            result = self._deliver(output, d)
        else:
            result = self._reply(d)
        checker.finish(d, prompt)
        await adispatch_custom_event(DECISION_EVENT, d, config=config)
        return result

    # ------------------------------------------------------------------ streaming
    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:  # noqa: A002
        yield from self._transform_stream_with_config(iter([input]), self._stream, config, **kwargs)

    def _stream(self, inputs: Iterator[Any], run_manager: Any, config: RunnableConfig,
                **kwargs: Any) -> Iterator[Any]:
        value = next(iter(inputs))
        checker = self._checker()
        prompt, history, context = self._extract(value)
        d = checker.check_input(prompt, history, context)
        if d.blocked:
            checker.finish(d, prompt)
            dispatch_custom_event(DECISION_EVENT, d, config=config)
            yield self._reply(d, chunk=True)
            return
        start = time.perf_counter()
        it, first = first_with_retry(lambda: self.bound.stream(value, config, **kwargs), self.retry)
        gate = StreamGate(self.check_every if self.check_output else 1)
        last_reply: GuardedDecision | None = None
        try:
            chunk = first
            while chunk is not EMPTY:
                if gate.add(chunk, text_of(chunk)):
                    if self.check_output:
                        last_reply = checker.check_output(prompt, gate.text)
                        if last_reply.blocked:
                            break
                    yield from gate.passed()
                chunk = next(it, EMPTY)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # stops the producer (e.g. HostChatModel generation) when we cut
        call_ms = (time.perf_counter() - start) * 1000
        if self.check_output and (last_reply is None or (gate.unchecked and not last_reply.blocked)):
            last_reply = checker.check_output(prompt, gate.text)
        final: GuardedDecision | None = None
        for c in self._end_stream(checker, gate, d, last_reply, call_ms, prompt):
            if isinstance(c, GuardedDecision):
                final = c
            else:
                yield c
        dispatch_custom_event(DECISION_EVENT, final, config=config)

    async def astream(self, input: Any, config: RunnableConfig | None = None,  # noqa: A002
                      **kwargs: Any) -> AsyncIterator[Any]:
        async def one() -> AsyncIterator[Any]:
            yield input

        async for chunk in self._atransform_stream_with_config(one(), self._astream, config, **kwargs):
            yield chunk

    async def _astream(self, inputs: AsyncIterator[Any], run_manager: Any, config: RunnableConfig,
                       **kwargs: Any) -> AsyncIterator[Any]:
        value = None
        async for value in inputs:
            break
        checker = self._checker()
        prompt, history, context = self._extract(value)
        d = await checker.acheck_input(prompt, history, context)
        if d.blocked:
            checker.finish(d, prompt)
            await adispatch_custom_event(DECISION_EVENT, d, config=config)
            yield self._reply(d, chunk=True)
            return
        start = time.perf_counter()
        it, first = await afirst_with_retry(lambda: self.bound.astream(value, config, **kwargs), self.retry)
        gate = StreamGate(self.check_every if self.check_output else 1)
        last_reply: GuardedDecision | None = None
        try:
            chunk = first
            while chunk is not EMPTY:
                if gate.add(chunk, text_of(chunk)):
                    if self.check_output:
                        last_reply = await checker.acheck_output(prompt, gate.text)
                        if last_reply.blocked:
                            break
                    for c in gate.passed():
                        yield c
                try:
                    chunk = await it.__anext__()
                except StopAsyncIteration:
                    chunk = EMPTY
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()
        call_ms = (time.perf_counter() - start) * 1000
        if self.check_output and (last_reply is None or (gate.unchecked and not last_reply.blocked)):
            last_reply = await checker.acheck_output(prompt, gate.text)
        final: GuardedDecision | None = None
        for c in self._end_stream(checker, gate, d, last_reply, call_ms, prompt):
            if isinstance(c, GuardedDecision):
                final = c
            else:
                yield c
        await adispatch_custom_event(DECISION_EVENT, final, config=config)

    def _end_stream(self, checker: Checker, gate: StreamGate, d: GuardedDecision,
                    reply: GuardedDecision | None, call_ms: float, prompt: str) -> Iterator[Any]:
        """The chunks that end a stream, then (last) the final decision for the caller to dispatch."""
        final = merge(d, reply, stage="stream", call_ms=call_ms)
        if final.blocked:
            final = gate.cut(final)
            yield self._reply(final.model_copy(update={"response": closing_sentence(final)}), gate.first, chunk=True)
        else:
            out, last = gate.finish()
            final = final.model_copy(update={"chunks_sent": gate.chunks_sent})
            yield from out
            if isinstance(last, BaseMessage):
                yield _attach(last, final)
            elif last is not None:
                yield last
            elif self._wants_message(gate.first):
                yield AIMessageChunk(content="", response_metadata={DECISION_KEY: final.model_dump(mode="json")},
                                     chunk_position="last")
        checker.finish(final, prompt)
        yield final


# ====================================================================== chat model
