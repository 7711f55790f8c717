"""Streamed decoding on a host: transformers' `generate` with a `TextIteratorStreamer`,
`stop_strings` and a deadline: the one decoding loop every caller uses (`HostModel.generate`,
`HostChatModel`, `guarded_generate`).

`generate` runs in a worker thread (copying the caller's context variables) and hands text to the
caller through the streamer. The worker holds the host's lock only while the model runs a forward
pass, so a guard check on the same host can run between two decoding steps. A caller that holds
the host's lock itself (inside `HostModel.intervene`) generates in its own thread instead: a
worker would wait for that lock forever. A `prefill` context
(a `GuardedRunnable` deciding on this very pass) is entered before the prompt's forward pass and
left right after it, before the first token is chosen, so whatever it raises (a blocked request)
ends the generation with no token generated. Closing the stream early (a stream gate that cuts
the reply) stops the worker at its next step.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["GenerationEnd", "TokenStream"]


class GenerationEnd(BaseModel):
    """How a streamed generation ended.

    Attributes:
        input_tokens: tokens of the prompt the host read.
        output_tokens: tokens it generated (the end-of-sequence token not counted).
        finish_reason: ``"stop"`` (end of sequence or a stop string) or ``"length"`` (the token limit).

    Example:
        >>> GenerationEnd(input_tokens=12, output_tokens=3, finish_reason="stop").finish_reason
        'stop'
    """

    model_config = ConfigDict(frozen=True)

    input_tokens: int
    output_tokens: int
    finish_reason: Literal["stop", "length"]


class TokenStream:
    """The host's reply to `ids`, as text pieces while it is generated; `end` once exhausted.

    Pieces never hold a stop string or the start of one (up to the longest stop string's length
    minus one character is held back until it cannot begin one), and never half of a character.
    Iterate it once; closing it before the end (``stream.close()`` or leaving a ``for`` loop
    that is then garbage-collected) stops generation at the next step.

    Args:
        host: a `HostModel` (its `model`, `tokenizer`, `device` and lock are used).
        ids: token ids of the rendered chat.
        max_new_tokens: the most tokens to generate.
        temperature: 0 for greedy decoding, > 0 to sample.
        stop: stop strings: the reply ends before the first one (`generate`'s ``stop_strings``).
        timeout: seconds allowed; a longer generation raises `TimeoutError` from the iteration.
        logits_processor: ``fn(input_ids, scores) -> scores``, called before every new token
            (the first call comes right after the prompt's forward pass).
        prefill: a context manager the prompt's forward pass runs in; it is left before the
            first token is chosen, and what it raises ends the generation (and is raised here).

    Example:
        >>> stream = TokenStream(host, host.encode("Name a colour.").input_ids, max_new_tokens=8)  # doctest: +SKIP
        >>> "".join(stream), stream.end.finish_reason  # doctest: +SKIP
        ('Blue.', 'stop')
    """

    def __init__(
        self,
        host: Any,
        ids: Sequence[int],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        timeout: float | None = None,
        logits_processor: Callable[[Any, Any], Any] | None = None,
        prefill: AbstractContextManager[Any] | None = None,
    ) -> None:
        self.host = host
        self.ids = list(ids)
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        self.stop = [s for s in stop or () if s]
        self.timeout = timeout
        self.logits_processor = logits_processor
        self.prefill = prefill
        self.end: GenerationEnd | None = None
        self._iter: Iterator[str] | None = None

    def __iter__(self) -> Iterator[str]:
        if self._iter is None:
            self._iter = self._run()
        return self._iter

    def read(self) -> tuple[str, int]:
        """The whole reply (surrounding whitespace stripped) and the number of tokens generated."""
        text = "".join(self)
        assert self.end is not None  # set once the stream is exhausted
        return text.strip(), self.end.output_tokens

    def close(self) -> None:
        """Stop generating (at the next step) and wait for the worker to finish."""
        if self._iter is not None:
            close = getattr(self._iter, "close", None)
            if close is not None:
                close()

    def _run(self) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        tok = self.host.tokenizer
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        worker = _Worker(self, streamer)
        hold = max((len(s) for s in self.stop), default=1) - 1
        text, emitted, stopped = "", 0, False
        worker.start()
        try:
            for delta in streamer:
                text += delta
                hit = _first_stop(text, self.stop, max(0, emitted - hold))
                if hit >= 0:
                    text, stopped = text[:hit], True
                    break
                safe = len(text) - hold
                if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                    safe = min(safe, len(text) - 1)
                if safe > emitted:
                    yield text[emitted:safe]
                    emitted = safe
        finally:
            worker.finish()  # on a cut, a stop string or an error: the worker stops at its next step
        worker.raise_error()
        if len(text) > emitted:
            yield text[emitted:]
        n_new, eos = worker.new_tokens()
        finish: Literal["stop", "length"] = "stop" if stopped or eos else "length"
        self.end = GenerationEnd(input_tokens=len(self.ids), output_tokens=n_new, finish_reason=finish)


def _first_stop(text: str, stops: Sequence[str], start: int) -> int:
    """Index of the earliest stop string in ``text[start:]`` (as an index of `text`), or -1."""
    return min((i for i in (text.find(s, start) for s in stops) if i >= 0), default=-1)


class _Worker:
    """The thread that runs `generate` for one `TokenStream`."""

    def __init__(self, stream: TokenStream, streamer: Any) -> None:
        self.stream = stream
        self.streamer = streamer
        self.cancel = threading.Event()
        self.timed_out = False
        self.error: BaseException | None = None
        self.output: Any = None
        self.started = time.monotonic()
        self.caller_holds_lock = stream.host.lock.held_here()
        self.thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._target,), daemon=True, name="guard-generate"
        )

    def start(self) -> None:
        if self.caller_holds_lock:
            # inside `intervene` or `record` of this thread: a worker would wait for the lock
            # forever, so generate here, at once (the pieces then come when it is done)
            self._target()
        else:
            self.thread.start()

    def finish(self) -> None:
        self.cancel.set()  # the streamer's queue is unbounded: the worker never waits on the caller
        if self.thread.is_alive():
            self.thread.join()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error
        if self.timed_out:
            limit = self.stream.timeout
            raise TimeoutError(
                f"generation took longer than timeout={limit}s ({self.new_tokens()[0]} tokens); "
                "raise timeout or lower max_tokens"
            )

    def new_tokens(self) -> tuple[int, bool]:
        """(tokens generated without a final end-of-sequence token, whether it ended on one)."""
        if self.output is None:
            return 0, False
        new = [int(t) for t in self.output[0, len(self.stream.ids) :].tolist()]
        eos = _eos_ids(self.stream.host)
        ended = bool(new) and new[-1] in eos
        return len(new) - int(ended), ended

    # ------------------------------------------------------------------ in the worker thread
    def _target(self) -> None:
        try:
            with self._stepwise_lock():
                self._generate()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.error = exc
        finally:
            self.streamer.end()  # the caller's loop ends even when generate failed early

    def _generate(self) -> None:
        torch = _torch()
        s = self.stream
        host = s.host
        from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        if s.timeout is not None and time.monotonic() - self.started > s.timeout:
            self.timed_out = True  # before the prompt's forward pass: nothing was read or decided
            return
        prefill = contextlib.ExitStack()
        if s.prefill is not None:
            with contextlib.ExitStack() as entering:  # what `s.prefill` raises on entry unwinds it
                entering.enter_context(host.lock)  # no other forward between the hooks and the prefill
                entering.enter_context(s.prefill)
                prefill = entering.pop_all()
        worker = self

        class _Steps(LogitsProcessor):
            def __call__(self, input_ids: Any, scores: Any) -> Any:
                prefill.close()  # after the prompt's forward pass, before the first token
                if s.logits_processor is not None:
                    scores = s.logits_processor(input_ids, scores)
                return scores

        class _Control(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                late = s.timeout is not None and time.monotonic() - worker.started > s.timeout
                worker.timed_out = worker.timed_out or late
                halt = late or worker.cancel.is_set()
                return torch.full((input_ids.shape[0],), halt, dtype=torch.bool, device=input_ids.device)

        kwargs: dict[str, Any] = {
            "max_new_tokens": s.max_new_tokens,
            "pad_token_id": host.tokenizer.pad_token_id,
            "streamer": self.streamer,
            "logits_processor": LogitsProcessorList([_Steps()]),
            "stopping_criteria": StoppingCriteriaList([_Control()]),
        }
        if s.temperature > 0:
            kwargs.update(do_sample=True, temperature=s.temperature)
        else:
            kwargs.update(do_sample=False)
        if s.stop:
            kwargs.update(stop_strings=list(s.stop), tokenizer=host.tokenizer)
        ids = torch.tensor([s.ids], device=host.device)
        try:
            with torch.inference_mode():
                self.output = host.model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        except BaseException:
            prefill.__exit__(*sys.exc_info())  # the prefill context sees the error (if still open)
            raise
        prefill.close()  # generate never chose a token (max_new_tokens reached at once)

    @contextlib.contextmanager
    def _stepwise_lock(self) -> Iterator[None]:
        """Hold the host's lock during each forward pass of this thread, and only then."""
        model, lock = self.stream.host.model, self.stream.host.lock
        me = threading.get_ident()
        held = [0]

        def acquire(_module: Any, _args: Any) -> None:
            if threading.get_ident() == me:
                lock.acquire()
                held[0] += 1

        def release(_module: Any, _args: Any, _output: Any) -> None:
            if threading.get_ident() == me and held[0]:
                held[0] -= 1
                lock.release()

        handles = [
            model.register_forward_pre_hook(acquire),
            model.register_forward_hook(release, always_call=True),
        ]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            while held[0]:  # a forward interrupted by an exception the hook did not see
                held[0] -= 1
                lock.release()


def _eos_ids(host: Any) -> set[int]:
    """End-of-sequence ids of the tokenizer and of the model's generation config."""
    ids: set[int] = set()
    tok_eos = getattr(host.tokenizer, "eos_token_id", None)
    if tok_eos is not None:
        ids.add(int(tok_eos))
    gen = getattr(getattr(host.model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen, int):
        ids.add(gen)
    elif gen:
        ids.update(int(i) for i in gen)
    return ids


def _torch() -> Any:
    from guard._deps import require

    return require("torch")
