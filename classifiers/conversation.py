"""`ConversationHarmClassifier`: is this conversation, taken as a whole, heading somewhere harmful?

Multi-turn escalation ("crescendo") splits a harmful request over turns that each read as
harmless; a guard that reads only the last message, or each message alone, lets it through. This
head reads the user's side of the conversation: the embedding of its most recent turns joined
(`recent` of them) and the mean embedding of all its turns, and a logistic head says whether the
trajectory as a whole seeks harmful help. Its cost is bounded: at most `max_turns` turns are read.

Example:
    >>> import numpy as np
    >>> class Bag:  # a keyword embedder standing in for MiniLM
    ...     def transform(self, texts):
    ...         return np.array([[t.count(w) for w in ("bread", "hi", "chemistry", "explosive", "steps")]
    ...                          for t in texts], dtype=float)
    >>> clf = ConversationHarmClassifier(embedder=Bag())
    >>> convs = [["hi", "bake bread?"], ["chemistry?", "explosive?", "exact steps?"]] * 4
    >>> clf.fit(convs, [0, 1] * 4).predict([["chemistry?", "explosive?", "exact steps?"]]).tolist()
    [1]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from classifiers._deps import require
from classifiers._manifest import verify_manifest, write_manifest
from classifiers._validation import check_texts, check_y_given
from classifiers.errors import ClassifierError

FORMAT = "classifiers.conversation-harm"
FORMAT_VERSION = 1
DEFAULT_RESOURCE = "conversation_harm"


def _check_conversations(X: Any) -> list[list[str]]:
    if isinstance(X, (str, bytes)) or not isinstance(X, Sequence):
        raise ClassifierError("X must be a list of conversations, each a list of the user's turns (str)")
    out = []
    for i, conv in enumerate(X):
        if isinstance(conv, (str, bytes)) or not isinstance(conv, Sequence) or not conv:
            raise ClassifierError(f"X[{i}] must be a non-empty list of user turns")
        out.append(check_texts(list(conv), name=f"X[{i}]"))
    return out


class ConversationHarmClassifier(ClassifierMixin, BaseEstimator):
    """P(the conversation seeks harmful help) from the user's turns.

    Args:
        recent: how many of the latest user turns are joined into the "recent" text.
        max_turns: at most this many (latest) turns are read (bounded cost).
        C: inverse L2 strength of the logistic regression.
        embedder: a text -> vector transformer (default: MiniLM `SentenceEmbedder`).

    Attributes:
        coef_, intercept_: the head on ``[recent embedding, mean turn embedding]``.
        threshold_: the decision threshold chosen when fitting; 0.5 by default.
    """

    def __init__(self, recent: int = 3, max_turns: int = 64, C: float = 2.0, embedder: Any = None) -> None:
        self.recent = recent
        self.max_turns = max_turns
        self.C = C
        self.embedder = embedder

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # conversations: lists of user turns (str)
        tags.input_tags.string = True
        tags.classifier_tags.multi_class = False  # harmful trajectory (1) or not (0)
        return tags

    def _embedder(self) -> Any:
        if self.embedder is not None:
            return self.embedder
        from classifiers.embeddings import SentenceEmbedder

        # made per call, not kept on self: it is only parameters (the loaded model is shared per
        # process), and an estimator that stores nothing while predicting pickles after use
        return SentenceEmbedder()

    def features(self, X: Any) -> np.ndarray:
        """``[n, 2 d]``: the recent turns' joint embedding and the mean embedding of all turns."""
        convs = [c[-int(self.max_turns) :] for c in _check_conversations(X)]
        recent = ["\n".join(c[-int(self.recent) :]) for c in convs]
        turns = [t for c in convs for t in c]
        emb = self._embedder()
        R = np.asarray(emb.transform(recent), dtype=np.float64)
        T = np.asarray(emb.transform(turns), dtype=np.float64)
        owner = np.repeat(np.arange(len(convs)), [len(c) for c in convs])
        M = np.zeros((len(convs), T.shape[1]))
        np.add.at(M, owner, T)
        M /= np.bincount(owner, minlength=len(convs))[:, None]
        return np.hstack([R, M])

    def fit(self, X: Any, y: Any) -> ConversationHarmClassifier:
        """Fit on conversations (lists of user turns) and 0/1 labels."""
        check_y_given(y, self)
        return self.fit_features(self.features(X), y)

    def fit_features(self, F: np.ndarray, y: Any) -> ConversationHarmClassifier:
        """Fit on `features` already computed (fitting code computes them once)."""
        from sklearn.linear_model import LogisticRegression

        check_y_given(y, self)
        y = np.asarray(y).astype(int)
        if F.ndim != 2 or F.shape[0] != y.size or set(np.unique(y)) != {0, 1}:
            raise ClassifierError(
                "need one feature row and one 0/1 label per conversation, both labels present"
            )
        lr = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000).fit(F, y)
        self.coef_ = lr.coef_[0].astype(np.float64)
        self.intercept_ = float(lr.intercept_[0])
        self.classes_ = np.array([0, 1])
        self.threshold_ = getattr(self, "threshold_", 0.5)
        return self

    def score_features(self, F: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "coef_")
        return 1.0 / (1.0 + np.exp(-(np.asarray(F) @ self.coef_ + self.intercept_)))

    def harm_score(self, X: Any) -> np.ndarray:
        """P(harmful trajectory) per conversation."""
        check_is_fitted(self, "coef_")  # before embedding anything
        return self.score_features(self.features(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        p = self.harm_score(X)
        return np.column_stack([1 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        return (self.harm_score(X) >= self.threshold_).astype(int)

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path, report: dict[str, Any] | None = None) -> Path:
        """``model.json`` + ``weights.safetensors`` + manifest (no pickle)."""
        check_is_fitted(self, "coef_")
        st = require("safetensors.numpy")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        params = {k: v for k, v in self.get_params(deep=False).items() if k != "embedder"}
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "params": params,
            "intercept": self.intercept_,
            "threshold": float(self.threshold_),
            "report": report or {},
        }
        (folder / "model.json").write_text(json.dumps(meta, indent=1, default=float), encoding="utf-8")
        st.save_file({"coef": np.ascontiguousarray(self.coef_)}, str(folder / "weights.safetensors"))
        write_manifest(folder)
        return folder

    @classmethod
    def load(cls, path: str | Path) -> ConversationHarmClassifier:
        """Load a model written by `save` (checksums verified).

        Raises:
            ClassifierError: missing, corrupt or invalid files.
        """
        st = require("safetensors.numpy")
        folder = Path(path)
        verify_manifest(folder, required=("model.json", "weights.safetensors"))
        try:
            meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
            coef = st.load_file(str(folder / "weights.safetensors"))["coef"]
        except Exception as exc:  # noqa: BLE001
            raise ClassifierError(f"{folder}: no readable conversation model ({exc})") from None
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ClassifierError(f"{folder}: not a {FORMAT} v{FORMAT_VERSION} model")
        model = cls(**meta["params"])
        model.coef_, model.intercept_ = coef.astype(np.float64), float(meta["intercept"])
        model.threshold_ = float(meta["threshold"])
        if not (
            np.isfinite(model.coef_).all() and np.isfinite(model.intercept_) and 0 <= model.threshold_ <= 1
        ):
            raise ClassifierError(f"{folder}: invalid weights or threshold")
        model.classes_ = np.array([0, 1])
        model.report_ = meta.get("report", {})
        return model

    @classmethod
    def default(cls) -> ConversationHarmClassifier:
        """The shipped head (``classifiers/resources/conversation_harm``; ``guard fit-conversation``)."""
        with resources.as_file(resources.files("classifiers.resources").joinpath(DEFAULT_RESOURCE)) as p:
            return cls.load(p)


__all__ = ["ConversationHarmClassifier"]
