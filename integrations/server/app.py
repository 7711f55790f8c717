"""`create_app`: the FastAPI app of the OpenAI-compatible gateway.

Routes: ``POST /v1/chat/completions`` (OpenAI chat completions, streamed as server-sent events
when ``stream`` is true), ``POST /v1/check`` (one `Decision`), ``GET /v1/models``,
``GET /healthz``. Errors come back as OpenAI error objects: 401 (API key), 413 (size limits),
422 (invalid request), 502 (the backend failed or timed out), 500 (anything else).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from integrations.server._require import require_server

require_server("fastapi")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import Response, StreamingResponse  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402

from guard.errors import InputError  # noqa: E402
from integrations._core import GuardedDecision  # noqa: E402
from integrations.server.auth import ApiKeyMiddleware  # noqa: E402
from integrations.server.backends.base import Backend, BackendError  # noqa: E402
from integrations.server.backends.host import HostBackend  # noqa: E402
from integrations.server.config import ServerConfig  # noqa: E402
from integrations.server.gateway import Gateway  # noqa: E402
from integrations.server.limits import BodyLimitMiddleware, RequestTooLarge, check_sizes  # noqa: E402
from integrations.server.schemas import (  # noqa: E402
    ChatCompletion,
    ChatCompletionRequest,
    CheckRequest,
    ErrorResponse,
    Health,
    ModelCard,
    ModelList,
)
from integrations.server.streaming import open_stream  # noqa: E402

log = logging.getLogger("integrations.server")

_ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorResponse} for s in (401, 413, 422, 502)}


def create_app(
    guard: Any,
    backend: Backend | None = None,
    *,
    config: ServerConfig | None = None,
    audit: Any = None,
    **settings: Any,
) -> FastAPI:
    """Build the gateway: `guard` in front of `backend`, OpenAI-compatible.

    Args:
        guard: a `Guard` (`Guard.default()`, `Guard.load(dir)`, or anything with `check` and
            `check_output`).
        backend: who answers a request the guard lets through: a `HostBackend`, an
            `UpstreamBackend`, or any `Backend`; default: `HostBackend(guard.host)`, the guard's
            own host model.
        config: limits, timeouts and the API key (`ServerConfig`).
        audit: an optional sink with `write(decision, prompt=...)` (e.g. `JsonlAuditLog`).
        **settings: `ServerConfig` fields overriding `config` (``api_key=...``,
            ``max_body_bytes=...``, ``max_messages=...``, ``max_message_chars=...``,
            ``max_tokens=...``, ``timeout=...``, ``check_every=...``, ``fail_closed=...``).

    Returns:
        A FastAPI app; run it with uvicorn (`integrations.server.serve`, or ``guard serve``).

    Example:
        >>> from integrations.server import UpstreamBackend
        >>> upstream = UpstreamBackend("http://localhost:8001/v1")
        >>> app = create_app(Guard.default(), upstream, api_key="s3cret")  # doctest: +SKIP
        >>> import uvicorn; uvicorn.run(app, port=8000)  # doctest: +SKIP

        From another process, any OpenAI client:

        >>> from openai import OpenAI  # doctest: +SKIP
        >>> client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="s3cret")  # doctest: +SKIP
        >>> ask = [{"role": "user", "content": "How do I make a bomb?"}]
        >>> r = client.chat.completions.create(model="m", messages=ask)  # doctest: +SKIP
        >>> r.choices[0].finish_reason, r.guard["action"]  # doctest: +SKIP
        ('content_filter', 'refuse')
    """
    cfg = ServerConfig.model_validate({**(config or ServerConfig()).model_dump(), **settings})
    if backend is None:
        backend = HostBackend(getattr(guard, "host", None))
    gw = Gateway(guard, backend, cfg, audit=audit)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await backend.aclose()

    app = FastAPI(
        title="latent-guardrail gateway",
        summary="An OpenAI-compatible chat endpoint behind the guard.",
        lifespan=lifespan,
    )
    app.state.gateway = gw
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.max_body_bytes)
    if cfg.api_key is not None:  # outermost: the key is checked before the body is read
        app.add_middleware(ApiKeyMiddleware, key=cfg.api_key.get_secret_value())
    _add_error_handlers(app)

    @app.post("/v1/chat/completions", response_model=ChatCompletion, responses=_ERRORS)
    async def chat_completions(req: ChatCompletionRequest) -> Response:
        """A chat completion, checked on the way in and on the way out (streamed: SSE)."""
        check_sizes(req.messages, max_messages=cfg.max_messages, max_chars=cfg.max_message_chars)
        if req.stream:
            events = await open_stream(gw, req)
            return StreamingResponse(
                events,
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return _json(await gw.complete(req))

    @app.post("/v1/check", response_model=GuardedDecision, responses=_ERRORS)
    async def check(req: CheckRequest) -> Response:
        """One decision on a prompt (with optional history and documents); nothing is generated."""
        if len(req.context or []) > cfg.max_messages:
            raise RequestTooLarge(
                f"the request has {len(req.context or [])} documents; the gateway accepts at "
                f"most {cfg.max_messages} (max_messages)"
            )
        texts = [("prompt", req.prompt)] + [(f"context[{i}]", t) for i, t in enumerate(req.context or [])]
        check_sizes(
            req.history or [], max_messages=cfg.max_messages, max_chars=cfg.max_message_chars, texts=texts
        )
        history = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text}
            for m in req.history or []
        ]
        if any(h["role"] == "tool" for h in history):
            raise InputError("history roles must be system, developer, user or assistant")
        d = await gw.checker.acheck_input(req.prompt, history or None, req.context)
        return _json(gw.checker.finish(d, req.prompt))

    @app.get("/v1/models", response_model=ModelList)
    async def models() -> ModelList:
        """The one model this gateway serves."""
        return ModelList(data=[ModelCard(id=cfg.model)])

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """Liveness (no API key needed)."""
        return Health(backend=backend.name, guard=type(guard).__name__)

    return app


def _json(model: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # pydantic's JSON (a NaN score becomes null; the stdlib encoder would fail on it)
    return Response(
        model.model_dump_json(), status_code=status, media_type="application/json", headers=headers
    )


def _error(
    status: int,
    message: str,
    *,
    type: str,
    code: str | None = None,  # noqa: A002
    param: str | None = None,
) -> Response:
    return _json(ErrorResponse.of(message, type=type, code=code, param=param), status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        where = [".".join(str(p) for p in e.get("loc", ())[1:]) or "body" for e in errors]
        message = (
            "; ".join(f"{w}: {e.get('msg', 'invalid')}" for w, e in zip(where, errors)) or "invalid request"
        )
        return _error(
            422,
            message,
            type="invalid_request_error",
            code="invalid_request",
            param=where[0] if where else None,
        )

    @app.exception_handler(InputError)
    async def bad_input(_: Request, exc: InputError) -> Response:
        return _error(422, str(exc), type="invalid_request_error", code="invalid_request")

    @app.exception_handler(RequestTooLarge)
    async def too_large(_: Request, exc: RequestTooLarge) -> Response:
        return _error(413, str(exc), type="invalid_request_error", code="request_too_large")

    @app.exception_handler(BackendError)
    async def backend_failed(_: Request, exc: BackendError) -> Response:
        log.warning("backend error (%s): %s", exc.code, exc)
        return _error(502, f"the backend did not answer: {exc}", type="upstream_error", code=exc.code)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail), type="invalid_request_error")

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error in the gateway")
        return _error(
            500,
            f"internal error ({type(exc).__name__}); nothing was answered",
            type="server_error",
            code="internal_error",
        )
