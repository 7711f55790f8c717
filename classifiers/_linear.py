"""The shared core of the text classifiers: tf-idf n-grams and/or sentence embeddings, one
logistic regression on top, explanations, and pickle-free save/load.

One linear model over ``[n-grams | embedding]`` keeps explanations exact: the log-odds of a text
is the sum of its n-gram terms, one embedding term and the intercept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from classifiers._deps import require
from classifiers._validation import DEFAULT_MAX_CHARS, check_max_chars, check_texts
from classifiers.errors import ClassifierError

Features = Literal["ngrams", "embedding", "both"]
FORMAT = "classifiers.text-linear"
FORMAT_VERSION = 1
TOKEN_PATTERN = r"(?u)\b\w[\w']*\b"


def preprocess(text: str) -> str:
    """Lower-case and unify apostrophes (``can’t`` and ``can't`` are one n-gram).

    Example:
        >>> preprocess("I CAN’T")
        "i can't"
    """
    return text.lower().replace("\u2019", "'").replace("\u2018", "'")


class NgramWeight(BaseModel):
    """One n-gram and its signed push (log-odds) toward the explained class."""

    model_config = ConfigDict(frozen=True)

    ngram: str
    weight: float


class Explanation(BaseModel):
    """Why a text got its label (``text`` set), or what the model looks for (``text`` None).

    Attributes:
        text: the explained text, or None for a global explanation of the model.
        label: the explained class (as text): the predicted one unless asked otherwise.
        proba: class probabilities of the text (empty for a global explanation).
        ngrams: for a text, the n-grams present and their push toward `label` (largest first by
            magnitude); globally, the n-grams with the largest coefficients toward `label`.
        embedding: the embedding block's push toward `label` (0 without embedding features).
        intercept: the bias toward `label`.
    """

    model_config = ConfigDict(frozen=True)

    text: str | None
    label: str
    proba: dict[str, float]
    ngrams: list[NgramWeight]
    embedding: float = 0.0
    intercept: float = 0.0


def _minilm() -> type:
    from classifiers.embeddings import SentenceEmbedder

    return SentenceEmbedder


def _use_multilingual() -> type:
    from classifiers.multilingual import MultilingualEmbedder

    return MultilingualEmbedder


# The embedders a saved classifier may name: an allow-list, so nothing read from a file is imported.
_EMBEDDERS: dict[str, Any] = {"minilm": _minilm, "use-multilingual": _use_multilingual}


def _embedder_kind(embedder: Any) -> str | None:
    if embedder is None:
        return None
    for kind, cls in _EMBEDDERS.items():
        if type(embedder) is cls():
            return kind
    raise ClassifierError(
        f"cannot save a classifier with a {type(embedder).__name__} embedder; use one of {sorted(_EMBEDDERS)}"
    )


def _embedder_dim(embedder: Any) -> int:
    return int(getattr(embedder, "dim", 384)) if embedder is not None else 384


class TextLinearClassifier(ClassifierMixin, BaseEstimator):
    """Base class: see `ResponseRefusalDetector` and `PromptRefusalPredictor`."""

    _format_name: ClassVar[str] = "TextLinearClassifier"

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
        self.features = features
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.max_features = max_features
        self.C = C
        self.class_weight = class_weight
        self.embedding_weight = embedding_weight
        self.embedder = embedder
        self.max_chars = max_chars

    # ---------------------------------------------------------------- sklearn plumbing
    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags

    def _check_params(self) -> None:
        if self.features not in ("ngrams", "embedding", "both"):
            raise ClassifierError(f"features must be 'ngrams', 'embedding' or 'both', got {self.features!r}")
        rng = tuple(self.ngram_range) if isinstance(self.ngram_range, (tuple, list)) else None
        if not rng or len(rng) != 2 or not all(isinstance(v, int) for v in rng) or not 1 <= rng[0] <= rng[1]:
            raise ClassifierError(
                f"ngram_range must be (min_n, max_n) with 1 <= min_n <= max_n, got {self.ngram_range!r}"
            )
        if not (isinstance(self.C, (int, float)) and self.C > 0):
            raise ClassifierError(f"C must be a positive number, got {self.C!r}")
        check_max_chars(self.max_chars)

    @property
    def _uses_ngrams(self) -> bool:
        return self.features in ("ngrams", "both")

    @property
    def _uses_embedding(self) -> bool:
        return self.features in ("embedding", "both")

    def _make_vectorizer(self, vocabulary: dict[str, int] | None = None) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(
            preprocessor=preprocess,
            token_pattern=TOKEN_PATTERN,
            ngram_range=tuple(self.ngram_range),
            min_df=1 if vocabulary is not None else self.min_df,
            max_features=self.max_features,
            sublinear_tf=True,
            vocabulary=vocabulary,
            dtype=np.float64,
        )

    def _make_embedder(self) -> Any:
        if self.embedder is not None:
            return clone(self.embedder)
        from classifiers.embeddings import SentenceEmbedder

        return SentenceEmbedder(backend="auto", max_chars=self.max_chars)

    # ---------------------------------------------------------------- features
    def _blocks(self, texts: list[str]) -> tuple[Any, np.ndarray | None]:
        sparse = self.vectorizer_.transform(texts) if self._uses_ngrams else None
        dense = None
        if self._uses_embedding:
            dense = np.asarray(self.embedder_.transform(texts), dtype=np.float64) * self.embedding_weight
        return sparse, dense

    def _fit_texts(self, texts: list[str], y: np.ndarray) -> TextLinearClassifier:
        from scipy import sparse as sp
        from sklearn.linear_model import LogisticRegression

        self._check_params()
        classes = np.unique(y)
        if len(classes) < 2:
            raise ClassifierError(f"y holds a single class ({classes[0]!r}); fitting needs at least two")
        blocks = []
        if self._uses_ngrams:
            self.vectorizer_ = self._make_vectorizer()
            try:
                blocks.append(self.vectorizer_.fit_transform(texts))
            except ValueError as exc:  # e.g. only empty texts: "empty vocabulary"
                raise ClassifierError(
                    f"cannot build n-gram features from these texts ({exc}); pass texts with words in them"
                ) from None
            self.vocabulary_ = self.vectorizer_.get_feature_names_out().astype(str)
        else:
            self.vocabulary_ = np.array([], dtype=str)
        if self._uses_embedding:
            self.embedder_ = self._make_embedder()
            blocks.append(
                sp.csr_matrix(
                    np.asarray(self.embedder_.transform(texts), dtype=np.float64) * self.embedding_weight
                )
            )
        X = sp.hstack(blocks, format="csr")
        lr = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=5000)
        lr.fit(X, y)
        self.classes_ = lr.classes_
        self.coef_ = lr.coef_.astype(np.float64)
        self.intercept_ = lr.intercept_.astype(np.float64)
        self.n_ngrams_ = len(self.vocabulary_)
        return self

    def fit_embeddings(self, E: Any, y: Any) -> TextLinearClassifier:
        """Fit on embeddings already computed with this model's embedder (``features="embedding"``).

        Equal to `fit` on the texts, without embedding them again (fitting code embeds a corpus
        once and fits many heads on it).

        Example:
            >>> m = PromptRefusalPredictor(features="embedding")  # doctest: +SKIP
            >>> m.fit_embeddings(m._make_embedder().transform(texts), y)  # doctest: +SKIP
        """
        from sklearn.linear_model import LogisticRegression

        self._check_params()
        if self.features != "embedding":
            raise ClassifierError(f"fit_embeddings needs features='embedding', not {self.features!r}")
        E = np.asarray(E)  # float32 embeddings stay float32 (what the shipped heads were fitted on)
        E = (
            E * np.asarray(self.embedding_weight, dtype=E.dtype)
            if E.dtype.kind == "f"
            else E.astype(np.float64)
        )
        y = np.asarray(y)
        if E.ndim != 2 or E.shape[0] != y.shape[0] or E.shape[1] != _embedder_dim(self.embedder):
            raise ClassifierError(
                f"E must be [n, {_embedder_dim(self.embedder)}] with one row per label, "
                f"got {E.shape} for {y.shape[0]} labels"
            )
        if len(np.unique(y)) < 2:
            raise ClassifierError("y holds a single class; fitting needs at least two")
        lr = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=5000).fit(E, y)
        self.vocabulary_ = np.array([], dtype=str)
        self.embedder_ = self._make_embedder()
        self.classes_ = lr.classes_
        self.coef_ = lr.coef_.astype(np.float64)
        self.intercept_ = lr.intercept_.astype(np.float64)
        self.n_ngrams_ = 0
        return self

    # ---------------------------------------------------------------- prediction
    def decision_function(self, X: Any) -> np.ndarray:
        """Log-odds: ``(n,)`` for two classes (toward ``classes_[1]``), ``(n, k)`` otherwise."""
        check_is_fitted(self, "coef_")
        texts = check_texts(X, "X", check_max_chars(self.max_chars))
        sparse, dense = self._blocks(texts)
        scores = np.tile(self.intercept_, (len(texts), 1))
        if sparse is not None:
            scores = scores + np.asarray(sparse @ self.coef_[:, : self.n_ngrams_].T)
        if dense is not None:
            scores = scores + dense @ self.coef_[:, self.n_ngrams_ :].T
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities; columns follow ``classes_``."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-scores))
            return np.column_stack([1.0 - p, p])
        scores = scores - scores.max(axis=1, keepdims=True)
        e = np.exp(scores)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each text."""
        check_is_fitted(self, "coef_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # ---------------------------------------------------------------- explanations
    def _class_index(self, label: Any) -> int:
        matches = [i for i, c in enumerate(self.classes_) if c == label or str(c) == str(label)]
        if not matches:
            raise ClassifierError(
                f"label {label!r} is not a class of this model; classes: {self.classes_.tolist()}"
            )
        return matches[0]

    def _direction(self, k: int) -> np.ndarray:
        """Coefficients toward class k: for softmax, relative to the mean over classes."""
        coef, icpt = self.coef_, self.intercept_
        if coef.shape[0] == 1:
            sign = 1.0 if k == 1 else -1.0
            return np.concatenate([sign * coef[0], [sign * icpt[0]]])
        full = np.column_stack([coef, icpt])
        return full[k] - full.mean(axis=0)

    def _default_global_label(self) -> Any:
        return self.classes_[-1]

    def explain(self, text: str | None = None, top: int = 10, label: Any = None) -> Explanation:
        """The n-grams that pushed a text's decision, or the model's most predictive n-grams.

        Args:
            text: a text to explain; None explains the model as a whole.
            top: how many n-grams to return.
            label: the class to explain toward; default: the predicted class (for a text), or the
                model's "refusal" class (globally).

        Returns:
            An `Explanation`; for a text, the n-gram weights plus `embedding` plus `intercept` sum
            to the log-odds of `label` against the average class (against the other class when
            there are two).

        Raises:
            ClassifierError: `text` is not a string, or `label` is not a class.
        """
        check_is_fitted(self, "coef_")
        if not isinstance(top, int) or top < 0:
            raise ClassifierError(f"top must be a non-negative int, got {top!r}")
        if text is None:
            k = self._class_index(self._default_global_label() if label is None else label)
            direction = self._direction(k)[: self.n_ngrams_]
            order = np.argsort(-direction)[:top]
            return Explanation(
                text=None,
                label=str(self.classes_[k]),
                proba={},
                ngrams=[
                    NgramWeight(ngram=str(self.vocabulary_[j]), weight=float(direction[j]))
                    for j in order
                    if direction[j] > 0
                ],
                intercept=float(self._direction(k)[-1]),
            )
        if not isinstance(text, str):
            raise ClassifierError(
                f"text must be a str (or None for a global explanation), got {type(text).__name__}"
            )
        proba = self.predict_proba([text])[0]
        k = int(np.argmax(proba)) if label is None else self._class_index(label)
        direction = self._direction(k)
        sparse, dense = self._blocks(check_texts([text], "text", check_max_chars(self.max_chars)))
        ngrams: list[NgramWeight] = []
        if sparse is not None:
            row = sparse.tocsr()
            contrib = row.data * direction[row.indices]
            order = np.argsort(-np.abs(contrib))[:top]
            ngrams = [
                NgramWeight(ngram=str(self.vocabulary_[row.indices[j]]), weight=float(contrib[j]))
                for j in order
            ]
        emb = float(dense[0] @ direction[self.n_ngrams_ : -1]) if dense is not None else 0.0
        return Explanation(
            text=text,
            label=str(self.classes_[k]),
            proba={str(c): float(p) for c, p in zip(self.classes_, proba)},
            ngrams=ngrams,
            embedding=emb,
            intercept=float(direction[-1]),
        )

    # ---------------------------------------------------------------- persistence
    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _set_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def save(self, path: str | Path) -> Path:
        """Write the fitted model to a folder: ``model.json`` + ``weights.safetensors`` (no pickle).

        Example:
            >>> import tempfile
            >>> m = PromptRefusalPredictor().fit(["build a bomb", "bake bread"], [1, 0])  # doctest: +SKIP
            >>> PromptRefusalPredictor.load(m.save(tempfile.mkdtemp())).predict(["bomb"])  # doctest: +SKIP
            array([1])
        """
        check_is_fitted(self, "coef_")
        st = require("safetensors.numpy")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        params = self.get_params(deep=False)
        embedder = params.pop("embedder")
        params["ngram_range"] = list(params["ngram_range"])
        classes = self.classes_.tolist()
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "estimator": type(self).__name__,
            "params": params,
            "embedder": embedder.get_params() if embedder is not None else None,
            "embedder_kind": _embedder_kind(embedder),
            "classes": classes,
            "classes_kind": "int" if self.classes_.dtype.kind in "iub" else "str",
            "vocabulary": self.vocabulary_.tolist(),
            **self._extra_state(),
        }
        tensors = {
            "coef": np.ascontiguousarray(self.coef_),
            "intercept": np.ascontiguousarray(self.intercept_),
        }
        if self._uses_ngrams:
            tensors["idf"] = np.ascontiguousarray(self.vectorizer_.idf_)
        (folder / "model.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")
        st.save_file(tensors, str(folder / "weights.safetensors"))
        from classifiers._manifest import write_manifest

        write_manifest(folder)
        return folder

    @classmethod
    def load(cls, path: str | Path) -> Any:
        """Load a model written by `save`.

        Raises:
            ClassifierError: the folder is missing, of another estimator or format version, or
                its files disagree with each other.
        """
        st = require("safetensors.numpy")
        folder = Path(path)
        meta_file, weights_file = folder / "model.json", folder / "weights.safetensors"
        if not meta_file.is_file() or not weights_file.is_file():
            raise ClassifierError(
                f"{folder} holds no saved classifier (model.json and "
                "weights.safetensors); write one with .save(path)"
            )
        from classifiers._manifest import verify_manifest

        verify_manifest(folder, required=("model.json", "weights.safetensors"))
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            tensors = st.load_file(str(weights_file))
        except Exception as exc:  # noqa: BLE001 (corrupt files of any kind)
            raise ClassifierError(f"{folder}: unreadable saved classifier ({exc}); save it again") from None
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ClassifierError(
                f"{folder}: format {meta.get('format')!r} v{meta.get('format_version')}, "
                f"expected {FORMAT!r} v{FORMAT_VERSION}"
            )
        if meta.get("estimator") != cls.__name__:
            raise ClassifierError(
                f"{folder} holds a {meta.get('estimator')}, not a {cls.__name__}; "
                f"load it with {meta.get('estimator')}.load"
            )
        params = dict(meta["params"])
        params["ngram_range"] = tuple(params["ngram_range"])
        if meta.get("embedder") is not None:
            kind = meta.get("embedder_kind", "minilm")
            if kind not in _EMBEDDERS:
                raise ClassifierError(f"{folder}: unknown embedder {kind!r}; known: {sorted(_EMBEDDERS)}")
            params["embedder"] = _EMBEDDERS[kind]()(**meta["embedder"])
        model = cls(**params)
        model.classes_ = np.array(
            meta["classes"], dtype=np.int64 if meta["classes_kind"] == "int" else object
        )
        model.vocabulary_ = np.array(meta["vocabulary"], dtype=str)
        model.n_ngrams_ = len(model.vocabulary_)
        model.coef_, model.intercept_ = tensors["coef"], tensors["intercept"]
        n_dense = _embedder_dim(model.embedder) if model._uses_embedding else 0
        if model.coef_.shape[1] != model.n_ngrams_ + n_dense:
            raise ClassifierError(
                f"{folder}: {model.coef_.shape[1]} coefficients for "
                f"{model.n_ngrams_} n-grams + {n_dense} embedding dims; save it again"
            )
        if model._uses_ngrams:
            vec = model._make_vectorizer({g: i for i, g in enumerate(model.vocabulary_)})
            vec.fit(list(model.vocabulary_[:1]) or ["x"])  # sets up the fixed vocabulary; idf_ follows
            vec.idf_ = tensors["idf"]
            model.vectorizer_ = vec
        if model._uses_embedding:
            model.embedder_ = model._make_embedder()
        model._set_extra_state(meta)
        return model
