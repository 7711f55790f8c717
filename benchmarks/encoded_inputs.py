"""Encoded prompts judged on what they say decoded, or on how they look, side by side in one run.

The detectors cannot read base64, hex, ROT13, reversed or spelt-out text: scored as written, an
encoded prompt looks like noise, and noise read as harm blocks benign encoded text whatever it
says. `Guard(judge_decoded=True)` (the default) judges the decoded reading instead; `False`
judges both, the strictest deciding (the previous behaviour). This measures both on:

- benign requests of the project corpus (`benign_tasks`: instructions, medical questions, code,
  translate requests, short ones), each encoded five ways: share blocked (over-refusal);
- harmful requests of the project corpus (`harmful_forms`: questions, imperatives), encoded the
  same five ways: share blocked (recall);
- the same requests as written, for reference.

The encoded forms are not in the fitting data (it holds 64 obfuscated harmful rows, none of
them built by these encoders).

Usage:
    python benchmarks/encoded_inputs.py [--n 30] [--guard DIR]

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np

ENCODINGS = ("base64", "hex", "rot13", "reversed", "spaced_letters")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30, help="requests of each label")
    ap.add_argument("--guard", help="guard folder (default: the shipped guard)")
    args = ap.parse_args(argv)

    from guard import Guard
    from guard.evaluation.robustness import TRANSFORMS
    from guard.io.data import load_project_corpus

    rng = random.Random(0)
    rows = load_project_corpus(["benign_tasks", "harmful_forms"])
    benign = [
        r.prompt
        for r in rows
        if r.label == "benign"
        and len(r.prompt) < 160
        and r.form in {"instruction", "medical_question", "code", "translate", "drug_safety"}
    ]
    harmful = [
        r.prompt
        for r in rows
        if r.label == "harmful" and len(r.prompt) < 160 and r.form in {"question", "imperative"}
    ]
    sets = {"benign": rng.sample(benign, args.n), "harmful": rng.sample(harmful, args.n)}

    g = Guard.load(args.guard) if args.guard else Guard.default()
    out: dict = {"n_per_label": args.n, "encodings": list(ENCODINGS)}
    for mode in (True, False):
        g.judge_decoded = mode
        t0 = time.perf_counter()
        res: dict = {}
        for label, prompts in sets.items():
            if mode:
                res[f"{label}_plain_blocked"] = float(np.mean([d.blocked for d in g.check_batch(prompts)]))
            for enc in ENCODINGS:
                texts = [TRANSFORMS[enc](p) for p in prompts]
                res[f"{label}_{enc}_blocked"] = float(np.mean([d.blocked for d in g.check_batch(texts)]))
            res[f"{label}_encoded_blocked"] = float(np.mean([res[f"{label}_{e}_blocked"] for e in ENCODINGS]))
        res["seconds"] = round(time.perf_counter() - t0, 1)
        out["judge_decoded" if mode else "strictest_of_both"] = res
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
