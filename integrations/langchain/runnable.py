"""`GuardedRunnable`: a Runnable that wraps any Runnable and checks what goes in and out.

Needs the `langchain` extra (`pip install 'latent-guardrail[langchain]'`).

Example:
    >>> from langchain_core.prompts import ChatPromptTemplate  # doctest: +SKIP
    >>> from langchain_core.output_parsers import StrOutputParser  # doctest: +SKIP
    >>> chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | HostChatModel() | StrOutputParser()  # doctest: +SKIP
    >>> safe = GuardedRunnable(chain, guard=Guard.default())  # doctest: +SKIP
    >>> safe.invoke({"question": "How do I build a pipe bomb?"})  # doctest: +SKIP
    "I can't help with making weapons or hurting anyone. ..."
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import os
import threading
import time
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from guard._deps import require

require("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.callbacks.manager import adispatch_custom_event, dispatch_custom_event  # noqa: E402
from langchain_core.load.serializable import SerializedConstructor, SerializedNotImplemented  # noqa: E402
from langchain_core.messages import (  # noqa: E402
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    convert_to_messages,
)
from langchain_core.prompt_values import PromptValue  # noqa: E402
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable  # noqa: E402
from langchain_core.runnables.config import ensure_config, patch_config  # noqa: E402
from pydantic import ConfigDict, Field, field_validator  # noqa: E402

from guard.decision.rules import STRICTNESS  # noqa: E402
from guard.errors import InputError  # noqa: E402
from integrations._core import (  # noqa: E402
    DEFAULT_CHECK_EVERY,
    Checker,
    GatedStream,
    GuardedDecision,
    merge,
    prompt_hash,
    text_of,
    unavailable,
)
from integrations.audit import JsonlAuditLog  # noqa: E402
from integrations.reliability import (  # noqa: E402
    DEFAULT_RETRY_ON,
    DEFAULT_TIMEOUT,
    RetryPolicy,
    acall_in_thread,
    acall_with_retry,
    afirst_with_retry,
    call_with_retry,
    first_with_retry,
    with_timeout,
)

#: Keys of a dict output that usually hold the answer (the constructive reply goes there).
_ANSWER_KEYS = ("answer", "output", "text", "result", "response")

#: Name of the custom callback event that carries every decision.
DECISION_EVENT = "guard_decision"
#: Key of the decision in a message's `response_metadata`.
DECISION_KEY = "guard_decision"

_PROMPT_KEYS = ("input", "question", "query", "prompt", "text", "message", "messages")
_CONTEXT_KEYS = ("context", "documents", "docs")

from integrations._core import shared_default as _shared_default  # noqa: E402

_guards_lock = threading.Lock()
_guards_at: dict[str, Any] = {}


def _guard_at(path: str | os.PathLike[str]) -> Any:
    """The guard saved in folder `path`, loaded once per process on first use (like the default)."""
    key = str(Path(path).expanduser().resolve())
    with _guards_lock:
        if key not in _guards_at:
            from guard import Guard

            _guards_at[key] = Guard.load(key)
        return _guards_at[key]


def _guard_ref(guard: Any) -> str | None:
    """What a serialised `GuardedRunnable` writes for a (not None) guard: a folder's path, or None
    when the guard has no folder `Guard.load` rebuilds it from."""
    if isinstance(guard, (str, os.PathLike)):
        return os.fspath(guard)
    folder = getattr(guard, "loaded_from", None)
    return os.fspath(folder) if isinstance(folder, (str, os.PathLike)) else None


def _audit_ref(audit: Any) -> dict[str, Any] | None:
    """A `JsonlAuditLog` as its constructor's arguments; None for any other audit sink."""
    if type(audit) is not JsonlAuditLog:
        return None
    return {
        "path": os.fspath(audit.path),
        "include_prompt": audit.include_prompt,
        "include_reasons": audit.include_reasons,
    }


def _retry_ref(retry: RetryPolicy) -> dict[str, Any] | None:
    """A `RetryPolicy` as its fields (`retry_on` by builtin exception name, left out when it is the
    default); None when it retries on an exception class that is not a builtin."""
    out = retry.model_dump(exclude={"retry_on"})
    if set(retry.retry_on) != set(DEFAULT_RETRY_ON):
        if not all(getattr(builtins, e.__name__, None) is e for e in retry.retry_on):
            return None
        out["retry_on"] = [e.__name__ for e in retry.retry_on]
    return out


__all__ = ["DECISION_EVENT", "DECISION_KEY", "DecisionCollector", "GuardedRunnable", "decision_from"]


@dataclass(frozen=True)
class _Part:
    """A text of the input other than the prompt: checked on its own (as a reply when `reply_to`)."""

    label: str
    text: str
    reply_to: str | None = None
    in_history: bool = False  # also sent as history, which a `Guard` checks message by message


@dataclass(frozen=True)
class _Request:
    prompt: str
    history: list[dict[str, str]] | None
    context: list[Any] | None
    parts: list[_Part] = field(default_factory=list)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str, ensure_ascii=False)


def _to_messages(value: Any) -> list[BaseMessage]:
    try:
        return list(convert_to_messages(value))
    except (ValueError, TypeError, KeyError, NotImplementedError) as exc:  # pydantic errors are ValueErrors
        raise InputError(
            f"cannot read the input messages ({type(exc).__name__}: {str(exc)[:200]}); pass "
            "messages, (role, text) pairs with role user/human, ai/assistant, system or tool, "
            "or {'role': ..., 'content': ...} dicts"
        ) from None


def _blocks(m: BaseMessage) -> list[str]:
    content = m.content
    if isinstance(content, str):
        return [content]
    out = []
    for b in content:
        if isinstance(b, str):
            out.append(b)
        elif isinstance(b, dict) and isinstance(b.get("text"), str):
            out.append(b["text"])
    return out


def _message_text(m: BaseMessage, label: str) -> str:
    content = m.content
    if not isinstance(content, (str, list)):
        raise InputError(f"{label} has content of type {type(content).__name__}; use str or content blocks")
    return "\n".join(b for b in _blocks(m) if b)


