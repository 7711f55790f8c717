"""`GatedStream`: the one loop behind `GuardedRunnable.stream/astream` and the gateway's streams.

Nothing is released before the text it completes was checked, a cut closes the source and ends
with the closing sentence, and a failure or a caller that stops reading is recorded and re-raised.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from guard.decision import Action
from integrations._core import Checker, GatedStream, GuardedDecision, closing_sentence
from integrations.audit import JsonlAuditLog
from integrations.reliability import EMPTY
from tests.test_integrations_support import KeywordGuard

OK = GuardedDecision(action=Action.ANSWER)


class Recording(KeywordGuard):
    """A `KeywordGuard` that keeps every reply text it was asked to check."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.checked: list[str] = []

    def check_output(self, prompt, reply):
        self.checked.append(reply)
        return super().check_output(prompt, reply)


class Source:
    """A sync stream of chunks that says whether it was closed and how far it was read."""

    def __init__(self, chunks, fail: Exception | None = None) -> None:
        self.chunks, self.fail, self.read, self.closed = list(chunks), fail, 0, False

    def __iter__(self):
        return self

    def __next__(self):
        if self.read == len(self.chunks):
            if self.fail is not None:
                raise self.fail
            raise StopIteration
        self.read += 1
        return self.chunks[self.read - 1]

    def close(self) -> None:
        self.closed = True


class ASource(Source):
    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return next(self)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self.closed = True


def released(stream: GatedStream, chunks, mode: str, first=EMPTY) -> list:
    if mode == "sync":
        return list(stream.run(chunks, first))

    async def main():
        async with contextlib.aclosing(stream.arun(chunks, first)) as it:
            return [c async for c in it]

    return asyncio.run(main())


WORDS = ["The ", "sea ", "is ", "calm ", "and ", "blue."]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_every_released_chunk_was_checked_before_it_left(mode):
    guard = Recording()
    stream = GatedStream(Checker(guard), OK, "poem", check_every=2)
    source = ASource(WORDS) if mode == "async" else Source(WORDS)
    out = released(stream, source, mode)
    end = stream.end()
    assert out + end.chunks + [end.last] == WORDS
    assert end.closing is None and not end.decision.blocked and end.decision.chunks_sent == len(WORDS)
    assert end.decision.stage == "stream" and end.decision.call_ms is not None
    assert guard.checked == ["The sea ", "The sea is calm ", "The sea is calm and blue."]
    assert source.closed


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_prefetched_first_chunk_comes_first(mode):
    stream = GatedStream(Checker(KeywordGuard()), OK, "poem", check_every=1)
    source = ASource(WORDS[1:]) if mode == "async" else Source(WORDS[1:])
    out = released(stream, source, mode, first=WORDS[0])
    end = stream.end()
    assert out + end.chunks + [end.last] == WORDS


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_reply_that_turns_harmful_is_cut_and_its_source_closed(mode):
    chunks = ["Sure. ", "First ", "get ", "a pipe ", "bomb ", "kit ", "and ", "more"]
    stream = GatedStream(Checker(KeywordGuard()), OK, "q", check_every=2)
    source = ASource(chunks) if mode == "async" else Source(chunks)
    out = released(stream, source, mode)
    end = stream.end()
    assert out == ["Sure. ", "First ", "get "]  # "a pipe " was checked, but held back with the bomb
    assert source.closed and source.read == 6  # stopped reading at the check that blocked
    assert end.decision.blocked and end.decision.cut and end.chunks == [] and end.last is None
    assert end.decision.sent_text == "Sure. First get " and end.decision.chunks_sent == 3
    assert end.closing == closing_sentence(end.decision)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_unchecked_tail_is_checked_at_the_end(mode):
    guard = Recording()
    chunks = ["one ", "two ", "bomb"]
    stream = GatedStream(Checker(guard), OK, "q", check_every=2)
    out = released(stream, ASource(chunks) if mode == "async" else Source(chunks), mode)
    assert out == ["one "]
    assert guard.checked == ["one two ", "one two bomb"]
    assert stream.end().decision.blocked


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_without_output_checks_chunks_flow_one_behind(mode):
    guard = Recording()
    stream = GatedStream(Checker(guard), OK, "q", check_every=4, check_output=False)
    out = released(stream, ASource(WORDS) if mode == "async" else Source(WORDS), mode)
    end = stream.end()
    assert out == WORDS[:-1] and end.last == WORDS[-1] and guard.checked == []
    assert end.decision.stage == "stream" and not end.decision.blocked


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_failure_mid_stream_is_recorded_and_raised(mode, tmp_path):
    log = JsonlAuditLog(tmp_path / "a.jsonl")
    stream = GatedStream(Checker(KeywordGuard(), audit=log), OK, "q", check_every=1)
    source = (ASource if mode == "async" else Source)(
        ["Hello, ", "world"], fail=ConnectionError("reset by peer")
    )
    got = []

    async def adrain():
        async with contextlib.aclosing(stream.arun(source)) as it:
            async for c in it:
                got.append(c)

    with pytest.raises(ConnectionError):
        if mode == "sync":
            for c in stream.run(source):
                got.append(c)
        else:
            asyncio.run(adrain())
    assert got == ["Hello, "] and source.closed
    (rec,) = log.read()
    assert any("wrapped call failed (ConnectionError: reset by peer)" in r for r in rec["reasons"])


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_caller_that_stops_reading_is_recorded_and_closes_the_source(mode, tmp_path):
    log = JsonlAuditLog(tmp_path / "a.jsonl")
    stream = GatedStream(Checker(KeywordGuard(), audit=log), OK, "q", check_every=1)
    source = (ASource if mode == "async" else Source)(WORDS)
    if mode == "sync":
        it = stream.run(source)
        next(it)
        it.close()
    else:

        async def main():
            async with contextlib.aclosing(stream.arun(source)) as it:
                async for _ in it:
                    break

        asyncio.run(main())
    assert source.closed
    (rec,) = log.read()
    assert any("stopped reading" in r for r in rec["reasons"])


