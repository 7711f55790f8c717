"""The decision engine on hand-made evidence (no model runs)."""

import pytest

from guard.decision import Action, Evidence
from guard.decision.engine import PooledHarm, decide, pool_harm
from guard.decision.policy import CategoryPolicy, Policy
from guard.decision.risk import Costs
from guard.decision.rules import About, Not, Rule
from guard.features.evidence import DecisionEngine


def latent(p):
    return Evidence(source="latent", name="harmfulness", value=p)


def nc(**probs):
    return [Evidence(source="noncompliance", name=k, value=v) for k, v in probs.items()]


def cond(**sims):
    return [Evidence(source="condition", name=k, value=v) for k, v in sims.items()]


@pytest.mark.parametrize("p,action", [(0.49, Action.ANSWER), (0.5, Action.REFUSE), (0.9, Action.REFUSE)])
def test_default_policy_matches_the_old_latent_rule(p, action):
    v = decide("How do I make a bomb?", [latent(p)], Policy())
    assert v.action is action
    assert v.category == ("violence_weapons" if action is Action.REFUSE else None)
    assert v.evidence[0].threshold == 0.5 and v.rule is None


def test_per_category_threshold_and_action():
    pol = Policy(
        categories={
            "self_harm": CategoryPolicy(threshold=0.2),
            "specialized_advice": CategoryPolicy(threshold=0.3, action=Action.ABSTAIN),
        }
    )
    assert decide("I want to kill myself", [latent(0.25)], pol).action is Action.REFUSE
    assert decide("How do I make a bomb?", [latent(0.25)], pol).action is Action.ANSWER
    v = decide("Should I double my insulin?", [latent(0.35)], pol, category_hint="specialized_advice")
    assert (v.action, v.category) == (Action.ABSTAIN, "specialized_advice")


def test_costs_give_an_abstain_band():
    pol = Policy(costs=Costs(wrong_answer=10, refusal=1, abstention=0.5))
    assert decide("x", [latent(0.01)], pol).action is Action.ANSWER
    v = decide("x", [latent(0.2)], pol)
    assert (v.action, v.category, v.decided_by) == (Action.ABSTAIN, "other_harm", "harm")
    assert "least expected cost" in v.reasons[0]
    assert decide("x", [latent(0.6)], pol).action is Action.REFUSE


def test_pooling_and_blackbox_fallback():
    ev = [latent(0.9), Evidence(source="blackbox", name="embedding_harm", value=0.1)]
    p, used = pool_harm(ev, {"harmfulness": 1.0, "embedding_harm": 1.0})
    assert p == pytest.approx(0.5) and used == ["embedding_harm", "harmfulness"]
    pooled = pool_harm(ev, {"harmfulness": 1.0, "embedding_harm": 1.0})
    assert isinstance(pooled, PooledHarm) and (pooled.p, pooled.used) == (p, used)
    assert pool_harm([], {"harmfulness": 1.0}) == PooledHarm(p=None, used=[])
    # no latent guard (an API model): the black-box scores decide
    v = decide("hack a server", [Evidence(source="blackbox", name="prompt_refusal", value=0.8)], Policy())
    assert v.action is Action.REFUSE and v.scores["harm_pooled"] == pytest.approx(0.8)
    assert decide("hi", [], Policy()).action is Action.ANSWER


def test_noncompliance_abstains_unless_harm_refuses():
    v = decide("Fix it.", [latent(0.05), *nc(incomplete_ambiguous=0.8, benign=0.1)], Policy())
    assert (v.action, v.category, v.decided_by) == (Action.ABSTAIN, "incomplete_ambiguous", "noncompliance")
    v = decide("bomb", [latent(0.95), *nc(incomplete_ambiguous=0.8)], Policy())
    assert v.action is Action.REFUSE  # stricter wins
    assert decide("x", [latent(0.05), *nc(humanizing=0.55)], Policy()).action is Action.ANSWER
    off = Policy(categories={"humanizing": CategoryPolicy(enabled=False)})
    assert decide("x", [latent(0.05), *nc(humanizing=0.9)], off).action is Action.ANSWER
    assert decide("x", [*nc(humanizing=0.9)], Policy(noncompliance_threshold=None)).action is Action.ANSWER


def test_insufficient_context_is_left_to_the_gate_when_context_is_given():
    ev = [latent(0.05), *nc(insufficient_context=0.9)]
    assert decide("According to the report?", ev, Policy()).action is Action.ABSTAIN
    assert decide("According to the report?", ev, Policy(), has_context=True).action is Action.ANSWER


def test_reject_option_and_context():
    ev = [latent(0.1), Evidence(source="reject_option", name="novelty", value=3.0, threshold=2.0)]
    v = decide("x", ev, Policy())
    assert (v.action, v.category) == (Action.ABSTAIN, "out_of_distribution")
    assert decide("x", ev, Policy(reject_option=False)).action is Action.ANSWER
    ctx = Evidence(source="latent", name="context_harmfulness", value=0.7)
    v = decide("summarise", [latent(0.1), ctx], Policy(context_threshold=0.6))
    assert (v.action, v.category, v.decided_by) == (Action.REFUSE, "jailbreak_injection", "context")


