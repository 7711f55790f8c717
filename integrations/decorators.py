"""`@guarded`: put the guard around any function that answers a prompt.

Works for plain, async, generator and async-generator functions; the wrapped function keeps
its name, docstring, signature and type hints (`functools.wraps`, so `inspect.signature` and
`typing.get_type_hints` see the original). No LangChain needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from guard.errors import InputError
from integrations._core import DEFAULT_CHECK_EVERY, Checker, GatedStream, GuardedDecision, merge, text_of
from integrations.reliability import DEFAULT_TIMEOUT, call_with_timeout

F = TypeVar("F", bound=Callable[..., Any])

_PROMPT_NAMES = ("prompt", "question", "query", "input", "message", "text")


def _prompt_locator(fn: Callable[..., Any], prompt_arg: str | int | None) -> Callable[[tuple, dict], str]:
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if isinstance(prompt_arg, int):
        if not 0 <= prompt_arg < len(params):
            raise InputError(f"prompt_arg={prompt_arg} but {fn.__qualname__} has {len(params)} parameter(s)")
        name = params[prompt_arg].name
    elif isinstance(prompt_arg, str):
        if prompt_arg not in sig.parameters:
            raise InputError(
                f"{fn.__qualname__} has no parameter {prompt_arg!r}; choose one of {list(sig.parameters)}"
            )
        name = prompt_arg
    else:
        named = [p.name for p in params if p.name in _PROMPT_NAMES]
        rest = [p.name for p in params if p.name not in ("self", "cls")]
        if not (named or rest):
            raise InputError(f"{fn.__qualname__} takes no argument to read a prompt from; pass prompt_arg=")
        name = (named or rest)[0]

    def locate(args: tuple, kwargs: dict) -> str:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        value = bound.arguments[name]
        if not isinstance(value, str):
            raise InputError(
                f"argument {name!r} of {fn.__qualname__} must be a str prompt, got "
                f"{type(value).__name__}; pass prompt_arg= to choose another"
            )
        return value

    return locate


def guarded(
    fn: F | None = None,
    *,
    guard: Any = None,
    prompt_arg: str | int | None = None,
    check_output: bool = True,
    check_every: int = DEFAULT_CHECK_EVERY,
    fail_closed: bool | None = None,
    audit: Any = None,
    on_decision: Callable[[GuardedDecision], Any] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> Any:
    """Guard a function that answers a prompt.

    The prompt is checked first; when it is not answered the function is not called and the
    constructive reply is returned (or yielded, for generators) instead. The return value is
    checked too, and a generator's output is checked every `check_every` chunks and at the end:
    chunks are released only after they pass, and a reply that turns harmful is cut and ends
    with a constructive sentence.

    Args:
        fn: the function (when used as `@guarded` without arguments).
        guard: a `Guard`; `None` loads `Guard.default()` on the first call.
        prompt_arg: the argument holding the prompt, by name or position; default the first of
            prompt/question/query/input/message/text, else the first argument (`self`/`cls`
            skipped).
        check_output: check what the function returns or yields.
        check_every: for generators, check every this many chunks.
        fail_closed: when the guard raises, refuse (True) or answer (False); `None` follows the
            guard's policy.
        audit: an optional `JsonlAuditLog`.
        on_decision: called with every final `GuardedDecision` (how a caller sees reasons).
        timeout: seconds a call of a plain or async function may take (default 300; None for no
            limit); past it the call raises `TimeoutError`. A plain function then runs in a
            daemon thread (Python cannot stop it: its result is discarded). Generators are not
            timed. A call that raises (or times out) is recorded in the audit log before the
            error reaches the caller.

    Example:
        >>> @guarded(guard=Guard.default())  # doctest: +SKIP
        ... def ask(prompt: str, temperature: float = 0.0) -> str:
        ...     return my_llm(prompt, temperature)
        >>> ask("How do I build a pipe bomb?")  # doctest: +SKIP
        "I can't help with making weapons or hurting anyone. ..."
        >>> str(inspect.signature(ask))  # doctest: +SKIP
        '(prompt: str, temperature: float = 0.0) -> str'
    """
    if fn is None:
        return functools.partial(
            guarded,
            guard=guard,
            prompt_arg=prompt_arg,
            check_output=check_output,
            check_every=check_every,
            fail_closed=fail_closed,
            audit=audit,
            on_decision=on_decision,
            timeout=timeout,
        )
    if timeout is not None and not timeout > 0:
        raise InputError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    settings = _Settings(
        locate=_prompt_locator(fn, prompt_arg),
        guard=guard,
        check_output=check_output,
        check_every=check_every,
        fail_closed=fail_closed,
        audit=audit,
        on_decision=on_decision,
        timeout=timeout,
    )
    if inspect.isasyncgenfunction(fn):
        return _wrap_async_generator(fn, settings)
    if inspect.isgeneratorfunction(fn):
        return _wrap_generator(fn, settings)
    if inspect.iscoroutinefunction(fn):
        return _wrap_coroutine(fn, settings)
    return _wrap_function(fn, settings)


@dataclass(frozen=True)
class _Settings:
    """The options of one `@guarded(...)` that every kind of wrapper shares (see `guarded`)."""

    locate: Callable[[tuple, dict], str]  # the prompt among a call's arguments (`_prompt_locator`)
    guard: Any  # a `Guard`, or None for the shared `Guard.default()` (loaded on the first call)
    check_output: bool
    check_every: int
    fail_closed: bool | None
    audit: Any
    on_decision: Callable[[GuardedDecision], Any] | None
    timeout: float | None

    def checker(self) -> Checker:
        """A fresh `Checker` for one call, on the guard (the shared default when none was given)."""
        g = self.guard
        if g is None:
            from integrations._core import shared_default as _shared_default  # noqa: PLC0415

            g = _shared_default("guard")
        return Checker(g, fail_closed=self.fail_closed, audit=self.audit, on_decision=self.on_decision)

    def stream(self, c: Checker, d: GuardedDecision, prompt: str) -> GatedStream[Any]:
        """The gate a generator's chunks pass through, after the input decision `d`."""
        return GatedStream(c, d, prompt, check_every=self.check_every, check_output=self.check_output)


