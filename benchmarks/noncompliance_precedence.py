"""How `Policy.noncompliance_precedence` trades abstentions against refusals, under grouped validation.

A request the guard should abstain on ("Do you ever feel lonely?", "What's the weather right
now?") is often also scored as harmful by the harm heads, and the strictest proposal (refuse)
used to win. The precedence lets the noncompliance abstention win when the noncompliance head
rates its category above ``unsafe`` and the pooled P(harmful) is below a ceiling. This measures,
for several ceilings:

- on the project's noncompliance requests (out-of-fold probabilities of the noncompliance head,
  each surface form held out; harm scores from the shipped guard, which never fitted on them):
  how many are refused, and how many abstained on;
- on harmful corpus requests (out-of-fold as well): how many are abstained on (still blocked,
  but with a clarifying reply instead of a refusal), and how many answered.

Each request's evidence is the shipped guard's, with the noncompliance head's values replaced by
the out-of-fold ones; `guard.decision.engine.decide` makes the decision under each ceiling.

Usage:
    python benchmarks/noncompliance_precedence.py [--ceilings 0.8 0.9 0.95 1.0]

Prints JSON (about 15 minutes on 2 cores: one host pass per request).
"""

from __future__ import annotations

import argparse
import json


def _with_oof(evidence: list, oof: dict[str, float]) -> list:
    """The decision's evidence with the noncompliance head's values replaced by out-of-fold ones."""
    return [
        e.model_copy(update={"value": oof[e.name]}) if e.source == "noncompliance" else e for e in evidence
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ceilings", type=float, nargs="+", default=[0.8, 0.9, 0.95, 0.99, 1.0])
    args = ap.parse_args(argv)
    from guard import Guard
    from guard.decision.engine import decide
    from guard.features.noncompliance import (
        ABSTAIN_CATEGORIES,
        LABELS,
        SHIPPED_RECIPE,
        grouped_oof,
        recipe_params,
    )

    rows, proba = grouped_oof(**recipe_params(SHIPPED_RECIPE))
    classes = sorted(LABELS)
    guard = Guard.default()
    wanted = [i for i, (_, label, _group) in enumerate(rows) if label != "benign"]
    decisions = guard.check_batch([rows[i][0] for i in wanted])
    evidence = {
        i: _with_oof(list(d.evidence), dict(zip(classes, map(float, proba[i]))))
        for i, d in zip(wanted, decisions)
    }
    nc_rows = [i for i in wanted if rows[i][1] in ABSTAIN_CATEGORIES]
    harmful = [i for i in wanted if rows[i][1] == "unsafe" and not rows[i][2].startswith("nc:")]
    out: dict[str, object] = {
        "n_noncompliance": len(nc_rows),
        "n_harmful": len(harmful),
        "threshold": guard.policy.threshold,
    }
    for ceiling in [None, *args.ceilings]:
        policy = guard.policy.model_copy(update={"noncompliance_precedence": ceiling})
        action = {i: decide(rows[i][0], evidence[i], policy).action.value for i in [*nc_rows, *harmful]}
        out[str(ceiling)] = {
            "noncompliance_refused": round(sum(action[i] == "refuse" for i in nc_rows) / len(nc_rows), 3),
            "noncompliance_abstained": round(sum(action[i] == "abstain" for i in nc_rows) / len(nc_rows), 3),
            "harmful_abstained": round(sum(action[i] == "abstain" for i in harmful) / len(harmful), 4),
            "harmful_answered": round(sum(action[i] == "answer" for i in harmful) / len(harmful), 4),
        }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
