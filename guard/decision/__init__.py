"""The decision layer: pure, no torch. Typed decisions, the policy, and the rules that turn
evidence into an action.

Example:
    >>> from guard.decision import Action
    >>> Action("abstain") is Action.ABSTAIN
    True
"""

from guard.decision.decision import Action, Decision, Evidence, EvidenceSource

__all__ = ["Action", "Decision", "Evidence", "EvidenceSource"]