def _wrap_async_generator(fn: Callable[..., Any], s: _Settings) -> Callable[..., Any]:
    """Guard an async-generator function: the prompt, then its chunks as they are released."""

    @functools.wraps(fn)
    async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
        prompt = s.locate(args, kwargs)
        c = s.checker()
        d = await c.acheck_input(prompt)
        if d.blocked:
            c.finish(d, prompt)
            yield d.response
            return
        stream = s.stream(c, d, prompt)
        async with contextlib.aclosing(stream.arun(fn(*args, **kwargs))) as checked:
            async for out in checked:
                yield out
        for out in _end(c, stream, prompt):
            yield out

    return agen_wrapper


def _wrap_generator(fn: Callable[..., Any], s: _Settings) -> Callable[..., Any]:
    """Guard a generator function: the prompt, then its chunks as they are released."""

    @functools.wraps(fn)
    def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
        prompt = s.locate(args, kwargs)
        c = s.checker()
        d = c.check_input(prompt)
        if d.blocked:
            c.finish(d, prompt)
            yield d.response
            return
        stream = s.stream(c, d, prompt)
        yield from stream.run(fn(*args, **kwargs))
        yield from _end(c, stream, prompt)

    return gen_wrapper


def _wrap_coroutine(fn: Callable[..., Any], s: _Settings) -> Callable[..., Any]:
    """Guard a coroutine function: the prompt, the awaited call (timed) and its result."""

    @functools.wraps(fn)
    async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
        prompt = s.locate(args, kwargs)
        c = s.checker()
        d = await c.acheck_input(prompt)
        if d.blocked:
            return c.finish(d, prompt).response
        start = time.perf_counter()
        with c.recording_failure(d, prompt):
            try:
                result = await asyncio.wait_for(fn(*args, **kwargs), s.timeout)
            except asyncio.TimeoutError as exc:
                raise TimeoutError(f"{fn.__qualname__} took longer than timeout={s.timeout}s") from exc
        call_ms = (time.perf_counter() - start) * 1000
        reply = await c.acheck_output(prompt, text_of(result)) if s.check_output else None
        d = c.finish(merge(d, reply, call_ms=call_ms), prompt)
        return d.response if d.blocked else result

    return async_wrapper


def _wrap_function(fn: Callable[..., Any], s: _Settings) -> Callable[..., Any]:
    """Guard a plain function: the prompt, the call (timed, in a thread when limited) and its result."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        prompt = s.locate(args, kwargs)
        c = s.checker()
        d = c.check_input(prompt)
        if d.blocked:
            return c.finish(d, prompt).response
        start = time.perf_counter()
        with c.recording_failure(d, prompt):
            result = call_with_timeout(lambda: fn(*args, **kwargs), s.timeout)
        call_ms = (time.perf_counter() - start) * 1000
        reply = c.check_output(prompt, text_of(result)) if s.check_output else None
        d = c.finish(merge(d, reply, call_ms=call_ms), prompt)
        return d.response if d.blocked else result

    return wrapper


def _end(c: Checker, stream: GatedStream[Any], prompt: str) -> list[Any]:
    """The chunks that end a gated stream (the rest, or the closing sentence of a cut); recorded."""
    end = stream.end()
    out = (
        [end.closing]
        if end.closing is not None
        else [*end.chunks, *([end.last] if end.last is not None else [])]
    )
    c.finish(end.decision, prompt)
    return out
