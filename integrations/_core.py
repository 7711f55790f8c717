"""Machinery shared by the integrations: guarded checks with fail modes, merged decisions, the
stream gate and the loop that drives it (`GatedStream`).

Nothing here imports LangChain, so the decorator works without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, cast

from pydantic import Field

from guard.decision import Action, Decision, Evidence
from guard.decision.constructive import constructive_response
from integrations.reliability import EMPTY

T = TypeVar("T")

GUARD_UNAVAILABLE = "guard_unavailable"
DEFAULT_CHECK_EVERY = 8


class GuardedDecision(Decision):
    """A `Decision` as seen by a wrapper: which stage decided, and what the stream had sent.

    It is a `Decision` (same fields, same `blocked`), with the extra facts a wrapped call has.

    Attributes:
        stage: "input" (the request was decided before the call), "output" (the reply was
            checked as a whole) or "stream" (the reply was checked while it streamed).
        cut: True when a stream was stopped because the reply turned harmful.
        sent_text: the reply text already delivered to the caller before the cut (streams).
        chunks_sent: how many chunks were delivered before the cut or the end (streams).
        guard_ms: time spent in the guard for this request, all checks together.
        call_ms: time spent in the wrapped call itself; `None` when it was not called.

    Example:
        >>> d = GuardedDecision(action=Action.ANSWER, stage="output", guard_ms=3.0, call_ms=120.0)
        >>> d.blocked, d.stage
        (False, 'output')
    """

    stage: Literal["input", "output", "stream"] = "input"
    cut: bool = False
    sent_text: str = ""
    chunks_sent: int = 0
    guard_ms: float = 0.0
    call_ms: float | None = None
    prompt_sha256: str | None = Field(
        default=None, description="hash of the prompt, for joining with audit logs"
    )


def prompt_hash(prompt: str) -> str:
    """A stable id of a prompt that does not reveal it (sha256 of its UTF-8 bytes)."""
    return hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()


def closing_sentence(decision: Decision) -> str:
    """What a cut stream ends with: a short stop notice and the constructive reply."""
    return "\n\nI'm going to stop this reply here. " + (decision.response or "")


def text_of(value: Any) -> str:
    """The text of an output to check: a str, a message's text, a structured output's fields as
    JSON (every field, not one named ``text``), else its JSON or `str` form."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not hasattr(value, "content"):  # a structured output (pydantic), not a message
        import json

        return json.dumps(dump(mode="json"), ensure_ascii=False, default=str)
    text = getattr(value, "text", None)
    if isinstance(text, str):  # langchain-core >= 1: BaseMessage.text is a property
        return text
    if callable(text):  # older langchain-core: a method
        out = text()
        if isinstance(out, str):
            return out
    content = getattr(value, "content", None)
    if isinstance(content, str):
        return content
    try:
        import json

        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


