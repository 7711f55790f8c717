"""`check_output` on a real model's replies to requests written by others (never fitted on).

The reply head is fitted on replies the project wrote and on PyRIT's; this measures it on a form
of input neither has: replies that a real chat model (the embedded SmolLM2 host, greedy) gives to
the CoCoNot contrast prompts, benign requests that *look* like safety or noncompliance cases. Every
reply answers a safe request, so each block is a false positive of the reply side; how many are
blocked, and how many the reply head alone put over its threshold (the difference is what the
reply-refusal gate let back through), are reported by CoCoNot category. The generated replies are cached as JSONL (`--cache`) so a rerun or another
guard reads the same replies.

Usage:
    python benchmarks/real_replies.py [--limit 300] [--max-new-tokens 160] [--cache PATH] [--guard DIR]

Prints JSON. Validation only: compare designs with it, never set a threshold on it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

EXTERNAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "external"
COCONOT = EXTERNAL / "coconot_contrast_pref.jsonl"


def spread(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """`limit` rows taken round-robin over the subcategories, so a small run covers them all."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[str(r.get("subcategory"))].append(r)
    out: list[dict[str, Any]] = []
    queues = [list(v) for _, v in sorted(by.items())]
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop(0))
    return out


def generate_replies(prompts: list[str], max_new_tokens: int) -> list[str]:
    """The embedded host's greedy replies (`HostModel.generate_batch`)."""
    from guard.whitebox.host import HostModel

    replies = HostModel.default().generate_batch(prompts, max_new_tokens=max_new_tokens, progress=True)
    return [r.strip() for r in replies]


def load_or_generate(rows: list[dict[str, Any]], cache: Path | None, max_new_tokens: int) -> list[str]:
    """Replies for `rows`, read from `cache` when it holds every prompt, else generated (and cached)."""
    if cache is not None and cache.is_file():
        kept = {}
        for line in cache.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                kept[r["prompt"]] = r["reply"]
        if all(r["prompt"] in kept for r in rows):
            return [kept[r["prompt"]] for r in rows]
    replies = generate_replies([r["prompt"] for r in rows], max_new_tokens)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with cache.open("w", encoding="utf-8") as fh:
            for r, reply in zip(rows, replies):
                fh.write(json.dumps({"prompt": r["prompt"], "reply": reply}, ensure_ascii=False) + "\n")
    return replies


def _rates(items: list[tuple[bool, bool]]) -> dict[str, float | int]:
    n = len(items)
    return {
        "n": n,
        "blocked": round(sum(b for b, _ in items) / n, 3),
        "head_over_threshold": round(sum(h for _, h in items) / n, 3),
    }


def score(guard: Any, rows: list[dict[str, Any]], replies: list[str]) -> dict[str, Any]:
    """`check_output` on every (prompt, reply): blocked, and how often the reply head alone was
    over its threshold (the difference is what the refusal gate let through)."""
    t0 = time.perf_counter()
    by: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    every: list[tuple[bool, bool]] = []
    for r, reply in zip(rows, replies):
        if not reply.strip():
            continue
        d = guard.check_output(r["prompt"], reply)
        head = next((e for e in d.evidence if e.name == "reply_harm"), None)
        over = head is not None and head.value >= head.threshold
        item = (d.blocked, over)
        every.append(item)
        by[str(r.get("category"))].append(item)
    return {
        "seconds": round(time.perf_counter() - t0, 1),
        "overall": _rates(every),
        "by_category": {k: _rates(v) for k, v in sorted(by.items())},
        "empty_replies": len(replies) - len(every),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=300, help="prompts, spread over the subcategories")
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/real_replies_smollm2.jsonl"))
    ap.add_argument("--guard", help="guard folder (default: the shipped guard)")
    args = ap.parse_args(argv)
    if not COCONOT.is_file():
        print(f"external set not found: {COCONOT}", file=sys.stderr)
        return 1
    rows = [json.loads(x) for x in COCONOT.read_text(encoding="utf-8").splitlines() if x.strip()]
    rows = spread(rows, args.limit)
    t0 = time.perf_counter()
    replies = load_or_generate(rows, args.cache, args.max_new_tokens)
    gen_s = time.perf_counter() - t0
    from guard import Guard

    guard = Guard.load(args.guard) if args.guard else Guard.default()
    out = {
        "guard": args.guard or "shipped",
        "replier": "SmolLM2-135M-Instruct (embedded host), greedy",
        "requests": "coconot_contrast_pref (benign, external)",
        "generation_seconds": round(gen_s, 1),
        "mean_reply_chars": round(sum(map(len, replies)) / max(len(replies), 1)),
        **score(guard, rows, replies),
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
