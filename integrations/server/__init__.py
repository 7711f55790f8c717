"""`guard serve`: an OpenAI-compatible HTTP gateway with the guard in front of a model.

Needs the `server` extra (`pip install 'latent-guardrail[server]'`); the default backend, the
local host model, also the `langchain` extra.

``POST /v1/chat/completions`` decides on each request before the backend sees it (a blocked one
gets the constructive reply, ``finish_reason: "content_filter"``), checks the reply (streams
through the stream gate: nothing unchecked is sent) and adds the decision as ``guard``.
``POST /v1/check`` returns one decision. Any OpenAI client works against it:

Example:
    >>> app = create_app(Guard.default())  # doctest: +SKIP
    >>> with ServerThread(app) as server:  # doctest: +SKIP
    ...     client = OpenAI(base_url=server.base_url, api_key="-")
    ...     client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}]).guard["action"]
    'answer'
"""

from integrations.server.app import create_app
from integrations.server.backends import (
    Backend,
    BackendError,
    BackendReply,
    GenerationParams,
    HostBackend,
    StreamDelta,
    UpstreamBackend,
)
from integrations.server.background import ServerThread
from integrations.server.config import ServerConfig
from integrations.server.gateway import Gateway
from integrations.server.run import serve

__all__ = [
    "Backend",
    "BackendError",
    "BackendReply",
    "Gateway",
    "GenerationParams",
    "HostBackend",
    "ServerConfig",
    "ServerThread",
    "StreamDelta",
    "UpstreamBackend",
    "create_app",
    "serve",
]