def _documents(raw: Any, key: str) -> list[Any]:
    if isinstance(raw, str) or hasattr(raw, "page_content"):
        return [raw]
    if isinstance(raw, (list, tuple)):
        for i, d in enumerate(raw):
            if not (isinstance(d, str) or isinstance(getattr(d, "page_content", None), str)):
                raise InputError(
                    f"input[{key!r}][{i}] is a {type(d).__name__}; documents must be str or "
                    "have .page_content"
                )
        return list(raw)
    raise InputError(f"input[{key!r}] is a {type(raw).__name__}; pass a str, a Document or a list of them")


def _texts_in(value: Any, label: str, depth: int = 0) -> list[_Part]:
    """Every text a prompt template could put in front of the model, from one input value."""
    if depth > 8 or value is None or isinstance(value, (bool, int, float)):
        return []
    if isinstance(value, str):
        return [_Part(label, value)] if value.strip() else []
    if isinstance(value, PromptValue):
        value = value.to_messages()
    if isinstance(value, BaseMessage):
        value = [value]
    text = getattr(value, "page_content", None)
    if isinstance(text, str):
        return [_Part(label, text)] if text.strip() else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _texts_in(v, f"{label}[{k!r}]", depth + 1)]
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, BaseMessage) for v in value):
            return [
                _Part(f"{label} message {i} ({m.type})", t)
                for i, m in enumerate(value)
                if (t := _message_text(m, f"{label} message {i}")).strip()
            ]
        return [p for i, v in enumerate(value) for p in _texts_in(v, f"{label}[{i}]", depth + 1)]
    return []


def _reply_text(output: Any) -> str:
    """What the reply check reads: the text, and the arguments of any tool calls it makes."""
    calls = getattr(output, "tool_calls", None) or []
    return "\n".join([text_of(output), *(_json(c.get("args", c)) for c in calls)]).strip()


def has_native_async(runnable: Any) -> bool:
    """Whether `runnable.ainvoke` awaits native async code rather than its sync call in the event
    loop's default executor (whose threads `asyncio.run` joins at shutdown, even after a timeout).

    Chat models and LLMs count as native when they implement `_agenerate` or `_astream`, a
    `RunnableLambda` when it has an async function, sequences and maps when all their steps do,
    bindings and retries by what they wrap; any other runnable (prompt templates, parsers) counts
    as native.

    Example:
        >>> from langchain_core.runnables import RunnableLambda
        >>> has_native_async(RunnableLambda(lambda x: x))
        False
        >>> async def echo(x): return x
        >>> has_native_async(RunnableLambda(lambda x: x, afunc=echo))
        True
    """
    from langchain_core.language_models import BaseChatModel, BaseLLM
    from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnableSequence
    from langchain_core.runnables.base import RunnableBindingBase

    if isinstance(runnable, RunnableLambda):
        return getattr(runnable, "afunc", None) is not None
    if isinstance(runnable, BaseChatModel):
        t = type(runnable)
        return t._agenerate is not BaseChatModel._agenerate or t._astream is not BaseChatModel._astream
    if isinstance(runnable, BaseLLM):
        llm_t = type(runnable)
        return llm_t._agenerate is not BaseLLM._agenerate or llm_t._astream is not BaseLLM._astream
    if isinstance(runnable, RunnableSequence):
        return all(has_native_async(s) for s in runnable.steps)
    if isinstance(runnable, RunnableParallel):
        return all(has_native_async(s) for s in runnable.steps__.values())
    if isinstance(runnable, RunnableBindingBase):  # bindings, retries, fallbacks' configured runs
        return has_native_async(runnable.bound)
    return True


def decision_from(message: Any) -> GuardedDecision | None:
    """The guard's decision attached to a message by `GuardedRunnable`, or `None`.

    Example:
        >>> from langchain_core.messages import AIMessage
        >>> decision_from(AIMessage("hi")) is None
        True
    """
    meta = getattr(message, "response_metadata", None) or {}
    data = meta.get(DECISION_KEY)
    return GuardedDecision.model_validate(data) if data is not None else None


class DecisionCollector(BaseCallbackHandler):
    """A callback handler that keeps every guard decision of the runs it is passed to.

    Example:
        >>> collector = DecisionCollector()
        >>> safe.invoke("hi", config={"callbacks": [collector]})  # doctest: +SKIP
        >>> collector.decisions[-1].action  # doctest: +SKIP
        <Action.ANSWER: 'answer'>
    """

    def __init__(self) -> None:
        self.decisions: list[GuardedDecision] = []
        self._lock = threading.Lock()

    def on_custom_event(
        self, name: str, data: Any, *, run_id: Any, tags: Any = None, metadata: Any = None, **kwargs: Any
    ) -> None:
        if name == DECISION_EVENT:
            with self._lock:
                self.decisions.append(data)


def _is_message_type(tp: Any) -> bool:
    if isinstance(tp, type):
        return issubclass(tp, BaseMessage)
    return any(_is_message_type(a) for a in typing.get_args(tp))


def _role(m: BaseMessage) -> str | None:
    if isinstance(m, HumanMessage):
        return "user"
    if isinstance(m, AIMessage):
        return "assistant"
    if isinstance(m, SystemMessage):
        return "system"
    if isinstance(m, ChatMessage) and m.role in {"user", "assistant", "system"}:
        return m.role
    return None


def _attach(message: BaseMessage, decision: GuardedDecision) -> BaseMessage:
    meta = {**(message.response_metadata or {}), DECISION_KEY: decision.model_dump(mode="json")}
    return message.model_copy(update={"response_metadata": meta})


def _graph_step(value: Any) -> Any:
    """A node of `GuardedRunnable.get_graph` (the graph names the guard's checks; it runs nothing)."""
    return value


_T = TypeVar("_T")

