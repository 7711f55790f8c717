"""Fit and measure the image-prompt head (`guard fit-image`): grouped by form, like the text guard.

Every prompt of ``corpus/image_prompts.jsonl`` is embedded once; two feature sets (MiniLM alone,
MiniLM + word n-grams) are compared out of fold with the prompt's *form* as the group (no form is
seen in fitting and test at once: a lookalike prompt style, SD weight syntax, a deepfake
phrasing); the better one is refitted on everything and saved with its threshold (chosen on the
out-of-fold scores for 90 % recall) and its report.

Example:
    >>> report = fit_image_guard("/tmp/image_head")  # doctest: +SKIP
    >>> report["grouped"]["auroc"] > 0.9  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from guard.decision.stats import auroc
from guard.fitting.calibrate import threshold_for_recall
from guard.fitting.grouped import grouped_folds, stress_report, summary
from guard.io.data import load_image_prompts


def _labels(rows: list[Any]) -> np.ndarray:
    return np.array(["benign" if r.label == "benign" else str(r.category) for r in rows], dtype=object)


def fit_image_guard(
    out: str | Path | None = None, *, target_recall: float = 0.9, seed: int = 0
) -> dict[str, Any]:
    """Compare, choose, refit and save the image head; returns the report (also ``out/fit_report.json``).

    Args:
        out: where to save the head (default: the shipped ``classifiers/resources/image_prompt``).
        target_recall: the out-of-fold recall the threshold is chosen for.
        seed: seed of the random split reported beside the grouped figures.
    """
    from importlib import resources

    from sklearn.model_selection import train_test_split

    from classifiers._manifest import write_manifest
    from classifiers.embeddings import SentenceEmbedder
    from classifiers.image_prompt import DEFAULT_RESOURCE, ImagePromptClassifier

    rows = load_image_prompts()
    texts = [r.prompt for r in rows]
    labels = _labels(rows)
    y = (labels != "benign").astype(int)
    forms = [r.form or "?" for r in rows]
    folds = grouped_folds(forms)
    embedder = SentenceEmbedder(cache=True)
    E = embedder.transform(texts)

    def fit(features: str, idx: np.ndarray) -> ImagePromptClassifier:
        clf = ImagePromptClassifier(features=features, embedder=embedder, C=4.0)  # type: ignore[arg-type]
        if features == "embedding":
            return clf.fit_embeddings(E[idx], labels[idx])  # type: ignore[return-value]
        return clf.fit([texts[i] for i in idx], labels[idx])

    table: dict[str, Any] = {}
    oof_by: dict[str, np.ndarray] = {}
    for features in ("embedding", "both"):
        oof = np.full(len(rows), np.nan)
        for tr, te in folds:
            oof[te] = fit(features, np.asarray(tr)).harm_score([texts[i] for i in te])
        oof_by[features] = oof
        table[features] = {"grouped_auroc": auroc(y, oof)}
    chosen = max(table, key=lambda k: table[k]["grouped_auroc"])
    oof = oof_by[chosen]
    t = float(threshold_for_recall(oof[y == 1], target_recall))
    tr, te = train_test_split(np.arange(len(rows)), test_size=0.25, random_state=seed, stratify=y)
    own = fit(chosen, tr).harm_score([texts[i] for i in te])
    final = fit(chosen, np.arange(len(rows)))
    cat_acc = float(
        np.mean(
            [
                c == labels[i]
                for i, c in zip(
                    np.flatnonzero(y == 1), final.category([texts[i] for i in np.flatnonzero(y == 1)])
                )
            ]
        )
    )
    report = {
        "n": len(rows),
        "n_harmful": int(y.sum()),
        "groups": "form (grouped_folds)",
        "candidates": table,
        "chosen": chosen,
        "threshold": t,
        "target_recall": target_recall,
        "grouped": {
            "auroc": table[chosen]["grouped_auroc"],
            "at_threshold": summary(oof, y, t),
            "by_form": stress_report(oof, y, forms, t, min_rows=8),
        },
        "own_random_split": {
            "auroc": auroc(y[te], own),
            "at_threshold": summary(own, y[te], t),
            "note": "a random split of the same corpus: shares its style",
        },
        "category_accuracy_on_fitting_harmful": cat_acc,
    }
    if out is None:
        with resources.as_file(resources.files("classifiers.resources")) as root:
            out = Path(root) / DEFAULT_RESOURCE
    folder = final.save(out)
    (Path(folder) / "fit_report.json").write_text(json.dumps(report, indent=2, sort_keys=True, default=float))
    write_manifest(folder)
    return report


__all__ = ["fit_image_guard"]
