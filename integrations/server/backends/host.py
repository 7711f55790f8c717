"""`HostBackend`: the guard's own local host model answers, through `HostChatModel`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from integrations.server.backends.base import BackendError, BackendReply, Chat, GenerationParams, StreamDelta


class HostBackend:
    """Generates replies with a `HostModel` (by default the guard's own), off the event loop.

    It reuses `integrations.langchain.HostChatModel` (the `langchain` extra), whose async paths
    run each generation step in a worker thread. Sampling settings other than `temperature`,
    `max_tokens` and `stop` are ignored.

    Args:
        host: the `HostModel`; `None` for the embedded default (loaded on first use).
        name: the model name reported in replies (default: the host's name).

    Example:
        >>> backend = HostBackend(guard.host)  # doctest: +SKIP
        >>> (await backend.complete([{"role": "user", "content": "Hi"}], GenerationParams())).text  # doctest: +SKIP
        'Hello! How can I help?'
    """

    def __init__(self, host: Any = None, *, name: str | None = None) -> None:
        self.host = host
        self.name = name or str(getattr(host, "name", None) or "SmolLM2-135M-Instruct")
        self._model: Any = None

    def _chat_model(self) -> Any:
        if self._model is None:
            from integrations.langchain.chat_model import HostChatModel

            self._model = HostChatModel(host=self.host, model=self.name, max_retries=0)
        return self._model

    @staticmethod
    def _kwargs(params: GenerationParams) -> dict[str, Any]:
        out: dict[str, Any] = {"max_tokens": params.max_tokens, "temperature": params.temperature}
        if params.timeout is not None:
            out["timeout"] = params.timeout  # stops the generation itself, not only the wait for it
        return out

    async def complete(self, chat: Chat, params: GenerationParams) -> BackendReply:
        try:
            msg = await self._chat_model().ainvoke(list(chat), stop=params.stop, **self._kwargs(params))
        except TimeoutError as exc:
            raise BackendError(f"the host model timed out: {exc}", code="backend_timeout") from exc
        usage = msg.usage_metadata or {}
        return BackendReply(
            text=str(msg.content),
            finish_reason=msg.response_metadata.get("finish_reason", "stop"),
            prompt_tokens=usage.get("input_tokens"),
            completion_tokens=usage.get("output_tokens"),
        )

    async def stream(self, chat: Chat, params: GenerationParams) -> AsyncIterator[StreamDelta]:
        try:
            async for chunk in self._chat_model().astream(
                list(chat), stop=params.stop, **self._kwargs(params)
            ):
                finish = (chunk.response_metadata or {}).get("finish_reason")
                yield StreamDelta(text=str(chunk.content or ""), finish_reason=finish)
        except TimeoutError as exc:
            raise BackendError(f"the host model timed out: {exc}", code="backend_timeout") from exc

    async def aclose(self) -> None:
        return None