class Checker:
    """Runs the guard for one wrapper, turning guard failures into the configured fail mode.

    Args:
        guard: a `Guard` (anything with `check` and `check_output`).
        fail_closed: refuse when the guard raises (default: the guard's `policy.fail_closed`,
            True when it has none). False answers anyway and says so in the reasons.
        audit: an optional sink with `write(decision, prompt=...)`.
        on_decision: an optional callback receiving every final decision.
    """

    def __init__(
        self,
        guard: Any,
        *,
        fail_closed: bool | None = None,
        audit: Any = None,
        on_decision: Callable[[GuardedDecision], Any] | None = None,
    ) -> None:
        self.guard = guard
        if fail_closed is None:
            fail_closed = bool(getattr(getattr(guard, "policy", None), "fail_closed", True))
        self.fail_closed = fail_closed
        self.audit = audit
        self.on_decision = on_decision

    # ------------------------------------------------------------------ checks
    def check_input(
        self,
        prompt: str,
        history: Sequence[dict[str, str]] | None = None,
        context: Sequence[Any] | None = None,
    ) -> GuardedDecision:
        start = time.perf_counter()
        try:
            d = self.guard.check(prompt, history=history, context=context)
        except Exception as exc:  # noqa: BLE001 - any guard failure is an unknown state
            d = unavailable(exc, self.fail_closed)
        return _as_guarded(d, "input", start, prompt)

    def check_many(self, texts: Sequence[str]) -> list[GuardedDecision]:
        """One input decision per text, batched through `check_batch` when the guard has it."""
        if not texts:
            return []
        start = time.perf_counter()
        batch = getattr(self.guard, "check_batch", None)
        try:
            ds = list(batch(list(texts))) if callable(batch) else [self.guard.check(t) for t in texts]
        except Exception as exc:  # noqa: BLE001 - any guard failure is an unknown state
            ds = [unavailable(exc, self.fail_closed) for _ in texts]
        return [_as_guarded(d, "input", start, t) for d, t in zip(ds, texts)]

    def check_output(self, prompt: str, reply: str) -> GuardedDecision:
        return self.output_decision(prompt, lambda: self.guard.check_output(prompt, reply))

    def output_decision(self, prompt: str, decide: Callable[[], Any]) -> GuardedDecision:
        """`decide()` (a reply check) as an output decision; a failure is an unknown state."""
        start = time.perf_counter()
        try:
            d = decide()
        except Exception as exc:  # noqa: BLE001
            d = unavailable(exc, self.fail_closed)
        return _as_guarded(d, "output", start, prompt)

    def stream_checker(self, prompt: str) -> ReplyChecker:
        """`check_output` for a reply that grows (`ReplyChecker`): call it with the text so far,
        again and again, then `finish` with the whole reply."""
        return ReplyChecker(self, prompt)

    async def acheck_input(
        self,
        prompt: str,
        history: Sequence[dict[str, str]] | None = None,
        context: Sequence[Any] | None = None,
    ) -> GuardedDecision:
        return await asyncio.to_thread(self.check_input, prompt, history, context)

    async def acheck_output(self, prompt: str, reply: str) -> GuardedDecision:
        return await asyncio.to_thread(self.check_output, prompt, reply)

    # ------------------------------------------------------------------ results
    @contextlib.contextmanager
    def recording_failure(self, decision: GuardedDecision, prompt: str) -> Iterator[None]:
        """Around the wrapped call: when it raises, record `decision` with the failure named, then re-raise.

        The audit log keeps one record per request even when the call never returns.
        """
        try:
            yield
        except BaseException as exc:
            if isinstance(exc, (GeneratorExit, asyncio.CancelledError)):
                note = "the caller stopped reading (or cancelled) before the reply was complete"
            else:
                note = (
                    f"the wrapped call failed ({type(exc).__name__}: {str(exc)[:200]}); no reply was produced"
                )
            try:
                self.finish(decision.model_copy(update={"reasons": [*decision.reasons, note]}), prompt)
            except Exception:  # noqa: BLE001 - the caller must see the call's own error
                pass
            raise

    def finish(self, decision: GuardedDecision, prompt: str) -> GuardedDecision:
        """Record the final decision (audit sink, callback) and return it."""
        if self.audit is not None:
            self.audit.write(decision, prompt=prompt)
        if self.on_decision is not None:
            self.on_decision(decision)
        return decision


def unavailable(exc: BaseException, fail_closed: bool) -> Decision:
    """The decision when the guard itself failed: refuse (fail closed) or answer (fail open)."""
    mode = "fail closed" if fail_closed else "fail open (configured)"
    reason = f"guard unavailable ({type(exc).__name__}: {exc}); {mode}"
    if fail_closed:
        return Decision(
            action=Action.REFUSE,
            category=GUARD_UNAVAILABLE,
            reasons=[reason],
            response=constructive_response(Action.ABSTAIN, GUARD_UNAVAILABLE),
        )
    return Decision(action=Action.ANSWER, reasons=[reason])


def _as_guarded(d: Decision, stage: str, start: float, prompt: str) -> GuardedDecision:
    elapsed = (time.perf_counter() - start) * 1000
    data = d.model_dump()
    data.update(stage=stage, guard_ms=elapsed, prompt_sha256=prompt_hash(prompt))
    return GuardedDecision(**{k: v for k, v in data.items() if k in GuardedDecision.model_fields})


