"""A small non-linear harm head on several sentence encoders at once (MiniLM and USE-multilingual).

The linear heads read one encoder each (`PromptRefusalPredictor` on MiniLM, on USE); a
one-hidden-layer perceptron on the vectors side by side learns interactions a linear head
cannot (an edgy word in a benign frame), and was the best black-box head under grouped
(source, form) validation (README, "Measured quality"). ``encoders`` may add all-mpnet-base-v2
(``"mpnet"``, `classifiers.mpnet`): better on the grouped folds, worse on the external sets, so
not the default (README, "Feature models"). Fitted with scikit-learn's
`MLPClassifier` (early stopping on a held-out tenth) behind a `StandardScaler`; saved as
safetensors + JSON and run by a numpy forward pass, so loading needs neither pickle nor the
sklearn object.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> E = rng.normal(size=(200, 8)).astype(np.float32); y = (E[:, 0] * E[:, 1] > 0).astype(int)
    >>> head = HarmMLPClassifier(hidden_layer_sizes=(16,), alpha=1e-3, max_iter=500).fit_embeddings(E, y)
    >>> head.predict_proba_embeddings(E).shape
    (200, 2)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from classifiers._deps import require
from classifiers._validation import check_texts, check_y_given
from classifiers.errors import ClassifierError

FORMAT = "classifiers.harm-mlp"
FORMAT_VERSION = 1
#: The encoders whose vectors are concatenated, in order.
ENCODERS: tuple[str, ...] = ("minilm", "use_multilingual")
#: Every encoder a head may read (`encoders`), in the order their vectors are concatenated.
KNOWN_ENCODERS: tuple[str, ...] = ("minilm", "use_multilingual", "mpnet")


def _encoder(name: str) -> Any:
    if name == "minilm":
        from classifiers.embeddings import SentenceEmbedder

        return SentenceEmbedder()
    if name == "use_multilingual":
        from classifiers.multilingual import MultilingualEmbedder

        return MultilingualEmbedder()
    if name == "mpnet":
        from classifiers.mpnet import MpnetEmbedder

        return MpnetEmbedder()
    raise ClassifierError(f"unknown encoder {name!r}; known: {list(KNOWN_ENCODERS)}")


class HarmMLPClassifier(ClassifierMixin, BaseEstimator):
    """P(harmful) of a text from a one-hidden-layer perceptron on its MiniLM + USE vectors.

    Args:
        hidden_layer_sizes: widths of the hidden layers (ReLU).
        alpha: L2 penalty (larger: smoother; 1.0 chose itself under grouped validation).
        max_iter: training epochs at most (early stopping usually ends sooner).
        random_state: seed of the weights' initialisation and the early-stopping split.
        encoders: which sentence encoders feed the head, concatenated in this order.

    Example:
        >>> HarmMLPClassifier().get_params()["encoders"]
        ('minilm', 'use_multilingual')
    """

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (128,),
        alpha: float = 1.0,
        max_iter: int = 300,
        random_state: int = 0,
        encoders: tuple[str, ...] = ENCODERS,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.max_iter = max_iter
        self.random_state = random_state
        self.encoders = encoders

    # ------------------------------------------------------------------ sklearn plumbing
    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # `fit` and `predict_proba` read texts (`*_embeddings`: vectors)
        tags.input_tags.string = True
        tags.classifier_tags.multi_class = False  # two classes: benign and harmful
        return tags

    # ------------------------------------------------------------------ features
    def embed(self, X: Any) -> np.ndarray:
        """The concatenated encoder vectors of texts `X`: ``[len(X), sum of dims]`` float32."""
        texts = check_texts(X)
        return np.hstack([_encoder(name).transform(texts) for name in self.encoders]).astype(np.float32)

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any) -> HarmMLPClassifier:
        """Fit on texts `X` with labels `y` (1 = harmful)."""
        check_y_given(y, self)  # before embedding anything
        return self.fit_embeddings(self.embed(X), y)

    def fit_embeddings(self, E: Any, y: Any) -> HarmMLPClassifier:
        """Fit on precomputed vectors `E` (``embed``'s layout) and labels `y`."""
        from sklearn.neural_network import MLPClassifier
        from sklearn.preprocessing import StandardScaler
        from sklearn.utils.multiclass import check_classification_targets
        from sklearn.utils.validation import check_X_y

        E, y = check_X_y(E, y, dtype=np.float64)
        check_classification_targets(y)
        classes = np.unique(y)
        if classes.size != 2:
            raise ClassifierError(f"HarmMLPClassifier needs two classes, got {classes.tolist()}")
        scaler = StandardScaler().fit(E)
        mlp = MLPClassifier(
            tuple(self.hidden_layer_sizes),
            alpha=self.alpha,
            max_iter=self.max_iter,
            early_stopping=True,
            random_state=self.random_state,
        )
        mlp.fit(scaler.transform(E), y)
        self.classes_ = classes
        self.mean_ = scaler.mean_.astype(np.float32)
        self.scale_ = scaler.scale_.astype(np.float32)
        self.coefs_ = [c.astype(np.float32) for c in mlp.coefs_]
        self.intercepts_ = [b.astype(np.float32) for b in mlp.intercepts_]
        self.n_features_in_ = E.shape[1]
        return self

    # ------------------------------------------------------------------ prediction
    def predict_proba_embeddings(self, E: Any) -> np.ndarray:
        """``[n, 2]`` class probabilities of precomputed vectors."""
        check_is_fitted(self, "coefs_")
        E = np.asarray(E, dtype=np.float32)
        if E.ndim != 2 or E.shape[1] != self.n_features_in_:
            raise ClassifierError(f"expected vectors of width {self.n_features_in_}, got shape {E.shape}")
        Z = (E - self.mean_) / self.scale_
        for W, b in zip(self.coefs_[:-1], self.intercepts_[:-1]):
            Z = np.maximum(Z @ W + b, 0.0)
        logit = (Z @ self.coefs_[-1] + self.intercepts_[-1])[:, 0].astype(np.float64)
        p = 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))
        return np.stack([1.0 - p, p], axis=1)

    def predict_proba(self, X: Any) -> np.ndarray:
        """``[len(X), 2]`` probabilities of (benign, harmful) for texts `X`."""
        check_is_fitted(self, "coefs_")
        return self.predict_proba_embeddings(self.embed(X))

    def predict(self, X: Any) -> np.ndarray:
        """The more probable class of each text."""
        check_is_fitted(self, "coefs_")  # NotFittedError, not an AttributeError on classes_
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]

    def harm_score(self, X: Any) -> np.ndarray:
        """P(harmful) of each text (the guard's ``combined_harm`` evidence)."""
        return self.predict_proba(X)[:, 1]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``model.json`` + ``weights.safetensors`` + a sha256 manifest (no pickle)."""
        check_is_fitted(self, "coefs_")
        st = require("safetensors.numpy")
        from classifiers._manifest import write_manifest

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        params = {
            **self.get_params(),
            "hidden_layer_sizes": list(self.hidden_layer_sizes),
            "encoders": list(self.encoders),
        }
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "estimator": type(self).__name__,
            "params": params,
            "classes": self.classes_.tolist(),
            "n_layers": len(self.coefs_),
            "n_features_in": int(self.n_features_in_),
        }
        tensors = {"mean": self.mean_, "scale": self.scale_}
        for k, (W, b) in enumerate(zip(self.coefs_, self.intercepts_)):
            tensors[f"coef_{k}"], tensors[f"intercept_{k}"] = np.ascontiguousarray(W), np.ascontiguousarray(b)
        st.save_file(tensors, str(folder / "weights.safetensors"))
        (folder / "model.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        write_manifest(folder)
        return folder

    @classmethod
    def load(cls, path: str | Path) -> HarmMLPClassifier:
        """Load a head written by `save`.

        Raises:
            ClassifierError: no head there, a changed file, or another format or version.
        """
        st = require("safetensors.numpy")
        from classifiers._manifest import verify_manifest

        folder = Path(path)
        if not (folder / "model.json").is_file() or not (folder / "weights.safetensors").is_file():
            raise ClassifierError(
                f"{folder} holds no saved HarmMLPClassifier (model.json, weights.safetensors)"
            )
        verify_manifest(folder, required=("model.json", "weights.safetensors"))
        try:
            meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
            tensors = st.load_file(str(folder / "weights.safetensors"))
        except Exception as exc:  # noqa: BLE001 (corrupt files of any kind)
            raise ClassifierError(f"{folder}: unreadable saved head ({exc}); save it again") from None
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ClassifierError(
                f"{folder}: format {meta.get('format')!r} v{meta.get('format_version')}, "
                f"expected {FORMAT!r} v{FORMAT_VERSION}"
            )
        p = meta["params"]
        head = cls(
            hidden_layer_sizes=tuple(p["hidden_layer_sizes"]),
            alpha=p["alpha"],
            max_iter=p["max_iter"],
            random_state=p["random_state"],
            encoders=tuple(p["encoders"]),
        )
        n = int(meta["n_layers"])
        try:
            head.coefs_ = [tensors[f"coef_{k}"] for k in range(n)]
            head.intercepts_ = [tensors[f"intercept_{k}"] for k in range(n)]
            head.mean_, head.scale_ = tensors["mean"], tensors["scale"]
        except KeyError as exc:
            raise ClassifierError(f"{folder}: weights file lacks {exc}; save it again") from None
        head.classes_ = np.asarray(meta["classes"])
        head.n_features_in_ = int(meta["n_features_in"])
        if head.mean_.shape != (head.n_features_in_,) or head.coefs_[0].shape[0] != head.n_features_in_:
            raise ClassifierError(f"{folder}: model.json and weights.safetensors disagree on the input width")
        return head


__all__ = ["ENCODERS", "FORMAT", "FORMAT_VERSION", "HarmMLPClassifier"]
