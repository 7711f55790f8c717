"""Guardrail middleware for LLM applications: answer, abstain or refuse, with reasons.

Example:
    >>> from guard import Action
    >>> Action.REFUSE.value
    'refuse'
"""

from guard.decision import Action, Decision, Evidence
from guard.decision.policy import Policy
from guard.errors import GuardError
from guard.guard import Guard

__all__ = ["Action", "Decision", "Evidence", "Guard", "GuardError", "Policy"]
__version__ = "0.1.0"
