"""Same decisions and scores on 500 fixed prompts: the request path's regression check.

The prompts are a fixed, spread-out sample of the project's own corpus files (benign and harmful
forms, minimal pairs, edgy everyday questions, sensitive topics, tasks, eight languages). For
each prompt the shipped guard's action and every named score are recorded; `--against` compares a
run with a recording, to 1e-6 (the issue-12 criterion: a change to the request path must not move
a decision or a score, except where a refit changed the model on purpose: the recording names the
artifacts it was made with, and a comparison across other artifacts is refused). Every run also
can check, side by side, that `check_batch` gives what one `check` per prompt gives (`--single`):
the same actions, and scores equal to float32 rounding (a left-padded batch runs other matrix
shapes through the host, so they differ in the 5th or 6th digit, not to 1e-6).

Usage:
    python benchmarks/request_equality.py --record tests/data/request_golden.json
    python benchmarks/request_equality.py --against tests/data/request_golden.json [--limit N] [--single]

Prints JSON: counts, the largest score difference, and the first mismatches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

#: Corpus files the prompts come from, and how many each gives (500 in all).
FILES = {
    "benign_forms": 80,
    "harmful_forms": 80,
    "minimal_pairs": 70,
    "everyday_edgy": 60,
    "sensitive_topics": 60,
    "benign_tasks": 50,
    "multilingual": 60,
    "multilingual_more": 40,
}
TOLERANCE = 1e-6


def fixed_prompts() -> list[str]:
    """The 500 prompts: from each file of `FILES`, rows spread evenly over the file, in file order."""
    from guard.io.data import corpus_rows

    out: list[str] = []
    for name, n in FILES.items():
        rows = [
            r for _, _, r in corpus_rows(name) if isinstance(r.get("prompt"), str) and r["prompt"].strip()
        ]
        step = max(1, len(rows) // n)
        out += [r["prompt"] for r in rows[::step][:n]]
    return out


def prompts_digest(prompts: list[str]) -> str:
    """sha256 of the prompts, in order (the recording holds this, not the prompts)."""
    return hashlib.sha256(json.dumps(prompts, ensure_ascii=False).encode()).hexdigest()


#: Resource folders `guard fit` does not write and `Guard.check` does not read: the stream screen
#: (`guard fit-reply-screen`, read only by `Guard.reply_stream`).
NOT_FITTED_BY_GUARD_FIT = ("reply_screen",)


def artifacts_digest() -> str:
    """sha256 over the shipped artifacts (every file of the guard's and the classifiers' resources
    folders that a refit writes; not `NOT_FITTED_BY_GUARD_FIT`)."""
    import classifiers
    import guard

    h = hashlib.sha256()
    roots = [
        Path(classifiers.__file__).parent / "resources",
        Path(guard.__file__).parent / "resources" / "default_guard",
    ]
    for root in roots:
        files = (p for p in root.rglob("*") if p.is_file() and p.suffix != ".py")
        kept = (p for p in files if p.relative_to(root).parts[0] not in NOT_FITTED_BY_GUARD_FIT)
        for f in sorted(kept):
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def record(decision: Any) -> dict[str, Any]:
    """What is compared: the action and every named score."""
    return {"action": decision.action.value, "scores": {k: float(v) for k, v in decision.scores.items()}}


def compare(
    a: list[dict[str, Any]],
    b: list[dict[str, Any]],
    prompts: list[str],
    tolerance: float = TOLERANCE,
    per_score: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Actions that differ, scores missing on one side or further apart than `tolerance` (or the
    score's own tolerance in `per_score`), and the largest score difference."""
    per_score = per_score or {}
    mismatches, worst = [], 0.0
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        problems = []
        if x["action"] != y["action"]:
            problems.append(f"action {x['action']} vs {y['action']}")
        keys = set(x["scores"]) | set(y["scores"])
        for k in sorted(keys):
            if k not in x["scores"] or k not in y["scores"]:
                problems.append(f"score {k} on one side only")
                continue
            u, v = x["scores"][k], y["scores"][k]
            if u != u and v != v:  # both NaN: the same
                continue
            d = abs(u - v)
            worst = max(worst, d if d == d else float("inf"))
            if not d <= per_score.get(k, tolerance):
                problems.append(f"{k}: {u:.9f} vs {v:.9f}")
        if problems:
            problems.sort(key=lambda x: not x.startswith("action"))
            mismatches.append({"index": i, "prompt": prompts[i][:80], "problems": problems[:4]})
    actions = sum(x["action"] != y["action"] for x, y in zip(a, b, strict=True))
    return {
        "n": len(a),
        "tolerance": tolerance,
        "mismatched": len(mismatches),
        "actions_differ": actions,
        "max_score_diff": worst,
        "first": mismatches[:5],
    }


def run(
    limit: int | None = None, single: bool = False
) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """(prompts, `check_batch` records, one `check` per prompt records (empty unless `single`))."""
    from guard import Guard

    prompts = fixed_prompts()[:limit]
    guard = Guard.default()
    batch = [record(d) for d in guard.check_batch(prompts)]
    one_by_one = [record(guard.check(p)) for p in prompts] if single else []
    return prompts, batch, one_by_one


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", type=Path, help="write the decisions here")
    ap.add_argument("--against", type=Path, help="compare with this recording")
    ap.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    ap.add_argument("--single", action="store_true", help="also one check per prompt, against check_batch")
    args = ap.parse_args(argv)
    digest = artifacts_digest()
    golden = json.loads(args.against.read_text()) if args.against else None
    if golden is not None and golden["artifacts_sha256"] != digest:
        print(json.dumps({"error": "the recording was made with other artifacts; record again"}))
        return 2
    prompts, batch, single = run(args.limit, args.single)
    out: dict[str, Any] = {"prompts": len(prompts), "artifacts_sha256": digest}
    if single:
        out["check_batch_vs_check"] = compare(batch, single, prompts, tolerance=1e-3)
    if golden is not None:
        n = len(prompts)
        if golden["prompts_sha256"] != prompts_digest(fixed_prompts()):
            print(json.dumps({"error": "the recording holds other prompts; record again"}))
            return 2
        out["vs_recording"] = compare(golden["decisions"][:n], batch, prompts)
    if args.record:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        if args.limit is not None:
            print(json.dumps({"error": "record all the prompts (no --limit)"}))
            return 2
        body = {
            "artifacts_sha256": digest,
            "prompts_sha256": prompts_digest(prompts),
            "tolerance": TOLERANCE,
            "decisions": batch,
        }
        args.record.write_text(json.dumps(body, separators=(",", ":")) + "\n")
    print(json.dumps(out, indent=1))
    bad = out.get("vs_recording", {}).get("mismatched", 0)
    bad += out.get("check_batch_vs_check", {}).get("actions_differ", 0)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
