"""Reading each sentence of a short multi-part prompt on its own (`Guard(split_parts=True)`), against
the default (only the turns of a chat-template injection), side by side in one run.

Rows: the sealed blind set (both labels) and, when given, CoCoNot's contrast prompts (benign) from
an external folder; only prompts that have parts are scored (the others decide the same either
way).

Usage:
    python benchmarks/part_views.py [--external ../shared/data/external]

Prints JSON: blocked rates (and counts) per source and label, both ways.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--external", help="folder with coconot_contrast_pref.jsonl (benign)")
    args = ap.parse_args(argv)
    from blind_score import load_blind

    from guard import Guard
    from guard.text.normalize import part_views

    rows = [(r["prompt"], r["label"], "blind") for r in (load_blind() or [])]
    if args.external:
        for line in (Path(args.external) / "coconot_contrast_pref.jsonl").read_text().splitlines():
            if line.strip():
                rows.append((json.loads(line)["prompt"], "benign", "coconot"))
    multi = [r for r in rows if part_views(r[0])]
    g = Guard.default()
    out: dict = {"rows": len(rows), "with_parts": len(multi)}
    for flag in (False, True):
        g.split_parts = flag
        ds = g.check_batch([p for p, _, _ in multi])
        for src in ("blind", "coconot"):
            for lab in ("harmful", "benign"):
                sel = [d.blocked for d, (_, l, s) in zip(ds, multi) if s == src and l == lab]
                if sel:
                    out[f"{src}_{lab}_blocked_split_parts_{flag}"] = [round(float(np.mean(sel)), 3), len(sel)]
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