def merge(
    first: GuardedDecision,
    reply: GuardedDecision | None,
    *,
    stage: str = "output",
    call_ms: float | None = None,
) -> GuardedDecision:
    """Combine the request decision with the reply decision into the one the caller sees.

    The request's scores keep their names; the reply's get a `reply_` prefix. When the reply
    is blocked, its action, category and constructive response win.

    Example:
        >>> a = GuardedDecision(action=Action.ANSWER, scores={"harmfulness": 0.1}, guard_ms=1)
        >>> b = GuardedDecision(action=Action.REFUSE, category="x", response="no", scores={"harmfulness": 0.9},
        ...                     guard_ms=2)
        >>> m = merge(a, b)
        >>> m.action, m.scores["reply_harmfulness"], m.guard_ms
        (<Action.REFUSE: 'refuse'>, 0.9, 3.0)
    """
    if reply is None:
        return first.model_copy(update={"stage": "input" if call_ms is None else stage, "call_ms": call_ms})
    scores = dict(first.scores)
    scores.update({f"reply_{k}": v for k, v in reply.scores.items()})
    evidence = list(first.evidence) + [
        Evidence(
            source=f"reply:{e.source}", name=e.name, value=e.value, threshold=e.threshold, detail=e.detail
        )
        for e in reply.evidence
    ]
    prefix = "reply blocked: " if reply.blocked else "reply: "
    reasons = list(first.reasons) + [prefix + r for r in reply.reasons]
    update: dict[str, Any] = dict(
        scores=scores,
        evidence=evidence,
        reasons=reasons,
        stage=stage,
        call_ms=call_ms,
        guard_ms=first.guard_ms + reply.guard_ms,
    )
    if reply.blocked:
        update.update(action=reply.action, category=reply.category, response=reply.response, rule=reply.rule)
    return first.model_copy(update=update)


class ReplyChecker:
    """The reply checks of one stream: call it with the text so far, `finish` with the whole reply.

    With a guard that has `reply_stream` (`guard.Guard`), a check costs the new text: each
    complete reply window is read once over the stream, and the growing last one may wait for
    the next complete window when the guard's screen says the reply head would not block it
    (`screens` is then True, and `finish` reads the whole reply). Any other guard gets
    `check_output` at every call, with the sentence embeddings of the reply's windows kept
    between calls.

    Example:
        >>> class Keyword:  # a guard without reply_stream
        ...     def check_output(self, prompt, reply):
        ...         return Decision(action=Action.REFUSE if "bomb" in reply else Action.ANSWER)
        >>> check = Checker(Keyword()).stream_checker("hi")
        >>> check("tea").blocked, check.finish("tea and a bomb").blocked, check.screens
        (False, True, False)
    """

    def __init__(self, checker: Checker, prompt: str) -> None:
        self.checker = checker
        self.prompt = prompt
        make = getattr(checker.guard, "reply_stream", None)
        self._stream = make(prompt) if callable(make) else None
        self._vectors: dict[Any, Any] = {}

    @property
    def screens(self) -> bool:
        """True when a check may leave the reply's last window for later (`finish` reads it)."""
        return self._stream is not None

    def __call__(self, reply: str) -> GuardedDecision:
        stream = self._stream
        if stream is not None:
            return self.checker.output_decision(self.prompt, lambda: stream.check(reply))
        return self._plain(reply)

    def finish(self, reply: str) -> GuardedDecision:
        """The whole reply, read by every detector of the reply side."""
        stream = self._stream
        if stream is not None:
            return self.checker.output_decision(self.prompt, lambda: stream.finish(reply))
        return self._plain(reply)

    def _plain(self, reply: str) -> GuardedDecision:
        from classifiers.embeddings import shared_embeddings

        with shared_embeddings(self._vectors):
            return self.checker.check_output(self.prompt, reply)


