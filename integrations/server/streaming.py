"""Streamed replies: the backend's pieces pass the same `GatedStream` as `GuardedRunnable`'s
streams, then go out as OpenAI ``chat.completion.chunk`` server-sent events.

A piece is sent only after the text it completes has passed `check_output` (checked every
`check_every` pieces and at the end, through `Checker.stream_checker`). A reply that turns
harmful is cut: the unsent rest is dropped and a constructive sentence ends the stream. A
backend that fails mid-stream ends it with an OpenAI ``error`` event (the held, unchecked
pieces are dropped). The last chunk carries the decision in ``guard``; then ``data: [DONE]``.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator

from integrations._core import GatedStream, GuardedDecision, StreamEnd
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
        return ChatCompletionChunk(
            id=self.id,
            created=self.created,
            model=self.model,
            guard=guard,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)],
        ).sse()

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


async def _gated(
    gw: Gateway,
    conv: Conversation,
    d: GuardedDecision,
    chunks: _Chunks,
    it: AsyncIterator[StreamDelta],
    first: StreamDelta | None,
    start: float,
) -> AsyncIterator[str]:
    checker, prompt = gw.checker, conv.prompt
    stream: GatedStream[str] = GatedStream(
        checker, d, prompt, check_every=gw.config.check_every, started=start
    )
    finish = "stop"

    async def texts() -> AsyncIterator[str]:
        """The backend's non-empty texts, from `first` on; notes the finish reason as it goes."""
        nonlocal finish
        delta = first
        try:
            while delta is not None:
                finish = delta.finish_reason or finish
                if delta.text:
                    yield delta.text
                delta = await gw.next_delta(it)
        finally:
            await _close(it)  # at once when the gate cuts, so the backend stops generating

    try:
        with checker.recording_failure(d, prompt):  # a client gone before the first piece is recorded
            yield chunks.start()
        # aclosing: a client that stops reading closes (and records) the gated stream at once
        async with contextlib.aclosing(stream.arun(texts())) as released:
            async for text in released:
                yield chunks.text(text)
    except BackendError as exc:
        yield error_event(exc)  # the held pieces were never checked whole: dropped
        return
    finally:
        await _close(it)  # when the client left before `texts` started (closing twice is harmless)
    for event in _ending(stream.end(), finish, chunks):
        if isinstance(event, GuardedDecision):
            checker.finish(event, prompt)
        else:
            yield event


def _ending(end: StreamEnd[str], finish: str, chunks: _Chunks) -> Iterator[str | GuardedDecision]:
    """The events that end a checked stream, and (before the last one) the final decision."""
    if end.closing is not None:
        yield chunks.text(end.closing)
        finish = CONTENT_FILTER
    else:
        for text in [*end.chunks, *([end.last] if end.last is not None else [])]:
            yield chunks.text(text)
    yield end.decision
    yield chunks.end(finish, end.decision)
    yield DONE


async def _aiter(events: list[str]) -> AsyncIterator[str]:
    for e in events:
        yield e


async def _close(it: AsyncIterator[StreamDelta]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):  # closing a broken backend stream must not hide its error
            await aclose()
