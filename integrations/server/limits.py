"""Request size limits: a body-size ASGI middleware and the message-count and length checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from integrations.server.schemas import ChatMessage, ErrorResponse


class RequestTooLarge(Exception):
    """A request over one of the gateway's size limits (answered with a 413)."""


def check_sizes(
    messages: Sequence[ChatMessage],
    *,
    max_messages: int,
    max_chars: int,
    texts: Sequence[tuple[str, str]] = (),
) -> None:
    """Raise `RequestTooLarge` naming the first limit a request breaks.

    Args:
        messages: the request's messages.
        max_messages: the most messages allowed.
        max_chars: the most characters in one message (and in each of `texts`).
        texts: other ``(label, text)`` pairs to bound the same way (a prompt, documents).

    Example:
        >>> try:
        ...     check_sizes([ChatMessage(role="user", content="x" * 5)], max_messages=4, max_chars=4)
        ... except RequestTooLarge as exc:
        ...     print(exc)
        messages[0] has 5 characters; the gateway accepts at most 4 per message (max_message_chars)
    """
    if len(messages) > max_messages:
        raise RequestTooLarge(
            f"the request has {len(messages)} messages; the gateway accepts at most "
            f"{max_messages} (max_messages)"
        )
    labelled = [(f"messages[{i}]", m.text) for i, m in enumerate(messages)] + list(texts)
    for label, text in labelled:
        if len(text) > max_chars:
            raise RequestTooLarge(
                f"{label} has {len(text)} characters; the gateway accepts at most {max_chars} "
                f"per message (max_message_chars)"
            )


class BodyLimitMiddleware:
    """An ASGI middleware that answers 413 to a request body over `max_bytes`.

    A declared ``Content-Length`` over the limit is refused before reading; otherwise the body
    is read up to the limit (chunked uploads included) and handed on whole.

    Args:
        app: the ASGI app to wrap.
        max_bytes: the largest body accepted.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, int(declared))
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._refuse(send, None)
                return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # later reads wait for the disconnect, as Starlette expects

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any, size: int | None) -> None:
        what = f"{size} bytes" if size is not None else f"more than {self.max_bytes} bytes"
        await send_error(
            send,
            413,
            ErrorResponse.of(
                f"the request body has {what}; the gateway accepts at most {self.max_bytes} (max_body_bytes)",
                type="invalid_request_error",
                code="request_too_large",
            ),
        )


async def send_error(
    send: Any, status: int, error: ErrorResponse, headers: dict[str, str] | None = None
) -> None:
    """Send `error` as a whole JSON response from ASGI middleware."""
    body = error.model_dump_json().encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
