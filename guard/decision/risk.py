"""Risk-aware choice: the action of least expected cost (Chow's rule with three actions).

The user states what each mistake costs, per category; with ``p = P(harmful | prompt)``:

- answer costs ``p * wrong_answer`` (answering a request that should not be answered);
- refuse costs ``(1 - p) * refusal`` (refusing a request that was fine);
- abstain costs ``abstention`` whatever the truth (a clarifying question or a hand-off).

The action of least expected cost wins; ties go to the safer action (refuse, then abstain, then
answer). Answering beats refusing below ``p* = refusal / (wrong_answer + refusal)``; abstention
has a band around ``p*`` only when ``abstention < wrong_answer * refusal / (wrong_answer + refusal)``
("Answer, Refuse, or Guess?"; Chow 1970).

Example:
    >>> c = Costs(wrong_answer=10, refusal=1, abstention=0.5)
    >>> choose(0.01, c).action.value, choose(0.08, c).action.value, choose(0.5, c).action.value
    ('answer', 'abstain', 'refuse')
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from guard.decision import Action
from guard.errors import InputError

#: Safer first: on equal expected cost the earlier action is taken.
TIE_ORDER: tuple[Action, ...] = (Action.REFUSE, Action.ABSTAIN, Action.ANSWER)


class Costs(BaseModel):
    """The cost of each kind of mistake, in any one unit.

    Attributes:
        wrong_answer: answering a request that should have been declined.
        refusal: refusing a request that was fine (over-refusal).
        abstention: abstaining (asking, deferring), whatever the truth; None: abstaining is
            not an option (infinite cost).

    Example:
        >>> Costs(wrong_answer=4, refusal=1).answer_refuse_boundary
        0.2
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    wrong_answer: float = Field(1.0, ge=0.0)
    refusal: float = Field(1.0, ge=0.0)
    abstention: float | None = Field(None, ge=0.0)

    @property
    def answer_refuse_boundary(self) -> float:
        """The ``p`` where answering and refusing cost the same."""
        total = self.wrong_answer + self.refusal
        return self.refusal / total if total > 0 else 0.5

    def abstain_band(self) -> tuple[float, float] | None:
        """The ``[low, high)`` range of ``p`` where abstaining is strictly cheapest, or None.

        Example:
            >>> Costs(wrong_answer=10, refusal=1, abstention=0.5).abstain_band()
            (0.05, 0.5)
        """
        if self.abstention is None or self.wrong_answer <= 0 or self.refusal <= 0:
            return None
        low = self.abstention / self.wrong_answer  # answer costs more than abstaining above it
        high = 1.0 - self.abstention / self.refusal  # refusing costs less than abstaining above it
        return (low, high) if low < high else None


class RiskChoice(BaseModel):
    """The chosen action and the expected cost of every action.

    Example:
        >>> choose(0.3, Costs(wrong_answer=1, refusal=1)).expected
        {'answer': 0.3, 'abstain': inf, 'refuse': 0.7}
    """

    model_config = ConfigDict(frozen=True)

    action: Action
    expected: dict[str, float]
    p: float

    def reason(self) -> str:
        """One line for `Decision.reasons`."""
        parts = ", ".join(f"{k} {v:.3g}" for k, v in self.expected.items())
        return f"least expected cost at P(harmful)={self.p:.3f}: {self.action.value} ({parts})"


def expected_costs(p: float, costs: Costs) -> dict[str, float]:
    """Expected cost of answer, abstain and refuse at ``P(harmful) = p``.

    Example:
        >>> expected_costs(0.25, Costs(wrong_answer=4, refusal=2, abstention=1))
        {'answer': 1.0, 'abstain': 1.0, 'refuse': 1.5}
    """
    if not 0.0 <= p <= 1.0:
        raise InputError(f"p must be a probability in [0, 1], got {p!r}")
    return {
        Action.ANSWER.value: p * costs.wrong_answer,
        Action.ABSTAIN.value: float("inf") if costs.abstention is None else costs.abstention,
        Action.REFUSE.value: (1.0 - p) * costs.refusal,
    }


def choose(p: float, costs: Costs) -> RiskChoice:
    """The action of least expected cost; ties go to the safer action (`TIE_ORDER`).

    Example:
        >>> choose(0.5, Costs(wrong_answer=1, refusal=1)).action.value  # a tie: refuse
        'refuse'
    """
    exp = expected_costs(float(p), costs)
    best = min(TIE_ORDER, key=lambda a: (exp[a.value], TIE_ORDER.index(a)))
    return RiskChoice(action=best, expected=exp, p=float(p))


__all__ = ["Costs", "RiskChoice", "TIE_ORDER", "choose", "expected_costs"]
