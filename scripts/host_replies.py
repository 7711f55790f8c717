"""Write `guard/resources/corpus/replies_host.jsonl`: a real chat model's replies, both labels.

The reply head was fitted only on replies people wrote (the project's, PyRIT's); a real model's
replies have a style of their own (long numbered lists, stock openers, drifting and repeating
content), and the head blocked 15 % of the host's replies to CoCoNot's benign contrast prompts
(`benchmarks/real_replies.py`). This asks the embedded host (SmolLM2-135M
Instruct, greedy) to answer the project's own prompts:

- benign prompts (edgy-but-safe wording, sensitive topics asked safely, the benign twins of the
  minimal pairs), labelled benign;
- the harmful twins and harmful forms, labelled harmful unless the continuation turns into a
  refusal (those are dropped, not relabelled).

Every reply is forced to begin with one of the same willing openers ("Sure, here's how ...") and
continued by the model, whatever its label, so the opener tells neither label.

Prompts are taken by a fixed hash order, so the file is the same on every run with the same host.

Usage:
    python scripts/host_replies.py [--per-file 80] [--max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "guard" / "resources" / "corpus"
OUT = CORPUS / "replies_host.jsonl"
BENIGN_FILES = ("minimal_pairs.jsonl", "everyday_edgy.jsonl", "sensitive_topics.jsonl")
HARMFUL_FILES = ("minimal_pairs.jsonl", "sensitive_topics.jsonl", "harmful_forms.jsonl")
OPENERS = (
    "Sure, here's how to do it:\n\n1.",
    "Here's a step-by-step guide:\n\n1.",
    "Of course! Here is what you need to know.\n\n",
    "Absolutely. ",
)
#: A continuation that declines after the forced opener is no compliance; it is dropped.
DECLINES = re.compile(
    r"\b(I can(no|')t|I cannot|I'm sorry|I am sorry|I won't|I will not|not able to (help|provide)|"
    r"I must (decline|refuse)|against (my|the) (policy|guidelines)|illegal and (unethical|harmful))",
    re.I,
)


def _order(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _opener(prompt: str) -> str:
    """The forced opening of a reply: the same four, in the same proportions, for both labels, so
    an opening is no cue of either."""
    return OPENERS[int(_order(prompt), 16) % len(OPENERS)]


def pick(files: tuple[str, ...], label: str, per_file: int) -> list[dict]:
    """`per_file` English prompts of `label` from each file, in hash order."""
    out = []
    for name in files:
        rows = [json.loads(x) for x in (CORPUS / name).read_text(encoding="utf-8").splitlines() if x.strip()]
        rows = [
            r
            for r in rows
            if r.get("label") == label and r.get("lang", "en") == "en" and len(r["prompt"]) < 600
        ]
        out += sorted(rows, key=lambda r: _order(r["prompt"]))[:per_file]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-file", type=int, default=80)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args(argv)
    from guard.whitebox.host import HostModel

    host = HostModel.default()
    chats = [(r, "benign") for r in pick(BENIGN_FILES, "benign", args.per_file)]
    chats += [(r, "harmful") for r in pick(HARMFUL_FILES, "harmful", args.per_file)]
    openers = [_opener(r["prompt"]) for r, _ in chats]
    continued = host.generate_batch(
        [r["prompt"] for r, _ in chats],
        openers,
        max_new_tokens=args.max_new_tokens,
        batch_size=32,
        progress=True,
    )
    rows = []
    dropped = 0
    for (r, label), opener, cont in zip(chats, openers, continued):
        if not cont.strip() or (label == "harmful" and DECLINES.search(cont)):
            dropped += label == "harmful"
            continue
        rows.append(
            {
                "prompt": r["prompt"],
                "reply": (opener + cont).strip(),
                "label": label,
                "form": "host_answer" if label == "benign" else "host_complies",
                "category": r.get("category"),
            }
        )
    for row in rows:
        row["lang"] = "en"
        row["replier"] = host.name
    with OUT.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(json.dumps({"written": len(rows), "harmful_dropped_as_declines": dropped, "path": str(OUT)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