#: Set by `GuardedRunnable` around its call of a `HostChatModel` on the guard's own host (see
#: `_PrefillCheck`): the model runs its prefill forward pass inside ``hook(host, chat, ids)``.
PREFILL_HOOK: contextvars.ContextVar[
    Callable[[Any, list[dict[str, str]], list[int]], AbstractContextManager[None]] | None
] = contextvars.ContextVar("guard_prefill_hook", default=None)


class _Blocked(BaseException):
    """Raised in a `HostChatModel`'s prefill when the request is blocked, so it generates nothing.

    A `BaseException`, so no retry policy (not even ``retry_on=(Exception,)``) calls it again.
    """


class _PrefillCheck:
    """The request's decision, made on the prefill pass of the `HostChatModel` it is sent to.

    Inside `active()`, the model runs its forward pass over the prompt inside `around_prefill`,
    which records the Latent Guard's layers during that pass and then, before the first token is
    chosen, runs `decide` (the checks `GuardedRunnable` runs before any call) while the guard
    takes those activations instead of running the host (`LatentGuard.reuse_states`). The
    activations are keyed by the chat's token ids, so the guard takes them only for the very
    chat the model reads; for any other text (a prompt the guard normalises, a history it
    shortens) it runs its own pass, as before. A blocked request raises `_Blocked` from the
    prefill: no token is generated. A chat the guard cannot read that way (one that does not end
    with the user's turn) is decided before the model's pass, with the guard's own.
    """

    def __init__(self, latent: Any, decide: Callable[[], GuardedDecision]) -> None:
        self._latent = latent
        self._decide = decide
        self.decision: GuardedDecision | None = None
        self.seconds = 0.0  # spent deciding inside the model's call

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Inside the block (and in threads that copy its context), the model decides on its prefill."""
        token = PREFILL_HOOK.set(self.around_prefill)
        try:
            yield
        finally:
            PREFILL_HOOK.reset(token)

    @contextlib.contextmanager
    def around_prefill(self, host: Any, chat: list[dict[str, str]], ids: list[int]) -> Iterator[None]:
        """What the model's prefill forward pass runs in (`HostChatModel`, inside its host lock)."""
        if self.decision is not None:  # a retried call: decided on the first attempt
            yield
            return
        layout = self._layout(host, chat, ids)
        if layout is None:  # the guard cannot read this pass: it decides first, on its own pass
            self._decide_now(None)
            yield
            return
        key, positions = layout
        layers = key[1]
        with host.record(layers, stop_after=False) as store:
            yield
        if {int(store[layer].shape[1]) for layer in layers} != {len(ids)}:  # never guess
            self._decide_now(None)
            return
        import numpy as np

        # [layers, positions, hidden], as `LatentGuard.features` reads them
        rows = np.stack([store[layer][0, positions, :].float().cpu().numpy() for layer in layers])
        self._decide_now({key: rows})

    def _layout(
        self, host: Any, chat: list[dict[str, str]], ids: list[int]
    ) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], list[int]] | None:
        """``((token ids, layers), positions)`` of the chat as the Latent Guard reads it, or None."""
        if host is not self._latent.host or not chat or chat[-1]["role"] != "user":
            return None
        try:
            layers = tuple(self._latent.capture_layers)
            enc = host.encode(chat[-1]["content"], chat[:-1] or None)
        except Exception:  # noqa: BLE001 - an unfitted guard, an empty prompt: its own check says why
            return None
        if enc.input_ids != tuple(ids):
            return None
        return (enc.input_ids, layers), [enc.instruction, *enc.post_instruction]

    def _decide_now(self, states: dict[Any, Any] | None) -> None:
        start = time.perf_counter()
        try:
            with self._latent.reuse_states(states) if states else contextlib.nullcontext():
                self.decision = self._decide()
        finally:
            self.seconds += time.perf_counter() - start
        if self.decision.blocked:
            raise _Blocked


def _undecided(checker: Checker, prompt: str, exc: BaseException) -> GuardedDecision:
    """What is recorded when the model's call failed before its prefill pass decided the request."""
    data = unavailable(exc, checker.fail_closed).model_dump()
    data["reasons"] = [
        "not decided: the model's call failed before its prefill pass, where the guard decides"
    ]
    return GuardedDecision(**data, stage="input", prompt_sha256=prompt_hash(prompt))


