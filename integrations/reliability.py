"""Reliability of the wrapped call: retries with exponential backoff and jitter, and a timeout.

Retries use tenacity (as langchain-core's `RunnableRetry` does) and happen only on the exception
types the user lists; by default timeouts and connection errors, never a programming error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

#: What is retried unless told otherwise (asyncio's and concurrent.futures' timeouts are
#: separate classes before Python 3.11).
DEFAULT_RETRY_ON: tuple[type[BaseException], ...] = tuple(
    {TimeoutError, ConnectionError, asyncio.TimeoutError, concurrent.futures.TimeoutError}
)

#: Seconds a wrapped call may take unless the caller says otherwise (`timeout=None`: no limit).
#: Long enough for a local CPU model writing a long answer; a hung backend still ends.
DEFAULT_TIMEOUT = 300.0


class RetryPolicy(BaseModel):
    """How a wrapped call is retried and timed out.

    Attributes:
        max_attempts: total tries, the first included (1 means no retry).
        retry_on: exception types that trigger a retry; anything else propagates at once.
        initial_wait: first backoff in seconds; it doubles each try, up to `max_wait`.
        max_wait: the largest backoff in seconds.
        jitter: up to this many random seconds added to each wait (spreads retry storms).
        timeout: seconds allowed per attempt; `None` for no limit. A timed-out attempt raises
            `TimeoutError` (retried by default).

    Example:
        >>> p = RetryPolicy(max_attempts=3, initial_wait=0, jitter=0)
        >>> calls = []
        >>> def flaky():
        ...     calls.append(1)
        ...     if len(calls) < 3:
        ...         raise ConnectionError("reset by peer")
        ...     return "ok"
        >>> call_with_retry(flaky, p), len(calls)
        ('ok', 3)
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    max_attempts: int = Field(3, ge=1)
    retry_on: tuple[type[BaseException], ...] = DEFAULT_RETRY_ON
    initial_wait: float = Field(0.5, ge=0)
    max_wait: float = Field(10.0, ge=0)
    jitter: float = Field(0.5, ge=0)
    timeout: float | None = Field(None, gt=0)


def _retrying_kwargs(policy: RetryPolicy) -> dict[str, Any]:
    import tenacity

    return dict(
        stop=tenacity.stop_after_attempt(policy.max_attempts),
        wait=tenacity.wait_exponential_jitter(
            initial=policy.initial_wait, max=policy.max_wait, jitter=policy.jitter
        ),
        retry=tenacity.retry_if_exception_type(policy.retry_on),
        reraise=True,
    )


def call_with_timeout(fn: Callable[[], T], timeout: float | None) -> T:
    """Run `fn()` and raise `TimeoutError` if it takes longer than `timeout` seconds.

    The call runs in a daemon thread (with the caller's context variables, so LangChain
    callbacks still attach to the right run). Python cannot kill a thread: a timed-out call
    keeps running in the background until it returns, but its result is discarded.
    """
    if timeout is None:
        return fn()
    box: dict[str, Any] = {}
    done = threading.Event()
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            box["value"] = ctx.run(fn)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, daemon=True, name="guarded-call").start()
    if not done.wait(timeout):
        raise TimeoutError(
            f"the wrapped call took longer than timeout={timeout}s; raise the timeout or check the backend"
        )
    if "error" in box:
        raise box["error"]
    return box["value"]


def with_timeout(policy: RetryPolicy | None, timeout: float | None) -> RetryPolicy | None:
    """`policy` with `timeout` filled in where it sets none; one attempt under `timeout` without a policy.

    Example:
        >>> with_timeout(None, 30).timeout, with_timeout(None, 30).max_attempts
        (30.0, 1)
        >>> with_timeout(RetryPolicy(timeout=5), 30).timeout
        5.0
        >>> with_timeout(None, None) is None
        True
    """
    if timeout is None or (policy is not None and policy.timeout is not None):
        return policy
    if policy is None:
        return RetryPolicy(max_attempts=1, timeout=timeout)
    return policy.model_copy(update={"timeout": float(timeout)})


async def acall_in_thread(fn: Callable[[], T]) -> T:
    """Await `fn()` run in a daemon thread of its own (with the caller's context variables).

    Unlike `asyncio.to_thread`, the thread is not one of the event loop's executor workers, so
    when the await is cancelled (a timeout) nothing waits for the abandoned call: `asyncio.run`
    returns at once instead of joining the executor at shutdown.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    ctx = contextvars.copy_context()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            (future.set_result if ok else future.set_exception)(value)

    def target() -> None:
        try:
            result = ctx.run(fn)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the awaiting task
            _post(loop, settle, False, exc)
        else:
            _post(loop, settle, True, result)

    threading.Thread(target=target, daemon=True, name="guarded-acall").start()
    return await future


def _post(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop closed while the abandoned call ran: nobody waits for it
        pass


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy | None) -> T:
    """Call `fn()` under `policy` (each attempt with its timeout); no policy means one plain call."""
    if policy is None:
        return fn()
    import tenacity

    for attempt in tenacity.Retrying(**_retrying_kwargs(policy)):
        with attempt:
            return call_with_timeout(fn, policy.timeout)
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


async def acall_with_retry(factory: Callable[[], Awaitable[T]], policy: RetryPolicy | None) -> T:
    """Await `factory()` under `policy`; a new awaitable is made for every attempt."""
    if policy is None:
        return await factory()
    import tenacity

    async for attempt in tenacity.AsyncRetrying(**_retrying_kwargs(policy)):
        with attempt:
            if policy.timeout is None:
                return await factory()
            try:
                return await asyncio.wait_for(factory(), policy.timeout)
            except asyncio.TimeoutError as exc:
                raise TimeoutError(f"the wrapped call took longer than timeout={policy.timeout}s") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def first_with_retry(start: Callable[[], Any], policy: RetryPolicy | None) -> tuple[Any, Any]:
    """Open a stream and take its first item under `policy`: `(iterator, first)`.

    Only the start of a stream is retried: once a chunk has reached the caller, a retry would
    repeat text, so later errors propagate. `first` is `EMPTY` when the stream yields nothing.
    """

    def go() -> tuple[Any, Any]:
        it = iter(start())
        return it, next(it, _EMPTY)

    return call_with_retry(go, policy)


async def afirst_with_retry(start: Callable[[], Any], policy: RetryPolicy | None) -> tuple[Any, Any]:
    """Async `first_with_retry` for async iterators."""

    async def go() -> tuple[Any, Any]:
        it = start().__aiter__()
        try:
            return it, await it.__anext__()
        except StopAsyncIteration:
            return it, _EMPTY

    return await acall_with_retry(go, policy)


class _Empty:
    def __repr__(self) -> str:
        return "<empty stream>"


_EMPTY = _Empty()
EMPTY = _EMPTY
