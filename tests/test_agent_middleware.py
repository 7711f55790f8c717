"""GuardMiddleware in a real LangChain v1 agent (`create_agent`), with a scripted tool-calling model
and the keyword guard (issue 13): requests, replies, tool calls and tool results are checked."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain.agents")

from langchain.agents import create_agent  # noqa: E402
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402

from integrations.langchain import GuardMiddleware, decision_from  # noqa: E402
from tests.test_integrations_support import KeywordGuard  # noqa: E402


class ToolModel(GenericFakeChatModel):
    """A scripted chat model that accepts tools (its replies are the scripted messages)."""

    calls: int = 0

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolModel:
        return self

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return super()._generate(*args, **kwargs)


@tool
def lookup(q: str) -> str:
    """Look something up."""
    return "bomb-making steps, in detail" if "bad" in q else "Paris is the capital of France."


def agent_with(*replies: AIMessage) -> tuple[Any, ToolModel]:
    model = ToolModel(messages=iter(list(replies)))
    return create_agent(model, [lookup], middleware=[GuardMiddleware(guard=KeywordGuard())]), model


def call(q: str, **kw: Any) -> dict[str, Any]:
    return {"name": "lookup", "args": {"q": q}, "id": kw.get("id", "1"), "type": "tool_call"}


def test_a_harmful_request_ends_the_run_before_the_model():
    agent, model = agent_with(AIMessage("Sure, here is how."))
    out = agent.invoke({"messages": [HumanMessage("How do I build a bomb?")]})
    last = out["messages"][-1]
    assert model.calls == 0
    assert decision_from(last).action.value == "refuse" and last.content


def test_a_benign_run_with_a_tool_goes_through():
    agent, model = agent_with(
        AIMessage("", tool_calls=[call("capital of France")]), AIMessage("It is Paris.")
    )
    out = agent.invoke({"messages": [HumanMessage("What is the capital of France?")]})
    assert out["messages"][-1].content == "It is Paris." and model.calls == 2
    assert any(m.type == "tool" and "Paris" in m.content for m in out["messages"])


def test_a_harmful_reply_and_a_harmful_tool_call_are_replaced():
    agent, _ = agent_with(AIMessage("Step 1 of the bomb: ..."))
    out = agent.invoke({"messages": [HumanMessage("Tell me a story.")]})
    last = out["messages"][-1]
    assert "bomb" not in last.content and decision_from(last).blocked
    agent, _ = agent_with(AIMessage("", tool_calls=[call("how to hack a bank")]), AIMessage("done"))
    out = agent.invoke({"messages": [HumanMessage("Tell me a story.")]})
    assert not any(m.type == "tool" for m in out["messages"])  # the tool never ran
    assert decision_from(out["messages"][-1]).blocked


def test_a_harmful_tool_result_is_withheld_from_the_model():
    agent, _ = agent_with(AIMessage("", tool_calls=[call("bad page")]), AIMessage("Here is a summary."))
    out = agent.invoke({"messages": [HumanMessage("Summarise the page.")]})
    tool_msgs = [m for m in out["messages"] if m.type == "tool"]
    assert (
        tool_msgs and "withheld by the guard" in tool_msgs[0].content and "bomb" not in tool_msgs[0].content
    )


@pytest.mark.asyncio
async def test_async_agent():
    agent, model = agent_with(AIMessage("Sure."))
    out = await agent.ainvoke({"messages": [HumanMessage("How do I build a bomb?")]})
    assert model.calls == 0 and decision_from(out["messages"][-1]).blocked


def test_a_guarded_chat_model_binds_tools_and_checks_tool_call_arguments():
    from integrations.langchain import GuardedRunnable

    model = ToolModel(
        messages=iter([AIMessage("", tool_calls=[call("capital of France")]), AIMessage("Paris.")])
    )
    agent = create_agent(GuardedRunnable(model, guard=KeywordGuard()), [lookup])
    out = agent.invoke({"messages": [HumanMessage("What is the capital of France?")]})
    assert out["messages"][-1].content == "Paris."
    bad = ToolModel(
        messages=iter([AIMessage("", tool_calls=[call("how to hack a bank")]), AIMessage("done")])
    )
    out = create_agent(GuardedRunnable(bad, guard=KeywordGuard()), [lookup]).invoke(
        {"messages": [HumanMessage("Tell me a story.")]}
    )
    assert not any(m.type == "tool" for m in out["messages"]) and decision_from(out["messages"][-1]).blocked
    with pytest.raises(NotImplementedError, match="bind_tools"):
        from langchain_core.runnables import RunnableLambda

        GuardedRunnable(RunnableLambda(lambda x: x), guard=KeywordGuard()).bind_tools([lookup])
