"""Long inputs with and without the black-box detectors' windows, side by side in one run.

The sentence encoders read the first 256 tokens of a text. Without windows a harmful request
placed after a long benign text is scored on the benign start; with windows (the default) every
window is scored and the most harmful one decides. This measures both effects:

- `padded_harmful`: short harmful requests of the project corpus (`harmful_forms`) placed after a
  long benign text of the corpus (`benign_forms`, form `long_text`): share blocked;
- `padding_alone`: the same benign long texts on their own: share blocked (the cost in
  over-blocking);
- `blind_long`: the prompts of the sealed blind set longer than one window, both labels.

Usage:
    python benchmarks/long_inputs.py [--n 40] [--guard DIR]

Prints JSON. The guard's latent head reads its own windows either way; only the black-box
detectors' reading changes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="padded harmful requests (and paddings)")
    ap.add_argument("--guard", help="guard folder (default: the shipped guard)")
    args = ap.parse_args(argv)

    from blind_score import load_blind

    from guard import Guard
    from guard.features.windows import WindowSpec, text_windows
    from guard.io.data import load_project_corpus

    rng = random.Random(0)
    rows = load_project_corpus(["benign_forms", "harmful_forms"])
    pads = [r.prompt for r in rows if r.form == "long_text" and len(text_windows(r.prompt)) > 1]
    harm = [r.prompt for r in rows if r.label == "harmful" and r.form in {"question", "imperative"}]
    pads, harm = rng.sample(pads, min(args.n, len(pads))), rng.sample(harm, args.n)
    padded = [f"{pads[i % len(pads)]}\n\n{h}" for i, h in enumerate(harm)]
    blind = [r for r in (load_blind() or []) if len(text_windows(r["prompt"])) > 1]

    g = Guard.load(args.guard) if args.guard else Guard.default()
    out: dict = {"n_padded": len(padded), "n_padding": len(pads), "n_blind_long": len(blind)}
    for name, spec in (("windows", WindowSpec()), ("first_256_tokens", WindowSpec(size=10**7, stride=10**7))):
        g.windows = spec
        t0 = time.perf_counter()
        res = {
            "padded_harmful_blocked": float(np.mean([d.blocked for d in g.check_batch(padded)])),
            "padding_alone_blocked": float(np.mean([d.blocked for d in g.check_batch(pads)])),
        }
        if blind:
            ds = g.check_batch([r["prompt"] for r in blind])
            for label in ("harmful", "benign"):
                res[f"blind_long_{label}_blocked"] = float(
                    np.mean([d.blocked for d, r in zip(ds, blind) if r["label"] == label])
                )
        res["seconds"] = round(time.perf_counter() - t0, 1)
        out[name] = res
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
