"""Typed results: the action the guard takes, the evidence behind it, and the decision."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field


class Action(str, Enum):
    """What to do with a request (a str enum: `Action.REFUSE == "refuse"`).

    Example:
        >>> Action("refuse") is Action.REFUSE
        True
    """

    ANSWER = "answer"
    ABSTAIN = "abstain"
    REFUSE = "refuse"

    def __str__(self) -> str:
        return self.value


class Evidence(BaseModel):
    """One signal that fed the decision.

    Attributes:
        source: which detector produced it ("latent", "input", "prompt_refusal", ...).
        name: the signal's name within that detector ("harmfulness", "refusal", ...).
        value: its value; probabilities are in [0, 1], raw projections are unbounded.
        threshold: the threshold it was compared with, when there is one.
        detail: a short human-readable note.
    """

    model_config = ConfigDict(frozen=True)

    source: str
    name: str
    value: float
    threshold: float | None = None
    detail: str | None = None


class Decision(BaseModel):
    """The guard's verdict on one request (or on one reply, for `check_output`).

    Attributes:
        action: answer, abstain or refuse.
        category: the harm or noncompliance category when not answering (`None` on answer).
        scores: named scores, e.g. `{"harmfulness": 0.97}`.
        reasons: why, in words a caller can show or log.
        response: the constructive reply to send instead of an answer; `None` on answer.
        evidence: every signal with its threshold.
        rule: the policy rule that fired, if any.
        latency_ms: time the guard spent on this decision.

    Example:
        >>> d = Decision(action=Action.ANSWER)
        >>> d.blocked
        False
    """

    model_config = ConfigDict(use_enum_values=False, frozen=True)

    action: Action
    category: str | None = None
    scores: dict[str, float] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)
    response: str | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    rule: str | None = None
    latency_ms: float | None = None

    @property
    def blocked(self) -> bool:
        """True when the request is not answered (refuse or abstain)."""
        return self.action is not Action.ANSWER
