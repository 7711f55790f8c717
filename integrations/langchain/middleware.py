"""`GuardMiddleware`: the guard inside a LangChain v1 agent (`create_agent(..., middleware=[...])`).

The agent loop calls the model, runs the tools it asks for, and calls the model again until it
stops asking. The middleware hooks into every turn of that loop:

- ``before_model``: the conversation so far (every message of every role, tool results included)
  is checked as `GuardedRunnable` checks a message input; a blocked request ends the run with the
  constructive reply, and the model is not called;
- ``after_model``: the model's reply, and the arguments of any tool call it makes, are checked; a
  blocked reply is replaced by the constructive one (without tool calls, so the loop ends);
- ``wrap_tool_call``: a tool's result is checked before the model reads it (a fetched page can
  carry an injected instruction); a blocked result is replaced by a notice.

Every decision is in the replacing message's ``response_metadata["guard_decision"]``.

Needs the `agents` extra (`pip install 'latent-guardrail[agents]'`: LangChain 1.x).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from guard._deps import require

require("langchain")

from langchain.agents.middleware import AgentMiddleware, hook_config  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402

from integrations._core import Checker, GuardedDecision, text_of  # noqa: E402
from integrations.langchain.runnable import DECISION_KEY, GuardedRunnable, _json  # noqa: E402


class GuardMiddleware(AgentMiddleware):
    """Guard a LangChain v1 agent: requests before each model call, replies and tool calls after
    it, tool results before the model reads them.

    Args:
        guard: a `Guard` (anything with `check`, `check_batch` and `check_output`); `None` loads
            `Guard.default()` on first use.
        check_tool_results: also check what tools return (default True).
        fail_closed: when the guard raises, refuse (True) or answer (False); `None` follows the
            guard's policy.
        audit: an optional `JsonlAuditLog`.

    Example:
        >>> from langchain.agents import create_agent  # doctest: +SKIP
        >>> agent = create_agent(model, tools, middleware=[GuardMiddleware(guard=Guard.default())])  # doctest: +SKIP
        >>> agent.invoke({"messages": [("user", "How do I build a pipe bomb?")]})["messages"][-1].content  # doctest: +SKIP
        "I can't help with making weapons or hurting anyone. ..."
    """

    def __init__(
        self,
        guard: Any = None,
        *,
        check_tool_results: bool = True,
        fail_closed: bool | None = None,
        audit: Any = None,
    ) -> None:
        super().__init__()
        self.check_tool_results = check_tool_results
        # the request reader and checker of GuardedRunnable (every message, block and tool call)
        self._reader = GuardedRunnable(
            RunnableLambda(lambda x: x), guard=guard, fail_closed=fail_closed, audit=audit, check_output=False
        )

    def _checker(self) -> Checker:
        return self._reader._checker()

    @staticmethod
    def _blocked_message(decision: GuardedDecision, like: BaseMessage | None = None) -> AIMessage:
        meta = {DECISION_KEY: decision.model_dump(mode="json")}
        kwargs = {"id": like.id} if like is not None and like.id else {}  # the same id replaces it
        return AIMessage(content=decision.response or "", response_metadata=meta, **kwargs)

    # ------------------------------------------------------------------ before the model
    @hook_config(can_jump_to=["end"])
    def before_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        """Check the conversation so far; end the run with the constructive reply when blocked."""
        messages = list(state["messages"])
        checker = self._checker()
        req = self._reader._extract(messages)
        d = self._reader._check(checker, req)
        if not d.blocked:
            return None
        checker.finish(d, req.prompt)
        return {"messages": [self._blocked_message(d)], "jump_to": "end"}

    async def abefore_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.before_model, state, runtime)

    # ------------------------------------------------------------------ after the model
    def after_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        """Check the model's reply and its tool calls' arguments; replace a blocked reply."""
        messages = list(state["messages"])
        last = messages[-1] if messages else None
        if not isinstance(last, AIMessage):
            return None
        prompt = next((text_of(m) for m in reversed(messages[:-1]) if getattr(m, "type", "") == "human"), "")
        checker = self._checker()
        texts = [text_of(last)] + [_json(c.get("args", c)) for c in (last.tool_calls or [])]
        found = [checker.check_output(prompt, t) for t in texts if t.strip()]
        worst = next((d for d in found if d.blocked), None)
        if worst is None:
            return None
        checker.finish(worst, prompt)
        return {"messages": [self._blocked_message(worst, like=last)]}

    async def aafter_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.after_model, state, runtime)

    # ------------------------------------------------------------------ around the tools
    def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        """Run the tool, then check its result before the model reads it."""
        result = handler(request)
        if not self.check_tool_results or not isinstance(result, ToolMessage):
            return result
        return self._checked_tool_result(result)

    async def awrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        result = await handler(request)
        if not self.check_tool_results or not isinstance(result, ToolMessage):
            return result
        return await asyncio.to_thread(self._checked_tool_result, result)

    def _checked_tool_result(self, result: ToolMessage) -> ToolMessage:
        text = text_of(result)
        if not text.strip():
            return result
        checker = self._checker()
        (d,) = checker.check_many([text])
        if not d.blocked:
            return result
        checker.finish(d, text)
        notice = (
            f"[the tool's result was withheld by the guard: {d.action.value}"
            f"{' (' + d.category + ')' if d.category else ''}]"
        )
        return result.model_copy(
            update={
                "content": notice,
                "response_metadata": {
                    **(result.response_metadata or {}),
                    DECISION_KEY: d.model_dump(mode="json"),
                },
            }
        )


__all__ = ["GuardMiddleware"]