class StreamGate:
    """Holds streamed chunks until the text they complete has passed the reply check.

    Chunks arrive with `add`; every `check_every` chunks the caller checks `text` and calls
    `passed` (which returns the chunks safe to send, keeping the newest one back so the final
    decision can ride on it) or `cut`. Nothing reaches the caller unchecked.

    Example:
        >>> g = StreamGate(check_every=2)
        >>> g.add("a", "Hel"), g.add("b", "lo")
        (False, True)
        >>> g.text, g.passed()
        ('Hello', ['a'])
        >>> g.add("c", "!"), g.finish()
        (False, (['b'], 'c'))
    """

    def __init__(self, check_every: int = DEFAULT_CHECK_EVERY) -> None:
        if check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every}")
        self.check_every = check_every
        self._texts: list[str] = []
        self._held: list[Any] = []  # checked, not yet sent
        self._pending: list[Any] = []  # not yet checked
        self._sent_chars = 0
        self.chunks_sent = 0
        self.first: Any = None

    def add(self, chunk: Any, text: str) -> bool:
        """Take one chunk; True when a check is due."""
        if self.first is None:
            self.first = chunk
        self._pending.append(chunk)
        self._texts.append(text)
        return len(self._pending) >= self.check_every

    @property
    def text(self) -> str:
        """Everything received so far (what the next check reads)."""
        return "".join(self._texts)

    @property
    def sent_text(self) -> str:
        return self.text[: self._sent_chars]

    @property
    def unchecked(self) -> bool:
        return bool(self._pending)

    def passed(self) -> list[Any]:
        """The check passed: return the chunks to send now (all checked ones but the newest)."""
        self._held.extend(self._pending)
        self._pending = []
        out, self._held = self._held[:-1], self._held[-1:]
        self._mark_sent(len(out))
        return out

    def finish(self) -> tuple[list[Any], Any]:
        """The stream ended and its full text passed: (chunks to send, the last chunk or None)."""
        self._held.extend(self._pending)
        self._pending = []
        if not self._held:
            return [], None
        out, last = self._held[:-1], self._held[-1]
        self._held = []
        self._mark_sent(len(out) + 1)
        return out, last

    def cut(self, reply: GuardedDecision) -> GuardedDecision:
        """The reply turned harmful: drop what is unsent and describe what was already sent."""
        self._held, self._pending = [], []
        note = (
            f"stream cut after {self.chunks_sent} chunk(s) sent ({self._sent_chars} characters "
            f"already delivered); the unsent rest was withheld"
        )
        return reply.model_copy(
            update={
                "cut": True,
                "sent_text": self.sent_text,
                "chunks_sent": self.chunks_sent,
                "reasons": [*reply.reasons, note],
            }
        )

    def _mark_sent(self, n: int) -> None:
        # texts are in chunk order; the sent ones are the first chunks_sent + n
        self.chunks_sent += n
        self._sent_chars = sum(len(t) for t in self._texts[: self.chunks_sent])


@dataclass(frozen=True)
class StreamEnd(Generic[T]):
    """How a gated stream ends: what is left to send, and the decision to record.

    Attributes:
        decision: the final decision (the request's merged with the reply's, stage "stream");
            when blocked, already `StreamGate.cut` (it says what was sent before the cut).
        chunks: the checked chunks still to send, the last one excepted (empty when cut).
        last: the reply's last chunk, to carry the decision; `None` when cut or when the stream
            was empty.
        closing: the text that ends a cut stream (`closing_sentence`); `None` when not cut.
    """

    decision: GuardedDecision
    chunks: list[T]
    last: T | None
    closing: str | None


