"""Typed results: the action the guard takes, the evidence behind it, and the decision."""

from __future__ import annotations

from enum import Enum
from typing import Literal

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


#: Which kind of detector produced a piece of evidence; ``reply:<kind>`` is the same detector
#: reading the reply (`integrations` merge a reply's decision into the request's).
EvidenceSource = Literal[
    "latent",
    "blackbox",
    "noncompliance",
    "condition",
    "reject_option",
    "context_gate",
    "language",
    "reply:latent",
    "reply:blackbox",
    "reply:noncompliance",
    "reply:condition",
    "reply:reject_option",
    "reply:context_gate",
]


class Evidence(BaseModel):
    """One signal that fed the decision.

    Attributes:
        source: which kind of detector produced it (`EvidenceSource`): the Latent Guard, a
            black-box classifier, the noncompliance head, a policy condition (topic similarity),
            the reject option, the RAG context gate, the text's language (``language``:
            routes the harm pool, never decides by itself); ``reply:`` in front when it read
            the reply.
        name: the signal's name within that source ("harmfulness", "refusal", a detector's or a
            topic's name, which users choose, so it is not a closed set).
        value: its value; probabilities are in [0, 1], raw projections are unbounded.
        threshold: the threshold it was compared with, when there is one.
        detail: a short human-readable note.
    """

    model_config = ConfigDict(frozen=True)

    source: EvidenceSource
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
