"""The shipped guard's full decisions on the external validation sets (never fitted on).

`guard fit --external` reports the pooled harm score on these sets; this runs `Guard.check_batch`
itself, so every part of the decision counts: the noncompliance head, its precedence over a
doubtful harm refusal, the encoded and alternate readings. For each set: how often the guard
answers, abstains and refuses, by the set's own category (CoCoNot) or language (MultiJail), and
the category the blocked ones were filed under (a harm or a noncompliance category). Validation only: compare designs with it, never set a threshold on it.

Usage:
    python benchmarks/external_decisions.py [--sets coconot multijail] [--limit N] [--guard DIR]

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

EXTERNAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "external"
SETS = {"coconot": "coconot_contrast_pref.jsonl", "multijail": "multijail_dev.jsonl"}


def _rates(actions: list[str]) -> dict[str, float | int]:
    n = len(actions)
    c = Counter(actions)
    return {
        "n": n,
        "blocked": round((n - c["answer"]) / n, 3),
        "abstained": round(c["abstain"] / n, 3),
        "refused": round(c["refuse"] / n, 3),
    }


def score_set(guard: object, rows: list[dict], key: str) -> dict[str, object]:
    """Decisions on `rows`, overall and by the row field `key`."""
    t0 = time.perf_counter()
    decisions = guard.check_batch([r["prompt"] for r in rows])  # type: ignore[attr-defined]
    actions = [d.action.value for d in decisions]
    by: dict[str, list[str]] = defaultdict(list)
    for r, a in zip(rows, actions):
        by[str(r.get(key, "?"))].append(a)
    return {
        "seconds": round(time.perf_counter() - t0, 1),
        "overall": _rates(actions),
        f"by_{key}": {k: _rates(v) for k, v in sorted(by.items())},
        "blocked_as": dict(
            Counter(d.category for d in decisions if d.action.value != "answer").most_common()
        ),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", choices=sorted(SETS), default=["coconot"], help="which sets")
    ap.add_argument("--limit", type=int, default=None, help="only the first N rows of each set")
    ap.add_argument("--guard", help="guard folder (default: the shipped guard)")
    args = ap.parse_args(argv)
    missing = [s for s in args.sets if not (EXTERNAL / SETS[s]).is_file()]
    if missing:
        print(f"external sets not found under {EXTERNAL}: {missing}", file=sys.stderr)
        return 1
    from guard import Guard

    guard = Guard.load(args.guard) if args.guard else Guard.default()
    out: dict[str, object] = {"guard": args.guard or "shipped"}
    for name in args.sets:
        text = (EXTERNAL / SETS[name]).read_text(encoding="utf-8")
        rows = [json.loads(line) for line in text.splitlines() if line.strip()][: args.limit]
        out[name] = score_set(guard, rows, "category" if name == "coconot" else "language")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