# ---------------------------------------------------------------------- through GuardedRunnable
LONG = " ".join(f"word{i}" for i in range(40))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_runnable_stream_left_early_is_recorded_once_and_stops_the_model(mode, tmp_path):
    from integrations.langchain import GuardedRunnable
    from tests.test_integrations_support import scripted_chat

    log = JsonlAuditLog(tmp_path / "a.jsonl")
    model = scripted_chat(LONG)
    safe = GuardedRunnable(model, guard=KeywordGuard(), check_every=2, audit=log)
    if mode == "sync":
        it = safe.stream("count")
        first = next(it)
        it.close()
    else:

        async def main():
            async with contextlib.aclosing(safe.astream("count")) as it:
                async for c in it:
                    return c

        first = asyncio.run(main())
    assert first.content == "word0 "
    assert len(model.produced) < 40
    (rec,) = log.read()  # one record: the gated loop's, not one per layer
    assert any("stopped reading" in r for r in rec["reasons"])


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_runnable_stream_read_to_the_end_is_recorded_once(mode, tmp_path):
    from integrations.langchain import GuardedRunnable, decision_from
    from tests.test_integrations_support import scripted_chat

    log = JsonlAuditLog(tmp_path / "a.jsonl")
    safe = GuardedRunnable(scripted_chat(LONG), guard=KeywordGuard(), check_every=3, audit=log)
    if mode == "sync":
        chunks = list(safe.stream("count"))
    else:

        async def main():
            return [c async for c in safe.astream("count")]

        chunks = asyncio.run(main())
    assert "".join(c.content for c in chunks) == LONG
    d = decision_from(chunks[-1])
    assert d.stage == "stream" and d.chunks_sent == len(chunks) and not d.blocked
    (rec,) = log.read()
    assert rec["stage"] == "stream"
