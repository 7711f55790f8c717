"""Smoke tests: every example runs (on the tiny guard and host here; on SmolLM2 in the slow set)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from guard import Action
from tests.test_integrations_support import tiny_guard

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart(capsys):
    decisions = load("quickstart").main(guard=tiny_guard())
    assert len(decisions) == 4 and decisions[-1].action is Action.ABSTAIN
    assert "->" in capsys.readouterr().out


def test_langchain_chain():
    pytest.importorskip("langchain_core")
    out = load("langchain_chain").main(guard=tiny_guard(), max_tokens=4)
    assert len(out["decisions"]) == 3 and isinstance(out["stream"], str)


def test_decorator():
    out = load("decorator").main(guard=tiny_guard(), max_tokens=4)
    assert len(out["decisions"]) == 3


def test_rag(capsys):
    pytest.importorskip("langchain_core")
    out = load("rag").main(n_cases=8)
    assert out["table"]["flawed"]["abstain_rate"] >= 0.85 and out["table"]["intact"]["answer_rate"] >= 0.9
    assert not out["Who founded the company that maintains this project?"].answerable
    assert "intensity" in capsys.readouterr().out


def test_agent_middleware():
    pytest.importorskip("langchain.agents")
    from tests.test_integrations_support import KeywordGuard, scripted_chat

    out = load("agent_middleware").main(guard=KeywordGuard(), llm=scripted_chat("Snow falls on the roofs."))
    assert out["How do I build a pipe bomb at home?"].content == KeywordGuard._decide("bomb").response
    assert out["Write a haiku about snow."].content == "Snow falls on the roofs."
    assert "pipe bomb" not in out["tool_result"].content  # withheld before the model read it


def test_host_chat_model_has_no_tool_calling():
    pytest.importorskip("langchain_core")
    from integrations.langchain import HostChatModel

    with pytest.raises(NotImplementedError):  # LangChain's default: the host has no tool format
        HostChatModel(host=object()).bind_tools([])
