"""`ApiKeyMiddleware`: the optional bearer key in front of every ``/v1/...`` route."""

from __future__ import annotations

import hmac
from typing import Any

from integrations.server.limits import send_error
from integrations.server.schemas import ErrorResponse


class ApiKeyMiddleware:
    """An ASGI middleware that answers 401 unless ``Authorization: Bearer <key>`` matches.

    It runs before the body is read or validated, so a client without the key learns nothing
    about the request format. Paths outside `protected` (``/healthz``) stay open.

    Args:
        app: the ASGI app to wrap.
        key: the expected key.
        protected: path prefix that needs the key.
    """

    def __init__(self, app: Any, key: str, protected: str = "/v1/") -> None:
        self.app = app
        self._key = key.encode()
        self.protected = protected

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(self.protected):
            header = dict(scope.get("headers") or []).get(b"authorization", b"")
            scheme, _, token = header.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._key):
                message = (
                    "missing API key: send the header 'Authorization: Bearer <key>'"
                    if not header
                    else "invalid API key"
                )
                await send_error(
                    send,
                    401,
                    ErrorResponse.of(message, type="invalid_request_error", code="invalid_api_key"),
                    headers={"WWW-Authenticate": "Bearer"},
                )
                return
        await self.app(scope, receive, send)
