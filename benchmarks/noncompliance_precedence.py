"""How `Policy.noncompliance_precedence` trades abstentions against refusals, under grouped validation.

A request the guard should abstain on ("Do you ever feel lonely?", "What's the weather right
now?") is often also scored as harmful by the harm heads, and the strictest proposal (refuse)
used to win. The precedence lets the noncompliance abstention win when the noncompliance head
rates its category above ``unsafe`` and the pooled P(harmful) is below a ceiling. This measures,
for several ceilings:

- on the project's noncompliance requests (out-of-fold probabilities of the noncompliance head,
  each surface form held out; harm scores from the shipped guard, which never fitted on them):
  how many are refused, and how many abstained on;
- on harmful corpus requests (out-of-fold as well): how many would be abstained on instead of
  refused (still blocked, but with a clarifying reply instead of a refusal).

Usage:
    python benchmarks/noncompliance_precedence.py [--ceilings 0.8 0.9 0.95 1.0]

Prints JSON (about 15 minutes on 2 cores: one host pass per request).
"""

from __future__ import annotations

import argparse
import json


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ceilings", type=float, nargs="+", default=[0.8, 0.9, 0.95, 0.99, 1.0])
    args = ap.parse_args(argv)
    from guard import Guard
    from guard.decision.engine import harm_category
    from guard.features.noncompliance import (
        ABSTAIN_CATEGORIES,
        LABELS,
        SHIPPED_RECIPE,
        grouped_oof,
        recipe_params,
    )

    rows, proba = grouped_oof(**recipe_params(SHIPPED_RECIPE))
    classes = sorted(LABELS)
    cols = [classes.index(c) for c in ABSTAIN_CATEGORIES]
    unsafe = classes.index("unsafe")
    guard = Guard.default()
    wanted = [i for i, (_, label, group) in enumerate(rows) if label != "benign"]
    decisions = guard.check_batch([rows[i][0] for i in wanted])
    threshold = guard.policy.threshold
    nc_rows = [i for i in wanted if rows[i][1] in ABSTAIN_CATEGORIES]
    harmful = [i for i in wanted if rows[i][1] == "unsafe" and not rows[i][2].startswith("nc:")]
    harm = {i: d.scores.get("harm_pooled") for i, d in zip(wanted, decisions)}
    out: dict[str, object] = {
        "n_noncompliance": len(nc_rows),
        "n_harmful": len(harmful),
        "threshold": threshold,
    }
    for ceiling in [None, *args.ceilings]:
        refused = abstained = flipped = 0
        for i in [*nc_rows, *harmful]:
            p = harm[i]
            best = float(proba[i, cols].max())
            flags = best >= 0.6
            refuses = p is not None and p >= threshold
            yields = (
                ceiling is not None
                and flags
                and refuses
                and p < ceiling
                and best > proba[i, unsafe]
                and harm_category(rows[i][0]) != "self_harm"
            )
            if i in harmful:
                flipped += yields
            else:
                refused += refuses and not yields
                abstained += flags and (not refuses or yields)
        out[str(ceiling)] = {
            "noncompliance_refused": round(refused / len(nc_rows), 3),
            "noncompliance_abstained": round(abstained / len(nc_rows), 3),
            "harmful_abstained_instead_of_refused": round(flipped / len(harmful), 4),
        }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
