"""Chow's rule with three actions: boundary cases computed by hand."""

import math

import pytest

from guard.decision import Action
from guard.decision.risk import Costs, choose, expected_costs
from guard.errors import InputError


def test_expected_costs_by_hand():
    c = Costs(wrong_answer=10, refusal=2, abstention=1)
    # answer: 0.2 * 10 = 2; abstain: 1; refuse: 0.8 * 2 = 1.6
    assert expected_costs(0.2, c) == {"answer": 2.0, "abstain": 1.0, "refuse": pytest.approx(1.6)}
    assert choose(0.2, c).action is Action.ABSTAIN


@pytest.mark.parametrize(
    "p,expected",
    [
        (0.0, Action.ANSWER),  # answer 0 < abstain 0.5 < refuse 1
        (0.049, Action.ANSWER),  # answer 0.49 < abstain 0.5
        (0.05, Action.ABSTAIN),  # answer 0.5 == abstain 0.5: tie -> the safer abstain
        (0.3, Action.ABSTAIN),  # answer 3, abstain 0.5, refuse 0.7
        (0.5, Action.REFUSE),  # abstain 0.5 == refuse 0.5: tie -> refuse
        (0.51, Action.REFUSE),  # refuse 0.49 < abstain 0.5
        (1.0, Action.REFUSE),
    ],
)
def test_three_action_boundaries(p, expected):
    c = Costs(wrong_answer=10, refusal=1, abstention=0.5)
    assert c.abstain_band() == (0.05, 0.5)
    assert choose(p, c).action is expected


def test_two_action_boundary_without_abstention():
    c = Costs(wrong_answer=4, refusal=1)  # p* = 1 / 5
    assert c.answer_refuse_boundary == pytest.approx(0.2)
    assert choose(0.19, c).action is Action.ANSWER  # 0.76 vs 0.81
    assert choose(0.2, c).action is Action.REFUSE  # 0.8 vs 0.8: tie -> refuse
    assert choose(0.21, c).action is Action.REFUSE
    assert math.isinf(expected_costs(0.5, c)["abstain"])


def test_expensive_abstention_has_no_band():
    c = Costs(wrong_answer=1, refusal=1, abstention=0.6)  # needs abstention < 0.5 to ever win
    assert c.abstain_band() is None
    assert all(choose(p / 100, c).action is not Action.ABSTAIN for p in range(101))


def test_reason_and_validation():
    r = choose(0.3, Costs(wrong_answer=1, refusal=1))
    assert "answer" in r.reason() and "0.300" in r.reason()
    with pytest.raises(InputError):
        choose(1.5, Costs())
    with pytest.raises(ValueError):
        Costs(wrong_answer=-1)
