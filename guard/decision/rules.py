"""Conditional rules, as typed objects: "if the input is about X, abstain" (CAST-style conditions).

A condition is a small tree of typed objects, never a string to parse:

- `About(name, examples=[...], threshold=...)`: the prompt is close to a handful of example
  prompts, measured by cosine similarity on sentence embeddings (MiniLM), or on the host model's
  hidden states at the last instruction token when a `HostModel` is given (as "Programming
  Refusal with Conditional Activation Steering" reads its condition vectors);
- `Not(condition)`, `AnyOf(a, b, ...)`, `AllOf(a, b, ...)`.

A `Rule(when=condition, then=Action...)` fires when its condition holds. Rules are evaluated in
the order given; `match_rules` returns the first that fires (``mode="first"``) or the strictest
action among those that fire (``mode="strictest"``, ties by order), and names it. A rule tightens
the evidence's decision unless it says ``override=True`` (an allow rule must say so).

Similarities are computed once per prompt (`about_scores`, the only step that runs a model); rule
matching on them is pure, so the decision engine can be tested without any model.

Example:
    >>> legal = About("legal advice", examples=["Can I sue my landlord?", "Is my contract valid?"],
    ...               threshold=0.5)
    >>> rule = Rule(name="no-legal", when=legal, then=Action.ABSTAIN)
    >>> match_rules([rule], {"legal advice": 0.62}).rule
    'no-legal'
    >>> match_rules([rule], {"legal advice": 0.2}) is None
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from guard.decision import Action
from guard.decision.conditions import AllOfNode, AnyOfNode, CompoundNode, Node, NotNode
from guard.errors import InputError, NotFittedError

STRICTNESS: dict[Action, int] = {Action.ANSWER: 0, Action.ABSTAIN: 1, Action.REFUSE: 2}

# Generic prompts of many kinds: what "not about anything in particular" looks like, for setting an
# `About` threshold when the user gives no negatives.
REFERENCE_PROMPTS: tuple[str, ...] = (
    "What is the capital of Australia?",
    "Write a haiku about winter.",
    "How do I reverse a list in Python?",
    "Explain how vaccines work.",
    "Give me a recipe for banana bread.",
    "What caused the First World War?",
    "How do I change a flat tyre?",
    "Recommend a good science fiction novel.",
    "What is a prime number?",
    "How can I improve my sleep?",
    "Translate 'good morning' into Spanish.",
    "What's the difference between a virus and a bacterium?",
    "Plan a three-day trip to Rome.",
    "How do I write a cover letter?",
    "Explain compound interest.",
    "What are the rules of chess?",
    "How do plants make food?",
    "Summarise the plot of Hamlet.",
    "How do I train my puppy to sit?",
    "What is machine learning?",
    "Suggest names for a bakery.",
    "How does a refrigerator work?",
    "What is the tallest mountain?",
    "Help me write a birthday message for my sister.",
    "How do I center a div in CSS?",
    "Why is the sky blue?",
    "What exercises strengthen the lower back?",
    "How do I make cold brew coffee?",
    "Explain the French Revolution briefly.",
    "What is the Pythagorean theorem?",
    "How do I budget my salary?",
    "Write a short story about a robot.",
    "What are black holes?",
    "How do I learn to play guitar?",
    "Tips for a job interview?",
    "How do I clean a cast iron pan?",
    "What is inflation?",
    "Describe the water cycle.",
    "How many players are on a football team?",
    "What is photosynthesis?",
)


# ------------------------------------------------------------------------------------ encoders
class Encoder:
    """Texts to unit vectors, the space `About` measures similarity in.

    `guard.features.encoders` builds them: `embedding_encoder()` (MiniLM sentence embeddings) or
    `host_encoder(host)` (the host's hidden states at the last instruction token, centred on
    generic prompts).
    """

    def __init__(self, fn: Callable[[list[str]], np.ndarray], key: str) -> None:
        self._fn = fn
        self.key = key

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm rows, one per text."""
        v = np.asarray(self._fn(list(texts)), dtype=np.float64)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


# ------------------------------------------------------------------------------------ conditions
class _Condition(Node["About"]):
    """A node of a rule's condition tree: an `About`, or `Not`/`AnyOf`/`AllOf` of nodes
    (`guard.decision.conditions`)."""

    model_config = ConfigDict(extra="forbid", frozen=False)

    def holds(self, scores: Mapping[str, float], thresholds: Mapping[str, float] | None = None) -> bool:
        """Whether the condition holds on one prompt's similarities (`About` name -> similarity)."""
        return self.evaluate(lambda about: about.holds(scores, thresholds))

    def abouts(self) -> Iterator[About]:
        """The `About` leaves, left to right."""
        return self.leaves()


