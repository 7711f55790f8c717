"""Gateway backends: the local host model (`HostBackend`) or an OpenAI-compatible upstream
(`UpstreamBackend`); anything following the `Backend` protocol works."""

from integrations.server.backends.base import (
    Backend,
    BackendError,
    BackendReply,
    GenerationParams,
    StreamDelta,
)
from integrations.server.backends.host import HostBackend
from integrations.server.backends.upstream import UpstreamBackend

__all__ = [
    "Backend",
    "BackendError",
    "BackendReply",
    "GenerationParams",
    "HostBackend",
    "StreamDelta",
    "UpstreamBackend",
]
