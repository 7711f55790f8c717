"""Typed triggers of a steering rule (`Matches`, `Not`, `AnyOf`, `AllOf`): no string is parsed.

`Not`, `AnyOf` and `AllOf` are the condition combinators of `guard.decision.conditions` (the
ones rule conditions use too), over `Matches` leaves, frozen, and stored with fields ``trigger``
and ``triggers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field

from guard.decision.conditions import AllOfNode, AnyOfNode, CompoundNode, Node, NotNode
from guard.errors import InputError


# ------------------------------------------------------------------------------------ rules
class _Trigger(Node["Matches"]):
    """A node of a trigger tree: a `Matches`, or `Not`/`AnyOf`/`AllOf` of nodes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def holds(self, passed: Mapping[str, bool]) -> bool:
        """Whether the trigger holds, given which condition vectors passed on the prompt."""
        return self.evaluate(lambda leaf: leaf.holds(passed))

    def names(self) -> set[str]:
        """The names of the condition vectors the trigger reads."""
        return {leaf.condition for leaf in self.leaves()}


class Matches(_Trigger):
    """The named `ConditionVector` holds on the prompt.

    Example:
        >>> Matches("cyber").holds({"cyber": True})
        True
    """

    kind: Literal["matches"] = "matches"
    condition: str = Field(min_length=1)

    def __init__(self, condition: str | None = None, /, **data: Any) -> None:
        if condition is not None:
            data["condition"] = condition
        super().__init__(**data)

    def holds(self, passed: Mapping[str, bool]) -> bool:
        if self.condition not in passed:
            raise InputError(f"no result for condition {self.condition!r}; known: {sorted(passed)}")
        return bool(passed[self.condition])

    def describe(self) -> str:
        return f"matches {self.condition!r}"


class Not(NotNode["Matches"], _Trigger):
    """The inner trigger does not hold ("if the input is *not* about legal advice, ...").

    Example:
        >>> Not(Matches("legal")).holds({"legal": False})
        True
    """

    operand_field = "trigger"

    trigger: Trigger

    if TYPE_CHECKING:  # NotNode's positional __init__ (pydantic's mypy plugin writes a keyword-only one)

        def __init__(self, trigger: Any = None, /, **data: Any) -> None: ...


class _Compound(CompoundNode["Matches"], _Trigger):
    operands_field = "triggers"

    triggers: list[Trigger] = Field(min_length=1)


class AnyOf(AnyOfNode["Matches"], _Compound):
    """At least one trigger holds.

    Example:
        >>> AnyOf(Matches("a"), Matches("b")).holds({"a": False, "b": True})
        True
    """

    if TYPE_CHECKING:  # CompoundNode's positional __init__ (pydantic's mypy plugin writes a keyword-only one)

        def __init__(self, *triggers: Any, **data: Any) -> None: ...


class AllOf(AllOfNode["Matches"], _Compound):
    """Every trigger holds.

    Example:
        >>> AllOf(Matches("a"), Not(Matches("b"))).holds({"a": True, "b": True})
        False
    """

    if TYPE_CHECKING:  # CompoundNode's positional __init__ (pydantic's mypy plugin writes a keyword-only one)

        def __init__(self, *triggers: Any, **data: Any) -> None: ...


Trigger = Annotated[Matches | Not | AnyOf | AllOf, Field(discriminator="kind")]
Not.model_rebuild()
AnyOf.model_rebuild()
AllOf.model_rebuild()
