"""`Gateway`: one chat request through the guard and the backend, the HTTP layer aside.

The request is decided first (`Guard.check` on the last user message, with the messages
before it as history); a blocked request gets its constructive reply and the backend is never
called. Otherwise the backend answers and its reply is checked (`Guard.check_output`), whole or,
for streams, through the stream gate (`integrations.server.streaming`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from guard.decision.rules import STRICTNESS
from integrations._core import Checker, GuardedDecision, merge
from integrations.server.backends.base import (
    Backend,
    BackendError,
    BackendReply,
    GenerationParams,
    StreamDelta,
)
from integrations.server.config import ServerConfig
from integrations.server.conversation import Conversation
from integrations.server.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    Usage,
)

CONTENT_FILTER = "content_filter"


class Gateway:
    """The guarded chat-completion flow behind `create_app`.

    Args:
        guard: a `Guard` (anything with `check` and `check_output`).
        backend: who answers (a `Backend`).
        config: limits and timeouts.
        audit: an optional sink with `write(decision, prompt=...)` (e.g. `JsonlAuditLog`).

    Example:
        >>> gw = Gateway(guard, HostBackend(guard.host), ServerConfig())  # doctest: +SKIP
        >>> req = ChatCompletionRequest(messages=[{"role": "user", "content": "Hi"}])
        >>> (await gw.complete(req)).guard.action  # doctest: +SKIP
        <Action.ANSWER: 'answer'>
    """

    def __init__(self, guard: Any, backend: Backend, config: ServerConfig, *, audit: Any = None) -> None:
        self.guard = guard
        self.backend = backend
        self.config = config
        self.checker = Checker(guard, fail_closed=config.fail_closed, audit=audit)

    # ------------------------------------------------------------------ request side
    async def decide(self, conv: Conversation) -> GuardedDecision:
        """The request's decision: the prompt's, or a stricter one of a message read on its own.

        A `Guard` checks every history message itself; messages after the prompt (and, for
        guards that do not read history message by message, the history too) are checked here,
        assistant messages as replies.
        """
        d = await self.checker.acheck_input(conv.prompt, conv.history)
        parts = list(conv.trailing)
        if getattr(self.guard, "checks_history_messages", False) is not True:
            parts = [(m["role"], m["content"]) for m in conv.history or [] if m["content"].strip()] + parts
        if not parts:
            return d
        found = await asyncio.gather(
            *(
                self.checker.acheck_output(conv.prompt, text)
                if role == "assistant"
                else self.checker.acheck_input(text)
                for role, text in parts
            )
        )
        worst = max(found, key=lambda x: STRICTNESS[x.action])
        if STRICTNESS[worst.action] <= STRICTNESS[d.action]:
            return d
        note = f"a message other than the prompt was checked on its own: {worst.action.value}"
        return worst.model_copy(
            update={
                "reasons": [note, *worst.reasons],
                "stage": "input",
                "prompt_sha256": d.prompt_sha256,
                "guard_ms": d.guard_ms + sum(f.guard_ms for f in found),
            }
        )

    def params(self, req: ChatCompletionRequest) -> GenerationParams:
        """The request's generation settings, `max_tokens` capped by the config."""
        asked = req.max_completion_tokens or req.max_tokens or self.config.max_tokens
        return GenerationParams(
            model=req.model,
            max_tokens=min(asked, self.config.max_tokens),
            temperature=req.temperature or 0.0,
            top_p=req.top_p,
            stop=req.stops,
            seed=req.seed,
            presence_penalty=req.presence_penalty,
            frequency_penalty=req.frequency_penalty,
            user=req.user,
            timeout=self.config.timeout,
        )

    def model_name(self, req: ChatCompletionRequest) -> str:
        return req.model or self.config.model

    # ------------------------------------------------------------------ whole replies
    async def complete(self, req: ChatCompletionRequest) -> ChatCompletion:
        """Answer one non-streamed request.

        Raises:
            BackendError: the backend failed or timed out (nothing of its reply is returned).
        """
        conv = Conversation.of(req.messages)
        d = await self.decide(conv)
        if d.blocked:
            self.checker.finish(d, conv.prompt)
            return self._completion(req, d.response or "", CONTENT_FILTER, d, Usage())
        start = time.perf_counter()
        with self.checker.recording_failure(d, conv.prompt):
            reply = await self._call(self.backend.complete(conv.chat, self.params(req)))
        call_ms = (time.perf_counter() - start) * 1000
        checked = await self.checker.acheck_output(conv.prompt, reply.text)
        final = self.checker.finish(merge(d, checked, call_ms=call_ms), conv.prompt)
        usage = _usage(reply)
        if final.blocked:
            return self._completion(req, final.response or "", CONTENT_FILTER, final, usage)
        return self._completion(req, reply.text, reply.finish_reason, final, usage)

    async def _call(self, call: Any) -> BackendReply:
        try:
            return await within(call, self.config.timeout)
        except BackendError:
            raise
        except TimeoutError as exc:
            raise BackendError(
                f"the backend took longer than {self.config.timeout}s (timeout)", code="backend_timeout"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - an unknown state: the client gets an error, not text
            raise BackendError(f"the backend failed ({type(exc).__name__}: {str(exc)[:300]})") from exc

    def _completion(
        self, req: ChatCompletionRequest, text: str, finish: str, d: GuardedDecision, usage: Usage
    ) -> ChatCompletion:
        return ChatCompletion(
            model=self.model_name(req),
            usage=usage,
            guard=d,
            choices=[Choice(message=AssistantMessage(content=text), finish_reason=finish)],
        )

    # ------------------------------------------------------------------ streams
    async def next_delta(self, it: AsyncIterator[StreamDelta]) -> StreamDelta | None:
        """The backend's next piece, or None at the end.

        Raises:
            BackendError: the backend failed, or sent nothing for `config.timeout` seconds.
        """
        try:
            return await within(it.__anext__(), self.config.timeout)
        except StopAsyncIteration:
            return None
        except BackendError:
            raise
        except TimeoutError as exc:
            raise BackendError(
                f"the backend sent nothing for {self.config.timeout}s (timeout)", code="backend_timeout"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - an unknown state: the stream ends in an error event
            raise BackendError(
                f"the backend failed mid-stream ({type(exc).__name__}: {str(exc)[:300]})"
            ) from exc


async def within(awaitable: Any, seconds: float) -> Any:
    """Await `awaitable` for at most `seconds` (TimeoutError after), in the calling task.

    In the calling task, so a backend's async generator is always resumed by the same task
    (`asyncio.wait_for` before Python 3.12 runs it in a new one each time).
    """
    if hasattr(asyncio, "timeout"):  # Python >= 3.11
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


def _usage(reply: BackendReply) -> Usage:
    p, c = reply.prompt_tokens or 0, reply.completion_tokens or 0
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)
