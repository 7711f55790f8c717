"""`ImagePromptClassifier`: is a prompt for a text-to-image model disallowed, and in which category?

Prompts sent to image models differ from chat requests: comma-separated tag lists, weights like
``(term:1.3)``, "masterpiece, best quality", and words that sound harmful in a benign scene ("a
shot of espresso", "a killer whale breaching"). Over-refusal there is its own problem ("OVERT:
over-refusal on text-to-image models"). One multinomial head over MiniLM sentence embeddings
(and word n-grams) tells ``benign`` from the disallowed categories of `CATEGORIES`; P(disallowed)
is one minus P(benign), and the most probable disallowed class names the category.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np

from classifiers._linear import Features, TextLinearClassifier
from classifiers._validation import DEFAULT_MAX_CHARS, check_texts, check_y_given
from classifiers.errors import ClassifierError

BENIGN = "benign"
#: The disallowed categories the shipped head knows (`guard.decision.presets` maps them to policy).
CATEGORIES: tuple[str, ...] = (
    "sexual_explicit",
    "sexual_minors",
    "gore",
    "hate_symbols",
    "real_person",
    "copyright",
    "violence_weapons",
    "self_harm",
    "non_consensual",
)
DEFAULT_RESOURCE = "image_prompt"


class ImagePromptClassifier(TextLinearClassifier):
    """Classify text-to-image prompts as ``benign`` or one of `CATEGORIES`.

    Args: as `TextLinearClassifier` (``features="embedding"`` for the MiniLM head; ``"both"``
        adds word n-grams).

    Example:
        >>> clf = ImagePromptClassifier(ngram_range=(1, 1)).fit(
        ...     ["a cat on a sofa", "a bowl of fruit", "a severed head, gore", "bloody dismembered body"],
        ...     ["benign", "benign", "gore", "gore"])
        >>> clf.category(["dismembered body, blood"])
        ['gore']
        >>> float(clf.harm_score(["a cat"])[0]) < 0.5
        True
    """

    def __init__(
        self,
        features: Features = "ngrams",
        ngram_range: tuple[int, int] = (1, 2),
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

    def fit(self, X: Any, y: Any) -> ImagePromptClassifier:
        """Fit on prompts `X` and labels `y` (``"benign"`` or a category name)."""
        check_y_given(y, self)
        texts = check_texts(X, "X", self.max_chars)  # as its siblings: no bare string, cut, clean unicode
        return self._fit_texts(texts, _check_labels(y, len(texts)))  # type: ignore[return-value]

    def _benign_index(self) -> int:
        if BENIGN not in set(self.classes_.tolist()):
            raise ClassifierError("this model was fitted without a 'benign' class")
        return int(np.flatnonzero(self.classes_ == BENIGN)[0])

    def harm_score(self, X: Any) -> np.ndarray:
        """P(the prompt asks for a disallowed image) = 1 - P(benign)."""
        return 1.0 - self.predict_proba(X)[:, self._benign_index()]

    def category(self, X: Any) -> list[str]:
        """The most probable disallowed category of each prompt (whether or not it is disallowed)."""
        p = self.predict_proba(X).copy()
        p[:, self._benign_index()] = -1.0
        return [str(self.classes_[k]) for k in p.argmax(axis=1)]

    def category_proba(self, X: Any) -> list[dict[str, float]]:
        """Per prompt, P(category) for every disallowed class."""
        p = self.predict_proba(X)
        names = [str(c) for c in self.classes_]
        return [{n: float(v) for n, v in zip(names, row) if n != BENIGN} for row in p]

    def _default_global_label(self) -> Any:
        return self.classes_[0] if self.classes_[0] != BENIGN else self.classes_[-1]

    @classmethod
    def default(cls) -> ImagePromptClassifier:
        """The shipped head (``classifiers/resources/image_prompt``), fitted on the project's
        image-prompt corpus (``guard fit-image``)."""
        with resources.as_file(resources.files("classifiers.resources").joinpath(DEFAULT_RESOURCE)) as p:
            return cls.load(p)


def _check_labels(y: Any, n: int) -> np.ndarray:
    labels = np.asarray(list(y), dtype=object)
    if labels.ndim != 1 or len(labels) != n:
        raise ClassifierError(f"y must hold one label per prompt: {n} prompts, y has shape {labels.shape}")
    if not all(isinstance(v, str) and v.strip() for v in labels):
        raise ClassifierError("labels must be non-empty strings: 'benign' or a category name")
    if BENIGN not in set(labels.tolist()):
        raise ClassifierError("y needs 'benign' examples")
    return labels


__all__ = ["BENIGN", "CATEGORIES", "ImagePromptClassifier"]
