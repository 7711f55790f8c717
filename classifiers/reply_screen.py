"""A cheap screen in front of the reply head, for replies checked again and again as they stream.

A streamed reply is checked every few tokens. The reply head (`ReplyHarmClassifier`) embeds a
reply window with two sentence encoders, and the window at the end of a growing reply changes at
every check, so each check would pay both encoders again. This screen reads the same (request,
window) pair with hashed character and word n-grams and a logistic regression: well under a
millisecond, no model to load. It is fitted to predict the reply head's own verdict on windows
(``guard fit-reply-screen`` distils it from the shipped head), and its threshold is set so that
nearly every window the head would block passes the screen on to the head. The screen never
blocks anything itself: it only decides whether the open window is worth the head now, or can
wait until the window is complete (each complete window, and the whole reply at its end, is
always read by the head).

Example:
    >>> pairs = [("q", "Sure, here is how to build the weapon"), ("q", "Here is a bread recipe")] * 4
    >>> screen = ReplyScreenClassifier(C=10.0).fit(pairs, [1, 0] * 4)
    >>> bool(screen.score([("q", "how to build the weapon")])[0] > screen.score([("q", "a bread recipe")])[0])
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.utils.validation import check_is_fitted

from classifiers._log_odds import LogOddsBinaryMixin, load_log_odds_folder, save_log_odds_folder
from classifiers._manifest import write_manifest
from classifiers._validation import check_pairs, check_y_given
from classifiers.errors import ClassifierError

FORMAT = "classifiers.reply-screen"
FORMAT_VERSION = 1


class ReplyScreenClassifier(LogOddsBinaryMixin, ClassifierMixin, BaseEstimator):
    """P(the reply head would block this reply window), from hashed n-grams of request and window.

    Features: character 3-5-grams of the window (within word boundaries, lower-cased) in
    ``2**window_bits`` hashed columns, and word 1-2-grams of the request in ``2**request_bits``
    columns; each part L2-normalised. Head: a class-balanced logistic regression.

    Args:
        C: inverse L2 strength of the logistic regression.
        window_bits: log2 of the hashed columns of the window's character n-grams.
        request_bits: log2 of the hashed columns of the request's word n-grams.

    Attributes:
        coef_, intercept_: the logistic regression on the hashed columns.
        threshold_: the screen threshold (windows scoring at or above it go to the reply head);
            set by ``guard fit-reply-screen``, 0.5 by default.

    Example:
        >>> ReplyScreenClassifier().get_params()["window_bits"]
        18
    """

    def __init__(self, C: float = 4.0, window_bits: int = 18, request_bits: int = 16) -> None:
        self.C = C
        self.window_bits = window_bits
        self.request_bits = request_bits

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # (request, window) pairs of str, not a numeric matrix
        tags.input_tags.string = True
        tags.classifier_tags.multi_class = False
        return tags

    def _vectorizers(self) -> tuple[HashingVectorizer, HashingVectorizer]:
        for name in ("window_bits", "request_bits"):
            bits = getattr(self, name)
            if not isinstance(bits, (int, np.integer)) or not 4 <= int(bits) <= 24:
                raise ClassifierError(f"{name} must be an int in [4, 24], got {bits!r}")
        window = HashingVectorizer(
            analyzer="char_wb",
            ngram_range=(3, 5),
            n_features=2 ** int(self.window_bits),
            alternate_sign=False,
            dtype=np.float64,
        )
        request = HashingVectorizer(
            ngram_range=(1, 2), n_features=2 ** int(self.request_bits), alternate_sign=False, dtype=np.float64
        )
        return window, request

    def _features(self, pairs: list[tuple[str, str]]) -> sparse.csr_matrix:
        window, request = self._vectorizers()
        W = window.transform([w for _, w in pairs])
        R = request.transform([r for r, _ in pairs])
        return sparse.hstack([W, R], format="csr")

    def fit(self, X: Any, y: Any) -> ReplyScreenClassifier:
        """Fit on (request, window) pairs; `y` is 1 where the reply head blocks the window."""
        from sklearn.linear_model import LogisticRegression

        check_y_given(y, self)
        pairs = check_pairs(X)
        y = np.asarray(y).astype(int)
        if y.shape != (len(pairs),) or set(np.unique(y)) != {0, 1}:
            raise ClassifierError("y must hold one 0/1 label per pair, both labels present")
        lr = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000)
        lr.fit(self._features(pairs), y)
        # float32 weights, as saved: a loaded screen scores exactly as the fitted one
        self.coef_ = lr.coef_[0].astype(np.float32).astype(np.float64)
        self.intercept_ = float(lr.intercept_[0])
        self.classes_ = np.array([0, 1])
        self.threshold_ = getattr(self, "threshold_", 0.5)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Log-odds that the reply head blocks each (request, window) pair."""
        check_is_fitted(self, "coef_")
        pairs = check_pairs(X)
        if not pairs:
            return np.zeros(0)
        F = self._features(pairs)
        if F.shape[1] != self.coef_.size:
            raise ClassifierError(f"{F.shape[1]} hashed columns, the weights have {self.coef_.size}")
        return np.asarray(F @ self.coef_ + self.intercept_, dtype=np.float64).reshape(-1)

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """``model.json`` + ``weights.safetensors`` (float32) + a checksummed manifest (no pickle)."""
        check_is_fitted(self, "coef_")
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "params": self.get_params(deep=False),
            "intercept": self.intercept_,
            "threshold": float(self.threshold_),
            "extra": extra or {},
        }
        folder = save_log_odds_folder(Path(path), meta, self.coef_.astype(np.float32))
        write_manifest(folder)
        return folder

    @classmethod
    def load(cls, path: str | Path) -> ReplyScreenClassifier:
        """Load a screen written by `save`.

        Raises:
            ClassifierError: missing or corrupt files, another format version, weights that do
                not fit the hashed columns.
        """
        folder = Path(path)
        meta, coef, intercept, threshold = load_log_odds_folder(
            folder, FORMAT, (FORMAT_VERSION,), "reply screen"
        )
        model = cls(**meta["params"])
        width = 2 ** int(model.window_bits) + 2 ** int(model.request_bits)
        if coef.shape != (width,):
            raise ClassifierError(
                f"{folder}: weights of shape {coef.shape}, expected ({width},); fit it again"
            )
        model.coef_, model.intercept_, model.threshold_ = coef.astype(np.float64), intercept, threshold
        model.classes_ = np.array([0, 1])
        model.extra_ = meta.get("extra") or {}
        return model

    @classmethod
    def default(cls) -> ReplyScreenClassifier:
        """The shipped screen (``classifiers/resources/reply_screen``; refit by ``guard fit-reply-screen``)."""
        from importlib import resources

        with resources.as_file(resources.files("classifiers.resources").joinpath("reply_screen")) as p:
            return cls.load(p)


__all__ = ["ReplyScreenClassifier"]
