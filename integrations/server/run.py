"""Running the gateway: `serve` (uvicorn in the foreground) and the `guard serve` command."""

from __future__ import annotations

import argparse
import os
from typing import Any

from guard.errors import InputError
from integrations.server._require import require_server
from integrations.server.backends.base import Backend
from integrations.server.config import ServerConfig


def serve(
    guard: Any,
    backend: Backend | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: ServerConfig | None = None,
    log_level: str = "info",
) -> None:
    """Serve the gateway with uvicorn until interrupted.

    Args:
        guard: the `Guard` in front of the backend.
        backend: who answers (default: the guard's own host model).
        host: the address to bind (the default, 127.0.0.1, is reachable from this machine only).
        port: the port.
        config: limits, timeouts and the API key.
        log_level: uvicorn's log level.

    Example:
        >>> serve(Guard.default(), UpstreamBackend("http://localhost:8001/v1"), port=8000)  # doctest: +SKIP
    """
    uvicorn = require_server("uvicorn")
    from integrations.server.app import create_app

    uvicorn.run(create_app(guard, backend, config=config), host=host, port=port, log_level=log_level)


def _secret(env: str | None, what: str) -> str | None:
    if env is None:
        return None
    value = os.environ.get(env)
    if not value:
        raise InputError(
            f"{what}: the environment variable {env} is not set (or empty); export it, "
            f"or leave out the option"
        )
    return value


def main(args: argparse.Namespace) -> int:
    """The `guard serve` command: build the guard and the backend from `args`, then `serve`.

    Raises:
        InputError: a named environment variable is missing.
    """
    require_server("fastapi")
    require_server("uvicorn")
    from guard.guard import Guard

    api_key = _secret(args.api_key_env, "--api-key-env")
    upstream_key = _secret(args.upstream_key_env, "--upstream-key-env")
    guard = Guard.load(args.guard) if args.guard else Guard.default()
    backend: Backend | None = None
    if args.upstream:
        from integrations.server.backends.upstream import UpstreamBackend

        backend = UpstreamBackend(args.upstream, api_key=upstream_key, timeout=args.timeout)
    config = ServerConfig(api_key=api_key, max_body_bytes=args.max_body_bytes, timeout=args.timeout)
    where = f"http://{args.host}:{args.port}/v1"
    print(
        f"guard serve: OpenAI-compatible gateway on {where} "
        f"({'upstream ' + args.upstream if args.upstream else 'local host model'}"
        f"{', API key required' if api_key else ''})",
        flush=True,
    )
    serve(guard, backend, host=args.host, port=args.port, config=config)
    return 0
