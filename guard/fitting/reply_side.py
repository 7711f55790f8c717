"""Fit and validate the reply-side head (`classifiers.ReplyHarmClassifier`) that `check_output` reads.

Data, both labels: PyRIT's human-scored (objective, reply) rows (`guard.io.data.load_pyrit_harm_replies`),
the project's written replies (``guard/resources/corpus/replies_v2.jsonl``: compliant replies to
unsafe requests kept non-operational, safe answers in the same eager style, refusals, safe partial
answers), and the black-box detector's reply examples (all benign). Validation is grouped by
(source, harm topic); the threshold is the one that keeps out-of-fold benign
replies blocked at `max_benign_blocked`.

Example:
    >>> figures = fit_reply_head(Path("/tmp/reply_harm"), progress=False)  # doctest: +SKIP
    >>> figures["grouped"]["auroc"] > 0.9  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from guard.fitting.calibrate import threshold_for_rate
from guard.fitting.grouped import auroc, grouped_folds, summary
from guard.io.data import load_pyrit_harm_replies

REPLIES_FILE = "replies_v2.jsonl"


def _bucket(text: str, n: int = 8) -> int:
    import hashlib

    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % n


def load_reply_rows() -> list[dict[str, Any]]:
    """Every labelled reply: ``{"prompt", "reply", "label", "group"}``.

    A group is (source, harm topic): a held-out fold holds topics the head never saw, with
    compliant, refusing and safe replies of each (holding out a whole reply *form* would hold out
    a label's only kind of example). Rows without a topic fall in 8 hash buckets.
    """
    rows: list[dict[str, Any]] = []
    for r in load_pyrit_harm_replies():
        rows.append({**r, "group": f"pyrit_harm:{r.get('category')}"})
    res = resources.files("guard.resources").joinpath("corpus").joinpath(REPLIES_FILE)
    if res.is_file():
        for line in res.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                if r.get("reply") and r.get("label") in ("harmful", "benign"):
                    topic = r.get("category") or f"topic{_bucket(r['reply'])}"
                    rows.append(
                        {
                            "prompt": r.get("prompt") or "",
                            "reply": r["reply"],
                            "label": r["label"],
                            "form": r.get("form"),
                            "group": f"project_replies:{topic}",
                        }
                    )
    ex = resources.files("classifiers.resources").joinpath("reply_examples.jsonl")
    for line in ex.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            rows.append(
                {
                    "prompt": "",
                    "reply": r["reply"],
                    "label": "benign",
                    "group": f"reply_examples:{r.get('label')}",
                }
            )
    return rows


#: The reply-head recipes compared under grouped validation; the best grouped AUROC ships.
REPLY_CANDIDATES: dict[str, dict[str, Any]] = {
    "linear_minilm": {"head": "linear", "multilingual": False},
    "mlp_minilm_use": {"head": "mlp", "multilingual": True},
}


def fit_reply_head(
    out_dir: Path | None,
    *,
    max_benign_blocked: float = 0.08,
    n_splits: int = 5,
    C: float = 8.0,
    progress: bool = True,
    candidates: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Grouped out-of-fold figures of each recipe in `candidates` (default `REPLY_CANDIDATES`),
    then the best one (grouped AUROC) refitted on every row and saved to `out_dir`."""
    from classifiers.embeddings import SentenceEmbedder, shared_embeddings
    from classifiers.reply_harm import ReplyHarmClassifier

    recipes = candidates or REPLY_CANDIDATES
    rows = load_reply_rows()
    X = [(r["prompt"], r["reply"]) for r in rows]
    y = np.array([int(r["label"] == "harmful") for r in rows])
    groups = [r["group"] for r in rows]
    emb = SentenceEmbedder(cache=True)
    table: dict[str, dict[str, Any]] = {}
    oofs: dict[str, np.ndarray] = {}
    with shared_embeddings():  # every fold and recipe reuses the vectors of a text
        for name, params in recipes.items():
            oof = np.full(y.size, np.nan)
            for tr, te in grouped_folds(groups, n_splits):
                m = ReplyHarmClassifier(C=C, embedder=emb, **params).fit([X[i] for i in tr], y[tr])
                oof[te] = m.score([X[i] for i in te])
            t = threshold_for_rate(oof[y == 0], max_benign_blocked)
            oofs[name] = oof
            table[name] = {
                **params,
                "grouped_auroc": auroc(y, oof),
                "threshold": t,
                "harmful_blocked": float((oof[y == 1] >= t).mean()),
            }
        chosen = max(table, key=lambda k: table[k]["grouped_auroc"])
        oof, threshold = oofs[chosen], table[chosen]["threshold"]
        forms = np.array([r.get("form") or r["group"].split(":")[0] for r in rows])
        by_form = {
            f: {
                "n": int((forms == f).sum()),
                "harmful": int(y[forms == f].sum()),
                "blocked": float((oof[forms == f] >= threshold).mean()),
            }
            for f in sorted(set(forms.tolist()))
        }
        g = np.asarray(groups)
        by_group = {
            name: {
                "n": int((g == name).sum()),
                "label": "harmful" if y[g == name].mean() > 0.5 else "benign",
                "blocked": float((oof[g == name] >= threshold).mean()),
            }
            for name in sorted(set(groups))
        }
        figures = {
            "n": int(y.size),
            "n_harmful": int(y.sum()),
            "grouped": summary(oof, y, threshold),
            "threshold": threshold,
            "by_form": by_form,
            "by_group": by_group,
            "candidates": table,
            "chosen": chosen,
            "note": "grouped 5-fold CV by (source, harm topic); threshold keeps out-of-fold benign replies "
            f"blocked at {max_benign_blocked:.0%}; the recipe with the best grouped AUROC ships",
        }
        figures["grouped"]["auroc"] = auroc(y, oof)
        model = ReplyHarmClassifier(C=C, embedder=emb, **recipes[chosen]).fit(X, y)
    model.threshold_ = threshold
    if out_dir is not None:
        model.set_params(embedder=None).save(out_dir, extra={"figures": figures})
    return figures


__all__ = ["REPLY_CANDIDATES", "fit_reply_head", "load_reply_rows"]
