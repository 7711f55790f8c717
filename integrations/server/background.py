"""`ServerThread`: run an ASGI app with uvicorn in a background thread (tests, benchmarks, notebooks)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

from integrations.server._require import require_server


class ServerThread:
    """A uvicorn server on a free localhost port, in a daemon thread, stopped on exit.

    Args:
        app: the ASGI app (e.g. from `create_app`).
        host: the address to bind.
        port: the port; 0 picks a free one (bound here, so no other process can take it first).
        startup_timeout: seconds to wait for the server to accept connections.

    Example:
        >>> with ServerThread(create_app(guard)) as server:  # doctest: +SKIP
        ...     OpenAI(base_url=server.base_url, api_key="-").chat.completions.create(...)
    """

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 30.0
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI client's `base_url` for this server (``.../v1``)."""
        return f"{self.url}/v1"

    def start(self) -> ServerThread:
        """Start serving; returns when the server accepts connections.

        Raises:
            RuntimeError: the server did not start within `startup_timeout`.
        """
        uvicorn = require_server("uvicorn")
        # IPPROTO_TCP named, so asyncio sets TCP_NODELAY on accepted connections (with proto 0 it
        # does not, and every small response waits ~40 ms on the peer's delayed ACK)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"uvicorn:{self.port}"
        )
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server on {self.url} did not start within {self.startup_timeout}s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Ask the server to exit and wait for its thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._server, self._thread = None, None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
