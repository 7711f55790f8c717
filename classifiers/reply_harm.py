"""Is this reply harmful? A reply-side head for `check_output`, fitted on (request, reply) pairs.

A request-side head reads a reply as if it were a request and is worse than chance on real
replies: a helpful answer about a dark topic looks like a harmful request, a compliant harmful
reply looks like an answer. This head reads both sides: the embedding of the request and the
embedding of each window of the reply, and the most harmful reply window decides, so a harmful
passage cannot hide after pages of benign text. With ``multilingual=True`` the USE-multilingual
vectors of both sides are read too, and ``head="mlp"`` puts a small perceptron
(`classifiers.harm_mlp.HarmMLPClassifier`) where the logistic regression was: the recipe that
won the grouped validation of `guard fit` (README, reply side).

Example:
    >>> clf = ReplyHarmClassifier().fit([("q", "a"), ("q2", "b")], [0, 1])  # doctest: +SKIP
    >>> clf.score([("How do I ...?", "Sure! Step 1 ...")])  # doctest: +SKIP
    array([0.93])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from classifiers._log_odds import LogOddsBinaryMixin, load_log_odds_folder, save_log_odds_folder
from classifiers._manifest import write_manifest
from classifiers._validation import check_pairs, check_y_given
from classifiers.errors import ClassifierError

FORMAT = "classifiers.reply-harm"
FORMAT_VERSION = 2
#: Versions `load` reads (1: a linear head on MiniLM only, before the `head`/`multilingual` params).
READABLE_VERSIONS = (1, 2)
MLP_FOLDER = "mlp"


def reply_windows(reply: str, chars: int = 400, stride: int = 300) -> list[str]:
    """Overlapping character windows of a reply, short enough that a harmful paragraph is not
    diluted by the benign text around it (MiniLM averages over its tokens).

    Example:
        >>> [len(w) for w in reply_windows("x" * 1100)]
        [400, 400, 400, 200]
    """
    if len(reply) <= chars:
        return [reply]
    starts = list(range(0, len(reply) - chars + 1, stride))
    if starts[-1] + chars < len(reply):
        starts.append(starts[-1] + stride)
    return [reply[s : s + chars] for s in starts]


class ReplyHarmClassifier(LogOddsBinaryMixin, ClassifierMixin, BaseEstimator):
    """P(a reply is harmful: it carries out an unsafe request) from request and reply embeddings.

    Args:
        C: inverse L2 strength of the logistic regression (``head="linear"``).
        window_chars: reply window length in characters; `stride` apart.
        stride: step between reply windows.
        embedder: a text -> vector transformer (default: MiniLM `SentenceEmbedder`).
        head: ``"linear"`` (logistic regression) or ``"mlp"`` (`HarmMLPClassifier` defaults).
        multilingual: also read the USE-multilingual vectors of the request and of each window.
        random_state: seed of the MLP head.

    Attributes:
        coef_, intercept_: the linear head on ``[request, reply window]`` vectors (linear head).
        mlp_: the fitted `HarmMLPClassifier` (MLP head).
        threshold_: the decision threshold chosen when fitting (``guard fit``); 0.5 by default.

    Example:
        >>> ReplyHarmClassifier().get_params()["window_chars"]
        400
    """

    def __init__(
        self,
        C: float = 2.0,
        window_chars: int = 400,
        stride: int = 300,
        embedder: Any = None,
        head: str = "linear",
        multilingual: bool = False,
        random_state: int = 0,
    ) -> None:
        self.C = C
        self.window_chars = window_chars
        self.stride = stride
        self.embedder = embedder
        self.head = head
        self.multilingual = multilingual
        self.random_state = random_state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # (request, reply) pairs of str, not a numeric matrix
        tags.input_tags.string = True
        tags.classifier_tags.multi_class = False  # harmful (1) or not (0)
        return tags

    def _embedder(self) -> Any:
        if self.embedder is not None:
            return self.embedder
        from classifiers.embeddings import SentenceEmbedder

        # made per call, not kept on self: it is only parameters (the loaded model is shared per
        # process), and an estimator that stores nothing while predicting pickles after use
        return SentenceEmbedder(cache=False)

    def _features(self, pairs: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``[request, window]`` for every reply window, and the pair each row belongs to."""
        windows: list[str] = []
        owner: list[int] = []
        for i, (_, reply) in enumerate(pairs):
            for w in reply_windows(reply, self.window_chars, self.stride):
                windows.append(w)
                owner.append(i)
        emb = self._embedder()
        requests = [p for p, _ in pairs]
        P = np.asarray(emb.transform(requests), dtype=np.float64)
        W = np.asarray(emb.transform(windows), dtype=np.float64)
        own = np.asarray(owner)
        parts = [P[own], W]
        if self.multilingual:
            from classifiers.multilingual import MultilingualEmbedder

            use = MultilingualEmbedder()
            parts += [
                np.asarray(use.transform(requests), dtype=np.float64)[own],
                np.asarray(use.transform(windows), dtype=np.float64),
            ]
        return np.hstack(parts), own

    def _fit_head(self, F: np.ndarray, y: np.ndarray) -> Any:
        if self.head == "mlp":
            from classifiers.harm_mlp import HarmMLPClassifier

            return HarmMLPClassifier(random_state=self.random_state).fit_embeddings(F, y)
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000).fit(F, y)

    @staticmethod
    def _head_logits(head: Any, F: np.ndarray) -> np.ndarray:
        if hasattr(head, "predict_proba_embeddings"):
            p = np.clip(head.predict_proba_embeddings(F)[:, 1], 1e-12, 1 - 1e-12)
            return np.log(p / (1 - p))
        return head.decision_function(F)

    def fit(self, X: Any, y: Any) -> ReplyHarmClassifier:
        """Fit on (request, reply) pairs; `y` is 1 for harmful replies. Every window of a harmful
        reply is taken as harmful only when the reply has one window; longer harmful replies
        give their most harmful window under a first fit."""
        if self.head not in ("linear", "mlp"):
            raise ClassifierError(f"head must be 'linear' or 'mlp', got {self.head!r}")
        check_y_given(y, self)
        pairs = check_pairs(X)
        y = np.asarray(y).astype(int)
        if y.shape != (len(pairs),) or set(np.unique(y)) != {0, 1}:
            raise ClassifierError("y must hold one 0/1 label per pair, both labels present")
        F, own = self._features(pairs)
        n_win = np.bincount(own, minlength=len(pairs))
        simple = (y[own] == 0) | (n_win[own] == 1)
        head = self._fit_head(F[simple], y[own][simple])
        if (~simple).any():
            s = self._head_logits(head, F)
            keep = simple.copy()
            for i in np.flatnonzero((y == 1) & (n_win > 1)):
                rows = np.flatnonzero(own == i)
                keep[rows[np.argmax(s[rows])]] = True
            head = self._fit_head(F[keep], y[own][keep])
        if self.head == "mlp":
            self.mlp_ = head
            self.coef_, self.intercept_ = np.zeros(0), 0.0
        else:
            self.mlp_ = None
            self.coef_ = head.coef_[0].astype(np.float64)
            self.intercept_ = float(head.intercept_[0])
        self.classes_ = np.array([0, 1])
        self.threshold_ = getattr(self, "threshold_", 0.5)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Log-odds of the most harmful reply window, per pair."""
        check_is_fitted(self, "coef_")
        pairs = check_pairs(X)
        if not pairs:
            return np.zeros(0)
        F, own = self._features(pairs)
        mlp = getattr(self, "mlp_", None)
        s = self._head_logits(mlp, F) if mlp is not None else F @ self.coef_ + self.intercept_
        out = np.full(len(pairs), -np.inf)
        np.maximum.at(out, own, s)
        return out

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """``model.json`` + ``weights.safetensors`` (no pickle)."""
        check_is_fitted(self, "coef_")
        params = {k: v for k, v in self.get_params(deep=False).items() if k != "embedder"}
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "params": params,
            "intercept": self.intercept_,
            "threshold": float(self.threshold_),
            "extra": extra or {},
        }
        folder = save_log_odds_folder(Path(path), meta, self.coef_)
        if getattr(self, "mlp_", None) is not None:
            self.mlp_.save(folder / MLP_FOLDER)
        write_manifest(folder)
        return folder

    @classmethod
    def load(cls, path: str | Path) -> ReplyHarmClassifier:
        """Load a model written by `save`.

        Raises:
            ClassifierError: missing or corrupt files, another format version.
        """
        folder = Path(path)
        meta, coef, intercept, threshold = load_log_odds_folder(
            folder, FORMAT, READABLE_VERSIONS, "reply-harm model"
        )
        model = cls(**meta["params"])
        model.coef_, model.intercept_, model.threshold_ = coef.astype(np.float64), intercept, threshold
        model.mlp_ = None
        if model.head == "mlp":
            from classifiers.harm_mlp import HarmMLPClassifier

            model.mlp_ = HarmMLPClassifier.load(folder / MLP_FOLDER)
        elif model.head != "linear" or coef.size == 0:
            raise ClassifierError(f"{folder}: head {model.head!r} without its weights; fit it again")
        model.classes_ = np.array([0, 1])
        return model

    @classmethod
    def default(cls) -> ReplyHarmClassifier:
        """The shipped head (``classifiers/resources/reply_harm``; refit by ``guard fit``)."""
        from importlib import resources

        with resources.as_file(resources.files("classifiers.resources").joinpath("reply_harm")) as p:
            return cls.load(p)


__all__ = ["ReplyHarmClassifier", "reply_windows"]