class GatedStream(Generic[T]):
    """One reply streamed through a `StreamGate`: the loop every streaming wrapper runs.

    `run` (sync) or `arun` (async) takes the wrapped stream and yields only chunks whose text has
    passed the reply check (every `check_every` chunks, then the whole reply at the end); when a
    check blocks, it stops reading, closes the wrapped stream and yields nothing more. `end` then
    says how the stream ends: the rest to send, or the closing sentence of a cut. A failure of the
    wrapped stream, or a caller that stops reading or cancels, is recorded through
    `Checker.recording_failure` and re-raised; `end` is then not called and nothing held is sent.
    The final decision is not recorded here: the caller sends the ending, then calls
    `Checker.finish(end.decision, prompt)` when it chooses.

    Args:
        checker: the wrapper's `Checker`.
        decision: the request's decision (not blocked: the wrapped call was made).
        prompt: the user's prompt, which the reply is checked against.
        check_every: check the growing reply every this many chunks.
        check_output: check the reply at all; False releases every chunk as it comes (kept one
            behind, so the last can carry the decision) and merges no reply decision.
        text: the text of a chunk (default `text_of`).
        started: `time.perf_counter()` when the wrapped call began (default: now), for `call_ms`.

    Example:
        >>> class NoBombs:  # a guard that blocks any reply containing "bomb"
        ...     def check_output(self, prompt, reply):
        ...         bad = "bomb" in reply
        ...         return Decision(action=Action.REFUSE if bad else Action.ANSWER, response="Let's talk safety.")
        >>> c = Checker(NoBombs())
        >>> d = GuardedDecision(action=Action.ANSWER)
        >>> s = GatedStream(c, d, "hi", check_every=2)
        >>> list(s.run(iter(["Hel", "lo", " wo", "rld"])))
        ['Hel', 'lo', ' wo']
        >>> end = s.end()
        >>> end.last, end.decision.blocked, end.decision.chunks_sent
        ('rld', False, 4)
        >>> s = GatedStream(c, d, "hi", check_every=2)
        >>> list(s.run(iter(["Hel", "lo", " a bo", "mb"])))
        ['Hel']
        >>> end = s.end()
        >>> end.decision.cut, end.decision.sent_text, end.closing.endswith("Let's talk safety.")
        (True, 'Hel', True)
    """

    def __init__(
        self,
        checker: Checker,
        decision: GuardedDecision,
        prompt: str,
        *,
        check_every: int = DEFAULT_CHECK_EVERY,
        check_output: bool = True,
        text: Callable[[T], str] = text_of,
        started: float | None = None,
    ) -> None:
        self.checker = checker
        self.decision = decision
        self.prompt = prompt
        self.check_output = check_output
        self.text = text
        self.started = time.perf_counter() if started is None else started
        self.gate = StreamGate(check_every if check_output else 1)
        self.check = checker.stream_checker(prompt)  # the reply's windows embedded once per stream
        self.reply: GuardedDecision | None = None  # the latest reply check
        self.call_ms: float | None = None  # set when the wrapped stream is done

    def run(self, chunks: Iterator[T], first: Any = EMPTY) -> Iterator[T]:
        """Yield the checked chunks of `chunks` (after `first`, when the caller already took it).

        `chunks` is closed when the loop ends, so a cut stops its producer. `first` is `EMPTY`
        (from `integrations.reliability`) when there is none.
        """
        with self.checker.recording_failure(
            self.decision, self.prompt
        ):  # a stream that breaks mid-way is recorded
            try:
                chunk = first if first is not EMPTY else next(chunks, EMPTY)
                while chunk is not EMPTY:
                    # not EMPTY: a chunk of the stream (mypy does not narrow on a sentinel)
                    if self.gate.add(chunk, self.text(cast(T, chunk))):
                        if self.check_output:
                            self.reply = self.check(self.gate.text)
                            if self.reply.blocked:
                                break
                        yield from self.gate.passed()
                    chunk = next(chunks, EMPTY)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()  # stops the producer (e.g. HostChatModel generation) when we cut
        self.call_ms = (time.perf_counter() - self.started) * 1000
        if self._final_check_due():
            self.reply = self.check.finish(self.gate.text)

    async def arun(self, chunks: AsyncIterator[T], first: Any = EMPTY) -> AsyncGenerator[T, None]:
        """Async `run`: the checks run in a worker thread, `chunks` is closed with `aclose`.

        Consume it under `contextlib.aclosing`, so a caller that stops reading closes (and records)
        it at once rather than when it is garbage-collected.
        """
        with self.checker.recording_failure(
            self.decision, self.prompt
        ):  # a stream that breaks mid-way is recorded
            try:
                chunk = first if first is not EMPTY else await _anext(chunks)
                while chunk is not EMPTY:
                    if self.gate.add(chunk, self.text(chunk)):
                        if self.check_output:
                            self.reply = await asyncio.to_thread(self.check, self.gate.text)
                            if self.reply.blocked:
                                break
                        for c in self.gate.passed():
                            yield c
                    chunk = await _anext(chunks)
            finally:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
        self.call_ms = (time.perf_counter() - self.started) * 1000
        if self._final_check_due():
            self.reply = await asyncio.to_thread(self.check.finish, self.gate.text)

    def end(self) -> StreamEnd[T]:
        """After `run` or `arun` is exhausted: the chunks that end the stream and the final decision."""
        final = merge(self.decision, self.reply, stage="stream", call_ms=self.call_ms)
        if final.blocked:
            final = self.gate.cut(final)
            return StreamEnd(final, [], None, closing_sentence(final))
        out, last = self.gate.finish()
        return StreamEnd(final.model_copy(update={"chunks_sent": self.gate.chunks_sent}), out, last, None)

    def _final_check_due(self) -> bool:
        # the whole reply is checked once more unless it was cut, or that exact text was already
        # read whole (a screening checker may have left its last window for the end)
        if not self.check_output:
            return False
        if self.reply is None:
            return True
        return not self.reply.blocked and (self.gate.unchecked or self.check.screens)


async def _anext(it: AsyncIterator[T]) -> Any:
    try:
        return await it.__anext__()
    except StopAsyncIteration:
        return EMPTY


_default_lock = threading.Lock()
_defaults: dict[str, Any] = {}


def shared_default(kind: str) -> Any:
    """The process-wide default host or guard, loaded once on first use (never in a constructor)."""
    with _default_lock:
        if kind not in _defaults:
            if kind == "host":
                from guard.whitebox.host import HostModel

                _defaults[kind] = HostModel.default()
            else:
                from guard import Guard

                _defaults[kind] = Guard.default()
        return _defaults[kind]
