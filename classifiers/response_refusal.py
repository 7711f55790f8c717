"""`ResponseRefusalDetector`: is a model's reply a refusal, and of which kind?

Four classes: ``compliance``; ``refusal_ethical`` (declines for ethical, safety, legal or policy
reasons); ``refusal_capability`` (declines because it cannot: no browsing, no access, missing
information, out of scope); ``partial_refusal`` (declines part of the request but delivers some
substance, e.g. a safe high-level version). Features are word n-grams (so `explain` can name what
pushed the decision) and, by default in the shipped model, MiniLM sentence embeddings.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from classifiers._linear import Explanation, Features, TextLinearClassifier
from classifiers._validation import DEFAULT_MAX_CHARS, check_texts, check_y_given
from classifiers.errors import ClassifierError

COMPLIANCE = "compliance"
REFUSAL_ETHICAL = "refusal_ethical"
REFUSAL_CAPABILITY = "refusal_capability"
PARTIAL_REFUSAL = "partial_refusal"
CLASSES: tuple[str, ...] = (COMPLIANCE, REFUSAL_ETHICAL, REFUSAL_CAPABILITY, PARTIAL_REFUSAL)
REFUSAL_CLASSES: tuple[str, ...] = (REFUSAL_ETHICAL, REFUSAL_CAPABILITY, PARTIAL_REFUSAL)
DEFAULT_RESOURCE = "response_refusal"


def _check_labels(y: Any, n: int) -> np.ndarray:
    labels = np.asarray(list(y) if not isinstance(y, np.ndarray) else y, dtype=object)
    if labels.ndim != 1 or len(labels) != n:
        raise ClassifierError(f"y must hold one label per reply: {n} replies, y has shape {labels.shape}")
    bad = sorted({repr(v) for v in labels if not isinstance(v, str) or v not in CLASSES})[:5]
    if bad:
        raise ClassifierError(
            f"unknown reply labels {bad}; use {list(CLASSES)} "
            "(binary data: map 1 to 'refusal_ethical' and 0 to 'compliance')"
        )
    return labels.astype(str).astype(object)


class ResponseRefusalDetector(TextLinearClassifier):
    """Classify replies as compliance or one of three kinds of refusal.

    Args:
        features: ``"ngrams"`` (tf-idf word n-grams), ``"embedding"`` (MiniLM) or ``"both"``.
        ngram_range: n-gram lengths.
        min_df: drop n-grams seen in fewer replies than this.
        max_features: keep at most this many n-grams.
        C: inverse L2 strength of the logistic regression.
        class_weight: ``"balanced"`` or None.
        embedding_weight: scale of the embedding block relative to the n-grams.
        embedder: a `SentenceEmbedder` (cloned at fit); default: onnxruntime when installed.
        max_chars: characters kept per reply (the head: refusals show up early).

    Attributes:
        classes_: the labels seen at fit, sorted; `predict_proba` columns follow it.

    Example:
        >>> det = ResponseRefusalDetector().fit(
        ...     ["I can't help with that, it is unsafe.", "Sure! Here is a bread recipe.",
        ...      "I can't browse the web.", "I won't share that, but here is an overview."],
        ...     ["refusal_ethical", "compliance", "refusal_capability", "partial_refusal"])
        >>> det.predict(["Sure! Here is a soup recipe."])[0]
        'compliance'
        >>> det.classes_.tolist()
        ['compliance', 'partial_refusal', 'refusal_capability', 'refusal_ethical']
    """

    def __init__(
        self,
        features: Features = "ngrams",
        ngram_range: tuple[int, int] = (1, 3),
        min_df: int = 1,
        max_features: int | None = 50_000,
        C: float = 4.0,
        class_weight: str | None = "balanced",
        embedding_weight: float = 1.0,
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

    def fit(self, X: Any, y: Any) -> ResponseRefusalDetector:
        """Fit on replies `X` and their labels `y` (values of `CLASSES`).

        Raises:
            ClassifierError: bad replies, unknown labels, or a single class.
        """
        check_y_given(y, self)
        texts = check_texts(X, "X", self.max_chars)
        return self._fit_texts(texts, _check_labels(y, len(texts)))

    def _default_global_label(self) -> Any:
        return REFUSAL_ETHICAL if REFUSAL_ETHICAL in self.classes_ else self.classes_[-1]

    def refusal_score(self, X: Any) -> np.ndarray:
        """P(the reply is any kind of refusal) = 1 - P(compliance)."""
        proba = self.predict_proba(X)
        if COMPLIANCE not in self.classes_:
            raise ClassifierError("this detector was fitted without 'compliance' replies")
        return 1.0 - proba[:, self._class_index(COMPLIANCE)]

    def is_refusal(self, X: Any, classes: tuple[str, ...] = REFUSAL_CLASSES) -> np.ndarray:
        """Whether each reply's predicted class is one of `classes` (all refusal kinds by default).

        Example:
            >>> ResponseRefusalDetector.default().is_refusal(["I'm sorry, I can't help with that."])  # doctest: +SKIP
            array([ True])
        """
        check_is_fitted(self, "coef_")
        unknown = [c for c in classes if c not in CLASSES]
        if unknown:
            raise ClassifierError(f"unknown refusal classes {unknown}; use values of {list(CLASSES)}")
        return np.isin(self.predict(X).astype(str), list(classes))

    def explain(self, text: str | None = None, top: int = 10, label: Any = None) -> Explanation:
        """The n-grams that pushed a reply's class (see `TextLinearClassifier.explain`).

        Example:
            >>> ResponseRefusalDetector.default().explain("I can't help with that.").label  # doctest: +SKIP
            'refusal_ethical'
        """
        return super().explain(text, top=top, label=label)

    @classmethod
    def default(cls) -> ResponseRefusalDetector:
        """The shipped detector (``classifiers/resources/response_refusal``; refit by ``guard fit``).

        Fitted on PyRIT's labelled replies (reviewed into the four classes) and the project's
        written replies, with n-gram and MiniLM features.
        """
        with resources.as_file(resources.files("classifiers.resources").joinpath(DEFAULT_RESOURCE)) as p:
            return cls.load(p)


__all__ = [
    "CLASSES",
    "COMPLIANCE",
    "PARTIAL_REFUSAL",
    "REFUSAL_CAPABILITY",
    "REFUSAL_CLASSES",
    "REFUSAL_ETHICAL",
    "ResponseRefusalDetector",
]