class GuardedRunnable(RunnableSerializable[Any, Any]):
    """A Runnable that guards another: checks the request first, the reply after (or while it streams).

    When the request is not answered, the wrapped runnable is never called and the constructive
    reply comes back in its output type: an `AIMessage` for chat models and message-producing
    chains, a `str` for string chains. Every decision is sent as the custom callback event
    `"guard_decision"` (see `DecisionCollector`) and, for message outputs, stored in
    `response_metadata["guard_decision"]` (read it with `decision_from`). Streams are checked
    every `check_every` chunks and at the end; chunks are released only after the text they
    complete has passed, so a harmful reply is cut before it is sent and ends with a
    constructive sentence.

    Wrapping the guard's own `HostChatModel` (``GuardedRunnable(HostChatModel(host=guard.host),
    guard=guard)``) reuses its prefill: the host runs over the prompt once, for the guard and the
    reply together. The request is decided (with the same checks and scores) on the model's own
    forward pass over the prompt, before its first token, instead of on a pass of the guard's
    before the call; a blocked request generates nothing and comes back as above, an allowed one
    is the model's reply, then checked as usual. This holds for `invoke`, `ainvoke`, `batch`,
    `stream` and `astream` (`reuse_prefill=False` turns it off), for a request without earlier
    turns (with them, the guard reads the prompt and the turns in one capture of its own, which
    costs no more). Where the guard reads another
    text than the model (a prompt it normalises, a history it shortens), it still runs its own
    pass. Any other runnable (a chain, a `HostChatModel` on another host or on the shared default
    one, ``host=None``, or with its own `guard`) is checked before the call. With
    ``isolate_callbacks=False``, the model's traced run of a request blocked on its prefill ends
    with an error, since it was stopped inside the model.

    Args:
        bound: the runnable to guard (a chat model, a chain, any Runnable).
        guard: a `Guard`; the path of a guard folder (`Guard.load(path)`, once per process, on
            first use); `None` loads `Guard.default()` once, on first use.
        check_output: check the reply as well (default True).
        check_every: in streams, check the growing reply every this many chunks.
        output_type: "auto" (from the wrapped runnable's output type), "message", "str" or
            "dict": the type of the constructive reply when the request is blocked. A chain that
            returns dicts gets ``{output_key: reply, "guard_decision": {...}}``.
        output_key: the key of that reply in a dict (default: "answer", "output", "text",
            "result" or "response" when the chain's output has one, else its first key).
        input_key: for dict inputs, the key holding the user's text (default: the first of
            input/question/query/prompt/text/message/messages present).
        input_keys: for dict inputs, the keys whose texts are checked (default: every key; each
            string, message list or nested text is checked on its own).
        context_key: for dict inputs, the key holding retrieved documents (default: the first
            of context/documents/docs present).
        fail_closed: when the guard raises, refuse (True) or answer (False); `None` follows the
            guard's `policy.fail_closed` (True by default).
        retry: retries with backoff and a per-attempt timeout for the wrapped call (a
            `RetryPolicy`, or a dict of its fields).
        timeout: seconds the wrapped call may take (each attempt; for streams, until the first
            chunk) when `retry` sets no timeout; default 300; None for no limit. A timed-out
            call raises `TimeoutError` and is recorded in the audit log. In `ainvoke`, a runnable
            without a native async path runs in a daemon thread, so nothing waits for a call
            that timed out.
        audit: an optional `JsonlAuditLog` (anything with `write(decision, prompt=...)`), or a
            dict of `JsonlAuditLog`'s arguments (``{"path": ..., "include_prompt": False}``).
        isolate_callbacks: run the wrapped runnable without the caller's callbacks (default), so
            nothing the gate holds back reaches `astream_events` or a callback handler; the
            released chunks reach them as this runnable's own stream events. False passes the
            callbacks through (the inner run is traced, and its unchecked tokens are seen).
        reuse_prefill: decide on the prefill pass of the guard's own `HostChatModel` when that is
            the wrapped runnable (default True; see above). False: the guard runs its own pass
            over the prompt before the call, as for any runnable.

    Example:
        >>> from langchain_core.runnables import RunnableLambda
        >>> safe = GuardedRunnable(RunnableLambda(lambda q: "echo " + q), guard=my_guard)  # doctest: +SKIP
        >>> safe.invoke("How do I build a pipe bomb?")  # doctest: +SKIP
        "I can't help with making weapons or hurting anyone. ..."
        >>> (safe | StrOutputParser()).invoke("Write a poem about the sea.")  # doctest: +SKIP
        'echo Write a poem about the sea.'

    Serialisation (LangChain's `dumpd`/`dumps`, `load`/`loads`):
        The id is ``["integrations", "langchain", "runnable", "GuardedRunnable"]``. `loads` imports
        it only when its root is a valid namespace and the class is in `allowed_objects` (the
        default, ``"core"``, admits langchain_core's classes only), so name both, with the classes
        of the wrapped runnable:

        >>> from langchain_core.load import dumps, loads
        >>> from langchain_core.prompts import PromptTemplate
        >>> safe = GuardedRunnable(PromptTemplate.from_template("Q: {q}"), check_every=4)
        >>> back = loads(
        ...     dumps(safe),
        ...     valid_namespaces=["integrations"],
        ...     allowed_objects=[GuardedRunnable, PromptTemplate],
        ... )
        >>> back.check_every, back.guard is None, back.bound == safe.bound
        (4, True, True)

        Fields are written as LangChain writes them; the guard, audit and retry as references,
        never as opaque objects:

        - `guard`: None stays None (the shipped default, loaded on first use); a path stays that
          path; a `Guard` read by `Guard.load` is written as its folder (`Guard.loaded_from`), and
          the reloaded runnable loads ``Guard.load(path)`` on first use, as it does for None (on
          the host the folder records, not a host object given to the first `Guard.load`; changes
          made to the guard after loading are not kept: save it and load that folder first).
        - `audit`: a `JsonlAuditLog` is written as its arguments (file path and flags).
        - `retry`: a `RetryPolicy` is written as its fields; `retry_on` by builtin exception names
          (left out when it is the default).
        - `bound`: serialised by LangChain; one that is not serialisable (a `RunnableLambda`, most
          custom chat models) is written as LangChain's ``"not_implemented"`` inside, and `loads`
          raises `NotImplementedError` for it, as for any LangChain object.

        A guard without a folder (a `Guard` built in memory, `Guard.default()`: pass None for that,
        any other guard object), another audit sink, or a retry on a non-builtin exception class
        cannot be named in JSON: then `to_json` returns LangChain's ``"not_implemented"`` form for
        the whole runnable, as LangChain does for a `RunnableLambda`. `dumpd` still succeeds (so
        tracing and logging that dump runnables keep working) and `loads` raises
        `NotImplementedError`. Only the whole runnable is marked, not the field alone: with
        ``ignore_unserializable_fields=True`` a field left out would come back as None, and a
        runnable whose own guard was left out would silently run on the default guard instead.

        A manifest names files (the guard folder, the audit log `loads` will append to) and the
        wrapped runnable's configuration: as LangChain warns, load only manifests you trust.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    bound: Runnable[Any, Any]
    guard: Any = None
    check_output: bool = True
    check_every: int = Field(DEFAULT_CHECK_EVERY, ge=1)
    output_type: Literal["auto", "message", "str", "dict"] = "auto"
    output_key: str | None = None
    input_key: str | None = None
    input_keys: list[str] | None = None
    context_key: str | None = None
    fail_closed: bool | None = None
    retry: RetryPolicy | None = None
    timeout: float | None = Field(DEFAULT_TIMEOUT, gt=0)
    audit: Any = None
    isolate_callbacks: bool = True
    reuse_prefill: bool = True

    def __init__(self, bound: Runnable[Any, Any], guard: Any = None, **kwargs: Any) -> None:
        super().__init__(bound=bound, guard=guard, **kwargs)

    @field_validator("audit", mode="before")
    @classmethod
    def _audit_from_dict(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        unknown = set(value) - {"path", "include_prompt", "include_reasons"}
        if unknown or "path" not in value:
            raise ValueError(
                f"an audit dict holds JsonlAuditLog's arguments (path, include_prompt, include_reasons); "
                f"got keys {sorted(value)}"
            )
        return JsonlAuditLog(**value)

    @field_validator("retry", mode="before")
    @classmethod
    def _retry_on_by_name(cls, value: Any) -> Any:
        if not isinstance(value, dict) or not isinstance(value.get("retry_on"), (list, tuple)):
            return value
        found = []
        for name in value["retry_on"]:
            if isinstance(name, type):
                found.append(name)
                continue
            exc = getattr(builtins, name, None) if isinstance(name, str) else None
            if not (isinstance(exc, type) and issubclass(exc, BaseException)):
                raise ValueError(f"retry_on names builtin exception classes; {name!r} is not one")
            found.append(exc)
        return {**value, "retry_on": tuple(found)}

    # ------------------------------------------------------------------ serialisation
    @classmethod
    def is_lc_serializable(cls) -> bool:
        """True: `dumpd`/`dumps` write a constructor, `load`/`loads` rebuild it (see the class doc)."""
        return True

    def _references(self) -> dict[str, Any] | None:
        """The guard, audit and retry as JSON references, or None when one has none."""
        refs: dict[str, Any] = {}
        for name, value, ref in (
            ("guard", self.guard, _guard_ref),
            ("audit", self.audit, _audit_ref),
            ("retry", self.retry, _retry_ref),
        ):
            if value is None:
                continue
            refs[name] = ref(value)
            if refs[name] is None:
                return None
        return refs

    @property
    def lc_attributes(self) -> dict[str, Any]:
        """The guard, audit and retry as references, in place of the objects (see the class doc)."""
        return self._references() or {}

    def to_json(self) -> SerializedConstructor | SerializedNotImplemented:
        """LangChain's constructor form, or its "not_implemented" form when the guard, audit or
        retry cannot be written as a reference (see the class doc)."""
        if self._references() is None:
            return self.to_json_not_implemented()
        return super().to_json()

    # ------------------------------------------------------------------ Runnable metadata
    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return self.bound.InputType

    @property
    def OutputType(self) -> Any:  # noqa: N802
        return self.bound.OutputType

    def get_input_schema(self, config: RunnableConfig | None = None) -> Any:
        return self.bound.get_input_schema(config)

    def get_output_schema(self, config: RunnableConfig | None = None) -> Any:
        return self.bound.get_output_schema(config)

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return super().get_name(suffix, name=name or self.name or f"Guarded{self.bound.get_name()}")

    def get_graph(self, config: RunnableConfig | None = None) -> Any:
        """The wrapped runnable's own graph between the guard's two checks.

        ``Input -> GuardCheckRequest -> (the wrapped steps) -> GuardCheckReply -> Output``, with a
        conditional edge from the request check straight to the output (a blocked request never
        reaches the wrapped runnable). Without `check_output` there is no reply check. A wrapped
        graph without a single first and last step is shown as one node.

        Example:
            >>> from langchain_core.runnables import RunnableLambda
            >>> chain = RunnableLambda(str.strip) | RunnableLambda(str.upper)
            >>> g = GuardedRunnable(chain, guard=object()).get_graph()
            >>> [n.name for n in g.nodes.values()][1:5]
            ['GuardCheckRequest', 'strip', 'upper', 'GuardCheckReply']
        """
        from langchain_core.runnables import RunnableLambda
        from langchain_core.runnables.graph import Graph

        graph = Graph()
        start = graph.add_node(self.get_input_schema(config))
        check_in = graph.add_node(RunnableLambda(_graph_step, name="GuardCheckRequest"))
        graph.add_edge(start, check_in)
        inner = self.bound.get_graph(config)
        inner.trim_first_node()
        inner.trim_last_node()
        first = last = None
        if inner.first_node() is not None and inner.last_node() is not None:
            first, last = graph.extend(inner)
        if first is None or last is None:  # no single entry and exit: the wrapped runnable as one node
            first = last = graph.add_node(self.bound)
        graph.add_edge(check_in, first)
        tail = last
        if self.check_output:
            check_out = graph.add_node(RunnableLambda(_graph_step, name="GuardCheckReply"))
            graph.add_edge(last, check_out)
            tail = check_out
        end = graph.add_node(self.get_output_schema(config))
        graph.add_edge(tail, end)
        graph.add_edge(check_in, end, data="blocked", conditional=True)
        return graph

    # ------------------------------------------------------------------ tools
    def bind_tools(self, tools: Any, **kwargs: Any) -> GuardedRunnable:
        """The wrapped chat model with `tools` bound, still guarded (what `create_agent` calls).

        The arguments of the tool calls a reply makes are checked with its text.

        Raises:
            NotImplementedError: the wrapped runnable cannot bind tools.
        """
        bind = getattr(self.bound, "bind_tools", None)
        if bind is None:
            raise NotImplementedError(
                f"{type(self.bound).__name__} has no bind_tools; guard a chat model that "
                "supports tool calling, or use GuardMiddleware in the agent"
            )
        return self.model_copy(update={"bound": bind(tools, **kwargs)})

    def with_structured_output(self, schema: Any, **kwargs: Any) -> GuardedRunnable:
        """The wrapped chat model's structured output, still guarded (request and reply checked).

        The reply check reads every field of the structured reply. When a request or reply is
        blocked, a dict schema (a JSON schema or `TypedDict`) gets a dict with the constructive
        reply under `output_key` (default ``"output"``) and the decision under
        ``"guard_decision"``; a pydantic schema gets the constructive reply as a `str`, since no
        instance of the caller's schema can be made up (test with ``isinstance(out, str)``, or
        read the ``"guard_decision"`` callback event).

        Raises:
            NotImplementedError: the wrapped runnable has no structured output.
        """
        method = getattr(self.bound, "with_structured_output", None)
        if method is None:
            raise NotImplementedError(
                f"{type(self.bound).__name__} has no with_structured_output; guard a chat model that has one"
            )
        structured = method(schema, **kwargs)
        is_model = isinstance(schema, type) and hasattr(schema, "model_json_schema")
        return self.model_copy(update={"bound": structured, "output_type": "str" if is_model else "dict"})

    # ------------------------------------------------------------------ helpers
    def _retry(self) -> RetryPolicy | None:
        return with_timeout(self.retry, self.timeout)

    def _guard(self) -> Any:
        """The guard: the shared default for None, a folder's guard for a path (both on first use)."""
        if self.guard is None:
            return _shared_default("guard")
        if isinstance(self.guard, (str, os.PathLike)):
            return _guard_at(self.guard)
        return self.guard

    def _checker(self) -> Checker:
        return Checker(self._guard(), fail_closed=self.fail_closed, audit=self.audit)

    def _extract(self, value: Any) -> _Request:
        """What the wrapped runnable will read: the prompt (with history and documents) and every
        other text of the input (each checked on its own).

        Dict inputs: the prompt is `input_key` (default the first of input/question/query/...),
        and every other string value, message list or nested text (or only `input_keys`, when
        named) is checked too. Message inputs: the last user message is the prompt, read with
        the messages before it; every message of every role (system, AI prefill, tool, earlier
        user turns) and every text block of a multi-block content is checked too.

        Raises:
            InputError: no text to check, a malformed message, a role LangChain does not know,
                a non-text content, or documents that are not text.
        """
        context = None
        parts: list[_Part] = []
        if isinstance(value, dict):
            ckey = self.context_key or next((k for k in _CONTEXT_KEYS if k in value), None)
            if ckey is not None and value.get(ckey) is not None:
                context = _documents(value[ckey], ckey)
            names = [k for k in (self.input_keys or list(value)) if k != ckey]
            missing = [k for k in names if k not in value]
            if missing:
                raise InputError(
                    f"input_keys {missing} are not in the input (keys: {sorted(map(str, value))}); "
                    "fix GuardedRunnable(input_keys=...)"
                )
            key = self.input_key or next((k for k in _PROMPT_KEYS if k in value and k in names), None)
            if key is None:
                texts = [k for k in names if isinstance(value[k], str)]
                key = texts[0] if len(texts) == 1 else None
            if key is None or key not in value:
                raise InputError(
                    f"cannot tell which key of {sorted(map(str, value))} holds the user's text; "
                    f"pass GuardedRunnable(..., input_key='...')"
                )
            for k in names:
                if k != key:
                    parts.extend(_texts_in(value[k], f"input[{k!r}]"))
            value = value[key]
        if isinstance(value, str):
            return _Request(value, None, context, parts)
        if isinstance(value, PromptValue):
            value = value.to_messages()
        if isinstance(value, (BaseMessage, dict)):
            value = [value]
        if isinstance(value, (list, tuple)):
            messages = _to_messages(value)
            texts = [_message_text(m, f"message {i}") for i, m in enumerate(messages)]
            users = [i for i, m in enumerate(messages) if _role(m) == "user" and texts[i].strip()]
            last = (
                users[-1]
                if users
                else next((i for i in reversed(range(len(messages))) if texts[i].strip()), None)
            )
            if last is None:
                raise InputError("the input messages contain no text to check; send a user message")
            history = [
                {"role": r, "content": texts[i]} for i, m in enumerate(messages[:last]) if (r := _role(m))
            ]
            user = ""
            for i, m in enumerate(messages):
                label = f"message {i} ({m.type})"
                if i != last and texts[i].strip():
                    # a reply of the assistant is read as a reply (a refusal in it passes)
                    parts.append(
                        _Part(
                            label,
                            texts[i],
                            reply_to=user if _role(m) == "assistant" else None,
                            in_history=i < last and _role(m) is not None,
                        )
                    )
                blocks = _blocks(m)
                if len(blocks) > 1:
                    parts.extend(_Part(f"{label} block {j}", b) for j, b in enumerate(blocks) if b.strip())
                for j, call in enumerate(getattr(m, "tool_calls", None) or []):
                    parts.append(_Part(f"{label} tool call {j}", _json(call.get("args", call))))
                if _role(m) == "user" and texts[i].strip():
                    user = texts[i]
            return _Request(texts[last], history or None, context, parts)
        raise InputError(
            f"cannot read a prompt from a {type(value).__name__}; pass a str, messages, "
            f"a PromptValue or a dict with input_key"
        )

    def _check(self, checker: Checker, req: _Request) -> GuardedDecision:
        """The request's decision: the prompt's, or the strictest part's when a part is stricter."""
        # a `Guard` checks every history message on its own; other guards get them as parts
        own = getattr(checker.guard, "checks_history_messages", False) is True
        todo = [p for p in req.parts if not (own and p.in_history)]
        asked = [p for p in todo if p.reply_to is None]
        replies = [p for p in todo if p.reply_to is not None]
        found = list(zip(asked, checker.check_many([p.text for p in asked])))
        found += [(p, checker.check_output(p.reply_to or "", p.text)) for p in replies]
        d = checker.check_input(req.prompt, req.history, req.context)
        if not found:
            return d
        worst_part, worst = max(found, key=lambda x: STRICTNESS[x[1].action])
        if STRICTNESS[worst.action] <= STRICTNESS[d.action]:
            n = len(found)
            return d.model_copy(
                update={"reasons": [*d.reasons, f"{n} other part(s) of the input checked; none stricter"]}
            )
        scores = {**d.scores, **{f"{worst_part.label}.{k}": v for k, v in worst.scores.items()}}
        reasons = [
            f"{worst_part.label} was checked on its own: {worst.action.value}",
            *worst.reasons,
            *[f"prompt: {r}" for r in d.reasons],
        ]
        return worst.model_copy(
            update={
                "scores": scores,
                "reasons": reasons,
                "stage": "input",
                "guard_ms": d.guard_ms + worst.guard_ms,
                "prompt_sha256": d.prompt_sha256,
            }
        )

    async def _acheck(self, checker: Checker, req: _Request) -> GuardedDecision:
        return await asyncio.to_thread(self._check, checker, req)

    def _prefill_path(self, checker: Checker, req: _Request) -> _PrefillCheck | None:
        """How the request is decided on the wrapped model's own prefill pass, when the wrapped
        runnable is a `HostChatModel` on the guard's host without a guard of its own (and
        `reuse_prefill`); None: the guard decides on its own pass before the call.

        A request with earlier turns keeps the separate check: the guard reads the prompt and
        every earlier turn in one capture of its own, so deciding on the prefill would save
        nothing and cost one more pass for the earlier turns when the request is refused."""
        from integrations.langchain.chat_model import HostChatModel

        model = self.bound
        if not self.reuse_prefill or not isinstance(model, HostChatModel) or model.guard is not None:
            return None
        if req.history:
            return None
        latent = getattr(checker.guard, "latent", None)
        if model.host is None or getattr(latent, "host", None) is not model.host:
            return None
        return _PrefillCheck(latent, lambda: self._check(checker, req))

    def _decide_and_call(
        self, checker: Checker, req: _Request, call: Callable[[], _T]
    ) -> tuple[GuardedDecision, _T | None, float]:
        """The request's decision, the wrapped call's result (None when it was not called) and
        when the call started (less the time it spent deciding).

        The guard decides first and `call` runs only when the request passes; on the prefill path
        `call` runs at once and the request is decided on the model's prefill pass inside it."""
        prefill = self._prefill_path(checker, req)
        if prefill is None:
            d = self._check(checker, req)
            if d.blocked:
                return d, None, 0.0
            start = time.perf_counter()
            with checker.recording_failure(d, req.prompt):
                return d, call(), start
        start = time.perf_counter()
        try:
            with prefill.active():
                output = call()
        except _Blocked:  # raised on the prefill, once decided: nothing was generated
            assert prefill.decision is not None
            return prefill.decision, None, start
        except BaseException as exc:
            d = prefill.decision if prefill.decision is not None else _undecided(checker, req.prompt, exc)
            with checker.recording_failure(d, req.prompt):
                raise
        # the model never reached its prefill (a cached reply): the guard decides now
        d = prefill.decision if prefill.decision is not None else self._check(checker, req)
        return d, output, start + prefill.seconds

    async def _adecide_and_call(
        self, checker: Checker, req: _Request, call: Callable[[], Awaitable[_T]]
    ) -> tuple[GuardedDecision, _T | None, float]:
        """`_decide_and_call` for an async call."""
        prefill = self._prefill_path(checker, req)
        if prefill is None:
            d = await self._acheck(checker, req)
            if d.blocked:
                return d, None, 0.0
            start = time.perf_counter()
            with checker.recording_failure(d, req.prompt):
                return d, await call(), start
        start = time.perf_counter()
        try:
            with prefill.active():
                output = await call()
        except _Blocked:  # raised on the prefill, once decided: nothing was generated
            assert prefill.decision is not None
            return prefill.decision, None, start
        except BaseException as exc:
            d = prefill.decision if prefill.decision is not None else _undecided(checker, req.prompt, exc)
            with checker.recording_failure(d, req.prompt):
                raise
        d = prefill.decision if prefill.decision is not None else await self._acheck(checker, req)
        return d, output, start + prefill.seconds

    def _inner(self, config: RunnableConfig) -> RunnableConfig:
        """The wrapped run's config: without the caller's callbacks unless `isolate_callbacks` is off,
        so its tokens (``on_llm_new_token``, ``astream_events``) reach the caller only through the
        chunks the gate releases."""
        if not self.isolate_callbacks:
            return config
        # patch_config stores any `Callbacks` value (its annotation says a manager only); [] clears them
        return patch_config(config, callbacks=[])  # type: ignore[arg-type]

    def _wants_message(self, sample: Any = None) -> bool:
        if sample is not None and not isinstance(sample, str):
            return isinstance(sample, BaseMessage)
        if self.output_type != "auto":
            return self.output_type == "message"
        try:
            return _is_message_type(self.bound.OutputType)
        except Exception:  # noqa: BLE001 - some runnables cannot say; fall back to str
            return False

    def _dict_key(self, sample: Any = None) -> str | None:
        """The key of the constructive reply when the wrapped runnable returns dicts, else None."""
        if isinstance(sample, dict):
            return self.output_key or next((k for k, v in sample.items() if isinstance(v, str)), "output")
        if sample is not None:
            return None
        if self.output_type == "dict":
            return self.output_key or "output"
        if self.output_type != "auto":
            return None
        try:
            tp = self.bound.OutputType
            if tp is dict or typing.get_origin(tp) is dict:
                # a pydantic v1 schema has no model_json_schema: the AttributeError is caught below
                schema = self.bound.get_output_schema().model_json_schema()  # type: ignore[union-attr]
                props = list(schema.get("properties", {}))
                return self.output_key or next(
                    (k for k in _ANSWER_KEYS if k in props), props[0] if props else "output"
                )
        except Exception:  # noqa: BLE001 - some runnables cannot say
            return None
        return None

    def _reply(self, decision: GuardedDecision, sample: Any = None, *, chunk: bool = False) -> Any:
        text = decision.response or ""
        key = self._dict_key(sample)
        if key is not None:  # a dict-returning chain gets a dict back, never a bare str
            return {key: text, DECISION_KEY: decision.model_dump(mode="json")}
        if not self._wants_message(sample):
            return text
        meta = {DECISION_KEY: decision.model_dump(mode="json")}
        if chunk:
            return AIMessageChunk(content=text, response_metadata=meta, chunk_position="last")
        return AIMessage(content=text, response_metadata=meta)

    def _deliver(self, output: Any, decision: GuardedDecision) -> Any:
        if decision.blocked:
            return self._reply(decision, output)
        return _attach(output, decision) if isinstance(output, BaseMessage) else output

    # ------------------------------------------------------------------ invoke
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:  # noqa: A002
        return self._call_with_config(self._invoke, input, ensure_config(config), **kwargs)

    def _invoke(self, value: Any, run_manager: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        checker = self._checker()
        req = self._extract(value)
        prompt = req.prompt
        inner = self._inner(config)
        d, output, start = self._decide_and_call(
            checker,
            req,
            lambda: call_with_retry(lambda: self.bound.invoke(value, inner, **kwargs), self._retry()),
        )
        if not d.blocked:
            call_ms = (time.perf_counter() - start) * 1000
            reply = checker.check_output(prompt, _reply_text(output)) if self.check_output else None
            d = merge(d, reply, call_ms=call_ms)
            result = self._deliver(output, d)
        else:
            result = self._reply(d)
        checker.finish(d, prompt)
        dispatch_custom_event(DECISION_EVENT, d, config=config)
        return result

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:  # noqa: A002
        return await self._acall_with_config(self._ainvoke, input, ensure_config(config), **kwargs)

    async def _ainvoke(self, value: Any, run_manager: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        checker = self._checker()
        req = self._extract(value)
        prompt = req.prompt
        inner = self._inner(config)

        async def call() -> Any:
            if has_native_async(self.bound):
                return await acall_with_retry(
                    lambda: self.bound.ainvoke(value, inner, **kwargs), self._retry()
                )
            # its sync call in a daemon thread: a timed-out call is not waited for
            return await acall_with_retry(
                lambda: acall_in_thread(lambda: self.bound.invoke(value, inner, **kwargs)), self._retry()
            )

        d, output, start = await self._adecide_and_call(checker, req, call)
        if not d.blocked:
            call_ms = (time.perf_counter() - start) * 1000
            reply = await checker.acheck_output(prompt, _reply_text(output)) if self.check_output else None
            d = merge(d, reply, call_ms=call_ms)
            result = self._deliver(output, d)
        else:
            result = self._reply(d)
        checker.finish(d, prompt)
        await adispatch_custom_event(DECISION_EVENT, d, config=config)
        return result

    # ------------------------------------------------------------------ streaming
    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:  # noqa: A002
        yield from self._transform_stream_with_config(iter([input]), self._stream, config, **kwargs)

    def _stream(
        self, inputs: Iterator[Any], run_manager: Any, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        value = next(iter(inputs))
        checker = self._checker()
        req = self._extract(value)
        prompt = req.prompt
        inner = self._inner(config)
        d, opened, start = self._decide_and_call(
            checker,
            req,
            lambda: first_with_retry(lambda: self.bound.stream(value, inner, **kwargs), self._retry()),
        )
        if d.blocked:
            if opened is not None:  # decided after a call that never reached its prefill
                getattr(opened[0], "close", lambda: None)()
            checker.finish(d, prompt)
            dispatch_custom_event(DECISION_EVENT, d, config=config)
            yield self._reply(d, chunk=True)
            return
        assert opened is not None  # not blocked: the stream was opened
        it, first = opened
        stream = self._gated(checker, d, prompt, start)
        yield from stream.run(it, first)
        final: GuardedDecision | None = None
        for c in self._end_stream(checker, stream, prompt):
            if isinstance(c, GuardedDecision):
                final = c
            else:
                yield c
        dispatch_custom_event(DECISION_EVENT, final, config=config)

    async def astream(
        self,
        input: Any,
        config: RunnableConfig | None = None,  # noqa: A002
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        async def one() -> AsyncIterator[Any]:
            yield input

        async for chunk in self._atransform_stream_with_config(one(), self._astream, config, **kwargs):
            yield chunk

    async def _astream(
        self, inputs: AsyncIterator[Any], run_manager: Any, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        value = None
        async for value in inputs:
            break
        checker = self._checker()
        req = self._extract(value)
        prompt = req.prompt
        inner = self._inner(config)
        d, opened, start = await self._adecide_and_call(
            checker,
            req,
            lambda: afirst_with_retry(lambda: self.bound.astream(value, inner, **kwargs), self._retry()),
        )
        if d.blocked:
            if opened is not None:  # decided after a call that never reached its prefill
                closing = getattr(opened[0], "aclose", None)
                if closing is not None:
                    await closing()
            checker.finish(d, prompt)
            await adispatch_custom_event(DECISION_EVENT, d, config=config)
            yield self._reply(d, chunk=True)
            return
        assert opened is not None  # not blocked: the stream was opened
        it, first = opened
        stream = self._gated(checker, d, prompt, start)
        # aclosing: a caller that stops reading closes (and records) the gated stream at once
        async with contextlib.aclosing(stream.arun(it, first)) as released:
            async for c in released:
                yield c
        final: GuardedDecision | None = None
        for c in self._end_stream(checker, stream, prompt):
            if isinstance(c, GuardedDecision):
                final = c
            else:
                yield c
        await adispatch_custom_event(DECISION_EVENT, final, config=config)

    def _gated(self, checker: Checker, d: GuardedDecision, prompt: str, start: float) -> GatedStream[Any]:
        return GatedStream(
            checker, d, prompt, check_every=self.check_every, check_output=self.check_output, started=start
        )

    def _end_stream(self, checker: Checker, stream: GatedStream[Any], prompt: str) -> Iterator[Any]:
        """The chunks that end a stream, then (last) the final decision for the caller to dispatch."""
        end = stream.end()
        final = end.decision
        if end.closing is not None:
            yield self._reply(
                final.model_copy(update={"response": end.closing}), stream.gate.first, chunk=True
            )
        else:
            yield from end.chunks
            if isinstance(end.last, BaseMessage):
                yield _attach(end.last, final)
            elif end.last is not None:
                yield end.last
            elif self._wants_message(stream.gate.first):
                yield AIMessageChunk(
                    content="",
                    response_metadata={DECISION_KEY: final.model_dump(mode="json")},
                    chunk_position="last",
                )
        checker.finish(final, prompt)
        yield final


# ====================================================================== chat model
