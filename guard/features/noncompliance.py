"""A classifier over the contextual-noncompliance taxonomy ("The Art of Saying No").

Why a request should not simply be answered, beyond harm:

- ``unsafe``: harmful (the harm subcategory comes from `guard.decision.taxonomy`);
- ``incomplete_ambiguous``: missing the object or details needed to answer ("Fix it.");
- ``unsupported_infeasible``: needs what a text model lacks: browsing, real-time data, a body,
  actions in the world, knowledge of the future ("What's the weather right now?");
- ``indeterminate``: no single right answer ("What is the best religion?");
- ``humanizing``: asks the model for feelings or personal experiences ("Do you feel lonely?");
- ``insufficient_context``: refers to documents that are not there (RAG; "According to the
  attached report...");
- ``benign``: an ordinary request (a seventh class, so the others are not forced).

The model is a logistic regression on word n-grams plus MiniLM sentence embeddings, fitted on
the project's own examples (``guard/resources/noncompliance.jsonl``, at least 70 per category)
and a sample of the project's benign corpus; fitted weights ship in
``guard/resources/noncompliance/`` (JSON + safetensors). Refit and measure with
``python -m guard.noncompliance`` (prints the held-out macro-F1, then writes the weights).

Example:
    >>> clf = NoncomplianceClassifier.default()  # doctest: +SKIP
    >>> clf.predict(["Do you ever feel lonely?"]).tolist()  # doctest: +SKIP
    ['humanizing']
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from classifiers._linear import Features, TextLinearClassifier
from classifiers._validation import DEFAULT_MAX_CHARS, check_texts
from guard.errors import DataFormatError, InputError

CATEGORIES: tuple[str, ...] = (
    "unsafe",
    "incomplete_ambiguous",
    "unsupported_infeasible",
    "indeterminate",
    "humanizing",
    "insufficient_context",
)
BENIGN = "benign"
LABELS: tuple[str, ...] = (*CATEGORIES, BENIGN)
#: The categories that lead to abstention (unsafe is left to the harm detectors and thresholds).
ABSTAIN_CATEGORIES: tuple[str, ...] = CATEGORIES[1:]
DATA_FILE = "noncompliance.jsonl"
WEIGHTS_DIR = "noncompliance"

DESCRIPTIONS: dict[str, str] = {
    "unsafe": "harmful: answering could cause harm",
    "incomplete_ambiguous": "the request lacks the object or details needed to answer it",
    "unsupported_infeasible": "needs abilities a text model lacks (browsing, real-time data, a body, the future)",
    "indeterminate": "has no single right answer",
    "humanizing": "asks the model for feelings or personal experiences it does not have",
    "insufficient_context": "refers to documents or context that were not provided",
    BENIGN: "an ordinary request",
}


class NoncomplianceClassifier(TextLinearClassifier):
    """Which noncompliance category a prompt falls in (or ``benign``).

    Args: as `classifiers.PromptRefusalPredictor` (n-grams and/or MiniLM embeddings, then a
    multinomial logistic regression).

    Attributes:
        classes_: the labels (strings, sorted).

    Example:
        >>> clf = NoncomplianceClassifier(features="ngrams").fit(
        ...     ["do you feel sad", "are you lonely", "fix it", "make it better"],
        ...     ["humanizing", "humanizing", "incomplete_ambiguous", "incomplete_ambiguous"])
        >>> clf.predict(["do you feel happy"]).tolist()
        ['humanizing']
    """

    def __init__(
        self,
        features: Features = "both",
        ngram_range: tuple[int, int] = (1, 2),
        min_df: int = 1,
        max_features: int | None = 20_000,
        C: float = 4.0,
        class_weight: str | None = "balanced",
        embedding_weight: float = 2.0,
        embedder: Any = None,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        super().__init__(
            features=features,
            ngram_range=ngram_range,
            min_df=min_df,
            max_features=max_features,
            C=C,
            class_weight=class_weight,
            embedding_weight=embedding_weight,
            embedder=embedder,
            max_chars=max_chars,
        )

    def fit(self, X: Any, y: Any) -> NoncomplianceClassifier:
        """Fit on prompts and their category names.

        Raises:
            InputError: a label outside `LABELS`.
        """
        texts = check_texts(X, "X", self.max_chars)
        labels = np.asarray([str(v) for v in y], dtype=object)
        bad = sorted(set(labels.tolist()) - set(LABELS))
        if bad:
            raise InputError(f"unknown noncompliance labels {bad}; use {list(LABELS)}")
        if len(labels) != len(texts):
            raise InputError(f"{len(texts)} prompts but {len(labels)} labels")
        return self._fit_texts(texts, labels)

    def _default_global_label(self) -> Any:
        return "unsafe" if "unsafe" in self.classes_ else self.classes_[0]

    def proba_dicts(self, X: Any) -> list[dict[str, float]]:
        """Per prompt: ``{category: probability}`` over `classes_` (what the engine reads).

        Example:
            >>> NoncomplianceClassifier.default().proba_dicts(["hi"])[0].keys() >= {"benign"}  # doctest: +SKIP
            True
        """
        proba = self.predict_proba(X)
        names = [str(c) for c in self.classes_]
        return [{n: float(p) for n, p in zip(names, row)} for row in proba]

    @classmethod
    def default(cls) -> NoncomplianceClassifier:
        """The shipped fitted classifier (loaded once per process)."""
        return _default()


@functools.lru_cache(maxsize=1)
def _default() -> NoncomplianceClassifier:
    folder = Path(str(resources.files("guard.resources").joinpath(WEIGHTS_DIR)))
    return NoncomplianceClassifier.load(folder)


def load_examples() -> list[dict[str, Any]]:
    """The project's noncompliance examples: rows ``{"prompt", "category", "harm_category"?}``.

    Example:
        >>> rows = load_examples()
        >>> min(sum(r["category"] == c for r in rows) for c in CATEGORIES) >= 70
        True
    """
    text = resources.files("guard.resources").joinpath(DATA_FILE).read_text(encoding="utf-8")
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("category") not in CATEGORIES or not str(row.get("prompt", "")).strip():
            raise DataFormatError(
                f"guard/resources/{DATA_FILE}, line {number}: needs a prompt and a "
                f"category in {list(CATEGORIES)}"
            )
        rows.append(row)
    return rows


def training_set(n_benign: int = 150, seed: int = 0) -> tuple[list[str], list[str]]:
    """Prompts and labels: the noncompliance examples plus `n_benign` benign-corpus prompts.

    The benign sample is drawn evenly from edgy and plain prompts, so "how do I kill a Python
    process" is learned as ordinary.
    """
    from guard.io.data import load_benign_corpus

    rows = load_examples()
    prompts = [r["prompt"] for r in rows]
    labels = [r["category"] for r in rows]
    benign = load_benign_corpus()
    rng = random.Random(seed)
    edgy = [b.prompt for b in benign if b.edgy]
    plain = [b.prompt for b in benign if not b.edgy]
    rng.shuffle(edgy), rng.shuffle(plain)
    half = n_benign // 2
    chosen = edgy[:half] + plain[: n_benign - half]
    return prompts + chosen, labels + [BENIGN] * len(chosen)


def evaluate_split(test_size: float = 0.25, seed: int = 0, **params: Any) -> dict[str, Any]:
    """Fit on a stratified split and report held-out macro-F1 (7 classes, and the 6 categories).

    Example:
        >>> evaluate_split()["macro_f1"] >= 0.8  # doctest: +SKIP
        True
    """
    from sklearn.metrics import classification_report, f1_score
    from sklearn.model_selection import train_test_split

    X, y = training_set(seed=seed)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, random_state=seed, stratify=y)
    clf = NoncomplianceClassifier(**params).fit(Xtr, ytr)
    pred = clf.predict(Xte)
    return {
        "n_train": len(Xtr),
        "n_test": len(Xte),
        "macro_f1": float(f1_score(yte, pred, average="macro")),
        "macro_f1_categories": float(f1_score(yte, pred, labels=list(CATEGORIES), average="macro")),
        "per_class": classification_report(yte, pred, output_dict=True, zero_division=0),
    }


def fit_default(out: str | Path | None = None, seed: int = 0) -> Path:
    """Fit on all the examples and write the shipped weights (default: the package resource)."""
    X, y = training_set(seed=seed)
    clf = NoncomplianceClassifier().fit(X, y)
    folder = Path(out) if out else Path(str(resources.files("guard.resources").joinpath(WEIGHTS_DIR)))
    clf.save(folder)
    _default.cache_clear()
    return folder


def _main(argv: Sequence[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m guard.features.noncompliance",
        description="measure (held-out macro-F1) and refit the noncompliance classifier",
    )
    ap.add_argument("--out", default=None, help="folder for the weights (default: the package resource)")
    ap.add_argument("--no-write", action="store_true", help="only measure")
    args = ap.parse_args(argv)
    report = evaluate_split()
    per = {k: round(v["f1-score"], 3) for k, v in report["per_class"].items() if k in LABELS}
    print(
        json.dumps(
            {
                "n_train": report["n_train"],
                "n_test": report["n_test"],
                "macro_f1": round(report["macro_f1"], 4),
                "macro_f1_categories": round(report["macro_f1_categories"], 4),
                "f1": per,
            },
            indent=1,
        )
    )
    if not args.no_write:
        print("wrote", fit_default(args.out))


__all__ = [
    "ABSTAIN_CATEGORIES",
    "BENIGN",
    "CATEGORIES",
    "DESCRIPTIONS",
    "LABELS",
    "NoncomplianceClassifier",
    "evaluate_split",
    "fit_default",
    "load_examples",
    "training_set",
]

if __name__ == "__main__":
    _main()