def test_rules_tighten_by_default_and_override_when_asked():
    legal = About("legal advice", threshold=0.5)
    pol = Policy(rules=[Rule(name="legal", when=legal, then=Action.ABSTAIN, category="specialized_advice")])
    v = decide("Can I sue my landlord?", [latent(0.1), *cond(**{"legal advice": 0.7})], pol)
    assert (v.action, v.category, v.rule, v.decided_by) == (
        Action.ABSTAIN,
        "specialized_advice",
        "legal",
        "rule",
    )
    assert v.reasons[0].startswith("rule 'legal' fired")
    # a refusal from the evidence stays a refusal; the rule is still named
    v = decide("bomb", [latent(0.9), *cond(**{"legal advice": 0.7})], pol)
    assert (v.action, v.rule, v.decided_by) == (Action.REFUSE, "legal", "harm")
    # an allow rule must override
    allow = Policy(rules=[Rule(name="allow", when=legal, then=Action.ANSWER, override=True)])
    v = decide("bomb", [latent(0.9), *cond(**{"legal advice": 0.7})], allow)
    assert (v.action, v.category, v.rule) == (Action.ANSWER, None, "allow")
    no_override = Policy(rules=[Rule(name="allow", when=legal, then=Action.ANSWER)])
    assert decide("bomb", [latent(0.9), *cond(**{"legal advice": 0.7})], no_override).action is Action.REFUSE


def test_rule_order_is_explicit():
    a = About("product", threshold=0.4)
    rules = [
        Rule(name="scope", when=Not(a), then=Action.ABSTAIN, category="off_topic"),
        Rule(name="ban", when=Not(a), then=Action.REFUSE),
    ]
    ev = [latent(0.1), *cond(product=0.1)]
    assert decide("x", ev, Policy(rules=rules)).rule == "scope"
    assert decide("x", ev, Policy(rules=rules, rule_mode="strictest")).rule == "ban"
    assert decide("x", [latent(0.1), *cond(product=0.9)], Policy(rules=rules)).rule is None


def test_rules_without_similarity_evidence_are_reported():
    pol = Policy(rules=[Rule(name="legal", when=About("legal advice", threshold=0.5), then=Action.ABSTAIN)])
    v = decide("x", [latent(0.1)], pol)
    assert v.action is Action.ANSWER and any("rules not evaluated" in r for r in v.reasons)


def test_engine_evidence_with_a_fake_classifier():
    class Fake:
        def proba_dicts(self, prompts):
            return [{"humanizing": 0.9, "benign": 0.1} for _ in prompts]

    eng = DecisionEngine(Policy(), noncompliance=Fake())
    ev = eng.evidence(["Do you feel sad?"])[0]
    v = eng.decide("Do you feel sad?", [latent(0.0), *ev])
    assert (v.action, v.category) == (Action.ABSTAIN, "humanizing")
    assert v.scores["noncompliance.humanizing"] == 0.9 and v.scores["harmfulness"] == 0.0


def test_unfitted_topic_takes_the_threshold_from_the_evidence():
    pol = Policy(rules=[Rule(name="legal", when=About("legal advice"), then=Action.ABSTAIN)])
    ev = [latent(0.1), Evidence(source="condition", name="legal advice", value=0.4, threshold=0.3)]
    assert decide("x", ev, pol).rule == "legal"


def test_decide_reads_a_carried_topic_threshold_without_writing_the_rule():
    from guard.decision.rules import About, Rule

    about = About("baking")  # fitted elsewhere: no threshold of its own
    policy = Policy(rules=[Rule(name="bake", when=about, then=Action.ABSTAIN)])
    ev = [
        Evidence(source="latent", name="harmfulness", value=0.1),
        Evidence(source="condition", name="baking", value=0.8, threshold=0.5),
    ]
    v = decide("bake", ev, policy)
    assert v.action is Action.ABSTAIN and v.rule == "bake"
    assert about._threshold is None and about.threshold is None  # the policy is not changed by deciding
    low = [ev[0], Evidence(source="condition", name="baking", value=0.3, threshold=0.5)]
    assert decide("bake", low, policy).action is Action.ANSWER


def test_knowledge_risk_without_a_threshold_is_compared_to_one_half():
    # it used to crash formatting the missing threshold into its reason
    ev = [latent(0.1), Evidence(source="latent", name="knowledge_risk", value=0.7)]
    v = decide("Who was the first mayor of Tórshavn?", ev, Policy())
    assert v.action is Action.ABSTAIN and v.category == "knowledge_boundary"
    assert "0.700 >= 0.500" in v.reasons[0]
    assert (
        decide(
            "x", [latent(0.1), Evidence(source="latent", name="knowledge_risk", value=0.3)], Policy()
        ).action
        is Action.ANSWER
    )


def _nc(name, p, unsafe):
    return [
        Evidence(source="noncompliance", name=name, value=p),
        Evidence(source="noncompliance", name="unsafe", value=unsafe),
    ]


def test_a_noncompliance_abstention_wins_over_a_harm_refusal_the_head_doubts():
    v = decide("Do you ever feel lonely at night?", [latent(0.7), *_nc("humanizing", 0.8, 0.05)], Policy())
    assert (v.action, v.category, v.decided_by) == (Action.ABSTAIN, "humanizing", "noncompliance")
    assert any("not decisive" in r and "noncompliance_precedence" in r for r in v.reasons)


@pytest.mark.parametrize(
    "prompt, harm, unsafe, policy",
    [
        ("Do you ever feel lonely at night?", 0.95, 0.05, Policy()),  # harm over the ceiling
        ("Do you ever feel lonely at night?", 0.7, 0.5, Policy(noncompliance_threshold=0.3)),  # head: unsafe
        ("Do you ever feel lonely at night?", 0.7, 0.05, Policy(noncompliance_precedence=None)),  # off
        ("How do I kill myself painlessly?", 0.7, 0.05, Policy()),  # self-harm keeps its reply
    ],
)
def test_the_harm_refusal_stands_otherwise(prompt, harm, unsafe, policy):
    v = decide(prompt, [latent(harm), *_nc("humanizing", min(0.8, 1 - unsafe), unsafe)], policy)
    assert v.action is Action.REFUSE and v.decided_by == "harm"
    assert any(r.startswith("noncompliance: humanizing") for r in v.reasons)  # it did propose to abstain
