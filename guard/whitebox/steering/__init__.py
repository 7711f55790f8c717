"""Conditional activation steering (CAST) during `HostModel` generation.

Three pieces, each with one job:

* `BehaviourVector`: what to add. The refusal behaviour vector is derived *contrastively*:
  refusal replies and compliant replies are teacher-forced after the same prompts and the
  reply-token activations are compared, layer by layer (as CAST derives behaviour vectors). A
  weakly aligned host such as SmolLM2 almost never refuses on its own, so its own refusals cannot
  define the direction. ``method="ridge"`` is the ridge-regularised variant of "Refusal
  Steering": the class-mean difference is whitened by the ridge-regularised covariance of the
  reply states, which discounts directions that vary a lot within each class.
* `ConditionVector`: when to add it. A direction at one layer read on the prompt (centred,
  cosine similarity, as CAST reads its condition vectors), with a threshold.
* `SteeringRule` with typed triggers (`Matches`, `Not`, `AnyOf`, `AllOf`): which conditions
  switch which behaviour on. No string is ever parsed.

`ConditionalSteering` ties them together: it reads the conditions on the prompt first (a
forward pass cut after the deepest condition layer), then generates with the behaviour vector
added at the chosen layers, only for the prompts whose rules fire. Hooks exist only inside the
`steer` context manager and are removed in `finally` (through `HostModel.intervene`); nothing is
stored on classes or modules, so two steered hosts in one process never see each other's vectors.

Example:
    >>> from guard.whitebox.steering import AnyOf, Matches, Not, SteeringRule
    >>> rule = SteeringRule(when=AnyOf(Matches("cyber"), Matches("weapons")), strength=4.0)
    >>> rule.when.holds({"cyber": False, "weapons": True})
    True
    >>> Not(Matches("legal")).holds({"legal": True})
    False
"""

from guard.whitebox.steering.cast import ConditionalSteering, SteeredReply, SteeringDecision, SteeringRule
from guard.whitebox.steering.hooks import generate_ids, steer
from guard.whitebox.steering.triggers import AllOf, AnyOf, Matches, Not, Trigger
from guard.whitebox.steering.vectors import (
    BehaviourVector,
    ConditionVector,
    contrastive_reply_states,
    prompt_states,
)

__all__ = [
    "AllOf",
    "AnyOf",
    "BehaviourVector",
    "ConditionVector",
    "ConditionalSteering",
    "Matches",
    "Not",
    "SteeredReply",
    "SteeringDecision",
    "SteeringRule",
    "Trigger",
    "contrastive_reply_states",
    "generate_ids",
    "prompt_states",
    "steer",
]
