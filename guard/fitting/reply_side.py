"""Fit and validate the reply-side head (`classifiers.ReplyHarmClassifier`) that `check_output` reads.

Data, both labels: PyRIT's human-scored (objective, reply) rows (`guard.io.data.load_pyrit_harm_replies`),
the project's written replies (``guard/resources/corpus/replies_v2.jsonl``: compliant replies to
unsafe requests kept non-operational, safe answers in the same eager style, refusals, safe partial
answers; ``replies_v3.jsonl``: replies in the styles of real assistants, long and structured,
caveat-then-answer, plain and chatty, to edgy-but-safe requests, willing non-operational replies
to unsafe ones in eight forms, minimal pairs of the two sharing their words, and pairs in 12
languages; ``replies_host.jsonl``: the embedded host's own greedy replies to the project's
prompts of both labels, each after the same forced willing openers, written by
``scripts/host_replies.py``), and the black-box detector's reply examples (all benign).
Validation is grouped by (source, harm topic or kind); the threshold is the one that keeps
out-of-fold benign replies blocked at `max_benign_blocked`. Beside it, the replies written by others (PyRIT's, real model replies with
human scores) are scored by a head fitted without them: the figure the project's own writing
cannot flatter.

Example:
    >>> figures = fit_reply_head(Path("/tmp/reply_harm"), progress=False)  # doctest: +SKIP
    >>> figures["grouped"]["auroc"] > 0.9  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from guard.fitting.calibrate import threshold_for_rate
from guard.fitting.grouped import auroc, grouped_folds, summary
from guard.io.data import load_pyrit_harm_replies

#: The project's written reply corpora (``guard/resources/corpus/``), read in this order.
REPLIES_FILES: tuple[str, ...] = ("replies_v2.jsonl", "replies_v3.jsonl", "replies_host.jsonl")
#: The source of the replies written by others, held out whole for `held_out_source` figures.
OTHERS_SOURCE = "pyrit_harm"


def _bucket(text: str, n: int = 8) -> int:
    import hashlib

    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % n


def load_reply_rows() -> list[dict[str, Any]]:
    """Every labelled reply: ``{"prompt", "reply", "label", "group"}``.

    A group is (source, harm topic or kind): a held-out fold holds topics the head never saw,
    with compliant, refusing and safe replies of each (holding out a whole reply *form* would hold
    out a label's only kind of example); both twins of a minimal pair share their kind, so a pair
    is never split across a fold. Rows without a topic fall in 8 hash buckets.
    """
    rows: list[dict[str, Any]] = []
    for r in load_pyrit_harm_replies():
        rows.append({**r, "group": f"pyrit_harm:{r.get('category')}"})
    corpus = resources.files("guard.resources").joinpath("corpus")
    for name in REPLIES_FILES:
        res = corpus.joinpath(name)
        if not res.is_file():
            continue
        source = "project_replies" if name == REPLIES_FILES[0] else f"project_{name.removesuffix('.jsonl')}"
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
                            "group": f"{source}:{topic}",
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


#: The reply-head recipes compared; the best mean of the grouped AUROC and the AUROC on the
#: replies written by others (fitted without them) ships.
REPLY_CANDIDATES: dict[str, dict[str, Any]] = {
    "linear_minilm": {"head": "linear", "multilingual": False},
    "linear_minilm_use": {"head": "linear", "multilingual": True},
    "mlp_minilm_use": {"head": "mlp", "multilingual": True},
}


def held_out_source(
    model_factory: Any,
    X: list[tuple[str, str]],
    y: np.ndarray,
    groups: list[str],
    threshold: float,
    let_through: np.ndarray | None = None,
) -> dict[str, Any]:
    """The replies written by others (`OTHERS_SOURCE`), scored by a head fitted on every other
    row: AUROC, and both labels' blocked rates at `threshold` (the grouped one). Rows marked in
    `let_through` (read as refusals) are never blocked, as in `Guard.check_output`.

    Example:
        >>> held_out_source(lambda: None, [], np.zeros(0), [], 0.5)
        {}
    """
    others = np.array([g.split(":")[0] == OTHERS_SOURCE for g in groups], dtype=bool)
    if not others.any() or others.all() or len(set(y[~others].tolist())) < 2:
        return {}
    model = model_factory().fit([X[i] for i in np.flatnonzero(~others)], y[~others])
    scores = np.asarray(model.score([X[i] for i in np.flatnonzero(others)]), dtype=float)
    if let_through is not None:
        scores = np.where(let_through[others], 0.0, scores)
    out = summary(scores, y[others], threshold)
    out["source"] = OTHERS_SOURCE
    out["note"] = "fitted on the project's replies only; scored at the grouped threshold"
    return out


def _choice(row: dict[str, Any]) -> float:
    """What a recipe is chosen by: its grouped AUROC, averaged with its AUROC on the replies
    written by others when those are there."""
    others = row.get("held_out_source") or {}
    return (row["grouped_auroc"] + others["auroc"]) / 2 if "auroc" in others else float(row["grouped_auroc"])


def _by(values: np.ndarray, y: np.ndarray, oof: np.ndarray, threshold: float) -> dict[str, Any]:
    return {
        v: {
            "n": int((values == v).sum()),
            "harmful": int(y[values == v].sum()),
            "blocked": float((oof[values == v] >= threshold).mean()),
        }
        for v in sorted(set(values.tolist()))
    }


def fit_reply_head(
    out_dir: Path | None,
    *,
    max_benign_blocked: float = 0.08,
    n_splits: int = 5,
    C: float = 8.0,
    progress: bool = True,
    candidates: dict[str, dict[str, Any]] | None = None,
    reply_refusal: Callable[[list[str]], Any] | None = None,
) -> dict[str, Any]:
    """Grouped out-of-fold figures of each recipe in `candidates` (default `REPLY_CANDIDATES`) and
    its figures on the replies written by others when fitted without them (`held_out_source`);
    the best recipe (mean of the two AUROCs) is refitted on every row and saved to `out_dir`.

    The threshold is set on the head's scores; ``grouped_decision`` and each ``held_out_source``
    are of the decision `Guard.check_output` makes with it: a reply the reply-refusal detector
    (`reply_refusal`, default the shipped one) reads as a refusal is let through."""
    from classifiers.embeddings import SentenceEmbedder, shared_embeddings
    from classifiers.reply_harm import ReplyHarmClassifier
    from guard.guard import REPLY_REFUSAL_LETS_THROUGH, default_reply_refusal

    recipes = candidates or REPLY_CANDIDATES
    rows = load_reply_rows()
    X = [(r["prompt"], r["reply"]) for r in rows]
    y = np.array([int(r["label"] == "harmful") for r in rows])
    groups = [r["group"] for r in rows]
    refusal_fn = reply_refusal or default_reply_refusal()
    gate = np.asarray(refusal_fn([r["reply"] for r in rows]), dtype=float) >= REPLY_REFUSAL_LETS_THROUGH
    emb = SentenceEmbedder(cache=True)
    table: dict[str, dict[str, Any]] = {}
    oofs: dict[str, np.ndarray] = {}
    with shared_embeddings():  # every fold and recipe reuses the vectors of a text
        for name, params in recipes.items():
            if progress:
                print(f"reply head: grouped folds of {name} ({y.size} replies)", file=sys.stderr, flush=True)
            oof = np.full(y.size, np.nan)
            for tr, te in grouped_folds(groups, n_splits):
                m = ReplyHarmClassifier(C=C, embedder=emb, **params).fit([X[i] for i in tr], y[tr])
                oof[te] = m.score([X[i] for i in te])
            t = threshold_for_rate(oof[y == 0], max_benign_blocked)
            decision = np.where(gate, 0.0, oof)  # check_output's score: a refusal is let through
            oofs[name] = oof
            others = held_out_source(
                lambda params=params: ReplyHarmClassifier(C=C, embedder=emb, **params), X, y, groups, t, gate
            )
            table[name] = {
                **params,
                "grouped_auroc": auroc(y, oof),
                "grouped_decision_auroc": auroc(y, decision),
                "threshold": t,
                "harmful_blocked": float((oof[y == 1] >= t).mean()),
                "held_out_source": others,
            }
        chosen = max(table, key=lambda k: _choice(table[k]))
        oof, threshold = oofs[chosen], table[chosen]["threshold"]
        forms = np.array([r.get("form") or r["group"].split(":")[0] for r in rows])
        g = np.asarray(groups)
        figures = {
            "n": int(y.size),
            "n_harmful": int(y.sum()),
            "let_through_as_refusals": {
                "benign": int(gate[y == 0].sum()),
                "harmful": int(gate[y == 1].sum()),
            },
            "grouped": summary(oof, y, threshold),
            "grouped_decision": summary(np.where(gate, 0.0, oof), y, threshold),
            "threshold": threshold,
            "by_form": _by(forms, y, oof, threshold),
            "by_group": {
                name: {**v, "label": "harmful" if v["harmful"] * 2 > v["n"] else "benign"}
                for name, v in _by(g, y, oof, threshold).items()
            },
            "candidates": table,
            "chosen": chosen,
            "held_out_source": table[chosen]["held_out_source"],
            "note": "grouped 5-fold CV by (source, harm topic); threshold keeps out-of-fold benign replies "
            f"blocked at {max_benign_blocked:.0%}; the recipe with the best mean of the grouped AUROC and "
            f"the AUROC on {OTHERS_SOURCE}'s replies (a head fitted without them) ships",
        }
        figures["grouped"]["auroc"] = auroc(y, oof)
        model = ReplyHarmClassifier(C=C, embedder=emb, **recipes[chosen]).fit(X, y)
    model.threshold_ = threshold
    if out_dir is not None:
        model.set_params(embedder=None).save(out_dir, extra={"figures": figures})
    return figures


def refit_reply_side(
    head_dir: Path, guard_dir: Path | None = None, *, progress: bool = True
) -> dict[str, Any]:
    """`guard fit-reply-head`: the reply head refitted on its own (the step `guard fit` runs after
    the host pass), saved to `head_dir`; with `guard_dir`, that guard's reply threshold and the
    ``reply_side`` part of its ``fit_report.json`` follow.

    Example:
        >>> refit_reply_side(Path("/tmp/rh"), progress=False)["chosen"]  # doctest: +SKIP
        'mlp_minilm_use'
    """
    from guard.whitebox.artifacts import update_policy

    figures = fit_reply_head(head_dir, progress=progress)
    if guard_dir is not None:
        update_policy(guard_dir, reply_threshold=float(figures["threshold"]))
        report_path = Path(guard_dir) / "fit_report.json"
        report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
        report["reply_side"] = figures
        report_path.write_text(json.dumps(report, indent=2, sort_keys=True, default=float))
    return figures


__all__ = [
    "OTHERS_SOURCE",
    "REPLIES_FILES",
    "REPLY_CANDIDATES",
    "fit_reply_head",
    "held_out_source",
    "load_reply_rows",
    "refit_reply_side",
]
