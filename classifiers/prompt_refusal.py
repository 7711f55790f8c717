"""`PromptRefusalPredictor`: will a given model refuse this prompt, before it answers?

After "I'm Afraid I Can't Do That: Predicting Prompt Refusal in Black-Box Generative Language
Models": a linear model on the prompt's n-grams (and, optionally, sentence embeddings), fitted
either on known refusal labels (`fit`) or by the paper's bootstrap (`fit_from_model`): ask the
model, label its replies with a `ResponseRefusalDetector`, fit on those labels. `explain` lists
the most predictive n-grams, as the paper reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, Literal

import numpy as np

from classifiers._linear import Explanation, Features, TextLinearClassifier
from classifiers._validation import DEFAULT_MAX_CHARS, check_texts, check_y_given
from classifiers.errors import ClassifierError

DEFAULT_RESOURCES = {
    "combined": "prompt_refusal",
    "embedding": "prompt_refusal_embedding",
    "multilingual": "multilingual_harm",
}


def _check_refused(y: Any, n: int) -> np.ndarray:
    values = np.asarray(list(y) if not isinstance(y, np.ndarray) else y)
    if values.ndim != 1 or len(values) != n:
        raise ClassifierError(f"refused must hold one 0/1 per prompt: {n} prompts, got shape {values.shape}")
    if values.dtype == bool:
        return values.astype(np.int64)
    if values.dtype.kind in "iuf" and np.isin(values, (0, 1)).all():
        return values.astype(np.int64)
    bad = sorted({repr(v) for v in values.tolist() if v not in (0, 1) or isinstance(v, str)})[:5]
    raise ClassifierError(
        f"refused must be 0/1 or bool, got values {bad}; use 1 where the model "
        "refused the prompt and 0 where it complied"
    )


def reply_text(result: Any) -> str:
    """The text of a model's answer: a str, a LangChain message (``.content``), or a dict.

    Example:
        >>> reply_text({"content": "Sure."})
        'Sure.'
    """
    if isinstance(result, str):
        return result
    content = (
        result.get("content", result.get("text"))
        if isinstance(result, dict)
        else getattr(result, "content", None)
    )
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # LangChain content blocks
        return "".join(
            b if isinstance(b, str) else str(b.get("text", "")) for b in content if isinstance(b, (str, dict))
        )
    raise ClassifierError(
        f"the model returned a {type(result).__name__}, not text; return a str, a "
        "message with .content, or a dict with 'content'"
    )


def _as_call(model: Any) -> Callable[[str], Any]:
    if hasattr(model, "invoke") and callable(model.invoke):  # a LangChain Runnable, duck-typed
        return model.invoke
    if callable(model):
        return model
    raise ClassifierError(
        f"model must be a callable prompt -> reply or have .invoke (a LangChain "
        f"runnable), got {type(model).__name__}"
    )


class PromptRefusalPredictor(TextLinearClassifier):
    """Predict whether a model will refuse a prompt (class 1) or comply (class 0).

    Args:
        features: ``"ngrams"`` (tf-idf word n-grams, as in the paper), ``"embedding"`` (MiniLM)
            or ``"both"``.
        ngram_range: n-gram lengths.
        min_df: drop n-grams seen in fewer prompts than this.
        max_features: keep at most this many n-grams.
        C: inverse L2 strength of the logistic regression.
        class_weight: ``"balanced"`` or None.
        embedding_weight: scale of the embedding block relative to the n-grams.
        embedder: a `SentenceEmbedder` (cloned at fit); default: onnxruntime when installed.
        max_chars: characters kept per prompt.

    Attributes:
        classes_: ``array([0, 1])``; ``predict_proba(X)[:, 1]`` is P(refusal).
        replies_: after `fit_from_model`, the model's replies (same order as the prompts).
        refused_: after `fit_from_model`, the detector's 0/1 labels of those replies.

    Example:
        >>> p = PromptRefusalPredictor(ngram_range=(1, 1)).fit(
        ...     ["how to build a bomb", "bake bread", "make a bomb at home", "plant a garden"], [1, 0, 1, 0])
        >>> p.predict(["bomb making"]).tolist()
        [1]
        >>> p.explain().ngrams[0].ngram
        'bomb'
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

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # refused (1) or complied (0)
        return tags

    def fit(self, X: Any, y: Any) -> PromptRefusalPredictor:
        """Fit on prompts `X` and whether the model refused each (`y`: 0/1 or bool).

        Raises:
            ClassifierError: bad prompts, labels other than 0/1, or a single class.
        """
        check_y_given(y, self)
        texts = check_texts(X, "X", self.max_chars)
        return self._fit_texts(texts, _check_refused(y, len(texts)))

    def fit_from_model(
        self,
        X: Any,
        model: Any,
        detector: Any = None,
        refusal_classes: Sequence[str] | None = None,
        progress: bool = False,
    ) -> PromptRefusalPredictor:
        """The paper's bootstrap: call `model` on each prompt, label the replies, fit on the labels.

        Args:
            X: prompts.
            model: a callable ``prompt -> reply`` or anything with ``.invoke(prompt)`` (a LangChain
                runnable or chat model); replies may be str, messages or dicts with ``content``.
            detector: labels the replies; default: `ResponseRefusalDetector.default()`.
            refusal_classes: detector classes counted as a refusal; default: all refusal kinds.
            progress: show a tqdm bar (if tqdm is installed).

        Returns:
            self, with `replies_` and `refused_` set.

        Raises:
            ClassifierError: the model failed on a prompt (index named), returned non-text, or
                refused all or none of the prompts (nothing to learn from).

        Example:
            >>> fake = lambda p: "I can't help with that." if "bomb" in p else "Sure, here you go."
            >>> prompts = ["make a bomb", "bake bread", "bomb recipe", "grow tomatoes"]
            >>> PromptRefusalPredictor().fit_from_model(prompts, fake).refused_.tolist()  # doctest: +SKIP
            [1, 0, 1, 0]
        """
        from classifiers.response_refusal import REFUSAL_CLASSES, ResponseRefusalDetector

        texts = check_texts(X, "X", self.max_chars)
        call = _as_call(model)
        detector = ResponseRefusalDetector.default() if detector is None else detector
        items: Any = texts
        if progress:
            try:
                from tqdm.auto import tqdm

                items = tqdm(texts, desc="asking the model", unit="prompt")
            except ImportError:
                pass
        replies: list[str] = []
        for i, prompt in enumerate(items):
            try:
                result = call(prompt)
            except Exception as exc:  # noqa: BLE001 (any model error, re-raised with its index)
                raise ClassifierError(
                    f"the model failed on prompt {i} ({prompt[:60]!r}): {type(exc).__name__}: {exc}"
                ) from exc
            replies.append(reply_text(result))
        refused = detector.is_refusal(replies, tuple(refusal_classes or REFUSAL_CLASSES)).astype(np.int64)
        n_refused = int(refused.sum())
        if n_refused in (0, len(texts)):
            raise ClassifierError(
                f"the model refused {n_refused} of {len(texts)} prompts; a predictor needs both "
                "refusals and compliances: add prompts it refuses (or complies with), or check the "
                "replies in the error's context"
            )
        self._fit_texts(texts, refused)
        self.replies_ = replies
        self.refused_ = refused
        return self

    def refusal_score(self, X: Any) -> np.ndarray:
        """P(the model refuses) for each prompt (``predict_proba(X)[:, 1]``)."""
        return self.predict_proba(X)[:, 1]

    def _default_global_label(self) -> Any:
        return self.classes_[-1]

    def explain(self, text: str | None = None, top: int = 10, label: Any = None) -> Explanation:
        """The most predictive n-grams of refusal (``text=None``), or what pushed one prompt.

        Example:
            >>> [w.ngram for w in PromptRefusalPredictor.default().explain(top=3).ngrams]  # doctest: +SKIP
            ['bomb', 'hack', 'steal']
        """
        return super().explain(text, top=top, label=label)

    @classmethod
    def default(
        cls, variant: Literal["combined", "embedding", "multilingual"] = "combined"
    ) -> PromptRefusalPredictor:
        """The shipped "a safety-aligned model would refuse this" predictor (refit by ``guard fit``).

        Fitted on the project's public harmful sources (label 1) and benign sources plus the
        project's benign corpus (label 0).

        Args:
            variant: ``"combined"`` (n-grams + MiniLM: the best scores) or ``"embedding"``
                (MiniLM + a linear head: the onnxruntime fast path) or ``"multilingual"``
                (USE-multilingual v3 + a linear head: carries over between languages).
        """
        if variant not in DEFAULT_RESOURCES:
            raise ClassifierError(f"variant must be one of {sorted(DEFAULT_RESOURCES)}, got {variant!r}")
        res = resources.files("classifiers.resources").joinpath(DEFAULT_RESOURCES[variant])
        with resources.as_file(res) as p:
            return cls.load(p)


__all__ = ["PromptRefusalPredictor", "reply_text"]
