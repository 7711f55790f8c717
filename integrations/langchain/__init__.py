"""LangChain integration: `GuardedRunnable` wraps any Runnable; `HostChatModel` is a chat model
over the guard's `HostModel`, so a local chain runs end to end.

Needs the `langchain` extra (`pip install 'latent-guardrail[langchain]'`).
"""

from integrations.langchain.chat_model import HostChatModel
from integrations.langchain.runnable import (
    DECISION_EVENT,
    DECISION_KEY,
    DecisionCollector,
    GuardedRunnable,
    decision_from,
)

__all__ = ["DECISION_EVENT", "DECISION_KEY", "DecisionCollector", "GuardedRunnable", "HostChatModel", "decision_from"]
