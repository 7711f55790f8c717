"""LangChain integration: `GuardedRunnable` wraps any Runnable; `HostChatModel` is a chat model
over the guard's `HostModel`, so a local chain runs end to end; `GuardMiddleware` guards a
LangChain v1 agent.

Needs the `langchain` extra (`pip install 'latent-guardrail[langchain]'`); `GuardMiddleware` the
`agents` extra (LangChain 1.x), imported on first use.
"""

from typing import Any

from integrations.langchain.chat_model import HostChatModel
from integrations.langchain.runnable import (
    DECISION_EVENT,
    DECISION_KEY,
    DecisionCollector,
    GuardedRunnable,
    decision_from,
)


def __getattr__(name: str) -> Any:
    if name == "GuardMiddleware":  # needs LangChain 1.x (the agents extra), so only on demand
        from integrations.langchain.middleware import GuardMiddleware

        return GuardMiddleware
    raise AttributeError(f"module 'integrations.langchain' has no attribute {name!r}")


__all__ = [
    "DECISION_EVENT",
    "DECISION_KEY",
    "DecisionCollector",
    "GuardMiddleware",
    "GuardedRunnable",
    "HostChatModel",
    "decision_from",
]
