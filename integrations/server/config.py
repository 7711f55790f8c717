"""`ServerConfig`: the gateway's limits, timeouts and key, as one validated model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from integrations._core import DEFAULT_CHECK_EVERY


class ServerConfig(BaseModel):
    """Settings of the gateway built by `create_app`.

    Attributes:
        api_key: when set, every ``/v1/...`` request needs ``Authorization: Bearer <api_key>``
            (401 otherwise); ``/healthz`` stays open.
        max_body_bytes: the largest request body accepted (413 above it).
        max_messages: the most messages in one request (413 above it).
        max_message_chars: the most characters in one message, the prompt of ``/v1/check`` and
            each of its documents (413 above it).
        max_tokens: the most new tokens a reply may have; a request asking for more gets this many.
        timeout: seconds the backend may take for a whole reply (non-streamed) or until each
            next streamed piece; past it the client gets a 502 (or a streamed error event).
        check_every: in streams, check the growing reply every this many pieces (no piece is
            sent before the text it completes has passed).
        fail_closed: refuse when the guard itself fails (default: the guard's policy).
        model: the model name reported when a request names none.

    Example:
        >>> cfg = ServerConfig(api_key="s3cret", max_messages=8)
        >>> cfg.max_messages, cfg.api_key
        (8, SecretStr('**********'))
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr | None = None
    max_body_bytes: int = Field(1_000_000, ge=1)
    max_messages: int = Field(64, ge=1)
    max_message_chars: int = Field(32_000, ge=1)
    max_tokens: int = Field(256, ge=1)
    timeout: float = Field(120.0, gt=0)
    check_every: int = Field(DEFAULT_CHECK_EVERY, ge=1)
    fail_closed: bool | None = None
    model: str = "guarded"
