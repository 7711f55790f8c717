"""`TsetlinRuleClassifier`: an interpretable rule view of text categories.

A Tsetlin Machine (Granmo et al.; "Using the Tsetlin Machine to Learn Human-Interpretable Rules
for High-Accuracy Text Categorization") learns conjunctive clauses over word presence and
absence, e.g. ``"build" AND "bomb" AND NOT "history" -> violence_weapons``. Fitting uses the
``pyTsetlinMachine`` package (optional: the ``rules`` extra; it compiles a small C library).
The learned clauses are then read out and stored as JSON, and prediction runs them in numpy, so a
fitted or shipped rule set needs neither that package nor pickle. (``tmu``, the newer package,
installs here but fails at start-up with numpy 2: ``np.uint32(~0)`` overflows.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from classifiers._deps import require
from classifiers._linear import TOKEN_PATTERN, preprocess
from classifiers._validation import DEFAULT_MAX_CHARS, check_texts, check_y_given
from classifiers.errors import ClassifierError

FORMAT = "classifiers.tsetlin-rules"
FORMAT_VERSION = 1


class Rule(BaseModel):
    """One positive clause: a conjunction of words present (and absent) that votes for `label`.

    Attributes:
        label: the class it votes for.
        words: words that must be present.
        absent: words that must be absent.
        weight: the clause's vote.
        support: training texts of `label` it fires on.
        precision: share of the training texts it fires on that are of `label`.
    """

    model_config = ConfigDict(frozen=True)

    label: str
    words: list[str]
    absent: list[str]
    weight: float
    support: int
    precision: float

    def __str__(self) -> str:
        parts = [f'"{w}"' for w in self.words] + [f'NOT "{w}"' for w in self.absent]
        return f"{' AND '.join(parts)} -> {self.label}"


class TsetlinRuleClassifier(ClassifierMixin, BaseEstimator):
    """Categorise texts with learned, readable AND/NOT word clauses.

    Args:
        n_clauses: clauses per class (half vote for the class, half against).
        T: the vote margin a class aims for (the Tsetlin Machine's threshold).
        s: specificity; larger learns longer, more specific clauses.
        epochs: training passes.
        max_features: vocabulary size (most frequent words).
        min_df: drop words seen in fewer texts than this.
        max_literals: at most this many words per clause, so rules stay readable.
        max_chars: characters kept per text.

    Attributes:
        classes_: the labels, sorted; `decision_function` columns follow it.
        vocabulary_: the words, in feature order.

    Example:
        >>> texts = ["build a bomb", "history of the bomb", "bake bread", "build a shed"] * 10
        >>> labels = ["weapons", "benign", "benign", "benign"] * 10
        >>> tm = TsetlinRuleClassifier(n_clauses=10, epochs=20).fit(texts, labels)  # doctest: +SKIP
        >>> str(tm.rules(top=1)[0])  # doctest: +SKIP
        '"bomb" AND NOT "history" -> weapons'
    """

    def __init__(
        self,
        n_clauses: int = 40,
        T: int = 20,
        s: float = 5.0,
        epochs: int = 30,
        max_features: int = 1000,
        min_df: int = 2,
        max_literals: int | None = 4,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        self.n_clauses = n_clauses
        self.T = T
        self.s = s
        self.epochs = epochs
        self.max_features = max_features
        self.min_df = min_df
        self.max_literals = max_literals
        self.max_chars = max_chars

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        # fitting draws from libc's rand(), which pyTsetlinMachine never seeds: two fits on the same
        # texts learn different clauses (prediction from fitted clauses is deterministic numpy)
        tags.non_deterministic = True
        return tags

    def _binarize(self, texts: list[str]) -> np.ndarray:
        from sklearn.feature_extraction.text import CountVectorizer

        vec = CountVectorizer(
            preprocessor=preprocess,
            token_pattern=TOKEN_PATTERN,
            binary=True,
            vocabulary={w: i for i, w in enumerate(self.vocabulary_)},
        )
        return (vec.transform(texts).toarray() > 0).astype(np.uint32)

    def fit(self, X: Any, y: Any) -> TsetlinRuleClassifier:
        """Learn clauses from texts `X` and string labels `y`.

        Raises:
            ClassifierError: bad texts or labels, a single class, or no usable words.
            MissingDependencyError: ``pyTsetlinMachine`` is not installed.
        """
        from sklearn.feature_extraction.text import CountVectorizer

        check_y_given(y, self)
        texts = check_texts(X, "X", self.max_chars)
        labels = np.asarray(list(y), dtype=object)
        if labels.shape != (len(texts),) or not all(isinstance(v, str) for v in labels):
            raise ClassifierError(
                f"y must hold one string label per text ({len(texts)}), got "
                f"{labels.shape[0] if labels.ndim else 'a scalar'} values "
                f"of types {sorted({type(v).__name__ for v in labels})}"
            )
        classes = np.unique(labels.astype(str)).astype(object)
        if len(classes) < 2:
            raise ClassifierError(f"y holds a single class ({classes[0]!r}); fitting needs two or more")
        for name in ("n_clauses", "T", "epochs", "max_features", "min_df"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ClassifierError(f"{name} must be a positive int, got {value!r}")
        if self.n_clauses % 2:
            raise ClassifierError(
                f"n_clauses must be even (half vote for, half against), got {self.n_clauses}"
            )
        tm_mod = require("pyTsetlinMachine.tm")
        vec = CountVectorizer(
            preprocessor=preprocess,
            token_pattern=TOKEN_PATTERN,
            binary=True,
            stop_words="english",
            min_df=self.min_df,
            max_features=self.max_features,
        )
        try:
            vec.fit(texts)
        except ValueError as exc:
            raise ClassifierError(
                f"no usable words in these texts ({exc}); lower min_df or pass more text"
            ) from None
        self.vocabulary_ = vec.get_feature_names_out().astype(str)
        Xb = self._binarize(texts)
        y_idx = np.searchsorted(classes, labels).astype(np.uint32)
        n_feat = Xb.shape[1]
        tm = tm_mod.MultiClassTsetlinMachine(
            self.n_clauses,
            self.T,
            self.s,
            weighted_clauses=True,
            max_included_literals=self.max_literals or 2 * n_feat,
        )
        tm.fit(Xb, y_idx, epochs=self.epochs)
        include = np.zeros((len(classes), self.n_clauses, 2 * n_feat), dtype=bool)
        for k in range(len(classes)):
            for j in range(self.n_clauses):
                for lit in range(2 * n_feat):
                    include[k, j, lit] = tm.ta_action(k, j, lit) == 1
        weights = np.stack([np.asarray(state[0], dtype=np.float64) for state in tm.get_state()])
        self.classes_ = classes
        self.include_ = include
        self.clause_weights_ = weights
        self.sign_ = np.where(np.arange(self.n_clauses) % 2 == 0, 1.0, -1.0)
        self.train_accuracy_ = float((self._predict_binary(Xb) == y_idx).mean())
        self.native_agreement_ = float((tm.predict(Xb) == self._predict_binary(Xb)).mean())
        self._fit_rule_stats(Xb, y_idx)
        return self

    def _clause_outputs(self, Xb: np.ndarray) -> np.ndarray:
        literals = np.concatenate([Xb, 1 - Xb], axis=1).astype(np.float32)  # (n, 2F)
        inc = self.include_.astype(np.float32)  # (k, m, 2F)
        need = inc.sum(axis=2)  # literals each clause needs
        hits = np.einsum("nf,kmf->nkm", literals, inc)
        return (hits == need[None]) & (need[None] > 0)  # empty clauses output 0 when predicting

    def _scores_binary(self, Xb: np.ndarray) -> np.ndarray:
        out = self._clause_outputs(Xb).astype(np.float64)
        votes = np.einsum("nkm,km,m->nk", out, self.clause_weights_, self.sign_)
        return np.clip(votes, -self.T, self.T)

    def _predict_binary(self, Xb: np.ndarray) -> np.ndarray:
        return np.argmax(self._scores_binary(Xb), axis=1)

    def _fit_rule_stats(self, Xb: np.ndarray, y_idx: np.ndarray) -> None:
        out = self._clause_outputs(Xb)  # (n, k, m)
        same = out & (y_idx[:, None, None] == np.arange(len(self.classes_))[None, :, None])
        self.support_ = same.sum(axis=0)
        fired = out.sum(axis=0)
        self.precision_ = np.where(fired > 0, self.support_ / np.maximum(fired, 1), 0.0)

    def decision_function(self, X: Any) -> np.ndarray:
        """Clipped class votes ``(n, n_classes)`` in ``[-T, T]``; columns follow ``classes_``."""
        check_is_fitted(self, "include_")
        return self._scores_binary(self._binarize(check_texts(X, "X", self.max_chars)))

    def predict(self, X: Any) -> np.ndarray:
        """The class with the most votes (the first on ties, as the Tsetlin Machine does)."""
        check_is_fitted(self, "include_")
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def rules(self, top: int = 10, label: str | None = None, min_support: int = 2) -> list[Rule]:
        """The learned positive clauses as readable rules, most useful first.

        Ranked by precision times support on the training texts; clauses with only absent words
        are left out (they say what a text is not, not what it is).

        Example:
            >>> [str(r) for r in TsetlinRuleClassifier.default().rules(top=2)]  # doctest: +SKIP
            ['"bomb" AND "make" -> violence_weapons', '"hack" -> cybercrime_malware']
        """
        check_is_fitted(self, "include_")
        n_feat = len(self.vocabulary_)
        out: list[tuple[float, Rule]] = []
        for k, cls in enumerate(self.classes_):
            if label is not None and str(cls) != label:
                continue
            for j in np.flatnonzero(self.sign_ > 0):
                lits = np.flatnonzero(self.include_[k, j])
                words = [str(self.vocabulary_[i]) for i in lits if i < n_feat]
                if not words or self.support_[k, j] < min_support:
                    continue
                absent = [str(self.vocabulary_[i - n_feat]) for i in lits if i >= n_feat]
                rule = Rule(
                    label=str(cls),
                    words=words,
                    absent=absent,
                    weight=float(self.clause_weights_[k, j]),
                    support=int(self.support_[k, j]),
                    precision=float(self.precision_[k, j]),
                )
                out.append((rule.precision * rule.support, rule))
        out.sort(key=lambda t: -t[0])
        seen: set[str] = set()
        ranked = []
        for _, rule in out:
            if str(rule) not in seen:
                seen.add(str(rule))
                ranked.append(rule)
        return ranked[:top]

    def save(self, path: str | Path) -> Path:
        """Write the rules to one JSON file (the clauses as word lists: readable, no pickle)."""
        check_is_fitted(self, "include_")
        n_feat = len(self.vocabulary_)
        clauses = [
            [np.flatnonzero(self.include_[k, j]).tolist() for j in range(self.n_clauses)]
            for k in range(len(self.classes_))
        ]
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "params": self.get_params(),
            "classes": [str(c) for c in self.classes_],
            "vocabulary": self.vocabulary_.tolist(),
            "n_features": n_feat,
            "clauses": clauses,
            "clause_weights": self.clause_weights_.tolist(),
            "support": self.support_.tolist(),
            "precision": self.precision_.tolist(),
            "train_accuracy": self.train_accuracy_,
            "native_agreement": self.native_agreement_,
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> TsetlinRuleClassifier:
        """Load rules written by `save` (needs no ``pyTsetlinMachine``)."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ClassifierError(
                f"{path}: not a saved rule set ({exc}); write one with .save(path)"
            ) from None
        if doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
            raise ClassifierError(
                f"{path}: format {doc.get('format')!r}, expected {FORMAT!r} v{FORMAT_VERSION}"
            )
        model = cls(**doc["params"])
        n_feat = doc["n_features"]
        model.classes_ = np.array(doc["classes"], dtype=object)
        model.vocabulary_ = np.array(doc["vocabulary"], dtype=str)
        include = np.zeros((len(model.classes_), model.n_clauses, 2 * n_feat), dtype=bool)
        for k, per_class in enumerate(doc["clauses"]):
            for j, lits in enumerate(per_class):
                include[k, j, lits] = True
        model.include_ = include
        model.clause_weights_ = np.asarray(doc["clause_weights"], dtype=np.float64)
        model.sign_ = np.where(np.arange(model.n_clauses) % 2 == 0, 1.0, -1.0)
        model.support_ = np.asarray(doc["support"])
        model.precision_ = np.asarray(doc["precision"])
        model.train_accuracy_ = doc["train_accuracy"]
        model.native_agreement_ = doc["native_agreement"]
        return model

    @classmethod
    def default(cls) -> TsetlinRuleClassifier:
        """The shipped rule set: harm categories (and ``benign``) of the project's fitting prompts."""
        from importlib import resources

        with resources.as_file(resources.files("classifiers.resources").joinpath("harm_rules.json")) as p:
            return cls.load(p)


__all__ = ["Rule", "TsetlinRuleClassifier"]
