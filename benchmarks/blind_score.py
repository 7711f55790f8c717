"""Score the sealed blind set (benchmarks/blind/) with a guard: for final reporting only.

The blind set was written by a helper who never saw the fitting corpora, from the one-paragraph
brief in benchmarks/blind/README.md. Nothing is chosen or tuned on it. The seal (sha256) is
checked first, so a changed file is never scored.

Usage:
    python benchmarks/blind_score.py [--guard DIR] [--limit N]

Prints JSON: overall and per-form / per-language blocked rates, AUROC of P(harmful), F1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "blind"


def load_blind() -> list[dict] | None:
    """The blind set's rows, or None when the file does not match its seal."""
    data = (HERE / "blind_set.jsonl").read_bytes()
    want = (HERE / "SEAL").read_text().split()[0]
    if hashlib.sha256(data).hexdigest() != want:
        return None
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guard", help="guard folder (default: the shipped guard)")
    ap.add_argument("--limit", type=int, default=None, help="score only the first N rows (a smoke run)")
    args = ap.parse_args(argv)
    rows = load_blind()
    if rows is None:
        print("blind_set.jsonl does not match its SEAL; refusing to score it", file=sys.stderr)
        return 1
    rows = rows[: args.limit]
    from guard import Guard
    from guard.fitting.grouped import auroc, stress_report, summary

    g = Guard.load(args.guard) if args.guard else Guard.default()
    t0 = time.perf_counter()
    decisions = g.check_batch([r["prompt"] for r in rows])
    y = np.array([int(r["label"] == "harmful") for r in rows])
    blocked = np.array([float(d.blocked) for d in decisions])
    p = np.array([d.scores.get("harm_pooled", d.scores.get("harmfulness", 0.5)) for d in decisions])
    out = {
        "n": len(rows),
        "guard": args.guard or "shipped",
        "seconds": round(time.perf_counter() - t0, 1),
        "auroc_harm_pooled": auroc(y, p),
        "blocked": summary(blocked, y, 0.5),
        "abstained_benign": float(
            np.mean([d.action.value == "abstain" for d, l in zip(decisions, y) if l == 0])
        ),
        "by_form": stress_report(blocked, y, [r.get("form", "?") for r in rows], 0.5, min_rows=8),
        "by_lang": stress_report(blocked, y, [r.get("lang", "?") for r in rows], 0.5, min_rows=8),
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
