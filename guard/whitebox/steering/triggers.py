"""Typed triggers of a steering rule (`Matches`, `Not`, `AnyOf`, `AllOf`): no string is parsed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from guard.errors import InputError


# ------------------------------------------------------------------------------------ rules
class _Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def holds(self, passed: Mapping[str, bool]) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def names(self) -> set[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


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

    def names(self) -> set[str]:
        return {self.condition}

    def describe(self) -> str:
        return f"matches {self.condition!r}"


class Not(_Trigger):
    """The inner trigger does not hold ("if the input is *not* about legal advice, ...").

    Example:
        >>> Not(Matches("legal")).holds({"legal": False})
        True
    """

    kind: Literal["not"] = "not"
    trigger: Trigger

    def __init__(self, trigger: Any = None, /, **data: Any) -> None:
        if trigger is not None:
            data["trigger"] = trigger
        super().__init__(**data)

    def holds(self, passed: Mapping[str, bool]) -> bool:
        return not self.trigger.holds(passed)

    def names(self) -> set[str]:
        return self.trigger.names()

    def describe(self) -> str:
        return f"not {self.trigger.describe()}"


class _Compound(_Trigger):
    triggers: list[Trigger] = Field(min_length=1)

    def __init__(self, *triggers: Any, **data: Any) -> None:
        if triggers:
            data["triggers"] = list(triggers)
        super().__init__(**data)

    def names(self) -> set[str]:
        return set().union(*(t.names() for t in self.triggers))


class AnyOf(_Compound):
    """At least one trigger holds.

    Example:
        >>> AnyOf(Matches("a"), Matches("b")).holds({"a": False, "b": True})
        True
    """

    kind: Literal["any_of"] = "any_of"

    def holds(self, passed: Mapping[str, bool]) -> bool:
        return any(t.holds(passed) for t in self.triggers)

    def describe(self) -> str:
        return "any of (" + ", ".join(t.describe() for t in self.triggers) + ")"


class AllOf(_Compound):
    """Every trigger holds.

    Example:
        >>> AllOf(Matches("a"), Not(Matches("b"))).holds({"a": True, "b": True})
        False
    """

    kind: Literal["all_of"] = "all_of"

    def holds(self, passed: Mapping[str, bool]) -> bool:
        return all(t.holds(passed) for t in self.triggers)

    def describe(self) -> str:
        return "all of (" + ", ".join(t.describe() for t in self.triggers) + ")"


Trigger = Annotated[Matches | Not | AnyOf | AllOf, Field(discriminator="kind")]
Not.model_rebuild()
AnyOf.model_rebuild()
AllOf.model_rebuild()
