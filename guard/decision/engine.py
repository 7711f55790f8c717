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

`guard.features.evidence.DecisionEngine` computes the model-backed parts (noncompliance probabilities, `About`
similarities) for a batch of prompts and returns them as evidence, so `Guard` calls::

    engine = DecisionEngine(policy)                       # models load on first use
    extra = engine.evidence(prompts)                      # list[list[Evidence]], one per prompt
    verdict = decide(prompt, evidence + extra[k], policy)  # -> Verdict

How the action is chosen (explicit precedence):

1. **Evidence verdicts**, each proposing an action: harm (pooled P(harmful) against the
   category's threshold, or the action of least expected cost when costs are set), retrieved
   context, noncompliance (abstain), reject option (abstain). The strictest proposal wins
   (refuse > abstain > answer); ties keep the earlier one in that list.
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


def pool_harm(evidence: Sequence[Evidence], weights: Mapping[str, float]) -> tuple[float | None, list[str]]:
    """Pool the harm signals into one P(harmful): weighted mean of log-odds.

    Uses the signals named in `weights` (weight > 0); when none is present, every `HARM_SIGNALS`
    signal present with weight 1. Returns ``(p, names used)``; p is None without any signal.

    Example:
        >>> ev = [Evidence(source="latent", name="harmfulness", value=0.9),
        ...       Evidence(source="blackbox", name="embedding_harm", value=0.5)]
        >>> round(pool_harm(ev, {"harmfulness": 1, "embedding_harm": 1})[0], 3)
        0.75
    """
    values = {e.name: float(e.value) for e in evidence if e.name in HARM_SIGNALS or e.name in weights}
    values = {k: v for k, v in values.items() if 0.0 <= v <= 1.0}
    used = {k: float(w) for k, w in weights.items() if w > 0 and k in values}
    if not used:
        used = {k: 1.0 for k in HARM_SIGNALS if k in values}
    if not used:
        return None, []
    z = sum(w * logit(values[k]) for k, w in used.items()) / sum(used.values())
    return 1.0 / (1.0 + math.exp(-z)), sorted(used)


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
    proposals: list[tuple[Action, str | None, str, str]] = []  # action, category, reason, source
    notes: list[str] = []
    thresholds: dict[tuple[str, str], float] = {}  # what each signal was compared to, for the Decision

    # 0. invalid deciding evidence is an unknown state, never silently dropped
    bad = invalid_evidence(evidence, policy.harm_weights)
    if bad:
        what = f"invalid evidence: {_describe_invalid(bad)}; a score must be a probability in [0, 1]"
        if policy.fail_closed:
            proposals.append((Action.REFUSE, "guard_unavailable", f"{what}; fail closed", "invalid_evidence"))
        else:
            notes.append(f"{what}; ignored (fail open, configured by Policy(fail_closed=False))")
        bad_ids = {id(e) for e in bad}
        evidence = [e for e in evidence if id(e) not in bad_ids]
    for e in evidence:
        if not math.isfinite(e.value):
            notes.append(
                f"{e.source} evidence {e.name} = {e.value!r} is not a number; ignored (it does not decide)"
            )
    evidence = [e for e in evidence if math.isfinite(e.value)]

    # 1a. harm
    p, used = pool_harm(evidence, policy.harm_weights)
    category = harm_category(prompt, category_hint)
    cat_policy = policy.category(category)
    if p is not None:
        scores["harm_pooled"] = p
        src = " + ".join(used)
        costs = policy.costs_for(category)
        threshold = policy.threshold_for(category)
        if not cat_policy.enabled:
            notes.append(f"harm category {category!r} is disabled by the policy")
        elif costs is not None:
            choice = choose(p, costs)
            action = choice.action
            if action is Action.REFUSE and cat_policy.action is not None:
                action = cat_policy.action
            proposals.append(
                (
                    action,
                    category if action is not Action.ANSWER else None,
                    f"{src}: {choice.reason()} [category {category}]",
                    "harm",
                )
            )
        elif p >= threshold:
            action = cat_policy.action or Action.REFUSE
            proposals.append(
                (
                    action,
                    category,
                    f"{src}: P(harmful) {p:.3f} >= {category} threshold {threshold:.3f}",
                    "harm",
                )
            )
        else:
            notes.append(f"{src}: P(harmful) {p:.3f} < {category} threshold {threshold:.3f}")
        if costs is None:
            thresholds.update({("*", name): threshold for name in used})
    else:
        notes.append("no harm signal was available")

    # 1b. retrieved context
    for e in evidence:
        if e.name == "context_harmfulness":
            ct = (
                e.threshold
                if e.threshold is not None
                else (policy.context_threshold if policy.context_threshold is not None else policy.threshold)
            )
            if e.value >= ct:
                proposals.append(
                    (
                        Action.REFUSE,
                        "jailbreak_injection",
                        f"a retrieved document scores {e.value:.3f} >= {ct:.3f} (harmful or injected "
                        "content)",
                        "context",
                    )
                )
            thresholds[(e.source, e.name)] = ct

    # 1c. noncompliance
    nc = {e.name: float(e.value) for e in evidence if e.source == "noncompliance"}
    if nc:
        best_name, best_p, best_t = None, 0.0, None
        for name in NONCOMPLIANCE_ABSTAIN:
            if name not in nc or (name == "insufficient_context" and has_context):
                continue
            t = policy.noncompliance_threshold_for(name)
            if t is not None and nc[name] >= t and nc[name] > best_p:
                best_name, best_p, best_t = name, nc[name], t
        if best_name is not None:
            action = policy.category(best_name).action or Action.ABSTAIN
            proposals.append(
                (
                    action,
                    best_name,
                    f"noncompliance: {best_name} {best_p:.3f} >= {best_t:.3f}",
                    "noncompliance",
                )
            )
        else:
            top = max(nc, key=nc.get)
            notes.append(
                f"noncompliance: most likely {top} ({nc[top]:.3f}); no abstain category over its threshold"
            )
        for name in NONCOMPLIANCE_ABSTAIN:
            t = policy.noncompliance_threshold_for(name)
            if name in nc and t is not None:
                thresholds[("noncompliance", name)] = t

    # 1d. reject option
    if policy.reject_option:
        for e in evidence:
            if e.source == "reject_option" and _flagged(e):
                cat = "out_of_distribution" if e.name == "novelty" else "uncertain"
                proposals.append(
                    (
                        Action.ABSTAIN,
                        cat,
                        f"reject option: {e.name} {e.value:.3f} >= "
                        f"{0.5 if e.threshold is None else e.threshold:.3f}",
                        "reject_option",
                    )
                )
    # 1e. knowledge boundary: the host would likely answer this factual question wrongly
    for e in evidence:
        if e.name == "knowledge_risk" and _flagged(e):
            proposals.append(
                (
                    Action.ABSTAIN,
                    "knowledge_boundary",
                    f"knowledge probe: P(the answer is wrong) {e.value:.3f} >= {e.threshold:.3f}",
                    "knowledge",
                )
            )
    filled = []
    for e in evidence:
        t = thresholds.get((e.source, e.name), thresholds.get(("*", e.name)))
        filled.append(e.model_copy(update={"threshold": t}) if e.threshold is None and t is not None else e)

    if proposals:
        order = {id(x): i for i, x in enumerate(proposals)}
        action, category_out, reason, decided_by = max(
            proposals, key=lambda x: (STRICTNESS[x[0]], -order[id(x)])
        )
        others = [r for (_, _, r, _) in proposals if r != reason]
        reasons = [reason, *others, *notes]
    else:
        action, category_out, decided_by = Action.ANSWER, None, "default"
        reasons = list(notes)
    response = policy.category(category_out).response if category_out else None

    # 2. rules
    rule_name = None
    if policy.rules:
        cond = {e.name: e for e in evidence if e.source == "condition"}
        sims = {name: float(e.value) for name, e in cond.items()}
        # a topic fitted elsewhere: its threshold comes with its evidence (the rules are not written)
        carried = {name: float(e.threshold) for name, e in cond.items() if e.threshold is not None}
        needed = {a.name for r in policy.rules for a in r.abouts()}
        missing = needed - set(sims)
        if missing:
            reasons.append(
                f"rules not evaluated: no similarity evidence for {sorted(missing)} "
                "(compute it with DecisionEngine.evidence)"
            )
        else:
            m = match_rules(policy.rules, sims, mode=policy.rule_mode, thresholds=carried)
            if m is not None:
                rule_name = m.rule
                if m.override or STRICTNESS[m.action] > STRICTNESS[action]:
                    changed = m.action is not action or m.override
                    if m.action is not action:
                        category_out = m.category or (
                            "policy_rule" if m.action is not Action.ANSWER else None
                        )
                    elif m.category:
                        category_out = m.category
                    action = m.action
                    if action is Action.ANSWER:
                        category_out = None
                    response = m.response or (
                        policy.category(category_out).response if category_out else None
                    )
                    decided_by = "rule" if changed else decided_by
                    reasons.insert(0, m.reason + (" (override)" if m.override else ""))
                else:
                    reasons.append(
                        m.reason + f"; the evidence's {action.value} is already at least as strict"
                    )
    if bad and policy.fail_closed and action is not Action.REFUSE:  # no rule opens an unknown state
        action, category_out, decided_by, response = (
            Action.REFUSE,
            "guard_unavailable",
            "invalid_evidence",
            None,
        )
        reasons.insert(
            0, f"invalid evidence: {_describe_invalid(bad)}; fail closed (a rule cannot override it)"
        )
    if action is Action.ANSWER:
        category_out = None
    return Verdict(
        action=action,
        category=category_out,
        rule=rule_name,
        reasons=reasons,
        scores=scores,
        evidence=filled,
        decided_by=decided_by,
        response=response,
    )


__all__ = ["NONCOMPLIANCE_ABSTAIN", "Verdict", "decide", "harm_category", "invalid_evidence", "pool_harm"]
