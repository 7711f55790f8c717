"""The boolean combinators of a typed condition tree, written once: not, any of, all of.

Two trees are built from them, each with its own leaves:

- the decision rules' conditions (`guard.decision.rules`: `About` leaves, combined by its `Not`,
  `AnyOf`, `AllOf`);
- the steering triggers (`guard.whitebox.steering.triggers`: `Matches` leaves, combined by its
  `Not`, `AnyOf`, `AllOf`).

Each of them subclasses `NotNode`, `AnyOfNode` and `AllOfNode` once for its leaf type, and keeps
what differs: its pydantic settings (the triggers are frozen), what its nodes take to hold
(similarities and thresholds, or which condition vectors passed), and the names of the combinators'
fields (``condition``/``conditions`` in rules, ``trigger``/``triggers`` in triggers: the names
their files are stored under). What is here is the rest: the ``kind`` each combinator is stored
as (``"not"``, ``"any_of"``, ``"all_of"``), the positional constructors, the truth value (in order,
stopping at the first operand that settles it), the walk over the leaves and the description.

A tree is evaluated by `Node.evaluate`, given the test of one leaf; a node that is not a
combinator is a leaf.

Example:
    >>> from guard.decision.rules import About, AnyOf, Not
    >>> tree = AnyOf(About("a", threshold=0.5), Not(About("b", threshold=0.5)))
    >>> tree.evaluate(lambda about: about.name == "b")
    False
    >>> [about.name for about in tree.leaves()], tree.describe()
    (['a', 'b'], "any of (about 'a', not about 'b')")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast

from pydantic import BaseModel

LeafT = TypeVar("LeafT")


class Node(BaseModel, Generic[LeafT]):
    """A node of a condition tree whose leaves are of type `LeafT`; on its own, a leaf.

    Example:
        >>> from guard.decision.rules import About
        >>> About("a").evaluate(lambda about: about.name == "a")
        True
    """

    def evaluate(self, test: Callable[[LeafT], bool]) -> bool:
        """Whether the tree holds when each leaf holds as `test` says."""
        return test(cast(LeafT, self))

    def leaves(self) -> Iterator[LeafT]:
        """The leaves, left to right (a leaf used twice comes twice)."""
        yield cast(LeafT, self)

    def describe(self) -> str:  # pragma: no cover - abstract
        """The condition in words, as rule names use it."""
        raise NotImplementedError


class NotNode(Node[LeafT]):
    """The operand does not hold; given positionally or by the name in `operand_field`.

    Example:
        >>> from guard.decision.rules import About, Not
        >>> Not(About("a")).evaluate(lambda about: False)
        True
    """

    #: The field that holds the operand (set by each subclass: its stored name).
    operand_field: ClassVar[str]

    kind: Literal["not"] = "not"

    def __init__(self, operand: Any = None, /, **data: Any) -> None:
        if operand is not None:
            data[self.operand_field] = operand
        super().__init__(**data)

    @property
    def operand(self) -> Node[LeafT]:
        """The negated node."""
        return cast(Node[LeafT], getattr(self, self.operand_field))

    def evaluate(self, test: Callable[[LeafT], bool]) -> bool:
        return not self.operand.evaluate(test)

    def leaves(self) -> Iterator[LeafT]:
        yield from self.operand.leaves()

    def describe(self) -> str:
        return f"not {self.operand.describe()}"


class CompoundNode(Node[LeafT]):
    """Shared shape of `AnyOfNode` and `AllOfNode`: operands given positionally or as a list by the
    name in `operands_field`.

    Example:
        >>> from guard.decision.rules import About, AllOf
        >>> [about.name for about in AllOf(About("a"), About("b")).operands]
        ['a', 'b']
    """

    #: The field that holds the operands (set by each subclass: its stored name).
    operands_field: ClassVar[str]

    def __init__(self, *operands: Any, **data: Any) -> None:
        if operands:
            data[self.operands_field] = list(operands)
        super().__init__(**data)

    @property
    def operands(self) -> Sequence[Node[LeafT]]:
        """The combined nodes, in order."""
        return cast(Sequence[Node[LeafT]], getattr(self, self.operands_field))

    def leaves(self) -> Iterator[LeafT]:
        for node in self.operands:
            yield from node.leaves()

    def _describe(self, word: str) -> str:
        return f"{word} (" + ", ".join(node.describe() for node in self.operands) + ")"


class AnyOfNode(CompoundNode[LeafT]):
    """At least one operand holds (tested in order, up to the first that does).

    Example:
        >>> from guard.decision.rules import About, AnyOf
        >>> AnyOf(About("a"), About("b")).evaluate(lambda about: about.name == "b")
        True
    """

    kind: Literal["any_of"] = "any_of"

    def evaluate(self, test: Callable[[LeafT], bool]) -> bool:
        return any(node.evaluate(test) for node in self.operands)

    def describe(self) -> str:
        return self._describe("any of")


class AllOfNode(CompoundNode[LeafT]):
    """Every operand holds (tested in order, up to the first that does not).

    Example:
        >>> from guard.decision.rules import About, AllOf
        >>> AllOf(About("a"), About("b")).evaluate(lambda about: about.name == "b")
        False
    """

    kind: Literal["all_of"] = "all_of"

    def evaluate(self, test: Callable[[LeafT], bool]) -> bool:
        return all(node.evaluate(test) for node in self.operands)

    def describe(self) -> str:
        return self._describe("all of")


__all__ = ["AllOfNode", "AnyOfNode", "CompoundNode", "Node", "NotNode"]
