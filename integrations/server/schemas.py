"""The wire format: OpenAI chat-completions requests, replies and stream chunks, plus the
gateway's own `/v1/check` request and error bodies.

Replies carry the guard's decision in an extra top-level field ``guard`` (a `GuardedDecision`
as JSON: action, category, reasons, scores, ...); a stream carries it on its last chunk.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from integrations._core import GuardedDecision

Role = Literal["system", "developer", "user", "assistant", "tool"]


class TextPart(BaseModel):
    """One text block of a message's content (the only block kind the guard can read)."""

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One message of a chat request.

    Example:
        >>> ChatMessage(role="user", content=[{"type": "text", "text": "Hi"}]).text
        'Hi'
    """

    model_config = ConfigDict(extra="ignore")

    role: Role
    content: str | list[TextPart] | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        """The message's text: its string content, or its text blocks joined by newlines."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content)


class ChatCompletionRequest(BaseModel):
    """A ``POST /v1/chat/completions`` body (the OpenAI fields the gateway supports).

    Tool calling and ``n > 1`` are refused with a 422: a tool call's arguments would reach the
    client unchecked, and the stream gate reads one reply at a time.

    Example:
        >>> r = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "Hi"}])
        >>> r.stream, r.messages[0].text
        (False, 'Hi')
    """

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    user: str | None = None
    n: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, v: int | None) -> int | None:
        if v is not None and v != 1:
            raise ValueError(f"n={v}: the gateway returns one choice per request; send n=1 or leave it out")
        return v

    @field_validator("tools", "functions")
    @classmethod
    def _no_tools(cls, v: list[Any] | None) -> list[Any] | None:
        if v:
            raise ValueError(
                "tool calling is not supported by the gateway (tool-call arguments cannot be "
                "checked before they reach the client); send the request without tools"
            )
        return v

    @property
    def stops(self) -> list[str] | None:
        """`stop` as a list (None when unset)."""
        if self.stop is None:
            return None
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CheckRequest(BaseModel):
    """A ``POST /v1/check`` body: one prompt, with optional chat history and RAG documents.

    Example:
        >>> CheckRequest(prompt="Hi", history=[{"role": "assistant", "content": "Hello"}]).history[0].role
        'assistant'
    """

    prompt: str
    history: list[ChatMessage] | None = None
    context: list[str] | None = None


class Usage(BaseModel):
    """Token counts of one reply (0 when the backend was not called or did not say)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class ChatCompletion(BaseModel):
    """A non-streamed reply, with the guard's decision in ``guard``.

    ``finish_reason`` is ``"content_filter"`` when the guard blocked the request or the reply;
    the message then holds the constructive reply.

    Example:
        >>> from guard import Action
        >>> c = ChatCompletion(model="m", choices=[Choice(message=AssistantMessage(content="Hi"),
        ...                    finish_reason="stop")], guard=GuardedDecision(action=Action.ANSWER))
        >>> c.object, c.id.startswith("chatcmpl-")
        ('chat.completion', True)
    """

    id: str = Field(default_factory=_completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage = Field(default_factory=Usage)
    guard: GuardedDecision


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed reply; the last one has ``finish_reason`` and ``guard``.

    Example:
        >>> c = ChatCompletionChunk(id="chatcmpl-1", created=0, model="m",
        ...                         choices=[ChunkChoice(delta=Delta(content="Hel"))])
        >>> event = c.sse()
        >>> event.startswith("data: {") and event.endswith("}\\n\\n")
        True
        >>> json.loads(event[len("data: "):])["choices"]
        [{'index': 0, 'delta': {'content': 'Hel'}}]
    """

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    guard: GuardedDecision | None = None

    def sse(self) -> str:
        """The chunk as one server-sent event (absent optional fields left out, as OpenAI does)."""
        data = self.model_dump(mode="json", exclude={"guard"}, exclude_none=True)
        if self.guard is not None:
            data["guard"] = json.loads(self.guard.model_dump_json())  # NaN scores become null
        return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """An OpenAI-style error body: ``{"error": {"message", "type", "param", "code"}}``.

    Example:
        >>> ErrorResponse.of("bad key", type="invalid_request_error", code="invalid_api_key").error.code
        'invalid_api_key'
    """

    error: ErrorDetail

    @classmethod
    def of(
        cls, message: str, *, type: str, code: str | None = None, param: str | None = None
    ) -> ErrorResponse:  # noqa: A002
        return cls(error=ErrorDetail(message=message, type=type, code=code, param=param))


class Health(BaseModel):
    """The ``GET /healthz`` body."""

    status: Literal["ok"] = "ok"
    backend: str
    guard: str


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "latent-guardrail"


class ModelList(BaseModel):
    """The ``GET /v1/models`` body: the one model the gateway serves."""

    object: Literal["list"] = "list"
    data: list[ModelCard]
