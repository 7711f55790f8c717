"""Streamed replies: the backend's pieces pass the same `StreamGate` as `GuardedRunnable`'s
streams, then go out as OpenAI ``chat.completion.chunk`` server-sent events.

A piece is sent only after the text it completes has passed `check_output` (checked every
`check_every` pieces and at the end, through `Checker.stream_checker`). A reply that turns
harmful is cut: the unsent rest is dropped and a constructive sentence ends the stream. A
backend that fails mid-stream ends it with an OpenAI ``error`` event (the held, unchecked
pieces are dropped). The last chunk carries the decision in ``guard``; then ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator

from integrations._core import GuardedDecision, StreamGate, closing_sentence, merge
from integrations.server.backends.base import BackendError, StreamDelta
from integrations.server.conversation import Conversation
from integrations.server.gateway import CONTENT_FILTER, Gateway
from integrations.server.schemas import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Delta,
    ErrorResponse,
)

DONE = "data: [DONE]\n\n"


class _Chunks:
    """Builds the chunks of one stream (same id, time and model on each)."""

    def __init__(self, model: str) -> None:
        self.id, self.created, self.model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model

    def event(self, delta: Delta, finish: str | None = None, guard: GuardedDecision | None = None) -> str:
        return ChatCompletionChunk(id=self.id, created=self.created, model=self.model, guard=guard,
                                   choices=[ChunkChoice(delta=delta, finish_reason=finish)]).sse()

    def start(self) -> str:
        return self.event(Delta(role="assistant", content=""))

    def text(self, text: str) -> str:
        return self.event(Delta(content=text))

    def end(self, finish: str, guard: GuardedDecision) -> str:
        return self.event(Delta(), finish, guard)


def error_event(exc: BackendError) -> str:
    """An OpenAI-style ``error`` event (the OpenAI client raises `APIError` on it)."""
    body = ErrorResponse.of(str(exc), type="upstream_error", code=exc.code)
    return f"data: {body.model_dump_json()}\n\n"


async def open_stream(gw: Gateway, req: ChatCompletionRequest) -> AsyncIterator[str]:
    """Decide on the request and start the backend's stream; return the events to send.

    The first piece is awaited here, before any byte is sent, so a backend that cannot start
    gives the client a plain 502.

    Raises:
        BackendError: the backend failed or timed out before its first piece.
    """
    conv = Conversation.of(req.messages)
    d = await gw.decide(conv)
    chunks = _Chunks(gw.model_name(req))
    if d.blocked:
        gw.checker.finish(d, conv.prompt)
        return _aiter([chunks.start(), chunks.text(d.response or ""), chunks.end(CONTENT_FILTER, d), DONE])
    start = time.perf_counter()
    it = gw.backend.stream(conv.chat, gw.params(req)).__aiter__()
    try:
        with gw.checker.recording_failure(d, conv.prompt):
            first = await gw.next_delta(it)
    except BaseException:
        await _close(it)
        raise
    return _gated(gw, conv, d, chunks, it, first, start)


async def _gated(gw: Gateway, conv: Conversation, d: GuardedDecision, chunks: _Chunks,
                 it: AsyncIterator[StreamDelta], first: StreamDelta | None, start: float) -> AsyncIterator[str]:
    checker, prompt = gw.checker, conv.prompt
    gate = StreamGate(gw.config.check_every)
    check = checker.stream_checker(prompt)  # the reply's windows embedded once per stream
    last: GuardedDecision | None = None
    finish = "stop"
    try:
        with checker.recording_failure(d, prompt):  # a stream that breaks mid-way is recorded
            yield chunks.start()
            delta = first
            while delta is not None:
                finish = delta.finish_reason or finish
                if delta.text and gate.add(delta.text, delta.text):
                    last = await asyncio.to_thread(check, gate.text)
                    if last.blocked:
                        break
                    for text in gate.passed():
                        yield chunks.text(text)
                delta = await gw.next_delta(it)
    except BackendError as exc:
        yield error_event(exc)  # the held pieces were never checked whole: dropped
        return
    finally:
        await _close(it)
    call_ms = (time.perf_counter() - start) * 1000
    if last is None or (gate.unchecked and not last.blocked):
        last = await asyncio.to_thread(check, gate.text)
    final = merge(d, last, stage="stream", call_ms=call_ms)
    for event in _ending(gate, final, finish, chunks):
        if isinstance(event, GuardedDecision):
            checker.finish(event, prompt)
        else:
            yield event


def _ending(gate: StreamGate, final: GuardedDecision, finish: str,
            chunks: _Chunks) -> Iterator[str | GuardedDecision]:
    """The events that end a checked stream, and (before the last one) the final decision."""
    if final.blocked:
        final = gate.cut(final)
        yield chunks.text(closing_sentence(final))
        finish = CONTENT_FILTER
    else:
        out, tail = gate.finish()
        final = final.model_copy(update={"chunks_sent": gate.chunks_sent})
        for text in [*out, *([tail] if tail is not None else [])]:
            yield chunks.text(text)
    yield final
    yield chunks.end(finish, final)
    yield DONE


async def _aiter(events: list[str]) -> AsyncIterator[str]:
    for e in events:
        yield e


async def _close(it: AsyncIterator[StreamDelta]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):  # closing a broken backend stream must not hide its error
            await aclose()
