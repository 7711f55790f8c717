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

The model is a multinomial logistic regression on word n-grams plus multilingual sentence
vectors (USE-multilingual; within a request they are shared with the harm heads), fitted on
the project's own examples (``guard/resources/noncompliance.jsonl``: at least 70 per category in
several surface forms and 11 languages, and benign look-alikes) and a sample of the project
corpus (harmful rows as ``unsafe``, benign rows as ``benign``); fitted weights ship in
``guard/resources/noncompliance/`` (JSON + safetensors). The recipe was chosen under grouped
validation (each surface form held out); ``python -m guard.features.noncompliance`` prints the
comparison (`RECIPES`, `evaluate_grouped`), then refits the chosen recipe.

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
#: Benign corpus prompts of at most this many words are all in the training rows (see `training_rows`).
SHORT_WORDS = 8
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
    """The project's noncompliance examples: ``{"prompt", "category", "form"?, "lang"?, "harm_category"?}``.

    ``category`` is one of `LABELS`: a noncompliance category, or ``benign`` for a contrast row (an
    answerable request shaped like one of them: "Do dogs get lonely?" beside "Do you get lonely?").
    ``form`` names the surface form (short question, imperative, chatty...); grouped validation
    holds each form out in turn.

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
        if row.get("category") not in LABELS or not str(row.get("prompt", "")).strip():
            raise DataFormatError(
                f"guard/resources/{DATA_FILE}, line {number}: needs a prompt and a category in {list(LABELS)}"
            )
        rows.append(row)
    return rows


def training_rows(n_corpus: int = 1500, seed: int = 0) -> list[tuple[str, str, str]]:
    """``(prompt, label, group)``: the examples plus a sample of the project corpus.

    The corpus sample (`guard.io.data.ALL_CORPUS_FILES`: every form and language, edgy benign
    text and its harmful twins) gives `n_corpus` harmful rows, labelled ``unsafe``, and `n_corpus`
    benign ones, so the head learns that a threat or a request in Thai is unsafe rather than
    "unsupported", and that "how do I kill a Python process" is ordinary; every other benign
    corpus prompt of at most `SHORT_WORDS` words is added too, so brevity alone does not read as
    an incomplete request ("Explain recursion."). The group is ``nc:<form>`` for an example (``nc:first_set`` for the rows written before forms were
    recorded) and ``<source>:<form>`` for a corpus row.

    Example:
        >>> rows = training_rows(n_corpus=10)
        >>> sum(label == "unsafe" and not g.startswith("nc:") for _, label, g in rows)
        10
    """
    from guard.io.data import ALL_CORPUS_FILES, load_project_corpus

    out = [(r["prompt"], r["category"], f"nc:{r.get('form') or 'first_set'}") for r in load_examples()]
    rng = random.Random(seed)
    corpus = load_project_corpus(ALL_CORPUS_FILES)
    for label, name in (("harmful", "unsafe"), ("benign", BENIGN)):
        rows = [r for r in corpus if r.label == label]
        rng.shuffle(rows)
        out += [(r.prompt, name, f"{r.source}:{r.form or 'none'}") for r in rows[:n_corpus]]
        if label == "benign":  # every short complete request, so brevity alone does not read as incomplete
            short = [r for r in rows[n_corpus:] if len(r.prompt.split()) <= SHORT_WORDS]
            out += [(r.prompt, name, f"{r.source}:{r.form or 'none'}") for r in short]
    return out


def training_set(n_corpus: int = 1500, seed: int = 0) -> tuple[list[str], list[str]]:
    """Prompts and labels of `training_rows`."""
    rows = training_rows(n_corpus, seed)
    return [p for p, _, _ in rows], [label for _, label, _ in rows]


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


def abstain_scores(proba: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """The engine's abstain score of each row: its most likely abstain category's probability.

    Example:
        >>> abstain_scores(np.array([[0.1, 0.7, 0.2]]), ["benign", "humanizing", "unsafe"]).tolist()
        [0.7]
    """
    cols = [i for i, c in enumerate(classes) if c in ABSTAIN_CATEGORIES]
    return np.asarray(proba)[:, cols].max(axis=1)


def grouped_oof(
    n_splits: int = 5, n_corpus: int = 1500, seed: int = 0, **params: Any
) -> tuple[list[tuple[str, str, str]], np.ndarray]:
    """`training_rows` and their out-of-fold probabilities (``[n, 7]``, columns in sorted `LABELS`).

    Each group (a surface form) is held out in turn by `GroupKFold`.
    """
    from sklearn.model_selection import GroupKFold

    if "embedder" not in params and params.get("features", "both") != "ngrams":
        from classifiers.embeddings import SentenceEmbedder

        params["embedder"] = SentenceEmbedder(cache=True)  # each fold re-reads the same texts
    rows = training_rows(n_corpus, seed)
    X = np.asarray([p for p, _, _ in rows], dtype=object)
    y = np.asarray([label for _, label, _ in rows], dtype=object)
    groups = np.asarray([g for _, _, g in rows], dtype=object)
    classes = sorted(LABELS)
    proba = np.zeros((len(rows), len(LABELS)))
    for train, test in GroupKFold(n_splits=n_splits).split(X, y, groups):
        clf = NoncomplianceClassifier(**params).fit(X[train].tolist(), y[train].tolist())
        cols = [classes.index(c) for c in clf.classes_]
        proba[np.ix_(test, cols)] = clf.predict_proba(X[test].tolist())
    return rows, proba


def evaluate_grouped(
    n_splits: int = 5, threshold: float = 0.6, n_corpus: int = 1500, seed: int = 0, **params: Any
) -> dict[str, Any]:
    """Out-of-fold figures with each surface form held out in turn (`GroupKFold` on `training_rows`).

    Reports macro-F1 of the most likely label, and at `threshold` (the policy's abstain
    threshold): the share of each category's rows the engine would abstain on, of the benign
    contrast rows and the benign-corpus sample (over-abstention), and of the unsafe rows (left to
    the harm detectors, so lower is better).

    Example:
        >>> evaluate_grouped(n_splits=3)["abstained"]["humanizing"] > 0.5  # doctest: +SKIP
        True
    """
    from sklearn.metrics import f1_score

    rows, proba = grouped_oof(n_splits, n_corpus, seed, **params)
    classes = sorted(LABELS)
    y = np.asarray([label for _, label, _ in rows], dtype=object)
    groups = np.asarray([g for _, _, g in rows], dtype=object)
    pred = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    abstains = abstain_scores(proba, classes) >= threshold
    contrast = (y == BENIGN) & np.asarray([g.startswith("nc:") for g in groups])
    corpus = (y == BENIGN) & ~contrast
    rate = {c: float(abstains[y == c].mean()) for c in CATEGORIES if (y == c).any()}
    return {
        "n": len(rows),
        "n_groups": len(set(groups.tolist())),
        "threshold": threshold,
        "macro_f1": float(f1_score(y, pred, average="macro")),
        "abstained": rate,
        "abstained_noncompliance": float(abstains[np.isin(y, ABSTAIN_CATEGORIES)].mean()),
        "right_category": float(
            (pred[np.isin(y, ABSTAIN_CATEGORIES)] == y[np.isin(y, ABSTAIN_CATEGORIES)]).mean()
        ),
        "abstained_benign_contrast": float(abstains[contrast].mean()) if contrast.any() else None,
        "abstained_benign_corpus": float(abstains[corpus].mean()) if corpus.any() else None,
    }


#: The candidate recipes compared under grouped validation: name -> `NoncomplianceClassifier` settings
#: (the embedder by name, so the table is plain data).
RECIPES: dict[str, dict[str, Any]] = {
    "ngrams": {"features": "ngrams"},
    "ngrams+minilm": {"features": "both", "embedder": "minilm"},
    "ngrams+use_multilingual": {"features": "both", "embedder": "use_multilingual"},
}
#: A recipe may abstain on at most this share of benign corpus prompts (grouped, at 0.6) to be chosen.
MAX_BENIGN_ABSTAIN = 0.05


def recipe_params(name: str) -> dict[str, Any]:
    """`NoncomplianceClassifier` keyword arguments of a `RECIPES` entry (the embedder built).

    Example:
        >>> recipe_params("ngrams")
        {'features': 'ngrams'}
    """
    if name not in RECIPES:
        raise InputError(f"unknown noncompliance recipe {name!r}; known: {sorted(RECIPES)}")
    params = dict(RECIPES[name])
    kind = params.pop("embedder", None)
    if kind == "minilm":
        from classifiers.embeddings import SentenceEmbedder

        params["embedder"] = SentenceEmbedder()
    elif kind == "use_multilingual":
        from classifiers.multilingual import MultilingualEmbedder

        params["embedder"] = MultilingualEmbedder()
    return params


def choose_recipe(results: dict[str, dict[str, Any]]) -> str:
    """The recipe with the best grouped macro-F1 among those within `MAX_BENIGN_ABSTAIN`.

    Example:
        >>> choose_recipe({"a": {"macro_f1": 0.7, "abstained_benign_corpus": 0.09},
        ...                "b": {"macro_f1": 0.6, "abstained_benign_corpus": 0.02}})
        'b'
    """
    ok = {k: r for k, r in results.items() if (r["abstained_benign_corpus"] or 0.0) <= MAX_BENIGN_ABSTAIN}
    if not ok:
        raise InputError(f"no recipe abstains on <= {MAX_BENIGN_ABSTAIN} of benign prompts: {results}")
    return max(ok, key=lambda k: ok[k]["macro_f1"])


#: The recipe `choose_recipe` picked (README gives the table); `fit_default` fits it.
SHIPPED_RECIPE = "ngrams+use_multilingual"


def fit_default(out: str | Path | None = None, seed: int = 0, recipe: str = SHIPPED_RECIPE) -> Path:
    """Fit `recipe` on all the training rows and write the weights (default: the package resource)."""
    X, y = training_set(seed=seed)
    clf = NoncomplianceClassifier(**recipe_params(recipe)).fit(X, y)
    folder = Path(out) if out else Path(str(resources.files("guard.resources").joinpath(WEIGHTS_DIR)))
    clf.save(folder)
    _default.cache_clear()
    return folder


def _main(argv: Sequence[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m guard.features.noncompliance",
        description="compare the recipes under grouped validation (each form held out), then refit the chosen one",
    )
    ap.add_argument("--out", default=None, help="folder for the weights (default: the package resource)")
    ap.add_argument("--no-write", action="store_true", help="only measure")
    args = ap.parse_args(argv)
    results = {name: evaluate_grouped(**recipe_params(name)) for name in RECIPES}
    best = choose_recipe(results)
    print(json.dumps({"grouped": results, "chosen": best, "shipped": SHIPPED_RECIPE}, indent=1))
    if best != SHIPPED_RECIPE:
        print(f"note: the grouped figures now choose {best!r}; SHIPPED_RECIPE is {SHIPPED_RECIPE!r}")
    if not args.no_write:
        print("wrote", fit_default(args.out, recipe=best))


__all__ = [
    "ABSTAIN_CATEGORIES",
    "BENIGN",
    "CATEGORIES",
    "DESCRIPTIONS",
    "LABELS",
    "MAX_BENIGN_ABSTAIN",
    "RECIPES",
    "SHIPPED_RECIPE",
    "NoncomplianceClassifier",
    "abstain_scores",
    "choose_recipe",
    "evaluate_grouped",
    "grouped_oof",
    "evaluate_split",
    "fit_default",
    "load_examples",
    "recipe_params",
    "training_rows",
    "training_set",
]

if __name__ == "__main__":
    _main()
