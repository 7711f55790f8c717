"""`HostChatModel`: a LangChain chat model over the guard's `HostModel`, so a local chain runs end
to end.

Needs the `langchain` extra (`pip install 'latent-guardrail[langchain]'`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from guard._deps import require

require("langchain_core")

from langchain_core.callbacks import CallbackManagerForLLMRun  # noqa: E402
from langchain_core.language_models import BaseChatModel  # noqa: E402
from langchain_core.messages import (  # noqa: E402
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult  # noqa: E402
from pydantic import ConfigDict, Field  # noqa: E402

from integrations._core import shared_default as _shared_default  # noqa: E402
from integrations._core import (  # noqa: E402
    text_of,
)
from integrations.langchain.runnable import PREFILL_HOOK, _role  # noqa: E402
from integrations.reliability import (  # noqa: E402
    RetryPolicy,
    call_with_retry,
)

__all__ = ["HostChatModel"]


def _to_chat(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    chat = []
    for m in messages:
        role = _role(m)
        text = text_of(m)
        if role is None:
            if isinstance(m, ToolMessage):
                role, text = "user", f"Tool result: {text}"
            else:
                role = "user"
        chat.append({"role": role, "content": text})
    return chat


class HostChatModel(BaseChatModel):
    """A LangChain chat model that generates with a `HostModel` (the guard's own local LLM).

    `host=None` means the embedded default host (SmolLM2-135M-Instruct), loaded on first use and
    shared by every instance, never in the constructor. Tool calling and structured output are
    not supported: SmolLM2-135M-Instruct's chat template has no tool format, so `bind_tools` is
    LangChain's default (it raises `NotImplementedError`, and LangChain's tooling reads the model
    as one without tools). In an agent, use it without tools (`create_agent(HostChatModel(), [],
    middleware=[GuardMiddleware(...)])`), or a tool-calling model guarded by `GuardMiddleware`
    (``examples/agent_middleware.py``). Each reply carries usage metadata (token counts) and its
    `model_name`.

    Args:
        host: a `HostModel`; `None` for the shared default.
        model_name: the name reported in metadata (alias `model`); default: the host's name.
        max_tokens: new tokens per reply.
        temperature: 0 for greedy decoding, > 0 to sample.
        timeout: seconds allowed per reply; a longer generation raises `TimeoutError`.
        stop: stop sequences (the reply ends before the first one).
        max_retries: extra tries after a `TimeoutError` or `ConnectionError` (invoke only).
        streaming: make `invoke` stream internally (callbacks see tokens as they come).
        guard: a `Guard` on this same host: each request is decided on the host's own prefill
            pass (`guard.whitebox.prefill.guarded_generate`: the guard costs a projection, not a
            second forward), the reply is checked with `check_output`, and a blocked request or
            reply comes back as the constructive reply with the decision in
            ``response_metadata["guard_decision"]``. Streaming then yields the checked reply as
            one chunk. Without a guard here, a `GuardedRunnable` wrapping this model with its own
            guard on this host decides on this model's prefill pass just the same (see
            `GuardedRunnable`).

    Example:
        >>> llm = HostChatModel(max_tokens=32)  # loads nothing yet
        >>> llm.invoke("Name a colour.").content  # doctest: +SKIP
        'Blue.'
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    host: Any = Field(default=None, exclude=True)
    model_name: str | None = Field(default=None, alias="model")
    max_tokens: int | None = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    timeout: float | None = Field(default=None, gt=0)
    stop: list[str] | None = None
    max_retries: int = Field(default=2, ge=0)
    streaming: bool = False
    guard: Any = Field(default=None, exclude=True)

    @property
    def _llm_type(self) -> str:
        return "guard-host-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self._name(), "max_tokens": self.max_tokens, "temperature": self.temperature}

    def _host(self) -> Any:
        return self.host if self.host is not None else _shared_default("host")

    def _name(self) -> str:
        if self.model_name:
            return self.model_name
        if self.host is not None:
            return str(getattr(self.host, "name", "host"))
        return "SmolLM2-135M-Instruct"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "guard_host"
        params["ls_model_name"] = kwargs.get("model") or self._name()
        params["ls_temperature"] = kwargs.get("temperature", self.temperature)
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        stops = stop or self.stop
        if stops:
            params["ls_stop"] = list(stops)
        return params

    # ------------------------------------------------------------------ generation core
    def _pieces(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, **kwargs: Any
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (text delta, info) while generating; the final info has the counts.

        Decoding is transformers' `generate` with a streamer and `stop_strings`
        (`guard.whitebox.decoding.TokenStream`)."""
        from guard.whitebox.decoding import TokenStream

        host = self._host()
        tok = host.tokenizer
        chat = _to_chat(messages)
        text_in = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        ids = tok(text_in, add_special_tokens=False)["input_ids"]
        # set by a GuardedRunnable on this host: the guard decides on the prefill pass
        around_prefill = PREFILL_HOOK.get()
        stream = TokenStream(
            host,
            ids,
            max_new_tokens=int(kwargs.get("max_tokens") or self.max_tokens or 256),
            temperature=float(kwargs.get("temperature", self.temperature)),
            stop=(stop if stop is not None else self.stop) or None,
            timeout=kwargs.get("timeout", self.timeout),
            prefill=around_prefill(host, chat, ids) if around_prefill is not None else None,
        )
        try:
            for piece in stream:
                yield piece, {}
        finally:
            stream.close()  # a cut stream (the caller stopped reading) stops generating
        end = stream.end
        assert end is not None  # set once the stream is exhausted
        yield "", end.model_dump()

    def _usage(self, info: dict[str, Any]) -> dict[str, int]:
        n_in, n_out = int(info["input_tokens"]), int(info["output_tokens"])
        return {"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out}

    def _guarded(self, messages: Sequence[BaseMessage], stop: list[str] | None, **kwargs: Any) -> AIMessage:
        """One prefill pass for the guard and the reply, then the reply check (see `guard`)."""
        from guard.errors import InputError
        from guard.whitebox.prefill import guarded_generate

        chat = _to_chat(messages)
        last = max((i for i, m in enumerate(chat) if m["role"] == "user"), default=None)
        if last is None:
            raise InputError("HostChatModel(guard=...) needs a user message to decide on")
        history = chat[:last] or None
        prompt = chat[last]["content"]
        host = self._host()
        if getattr(self.guard, "host", None) is not host:
            raise InputError(
                "HostChatModel(guard=...) needs the guard's own host (guard.host) to reuse its prefill"
            )
        max_new = int(kwargs.get("max_tokens") or self.max_tokens or 256)
        temperature = float(kwargs.get("temperature", self.temperature))
        stops = [x for x in (stop if stop is not None else self.stop) or [] if x]
        out = guarded_generate(
            self.guard,
            prompt,
            max_new_tokens=max_new,
            history=history,
            temperature=temperature,
            stop=stops or None,
        )
        decision, text = out.decision, out.text
        if not decision.blocked:
            reply = self.guard.check_output(prompt, text)
            if reply.blocked:
                decision, text = reply, ""
        n_in = len(
            host.tokenizer.apply_chat_template(chat[: last + 1], tokenize=True, add_generation_prompt=True)
        )
        content = text if not decision.blocked else (decision.response or "")
        meta = {
            "model_name": self._name(),
            "model_provider": "guard_host",
            "finish_reason": "guard"
            if decision.blocked
            else ("length" if out.new_tokens >= max_new else "stop"),
            "guard_decision": decision.model_dump(mode="json"),
            "reused_prefill": out.reused_prefill,
        }
        return AIMessage(
            content=content,
            response_metadata=meta,
            usage_metadata={
                "input_tokens": n_in,
                "output_tokens": out.new_tokens,
                "total_tokens": n_in + out.new_tokens,
            },
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.guard is not None:
            message = self._guarded(messages, stop, **kwargs)
            if run_manager is not None and message.content:
                run_manager.on_llm_new_token(str(message.content))
            return ChatResult(generations=[ChatGeneration(message=message)])

        def once() -> ChatResult:
            parts: list[str] = []
            info: dict[str, Any] = {}
            for piece, info in self._pieces(messages, stop, **kwargs):
                if piece:
                    parts.append(piece)
                    if run_manager is not None:
                        run_manager.on_llm_new_token(piece)
            message = AIMessage(
                content="".join(parts),
                usage_metadata=self._usage(info),
                response_metadata={
                    "model_name": self._name(),
                    "finish_reason": info["finish_reason"],
                    "model_provider": "guard_host",
                },
            )
            return ChatResult(generations=[ChatGeneration(message=message)])

        policy = RetryPolicy(
            max_attempts=self.max_retries + 1,
            retry_on=(TimeoutError, ConnectionError),
            initial_wait=0.1,
            max_wait=2.0,
            jitter=0.1,
        )
        return call_with_retry(once, policy)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if self.guard is not None:  # the reply is checked whole before any of it is sent
            message = self._guarded(messages, stop, **kwargs)
            chunk = ChatGenerationChunk(
                message=AIMessageChunk(
                    content=message.content,
                    usage_metadata=message.usage_metadata,
                    chunk_position="last",
                    response_metadata=message.response_metadata,
                )
            )
            if run_manager is not None and message.content:
                run_manager.on_llm_new_token(str(message.content), chunk=chunk)
            yield chunk
            return
        for piece, info in self._pieces(messages, stop, **kwargs):
            if info:
                msg = AIMessageChunk(
                    content="",
                    usage_metadata=self._usage(info),
                    chunk_position="last",
                    response_metadata={
                        "model_name": self._name(),
                        "finish_reason": info["finish_reason"],
                        "model_provider": "guard_host",
                    },
                )
                yield ChatGenerationChunk(message=msg)
                continue
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