class About(_Condition):
    """The prompt is about a topic, given by a handful of example prompts.

    The score is the highest cosine similarity between the prompt and an example; the condition
    holds when it is at or above the threshold. With ``threshold=None``, `fit` sets it
    a third of the way from the 95th percentile of the similarity of `negatives` (default: generic
    `REFERENCE_PROMPTS`) to the typical similarity among the examples (leave-one-out median).

    Args:
        name: the topic's name; also the only example when `examples` is empty.
        examples: prompts that are about the topic.
        threshold: cosine similarity in [-1, 1]; None to fit it.
        negatives: prompts that are not about the topic (for fitting the threshold).

    Example:
        >>> About("legal advice").examples
        ['legal advice']
    """

    kind: Literal["about"] = "about"
    name: str
    examples: list[str] = Field(default_factory=list)
    threshold: float | None = Field(None, ge=-1.0, le=1.0)
    negatives: list[str] = Field(default_factory=list)
    _vectors: np.ndarray | None = PrivateAttr(default=None)
    _threshold: float | None = PrivateAttr(default=None)
    _key: str | None = PrivateAttr(default=None)

    def __init__(self, name: str | None = None, /, **data: Any) -> None:
        if name is not None:
            data["name"] = name
        super().__init__(**data)
        if not self.name.strip():
            raise InputError("About needs a non-empty name")
        if not self.examples:
            self.examples = [self.name]

    def fit(self, encoder: Encoder) -> About:
        """Embed the examples with `encoder` (`guard.features.encoders`) and fit the threshold when it
        is None; returns self."""
        vecs = encoder.encode(self.examples)
        self._vectors, self._key = vecs, encoder.key
        if self.threshold is not None:
            self._threshold = float(self.threshold)
            return self
        neg = self._max_sim(encoder.encode(self.negatives or list(REFERENCE_PROMPTS)))
        neg_hi = float(np.quantile(neg, 0.95))
        if len(self.examples) >= 2:
            sims = vecs @ vecs.T
            np.fill_diagonal(sims, -np.inf)
            pos = float(np.median(sims.max(axis=1)))
        else:
            pos = 1.0
        # a third of the way from generic prompts to the examples: few examples understate recall
        self._threshold = neg_hi + (pos - neg_hi) / 3 if pos > neg_hi else neg_hi + 1e-6
        return self

    @property
    def fitted_threshold(self) -> float:
        """The threshold in use (the given one, or the fitted one)."""
        if self._threshold is None:
            if self.threshold is None:
                raise NotFittedError(
                    f"About({self.name!r}) has no threshold yet; call .fit() or pass threshold="
                )
            return float(self.threshold)
        return self._threshold

    @property
    def is_fitted(self) -> bool:
        return self._vectors is not None

    def _max_sim(self, vectors: np.ndarray) -> np.ndarray:
        if self._vectors is None:
            raise NotFittedError(f"About({self.name!r}) is not fitted; call .fit(encoder) first")
        return (vectors @ self._vectors.T).max(axis=1)

    def similarity(self, vectors: np.ndarray) -> np.ndarray:
        """Highest cosine similarity of each (unit) vector to the examples."""
        return self._max_sim(np.asarray(vectors, dtype=np.float64))

    def threshold_in(self, thresholds: Mapping[str, float] | None = None) -> float:
        """The threshold in use: its own (given or fitted), else the one `thresholds` carries for its name
        (a topic fitted elsewhere, whose threshold comes with its evidence)."""
        if self._threshold is None and self.threshold is None and thresholds and self.name in thresholds:
            return float(thresholds[self.name])
        return self.fitted_threshold

    def holds(self, scores: Mapping[str, float], thresholds: Mapping[str, float] | None = None) -> bool:
        if self.name not in scores:
            raise InputError(f"no similarity for About({self.name!r}); compute them with about_scores()")
        return float(scores[self.name]) >= self.threshold_in(thresholds)

    def describe(self) -> str:
        return f"about {self.name!r}"


class Not(NotNode["About"], _Condition):
    """The inner condition does not hold.

    Example:
        >>> Not(About("our product", threshold=0.4)).holds({"our product": 0.1})
        True
    """

    operand_field = "condition"

    condition: Condition

    if TYPE_CHECKING:  # NotNode's positional __init__ (pydantic's mypy plugin writes a keyword-only one)

        def __init__(self, condition: Any = None, /, **data: Any) -> None: ...


class _Compound(CompoundNode["About"], _Condition):
    """Shared shape of `AnyOf` and `AllOf`: a list of conditions, given positionally or by name."""

    operands_field = "conditions"

    conditions: list[Condition] = Field(min_length=1)


class AnyOf(AnyOfNode["About"], _Compound):
    """At least one of the conditions holds.

    Example:
        >>> AnyOf(About("a", threshold=0.5), About("b", threshold=0.5)).holds({"a": 0.1, "b": 0.9})
        True
    """

    if TYPE_CHECKING:  # CompoundNode's positional __init__ (pydantic's mypy plugin writes a keyword-only one)

        def __init__(self, *conditions: Any, **data: Any) -> None: ...


