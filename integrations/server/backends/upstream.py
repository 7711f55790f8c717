"""`UpstreamBackend`: an OpenAI-compatible endpoint answers, called with httpx (async)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from integrations.server._require import require_server
from integrations.server.backends.base import BackendError, BackendReply, Chat, GenerationParams, StreamDelta


class UpstreamBackend:
    """Forwards each chat to ``{base_url}/chat/completions`` of an OpenAI-compatible server.

    Streams are read as server-sent events and handed to the gateway's gate piece by piece.
    An HTTP error, an ``error`` event, a broken connection or an unreadable body raises
    `BackendError` (the client gets a 502, never the upstream's text unchecked).

    Args:
        base_url: the upstream's API root, as the OpenAI client's `base_url`
            (e.g. ``"https://api.openai.com/v1"`` or ``"http://localhost:8001/v1"``).
        api_key: sent as ``Authorization: Bearer ...`` when given.
        model: the model to ask for (default: the one each request names).
        timeout: seconds for connecting and between bytes read.
        client: an `httpx.AsyncClient` to use (default: one made on first use, closed by `aclose`).

    Example:
        >>> backend = UpstreamBackend("http://localhost:8001/v1", api_key="sk-...")
        >>> backend.name
        'upstream:http://localhost:8001/v1'
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = 120.0,
        client: Any = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.model = model
        self.timeout = timeout
        self.name = f"upstream:{self.base_url}"
        self._client = client

    def _http(self) -> Any:
        if self._client is None:
            httpx = require_server("httpx")
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), follow_redirects=False)
        return self._client

    @contextlib.contextmanager
    def _transport_errors(self, unreachable: str) -> Iterator[None]:
        """httpx's timeouts and transport errors as `BackendError` (the gateway answers 502)."""
        httpx = require_server("httpx")
        try:
            yield
        except httpx.TimeoutException as exc:
            raise BackendError(
                f"the upstream {self.base_url} timed out ({type(exc).__name__})", code="backend_timeout"
            ) from exc
        except httpx.HTTPError as exc:
            raise BackendError(
                f"{unreachable} ({type(exc).__name__}: {exc})", code="upstream_unreachable"
            ) from exc

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _payload(self, chat: Chat, params: GenerationParams, stream: bool) -> dict[str, Any]:
        fields = params.model_dump(exclude={"timeout", "model"}, exclude_none=True)
        return {
            "model": self.model or params.model or "default",
            "messages": list(chat),
            "stream": stream,
            **fields,
        }

    async def complete(self, chat: Chat, params: GenerationParams) -> BackendReply:
        with self._transport_errors(f"cannot reach the upstream {self.base_url}"):
            r = await self._http().post(
                f"{self.base_url}/chat/completions",
                json=self._payload(chat, params, False),
                headers=self._headers(),
            )
        if r.status_code != 200:
            raise BackendError(
                f"the upstream answered HTTP {r.status_code}: {r.text[:300]}", code="upstream_status"
            )
        try:
            data = r.json()
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            usage = data.get("usage") or {}
            if not isinstance(text, str):
                raise TypeError(f"content is a {type(text).__name__}")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(
                f"the upstream's reply is not a chat completion ({type(exc).__name__}: {exc})",
                code="upstream_invalid",
            ) from exc
        return BackendReply(
            text=text,
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )

    async def stream(self, chat: Chat, params: GenerationParams) -> AsyncIterator[StreamDelta]:
        with self._transport_errors("the upstream stream broke"):
            async with self._http().stream(
                "POST",
                f"{self.base_url}/chat/completions",
                json=self._payload(chat, params, True),
                headers=self._headers(),
            ) as r:
                if r.status_code != 200:
                    body = (await r.aread()).decode("utf-8", "replace")
                    raise BackendError(
                        f"the upstream answered HTTP {r.status_code}: {body[:300]}", code="upstream_status"
                    )
                async for line in r.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # comments, event names, blank separators
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        return
                    yield _delta(payload)
        # the upstream closed without [DONE]: what came may be cut short, but it was all checked

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _delta(payload: str) -> StreamDelta:
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise BackendError(f"the upstream sent an unreadable event ({exc})", code="upstream_invalid") from exc
    if not isinstance(data, dict):
        raise BackendError("the upstream sent an event that is not an object", code="upstream_invalid")
    if data.get("error"):
        err = data["error"]
        message = err.get("message") if isinstance(err, dict) else str(err)
        raise BackendError(f"the upstream reported an error mid-stream: {message}", code="upstream_status")
    choices = data.get("choices") or []
    if not choices:  # e.g. a final usage-only chunk
        return StreamDelta()
    choice = choices[0] if isinstance(choices[0], dict) else {}
    text = (choice.get("delta") or {}).get("content") or ""
    if not isinstance(text, str):
        raise BackendError("the upstream sent non-text content", code="upstream_invalid")
    return StreamDelta(text=text, finish_reason=choice.get("finish_reason"))
