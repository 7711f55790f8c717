"""Guardrail middleware for LLM applications: answer, abstain or refuse, with reasons.

Example:
    >>> from guard import Action
    >>> Action.REFUSE.value
    'refuse'
"""

from guard.core import Guard
from guard.decision import Action, Decision, Evidence
from guard.errors import GuardError
from guard.policy import Policy

__all__ = ["Action", "Decision", "Evidence", "Guard", "GuardError", "Policy"]
__version__ = "0.1.0"