class AllOf(AllOfNode["About"], _Compound):
    """Every condition holds.

    Example:
        >>> AllOf(About("a", threshold=0.5), About("b", threshold=0.5)).holds({"a": 0.6, "b": 0.4})
        False
    """

    if TYPE_CHECKING:  # CompoundNode's positional __init__ (pydantic's mypy plugin writes a keyword-only one)

        def __init__(self, *conditions: Any, **data: Any) -> None: ...


Condition = Annotated[Union[About, Not, AnyOf, AllOf], Field(discriminator="kind")]
Not.model_rebuild()
AnyOf.model_rebuild()
AllOf.model_rebuild()


# ------------------------------------------------------------------------------------ rules
class Rule(BaseModel):
    """When `when` holds, take action `then` (with `category` and `response`, if given).

    Attributes:
        when: the condition.
        then: the action.
        name: how decisions name the rule; default: ``"<action> if <condition>"``.
        category: the decision's category when the rule decides (default: the evidence's
            category, or ``"policy_rule"``).
        response: a constructive reply to send instead of the category's template.
        override: False (default): the rule can only make the decision stricter (a refusal from
            the evidence stays a refusal); True: the rule's action replaces the evidence's
            decision (needed for allow rules, ``then=Action.ANSWER``).

    Example:
        >>> r = Rule(when=About("legal advice", threshold=0.5), then=Action.ABSTAIN)
        >>> r.name
        "abstain if about 'legal advice'"
    """

    model_config = ConfigDict(extra="forbid")

    when: Condition
    then: Action
    name: str = ""
    category: str | None = None
    response: str | None = None
    override: bool = False

    def model_post_init(self, _context: Any) -> None:
        if not self.name:
            self.name = f"{self.then.value} if {self.when.describe()}"

    def abouts(self) -> Iterator[About]:
        return self.when.abouts()


class RuleMatch(BaseModel):
    """The rule that fired, as the decision engine uses it."""

    model_config = ConfigDict(frozen=True)

    rule: str
    action: Action
    category: str | None
    response: str | None
    override: bool
    reason: str


def _unique_abouts(rules: Sequence[Rule]) -> list[About]:
    seen: dict[str, About] = {}
    for rule in rules:
        for about in rule.abouts():
            prev = seen.get(about.name)
            if (
                prev is not None
                and prev is not about
                and (prev.examples != about.examples or prev.threshold != about.threshold)
            ):
                raise InputError(
                    f"two different About conditions are named {about.name!r}; give each "
                    "topic one definition (or distinct names)"
                )
            seen.setdefault(about.name, about)
    return list(seen.values())


def fit_rules(rules: Sequence[Rule], encoder: Encoder) -> list[Rule]:
    """Fit every `About` in the rules on one encoder; returns the rules."""
    for rule in rules:
        for about in rule.abouts():
            if not about.is_fitted or about._key != encoder.key:
                about.fit(encoder)
    return list(rules)


def match_rules(
    rules: Sequence[Rule],
    scores: Mapping[str, float],
    mode: Literal["first", "strictest"] = "first",
    thresholds: Mapping[str, float] | None = None,
) -> RuleMatch | None:
    """The rule that fires on one prompt's similarities, or None.

    Args:
        rules: in order.
        scores: `About` name -> similarity (from `about_scores`).
        mode: ``"first"``: the first rule whose condition holds; ``"strictest"``: the strictest
            action among the rules that hold (refuse > abstain > answer), ties by order.

    Example:
        >>> a = About("a", threshold=0.5)
        >>> rules = [Rule(name="r1", when=a, then=Action.ABSTAIN), Rule(name="r2", when=a, then=Action.REFUSE)]
        >>> match_rules(rules, {"a": 0.9}).rule, match_rules(rules, {"a": 0.9}, mode="strictest").rule
        ('r1', 'r2')
    """
    if mode not in ("first", "strictest"):
        raise InputError(f"mode must be 'first' or 'strictest', got {mode!r}")
    fired = [r for r in rules if r.when.holds(scores, thresholds)]
    if not fired:
        return None
    rule = fired[0] if mode == "first" else max(fired, key=lambda r: (STRICTNESS[r.then], -fired.index(r)))
    sims = ", ".join(
        f"{a.name!r} similarity {scores[a.name]:.2f} (threshold {a.threshold_in(thresholds):.2f})"
        for a in _unique_abouts([rule])
    )
    others = [r.name for r in fired if r is not rule]
    reason = f"rule {rule.name!r} fired: {rule.when.describe()} [{sims}]"
    if others:
        reason += f"; also matched (lower precedence, mode={mode}): {others}"
    return RuleMatch(
        rule=rule.name,
        action=rule.then,
        category=rule.category,
        response=rule.response,
        override=rule.override,
        reason=reason,
    )


__all__ = [
    "About",
    "AllOf",
    "AnyOf",
    "Condition",
    "Encoder",
    "Not",
    "REFERENCE_PROMPTS",
    "Rule",
    "RuleMatch",
    "STRICTNESS",
    "fit_rules",
    "match_rules",
]
