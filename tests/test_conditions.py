"""One condition algebra (`guard.decision.conditions`) behind both rule conditions and steering triggers."""

import itertools

import pytest
from pydantic import ValidationError

from guard.decision import Action
from guard.decision import rules as R
from guard.decision.conditions import AllOfNode, AnyOfNode, NotNode
from guard.decision.policy import Policy
from guard.errors import InputError
from guard.whitebox.steering import triggers as T
from guard.whitebox.steering.cast import SteeringRule

NAMES = ("a", "b", "c")
# one tree, written once: ("not", x), ("any", [..]), ("all", [..]), or a leaf name
SPECS = [
    "a",
    ("not", "a"),
    ("any", ["a", "b"]),
    ("all", ["a", "b"]),
    ("all", [("any", ["a", ("not", "b")]), ("not", ("all", ["a", "c"]))]),
    ("any", [("all", ["b", "c"]), ("not", ("any", ["a", "c"]))]),
]


def build(spec, leaf, module):
    if isinstance(spec, str):
        return leaf(spec)
    op, arg = spec
    if op == "not":
        return module.Not(build(arg, leaf, module))
    combinator = module.AnyOf if op == "any" else module.AllOf
    return combinator(*(build(s, leaf, module) for s in arg))


def truth(spec, values):
    if isinstance(spec, str):
        return values[spec]
    op, arg = spec
    if op == "not":
        return not truth(arg, values)
    return (any if op == "any" else all)(truth(s, values) for s in arg)


def condition(spec):
    return build(spec, lambda name: R.About(name, threshold=0.5), R)


def trigger(spec):
    return build(spec, T.Matches, T)


ASSIGNMENTS = [dict(zip(NAMES, bits)) for bits in itertools.product([False, True], repeat=len(NAMES))]


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_same_tree_same_truth_in_rules_and_triggers(spec):
    cond, trig = condition(spec), trigger(spec)
    for values in ASSIGNMENTS:
        scores = {k: 0.9 if v else 0.1 for k, v in values.items()}
        assert cond.holds(scores) is trig.holds(values) is truth(spec, values)
    # the same walk over the leaves and the same words, but for the leaf
    assert [a.name for a in cond.abouts()] == [m.condition for m in trig.leaves()]
    assert {a.name for a in cond.abouts()} == trig.names()
    assert cond.describe().replace("about ", "") == trig.describe().replace("matches ", "")


def test_both_use_the_shared_combinators():
    for module in (R, T):
        assert issubclass(module.Not, NotNode)
        assert issubclass(module.AnyOf, AnyOfNode) and issubclass(module.AllOf, AllOfNode)
    a, m = R.About("a", threshold=0.5), T.Matches("a")
    assert R.Not(a).operand is R.Not(a).condition and T.Not(m).operand is T.Not(m).trigger
    assert list(R.AnyOf(a, a).operands) == R.AnyOf(a, a).conditions
    assert list(T.AllOf(m, m).operands) == T.AllOf(m, m).triggers


def test_evaluation_is_in_order_and_stops_early():
    # the later operand has no score: it is never read once the first settles the answer
    assert condition(("any", ["a", "zzz"])).holds({"a": 0.9})
    assert not condition(("all", ["a", "zzz"])).holds({"a": 0.1})
    assert trigger(("any", ["a", "zzz"])).holds({"a": True})
    assert not trigger(("all", ["a", "zzz"])).holds({"a": False})
    with pytest.raises(InputError, match="no similarity for About"):
        condition(("any", ["a", "zzz"])).holds({"a": 0.1})
    with pytest.raises(InputError, match="no result for condition 'zzz'"):
        trigger(("all", ["a", "zzz"])).holds({"a": True})


def test_stored_forms_keep_their_field_names():
    spec = ("all", [("any", ["a", ("not", "b")]), "c"])
    cond = condition(spec).model_dump(mode="json")
    assert cond["kind"] == "all_of" and cond["conditions"][0]["kind"] == "any_of"
    assert cond["conditions"][0]["conditions"][1] == {
        "kind": "not",
        "condition": {"kind": "about", "name": "b", "examples": ["b"], "threshold": 0.5, "negatives": []},
    }
    trig = trigger(spec).model_dump(mode="json")
    assert trig["kind"] == "all_of" and trig["triggers"][0]["kind"] == "any_of"
    assert trig["triggers"][0]["triggers"][1] == {
        "kind": "not",
        "trigger": {"kind": "matches", "condition": "b"},
    }
    # keyword construction, by the stored names
    assert R.Not(condition=R.About("b", threshold=0.5)) == condition(("not", "b"))
    assert T.AnyOf(triggers=[T.Matches("a")]) == trigger(("any", ["a"]))


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_round_trips(spec):
    policy = Policy(rules=[R.Rule(name="r", when=condition(spec), then=Action.ABSTAIN)])
    for again in (Policy.from_json(policy.to_json()), Policy.from_yaml(policy.to_yaml())):
        assert again == policy and again.rules[0].when.describe() == condition(spec).describe()
    rule = SteeringRule(when=trigger(spec))
    again_rule = SteeringRule.model_validate_json(rule.model_dump_json())
    assert again_rule == rule and type(again_rule.when) is type(trigger(spec))
    for values in ASSIGNMENTS:
        assert again_rule.fires(values) is truth(spec, values)


def test_each_keeps_its_own_settings():
    # triggers are frozen (and hashable); rule conditions are not
    with pytest.raises(ValidationError):
        T.Not(T.Matches("a")).trigger = T.Matches("b")
    assert hash(T.Not(T.Matches("a"))) == hash(T.Not(T.Matches("a")))
    cond = R.Not(R.About("a", threshold=0.5))
    cond.condition = R.About("b", threshold=0.5)
    assert cond.describe() == "not about 'b'"
    for module, leaf in ((R, R.About("a", threshold=0.5)), (T, T.Matches("a"))):
        with pytest.raises(ValidationError):
            module.AnyOf()  # at least one operand
        with pytest.raises(ValidationError):
            module.Not(leaf, extra_field=1)
        with pytest.raises(ValidationError):
            module.AllOf("a")  # no strings where conditions belong
    with pytest.raises(ValidationError):
        R.Not(T.Matches("a"))  # a trigger is not a rule condition
    with pytest.raises(ValidationError):
        T.Not(R.About("a", threshold=0.5))
