"""What the gateway needs from a backend: a reply, or a stream of pieces, for a chat."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from guard.errors import GuardError

#: A chat as the backends read it: ``{"role": "system"|"user"|"assistant", "content": str}`` dicts.
Chat = Sequence[dict[str, str]]


class BackendError(GuardError, RuntimeError):
    """The backend failed, timed out or answered something unreadable; the client gets a 502.

    Example:
        >>> BackendError("upstream answered HTTP 500", code="upstream_status").code
        'upstream_status'
    """

    def __init__(self, message: str, *, code: str = "backend_error") -> None:
        super().__init__(message)
        self.code = code


class GenerationParams(BaseModel):
    """The generation settings of one request, already capped by the gateway's limits.

    Example:
        >>> GenerationParams(max_tokens=16).temperature
        0.0
    """

    model_config = ConfigDict(frozen=True)

    model: str | None = None
    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    user: str | None = None
    timeout: float | None = Field(None, gt=0)


class BackendReply(BaseModel):
    """A whole reply from a backend."""

    text: str
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class StreamDelta(BaseModel):
    """One streamed piece: new text, and the finish reason once the backend says it."""

    text: str = ""
    finish_reason: str | None = None


@runtime_checkable
class Backend(Protocol):
    """The interface of a gateway backend (`HostBackend`, `UpstreamBackend`, or your own).

    `complete` and `stream` must not block the event loop: run blocking work in a thread.
    Any exception they raise is reported to the client as a 502, never as text.
    """

    name: str

    async def complete(self, chat: Chat, params: GenerationParams) -> BackendReply:
        """The whole reply to `chat`."""
        ...

    def stream(self, chat: Chat, params: GenerationParams) -> AsyncIterator[StreamDelta]:
        """The reply to `chat`, piece by piece (an async iterator; closing it stops the backend)."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads (called when the app shuts down)."""
        ...
