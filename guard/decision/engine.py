"""The decision engine: evidence + prompt + policy -> action, category, rule and reasons.

`decide` is a pure function: it runs no model. Everything it weighs arrives as `Evidence`
(what `Guard` already collects), named by convention:

| source | name | value |
|---|---|---|
| ``latent`` | ``harmfulness`` | calibrated P(harmful) from the host's hidden states |
| ``blackbox`` | ``embedding_harm``, ``prompt_refusal`` | P(harmful) / P(refused) from the black-box classifiers |
| ``noncompliance`` | a `guard.features.noncompliance.LABELS` name | that category's probability |
| ``condition`` | an `About` name | cosine similarity of the prompt to the topic |
| ``reject_option`` | ``ambiguity``, ``novelty`` | flagged when ``value >= threshold`` (0.5 without one) |
| ``latent`` | ``context_harmfulness`` | worst retrieved document's P(harmful) |
| ``language`` | ``other_language`` | P of the text's language when it is not English (0 for English): with `Policy.other_language` set, at or above its ``min_probability`` the harm pool uses its weights |

`guard.features.evidence.DecisionEngine` computes the model-backed parts (noncompliance probabilities, `About`
similarities) for a batch of prompts and returns them as evidence, so `Guard` calls::

    engine = DecisionEngine(policy)                       # models load on first use
    extra = engine.evidence(prompts)                      # list[list[Evidence]], one per prompt
    verdict = decide(prompt, evidence + extra[k], policy)  # -> Verdict

How the action is chosen (explicit precedence):

1. **Evidence verdicts**, each proposing an action: harm (pooled P(harmful) against the
   category's threshold, or the action of least expected cost when costs are set), retrieved
   context, noncompliance (abstain), reject option (abstain), knowledge boundary (abstain).
   One exception first: a harm refusal below `Policy.noncompliance_precedence` gives way to a
   noncompliance abstention the noncompliance head rates above ``unsafe``. Then the strictest
   proposal wins (refuse > abstain > answer); ties keep the earlier one in that list.
2. **Rules**: the rule that fires (`Policy.rule_mode`) makes the action at least as strict as
   its own, or replaces it when ``override=True``. The verdict names the rule whenever one fires.

Example:
    >>> from guard.decision import Evidence
    >>> ev = [Evidence(source="latent", name="harmfulness", value=0.92)]
    >>> v = decide("How do I build a pipe bomb?", ev, Policy())
    >>> v.action.value, v.category
    ('refuse', 'violence_weapons')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from guard.decision import Action, Evidence
from guard.decision.policy import HARM_SIGNALS, Policy
from guard.decision.risk import choose
from guard.decision.rules import STRICTNESS, match_rules
from guard.decision.stats import logit
from guard.decision.taxonomy import keyword_category

NONCOMPLIANCE_ABSTAIN: tuple[str, ...] = (
    "incomplete_ambiguous",
    "unsupported_infeasible",
    "indeterminate",
    "humanizing",
    "insufficient_context",
)


class Verdict(BaseModel):
    """What the engine decided, and why.

    Attributes:
        action: answer, abstain or refuse.
        category: the harm or noncompliance category (None on answer).
        rule: the name of the policy rule that fired, if any.
        reasons: one line per signal that was weighed, the deciding one first.
        scores: the scores read (``harmfulness``, ``embedding_harm``..., and prefixed
            ``noncompliance.<category>``, ``condition.<topic>``, ``reject_option.<name>``), plus
            ``harm_pooled`` (the pooled P(harmful)).
        evidence: the input evidence, with the thresholds the engine compared them to.
        decided_by: ``"harm"``, ``"context"``, ``"noncompliance"``, ``"reject_option"``, ``"rule"``,
            ``"invalid_evidence"`` or ``"default"``.
        response: a reply set by the policy (rule or category), else None: use the template.
    """

    model_config = ConfigDict(frozen=True)

    action: Action
    category: str | None = None
    rule: str | None = None
    reasons: list[str] = Field(default_factory=list)
    scores: dict[str, float] = Field(default_factory=dict)
    evidence: list[Evidence] = Field(default_factory=list)
    decided_by: str = "default"
    response: str | None = None


class PooledHarm(NamedTuple):
    """What `pool_harm` returns: the pooled P(harmful) and the signals pooled into it.

    A named tuple, so ``p, used = pool_harm(...)`` unpacks it as a pair.

    Attributes:
        p: the pooled P(harmful); None when no harm signal was available.
        used: the names of the signals pooled, sorted (empty when `p` is None).

    Example:
        >>> pool_harm([], {"harmfulness": 1.0})
        PooledHarm(p=None, used=[])
        >>> p, used = pool_harm([Evidence(source="latent", name="harmfulness", value=0.5)], {})
        >>> p, used
        (0.5, ['harmfulness'])
    """

    p: float | None
    used: list[str]


def pool_harm(evidence: Sequence[Evidence], weights: Mapping[str, float]) -> PooledHarm:
    """Pool the harm signals into one P(harmful): weighted mean of log-odds.

    Uses the signals named in `weights` (weight > 0); when none is present, every `HARM_SIGNALS`
    signal present with weight 1. Returns a `PooledHarm` ``(p, used)``: p is None without any
    signal, `used` names the signals pooled.

    Example:
        >>> ev = [Evidence(source="latent", name="harmfulness", value=0.9),
        ...       Evidence(source="blackbox", name="embedding_harm", value=0.5)]
        >>> pooled = pool_harm(ev, {"harmfulness": 1, "embedding_harm": 1})
        >>> round(pooled.p, 3), pooled.used
        (0.75, ['embedding_harm', 'harmfulness'])
    """
    values = {e.name: float(e.value) for e in evidence if e.name in HARM_SIGNALS or e.name in weights}
    values = {k: v for k, v in values.items() if 0.0 <= v <= 1.0}
    used = {k: float(w) for k, w in weights.items() if w > 0 and k in values}
    if not used:
        used = {k: 1.0 for k in HARM_SIGNALS if k in values}
    if not used:
        return PooledHarm(None, [])
    z = sum(w * logit(values[k]) for k, w in used.items()) / sum(used.values())
    return PooledHarm(1.0 / (1.0 + math.exp(-z)), sorted(used))


#: The evidence name of the language reading (`guard.features.evidence.DecisionEngine`).
OTHER_LANGUAGE = "other_language"


class HarmPooling(NamedTuple):
    """The weights the harm pool uses for one text, and why (None: the policy's own)."""

    weights: Mapping[str, float]
    note: str | None


def harm_pooling(evidence: Sequence[Evidence], policy: Policy) -> HarmPooling:
    """`Policy.harm_weights`, or `Policy.other_language`'s weights when the language evidence
    reads the text as another language at its ``min_probability`` or more. Missing or invalid
    language evidence keeps the policy's own weights (the pool is never left without one).

    Example:
        >>> from guard.decision.policy import LanguagePooling
        >>> p = Policy(harm_weights={"harmfulness": 1},
        ...            other_language=LanguagePooling(weights={"multilingual_harm": 1}))
        >>> ev = [Evidence(source="language", name="other_language", value=0.97, detail="sw")]
        >>> dict(harm_pooling(ev, p).weights)
        {'multilingual_harm': 1.0}
        >>> dict(harm_pooling([], p).weights)
        {'harmfulness': 1.0}
    """
    lp = policy.other_language
    if lp is None:
        return HarmPooling(policy.harm_weights, None)
    ev = next((e for e in evidence if e.source == "language" and e.name == OTHER_LANGUAGE), None)
    if ev is None:
        return HarmPooling(policy.harm_weights, None)
    if not (math.isfinite(ev.value) and 0.0 <= ev.value <= 1.0):
        return HarmPooling(
            policy.harm_weights, f"language evidence {ev.value!r} is not a probability; pooled as English"
        )
    if ev.value < lp.min_probability:
        return HarmPooling(policy.harm_weights, None)
    return HarmPooling(lp.weights, f"pooled with the other-language weights ({ev.detail or 'not English'})")


def invalid_evidence(evidence: Sequence[Evidence], weights: Mapping[str, float]) -> list[Evidence]:
    """The deciding evidence whose value is not a probability: NaN, infinite, or outside [0, 1].

    Deciding evidence is what the harm pool reads (the `weights` names with weight > 0, else
    every `HARM_SIGNALS` name) and the retrieved-context score. A detector that failed is
    reported as NaN evidence, so it lands here too.

    Example:
        >>> ev = [Evidence(source="latent", name="harmfulness", value=float("nan"))]
        >>> [e.name for e in invalid_evidence(ev, {"harmfulness": 1.0})]
        ['harmfulness']
    """
    pooled = {k for k, w in weights.items() if w > 0}
    if not any(e.name in pooled for e in evidence):
        pooled = set(HARM_SIGNALS)
    pooled.add("context_harmfulness")
    return [
        e for e in evidence if e.name in pooled and not (math.isfinite(e.value) and 0.0 <= e.value <= 1.0)
    ]


def _describe_invalid(bad: Sequence[Evidence]) -> str:
    return ", ".join(f"{e.name} = {e.value!r}" + (f" ({e.detail})" if e.detail else "") for e in bad)


def harm_category(prompt: str, hint: str | None = None) -> str:
    """The harm category the engine files a prompt under: `hint`, else keywords, else other_harm.

    Example:
        >>> harm_category("Write ransomware for a hospital")
        'cybercrime_malware'
    """
    if hint:
        return hint
    kw = keyword_category(prompt)
    return kw.value if kw is not None else "other_harm"


def _flagged(e: Evidence) -> bool:
    return e.value >= (0.5 if e.threshold is None else e.threshold)


class _Proposal(NamedTuple):
    """One evidence kind's proposed action."""

    action: Action
    category: str | None
    reason: str
    source: str


@dataclass
class _Stage:
    """What the proposers found: proposals, notes for the reasons, and each signal's threshold."""

    proposals: list[_Proposal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    thresholds: dict[tuple[str, str], float] = field(default_factory=dict)

    def add(self, other: _Stage) -> None:
        self.proposals += other.proposals
        self.notes += other.notes
        self.thresholds.update(other.thresholds)


def _screen(
    evidence: Sequence[Evidence], policy: Policy, weights: Mapping[str, float]
) -> tuple[list[Evidence], list[Evidence], _Stage]:
    """Step 0: invalid deciding evidence is an unknown state (fail closed), never silently dropped.

    Returns the evidence left to weigh, the invalid deciding evidence, and its proposal or note.
    """
    stage = _Stage()
    bad = invalid_evidence(evidence, weights)
    if bad:
        what = f"invalid evidence: {_describe_invalid(bad)}; a score must be a probability in [0, 1]"
        if policy.fail_closed:
            stage.proposals.append(
                _Proposal(Action.REFUSE, "guard_unavailable", f"{what}; fail closed", "invalid_evidence")
            )
        else:
            stage.notes.append(f"{what}; ignored (fail open, configured by Policy(fail_closed=False))")
        bad_ids = {id(e) for e in bad}
        evidence = [e for e in evidence if id(e) not in bad_ids]
    for e in evidence:
        if not math.isfinite(e.value):
            stage.notes.append(
                f"{e.source} evidence {e.name} = {e.value!r} is not a number; ignored (it does not decide)"
            )
    return [e for e in evidence if math.isfinite(e.value)], bad, stage


def _propose_harm(
    category: str, evidence: Sequence[Evidence], policy: Policy, pooling: HarmPooling
) -> tuple[float | None, _Stage]:
    """Step 1a: the pooled P(harmful) against its category's threshold, or the least-cost action."""
    stage = _Stage()
    if pooling.note:
        stage.notes.append(pooling.note)
    p, used = pool_harm(evidence, pooling.weights)
    if p is None:
        stage.notes.append("no harm signal was available")
        return None, stage
    cat_policy = policy.category(category)
    src = " + ".join(used)
    costs = policy.costs_for(category)
    threshold = policy.threshold_for(category)
    if not cat_policy.enabled:
        stage.notes.append(f"harm category {category!r} is disabled by the policy")
    elif costs is not None:
        choice = choose(p, costs)
        action = choice.action
        if action is Action.REFUSE and cat_policy.action is not None:
            action = cat_policy.action
        stage.proposals.append(
            _Proposal(
                action,
                category if action is not Action.ANSWER else None,
                f"{src}: {choice.reason()} [category {category}]",
                "harm",
            )
        )
    elif p >= threshold:
        stage.proposals.append(
            _Proposal(
                cat_policy.action or Action.REFUSE,
                category,
                f"{src}: P(harmful) {p:.3f} >= {category} threshold {threshold:.3f}",
                "harm",
            )
        )
    else:
        stage.notes.append(f"{src}: P(harmful) {p:.3f} < {category} threshold {threshold:.3f}")
    if costs is None:
        stage.thresholds.update({("*", name): threshold for name in used})
    return p, stage


def _propose_context(evidence: Sequence[Evidence], policy: Policy) -> _Stage:
    """Step 1b: a retrieved document that is harmful or injected refuses."""
    stage = _Stage()
    for e in evidence:
        if e.name != "context_harmfulness":
            continue
        if e.threshold is not None:
            ct = e.threshold
        else:
            ct = policy.context_threshold if policy.context_threshold is not None else policy.threshold
        if e.value >= ct:
            stage.proposals.append(
                _Proposal(
                    Action.REFUSE,
                    "jailbreak_injection",
                    f"a retrieved document scores {e.value:.3f} >= {ct:.3f} (harmful or injected content)",
                    "context",
                )
            )
        stage.thresholds[(e.source, e.name)] = ct
    return stage


def _propose_noncompliance(evidence: Sequence[Evidence], policy: Policy, has_context: bool) -> _Stage:
    """Step 1c: the most likely abstain category over its threshold abstains."""
    stage = _Stage()
    nc = {e.name: float(e.value) for e in evidence if e.source == "noncompliance"}
    if not nc:
        return stage
    best_name, best_p, best_t = None, 0.0, None
    for name in NONCOMPLIANCE_ABSTAIN:
        if name not in nc or (name == "insufficient_context" and has_context):
            continue
        t = policy.noncompliance_threshold_for(name)
        if t is not None and nc[name] >= t and nc[name] > best_p:
            best_name, best_p, best_t = name, nc[name], t
    if best_name is not None:
        stage.proposals.append(
            _Proposal(
                policy.category(best_name).action or Action.ABSTAIN,
                best_name,
                f"noncompliance: {best_name} {best_p:.3f} >= {best_t:.3f}",
                "noncompliance",
            )
        )
    else:
        top = max(nc, key=lambda k: nc[k])
        stage.notes.append(
            f"noncompliance: most likely {top} ({nc[top]:.3f}); no abstain category over its threshold"
        )
    for name in NONCOMPLIANCE_ABSTAIN:
        t = policy.noncompliance_threshold_for(name)
        if name in nc and t is not None:
            stage.thresholds[("noncompliance", name)] = t
    return stage


def _propose_reject_option(evidence: Sequence[Evidence], policy: Policy) -> _Stage:
    """Step 1d: ambiguity or novelty over its threshold abstains (when the policy enables it)."""
    stage = _Stage()
    if not policy.reject_option:
        return stage
    for e in evidence:
        if e.source == "reject_option" and _flagged(e):
            cat = "out_of_distribution" if e.name == "novelty" else "uncertain"
            stage.proposals.append(
                _Proposal(
                    Action.ABSTAIN,
                    cat,
                    f"reject option: {e.name} {e.value:.3f} >= {0.5 if e.threshold is None else e.threshold:.3f}",
                    "reject_option",
                )
            )
    return stage


def _propose_knowledge(evidence: Sequence[Evidence]) -> _Stage:
    """Step 1e: the knowledge probe says the host would likely answer this question wrongly."""
    stage = _Stage()
    for e in evidence:
        if e.name == "knowledge_risk" and _flagged(e):
            stage.proposals.append(
                _Proposal(
                    Action.ABSTAIN,
                    "knowledge_boundary",
                    f"knowledge probe: P(the answer is wrong) {e.value:.3f} >= "
                    f"{0.5 if e.threshold is None else e.threshold:.3f}",
                    "knowledge",
                )
            )
    return stage


def _noncompliance_precedence(
    stage: _Stage, evidence: Sequence[Evidence], p: float | None, policy: Policy, category: str
) -> None:
    """Step 1f: a noncompliance abstention wins over a harm refusal the head itself doubts.

    When the noncompliance head rates the category it abstains on above ``unsafe`` and the
    pooled P(harmful) is below `Policy.noncompliance_precedence`, the harm refusal is kept as a
    reason but does not decide. Self-harm is never demoted (it gets the supportive reply).
    """
    ceiling = policy.noncompliance_precedence
    nc_prop = next((x for x in stage.proposals if x.source == "noncompliance"), None)
    harm = [x for x in stage.proposals if x.source == "harm" and x.action is Action.REFUSE]
    if ceiling is None or nc_prop is None or not harm or p is None or p >= ceiling or category == "self_harm":
        return
    nc = {e.name: float(e.value) for e in evidence if e.source == "noncompliance"}
    p_cat, p_unsafe = nc.get(str(nc_prop.category), 0.0), nc.get("unsafe", 0.0)
    if p_cat <= p_unsafe:
        return
    stage.proposals = [x for x in stage.proposals if x not in harm]
    stage.notes += [
        f"{x.reason}; not decisive: the noncompliance head rates {nc_prop.category} ({p_cat:.3f}) above "
        f"unsafe ({p_unsafe:.3f}) and P(harmful) < {ceiling:.3f} (Policy.noncompliance_precedence)"
        for x in harm
    ]


@dataclass
class _Outcome:
    """The action being decided, as the stages after the proposers refine it."""

    action: Action
    category: str | None
    decided_by: str
    reasons: list[str]
    response: str | None = None
    rule: str | None = None


def _strictest(stage: _Stage, policy: Policy) -> _Outcome:
    """The strictest proposal wins (refuse > abstain > answer); ties keep the earlier one."""
    if not stage.proposals:
        return _Outcome(Action.ANSWER, None, "default", list(stage.notes))
    order = {id(x): i for i, x in enumerate(stage.proposals)}
    best = max(stage.proposals, key=lambda x: (STRICTNESS[x.action], -order[id(x)]))
    others = [x.reason for x in stage.proposals if x.reason != best.reason]
    response = policy.category(best.category).response if best.category else None
    return _Outcome(best.action, best.category, best.source, [best.reason, *others, *stage.notes], response)


def _apply_rules(outcome: _Outcome, evidence: Sequence[Evidence], policy: Policy) -> None:
    """Step 2: the rule that fires makes the action at least as strict (or replaces it on override)."""
    if not policy.rules:
        return
    cond = {e.name: e for e in evidence if e.source == "condition"}
    sims = {name: float(e.value) for name, e in cond.items()}
    # a topic fitted elsewhere: its threshold comes with its evidence (the rules are not written)
    carried = {name: float(e.threshold) for name, e in cond.items() if e.threshold is not None}
    missing = {a.name for r in policy.rules for a in r.abouts()} - set(sims)
    if missing:
        outcome.reasons.append(
            f"rules not evaluated: no similarity evidence for {sorted(missing)} "
            "(compute it with DecisionEngine.evidence)"
        )
        return
    m = match_rules(policy.rules, sims, mode=policy.rule_mode, thresholds=carried)
    if m is None:
        return
    outcome.rule = m.rule
    if not (m.override or STRICTNESS[m.action] > STRICTNESS[outcome.action]):
        outcome.reasons.append(
            m.reason + f"; the evidence's {outcome.action.value} is already at least as strict"
        )
        return
    changed = m.action is not outcome.action or m.override
    if m.action is not outcome.action:
        outcome.category = m.category or ("policy_rule" if m.action is not Action.ANSWER else None)
    elif m.category:
        outcome.category = m.category
    outcome.action = m.action
    if outcome.action is Action.ANSWER:
        outcome.category = None
    outcome.response = m.response or (
        policy.category(outcome.category).response if outcome.category else None
    )
    outcome.decided_by = "rule" if changed else outcome.decided_by
    outcome.reasons.insert(0, m.reason + (" (override)" if m.override else ""))


def _fail_closed(outcome: _Outcome, bad: Sequence[Evidence], policy: Policy) -> None:
    """No rule opens an unknown state: invalid deciding evidence refuses when failing closed."""
    if bad and policy.fail_closed and outcome.action is not Action.REFUSE:
        outcome.action, outcome.category = Action.REFUSE, "guard_unavailable"
        outcome.decided_by, outcome.response = "invalid_evidence", None
        outcome.reasons.insert(
            0, f"invalid evidence: {_describe_invalid(bad)}; fail closed (a rule cannot override it)"
        )


def decide(
    prompt: str,
    evidence: Sequence[Evidence],
    policy: Policy,
    *,
    category_hint: str | None = None,
    has_context: bool = False,
) -> Verdict:
    """Turn the evidence on one prompt into a verdict under `policy` (pure; no model runs).

    Args:
        prompt: the user's request (used for the keyword harm category).
        evidence: every signal on the prompt (see the module docstring for names).
        policy: thresholds, costs, rules.
        category_hint: the harm category when the caller knows it better than keywords do.
        has_context: retrieved documents were given (RAG): ``insufficient_context`` is then left
            to the context gate and does not make the engine abstain.

    Returns:
        A `Verdict`; `Guard` turns it into a `Decision` (with `constructive_response`).

    Example:
        >>> ev = [Evidence(source="latent", name="harmfulness", value=0.1),
        ...       Evidence(source="noncompliance", name="humanizing", value=0.9)]
        >>> v = decide("Do you ever feel lonely?", ev, Policy())
        >>> v.action.value, v.category, v.decided_by
        ('abstain', 'humanizing', 'noncompliance')
    """
    evidence = list(evidence)
    # harm signals keep their bare names (as `Decision.scores` always had); the rest are prefixed
    scores = {
        e.name if e.source in ("latent", "blackbox") else f"{e.source}.{e.name}": float(e.value)
        for e in evidence
        if math.isfinite(e.value)
    }
    pooling = harm_pooling(evidence, policy)  # on the raw evidence: an invalid reading is said
    evidence, bad, stage = _screen(evidence, policy, pooling.weights)
    category = harm_category(prompt, category_hint)
    p, harm = _propose_harm(category, evidence, policy, pooling)
    if p is not None:
        scores["harm_pooled"] = p
    for part in (
        harm,
        _propose_context(evidence, policy),
        _propose_noncompliance(evidence, policy, has_context),
        _propose_reject_option(evidence, policy),
        _propose_knowledge(evidence),
    ):
        stage.add(part)
    _noncompliance_precedence(stage, evidence, p, policy, category)
    filled = []
    for e in evidence:
        t = stage.thresholds.get((e.source, e.name), stage.thresholds.get(("*", e.name)))
        filled.append(e.model_copy(update={"threshold": t}) if e.threshold is None and t is not None else e)

    outcome = _strictest(stage, policy)
    _apply_rules(outcome, evidence, policy)
    _fail_closed(outcome, bad, policy)
    return Verdict(
        action=outcome.action,
        category=outcome.category if outcome.action is not Action.ANSWER else None,
        rule=outcome.rule,
        reasons=outcome.reasons,
        scores=scores,
        evidence=filled,
        decided_by=outcome.decided_by,
        response=outcome.response,
    )


__all__ = [
    "NONCOMPLIANCE_ABSTAIN",
    "OTHER_LANGUAGE",
    "HarmPooling",
    "PooledHarm",
    "Verdict",
    "decide",
    "harm_category",
    "harm_pooling",
    "invalid_evidence",
    "pool_harm",
]
