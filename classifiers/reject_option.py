"""Classification with a reject option: wrap a probabilistic classifier and let it abstain.

Three ways to reject (the survey "Machine Learning with a Reject Option" names the first two):

- **ambiguity**: the calibrated confidence is low (``ambiguity="confidence"``), or the
  split-conformal prediction set does not hold exactly one class (``ambiguity="conformal"``), or a
  rejector learned on top of the fixed predictor says so (``ambiguity="learned"``);
- **novelty**: the input is far from the training distribution (Mahalanobis or k-NN distance on
  the features; the threshold is set so that a target share of in-distribution data is rejected);
- both at once: a point is rejected when any enabled test says so, and the reason is reported.

The learned rejector follows "Learning to Reject with a Fixed Predictor" (Mohri, Andor, Choi,
Collins, Mao, Zhong; ICLR 2024): the predictor ``h`` is frozen, and a linear rejector ``r`` is
trained on held-out data, where the errors of ``h`` are observable, by minimising the two-term
exponential surrogate of the rejection loss ``1[h(x) != y] 1[r(x) > 0] + c 1[r(x) <= 0]``::

    l(r, x, y) = 1[h(x) != y] exp(alpha r(x)) + c exp(-beta r(x))

Its pointwise minimiser accepts (``r > 0``) exactly when ``P(h(x) != y | x) < (beta / alpha) c``,
so with ``beta == alpha`` (the default) the learned rejector targets Chow's rule at cost ``c``.

Example:
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 2)); y = (X[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(int)
    >>> clf = RejectOptionClassifier(LogisticRegression(), coverage=0.8).fit(X, y)
    >>> round(float(clf.reject(X).mean()), 1)
    0.2
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import check_is_fitted

from classifiers._deps import require
from classifiers.errors import ClassifierError

Ambiguity = Literal["confidence", "conformal", "learned", "none"]
Novelty = Literal["mahalanobis", "knn", "none"]
Calibration = Literal["sigmoid", "isotonic", "none"]
FORMAT = "classifiers.reject-option"
FORMAT_VERSION = 1
REASONS = ("", "ambiguity", "novelty")
#: Fewer held-out points than this and the calibration is fitted on the training points (with a warning).
MIN_HELD_OUT = 10


# ------------------------------------------------------------------------------------ curves
class CoverageRiskCurve(BaseModel):
    """Selective risk (error on the accepted points) against coverage (share accepted).

    Points are sorted by confidence, most confident first; `coverage[i]` accepts the `i + 1`
    most confident points and `risk[i]` is their error rate.

    Attributes:
        coverage: accepted share, increasing to 1.
        risk: error rate on the accepted points.
        threshold: the confidence of the last accepted point.
        aurc: area under the curve (lower is better).
    """

    model_config = ConfigDict(frozen=True)

    coverage: list[float]
    risk: list[float]
    threshold: list[float]
    aurc: float

    def at(self, coverage: float) -> float:
        """The risk when accepting (at least) `coverage` of the points.

        Example:
            >>> c = coverage_risk_curve([1, 1, 0, 0], [1, 1, 0, 1], [0.9, 0.8, 0.7, 0.6])
            >>> c.at(0.75), c.at(1.0)
            (0.0, 0.25)
        """
        if not 0.0 < coverage <= 1.0:
            raise ClassifierError(f"coverage must be in (0, 1], got {coverage}")
        i = int(np.searchsorted(np.asarray(self.coverage), coverage - 1e-12))
        return self.risk[min(i, len(self.risk) - 1)]

    def table(self, coverages: tuple[float, ...] = (1.0, 0.95, 0.9, 0.8, 0.7, 0.5)) -> list[dict[str, float]]:
        """Rows ``{"coverage", "risk"}`` for a few coverages (the report's table)."""
        return [{"coverage": c, "risk": self.at(c)} for c in coverages]


def coverage_risk_curve(y_true: Any, y_pred: Any, confidence: Any) -> CoverageRiskCurve:
    """The coverage-risk curve of predictions ranked by confidence.

    Args:
        y_true: true labels.
        y_pred: predicted labels.
        confidence: higher means more confident (e.g. the max calibrated probability).

    Example:
        >>> c = coverage_risk_curve([0, 1, 1], [0, 1, 0], [0.9, 0.8, 0.55])
        >>> c.risk
        [0.0, 0.0, 0.3333333333333333]
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    conf = np.asarray(confidence, dtype=float)
    if not (y_true.shape == y_pred.shape == conf.shape) or y_true.ndim != 1 or y_true.size == 0:
        raise ClassifierError(
            f"y_true, y_pred and confidence must be 1-d of one non-zero length, got "
            f"{y_true.shape}, {y_pred.shape}, {conf.shape}"
        )
    order = np.argsort(-conf, kind="stable")
    errors = (y_true[order] != y_pred[order]).astype(float)
    n = np.arange(1, errors.size + 1)
    risk = np.cumsum(errors) / n
    coverage = n / errors.size
    return CoverageRiskCurve(
        coverage=coverage.tolist(),
        risk=risk.tolist(),
        threshold=conf[order].tolist(),
        aurc=float(risk.mean()),
    )


# ------------------------------------------------------------------------------------ helpers
def _platt(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling with Platt's target smoothing: returns (a, b) for sigmoid(a * s + b)."""
    # Kept over CalibratedClassifierCV(FrozenEstimator(...), method="sigmoid"), the same smoothed-target
    # fit: it agrees to <= 4e-6 in probability (its tighter L-BFGS tolerances) but costs ~10 ms a fit
    # against ~1 ms. tests/test_library_equivalence.py checks the agreement.
    from scipy.optimize import minimize

    n_pos, n_neg = float(y.sum()), float(y.size - y.sum())
    t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def loss(ab: np.ndarray) -> tuple[float, np.ndarray]:
        z = ab[0] * scores + ab[1]
        p = 1 / (1 + np.exp(-z))
        ll = np.logaddexp(0, z) - t * z
        g = p - t
        return float(ll.sum()), np.array([float(g @ scores), float(g.sum())])

    res = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return float(res.x[0]), float(res.x[1])


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def _check_X(X: Any, name: str = "X") -> np.ndarray:
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise ClassifierError(
            f"{name} must be a 2-d numeric array for novelty or learned rejection, got "
            f"shape {arr.shape}; pass featurizer=... (e.g. SentenceEmbedder()) for texts"
        )
    if not np.isfinite(arr).all():
        raise ClassifierError(f"{name} holds NaN or infinite values; impute or drop them first")
    return arr


# ------------------------------------------------------------------------------------ estimator
class RejectOptionClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Wrap a probabilistic classifier and add an abstain outcome (ambiguity and novelty rejection).

    Like scikit-learn's ``FixedThresholdClassifier``, it wraps any estimator with
    ``predict_proba``; `fit` fits a clone of it on part of the data (or uses it as is with
    ``prefit=True``, the "fixed predictor" case) and fits the calibration and rejection on the
    held-out rest.

    Args:
        estimator: a classifier with ``predict_proba``; default: ``LogisticRegression()``.
        calibration: ``"sigmoid"`` (Platt), ``"isotonic"`` or ``"none"``, one-vs-rest per class
            on the held-out part, then renormalised.
        ambiguity: ``"confidence"``: reject when the calibrated max probability is below
            `threshold` (set from `coverage` when None); ``"conformal"``: reject when the
            split-conformal prediction set at level `alpha` is not a single class; ``"learned"``:
            the learned rejector (see the module docstring); ``"none"``.
        coverage: target share of held-out points accepted by the confidence rule when
            `threshold` is None.
        threshold: a fixed confidence threshold in [0, 1].
        alpha: miscoverage of the conformal sets (sets hold the true class with probability
            >= 1 - alpha on exchangeable data).
        novelty: ``"mahalanobis"``, ``"knn"`` or ``"none"``: distance to the training features.
        novelty_rate: target false-reject rate of the novelty test on in-distribution
            (held-out) data.
        n_neighbors: k of the k-NN distance.
        rejection_cost: the cost ``c`` of abstaining, relative to an error (learned rejector).
        rejector_alpha, rejector_beta: the surrogate's exponents.
        rejector_C: inverse L2 strength on the rejector's feature weights (its confidence,
            entropy and novelty inputs are not penalised).
        featurizer: a transformer mapping X to numeric features for novelty and the learned
            rejector (e.g. ``SentenceEmbedder()`` when X is texts); default: X itself.
        prefit: `estimator` is already fitted; all of X is used for calibration and rejection.
        calibration_size: held-out share when not `prefit`.
        random_state: seed of the split.

    Attributes:
        estimator_: the fitted (or given) predictor.
        classes_: class labels.
        threshold_: the confidence threshold in use.
        qhat_: the conformal quantile of ``1 - p_y``.
        novelty_threshold_: the distance above which a point is novel.

    Example:
        >>> import numpy as np
        >>> from sklearn.base import clone
        >>> rng = np.random.default_rng(1)
        >>> X = rng.normal(size=(300, 3)); y = (X[:, 0] > 0).astype(int)
        >>> m = RejectOptionClassifier(novelty="mahalanobis", novelty_rate=0.05).fit(X, y)
        >>> bool(m.reject_reasons(np.full((1, 3), 50.0))[0] == "novelty")
        True
        >>> clone(m).get_params()["novelty"]
        'mahalanobis'
    """

    def __init__(
        self,
        estimator: Any = None,
        *,
        calibration: Calibration = "sigmoid",
        ambiguity: Ambiguity = "confidence",
        coverage: float = 0.9,
        threshold: float | None = None,
        alpha: float = 0.1,
        novelty: Novelty = "none",
        novelty_rate: float = 0.05,
        n_neighbors: int = 5,
        rejection_cost: float = 0.2,
        rejector_alpha: float = 1.0,
        rejector_beta: float = 1.0,
        rejector_C: float = 0.01,
        featurizer: Any = None,
        prefit: bool = False,
        calibration_size: float = 0.3,
        random_state: int | None = 0,
    ) -> None:
        self.estimator = estimator
        self.calibration = calibration
        self.ambiguity = ambiguity
        self.coverage = coverage
        self.threshold = threshold
        self.alpha = alpha
        self.novelty = novelty
        self.novelty_rate = novelty_rate
        self.n_neighbors = n_neighbors
        self.rejection_cost = rejection_cost
        self.rejector_alpha = rejector_alpha
        self.rejector_beta = rejector_beta
        self.rejector_C = rejector_C
        self.featurizer = featurizer
        self.prefit = prefit
        self.calibration_size = calibration_size
        self.random_state = random_state

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        choices = {
            "calibration": ("sigmoid", "isotonic", "none"),
            "ambiguity": ("confidence", "conformal", "learned", "none"),
            "novelty": ("mahalanobis", "knn", "none"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ClassifierError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("coverage", "alpha", "novelty_rate", "calibration_size"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 < v < 1.0) and not (name == "coverage" and v == 1.0):
                raise ClassifierError(f"{name} must be in (0, 1), got {v!r}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ClassifierError(f"threshold must be in [0, 1] or None, got {self.threshold!r}")
        if not (isinstance(self.n_neighbors, int) and self.n_neighbors >= 1):
            raise ClassifierError(f"n_neighbors must be a positive int, got {self.n_neighbors!r}")
        for name in ("rejection_cost", "rejector_alpha", "rejector_beta", "rejector_C"):
            if not getattr(self, name) > 0:
                raise ClassifierError(f"{name} must be > 0, got {getattr(self, name)!r}")

    def _features(self, X: Any) -> np.ndarray:
        if self.featurizer is not None:
            return _check_X(self.featurizer_.transform(X), "featurizer output")
        return _check_X(X)

    def _sparse_ok(self) -> Any:
        """Sparse X (a `TfidfVectorizer` before it in a pipeline) is passed on to the wrapped predictor
        unless novelty or the learned rejector need dense features."""
        return ["csr", "csc"] if not self._needs_features() else False

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = bool(self._sparse_ok()) and self.featurizer is None
        if self.featurizer is not None:  # X is what the featurizer reads: texts, for an embedder
            from sklearn.utils import get_tags

            read = get_tags(self.featurizer).input_tags
            tags.input_tags.two_d_array, tags.input_tags.string = read.two_d_array, read.string
        return tags

    def _needs_features(self) -> bool:
        return self.novelty != "none" or self.ambiguity == "learned"

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any) -> RejectOptionClassifier:
        """Fit the predictor (unless `prefit`), the calibration and the rejection tests.

        Raises:
            ClassifierError: bad parameters, a single class, or too little held-out data.
        """
        self._check_params()
        import warnings

        from sklearn.model_selection import train_test_split
        from sklearn.utils.multiclass import check_classification_targets
        from sklearn.utils.validation import check_consistent_length, column_or_1d, validate_data

        if y is None:
            raise ValueError("RejectOptionClassifier requires y to be passed, but the target y is None")
        if self.featurizer is None:  # numeric features: the usual scikit-learn checks
            X, y = validate_data(self, X, y, accept_sparse=self._sparse_ok(), ensure_min_samples=2)
        else:  # texts (or anything the featurizer reads): check y and the lengths only
            y = column_or_1d(y, warn=True)
            check_consistent_length(X, y)
        check_classification_targets(y)
        y = np.asarray(y)
        n = len(y)
        if self.featurizer is not None:
            self.featurizer_ = clone(self.featurizer)
            if hasattr(self.featurizer_, "fit"):
                self.featurizer_.fit(X)
        if self.prefit:
            check_is_fitted(self.estimator)
            self.estimator_ = self.estimator
            cal_idx = np.arange(n)
            train_idx = cal_idx
        else:
            est = self.estimator
            if est is None:
                from sklearn.linear_model import LogisticRegression

                est = LogisticRegression(max_iter=2000)
            if int(np.floor(n * self.calibration_size)) >= MIN_HELD_OUT:
                strat = y if np.unique(y, return_counts=True)[1].min() >= 2 else None
                train_idx, cal_idx = train_test_split(
                    np.arange(n),
                    test_size=self.calibration_size,
                    random_state=self.random_state,
                    stratify=strat,
                )
            else:  # too little data to hold any out: calibrate on the fitting points, and say so
                warnings.warn(
                    f"only {n} points: fewer than {MIN_HELD_OUT} would be held out for calibration, "
                    "so the calibration and rejection thresholds are fitted on the training points "
                    "(optimistic); pass more data or prefit=True",
                    UserWarning,
                    stacklevel=2,
                )
                train_idx = cal_idx = np.arange(n)
            self.estimator_ = clone(est).fit(_safe_indexing(X, train_idx), y[train_idx])
        self.classes_ = np.asarray(self.estimator_.classes_)
        if len(self.classes_) < 2:
            raise ClassifierError(f"y holds a single class ({self.classes_[0]!r}); fitting needs two or more")
        y_cal = y[cal_idx]
        raw = np.asarray(self.estimator_.predict_proba(_safe_indexing(X, cal_idx)), dtype=float)
        self._fit_calibration(raw, y_cal)
        proba = self._calibrate(raw)
        conf = proba.max(axis=1)
        # Confidence rule: the threshold that accepts `coverage` of held-out points.
        if self.threshold is not None:
            self.threshold_ = float(self.threshold)
        else:
            self.threshold_ = (
                float(np.quantile(conf, 1.0 - self.coverage, method="lower")) if self.coverage < 1 else 0.0
            )
        # Split conformal (LAC score 1 - p_y), finite-sample corrected quantile.
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        pos = np.array([index[v] for v in y_cal.tolist()])
        scores = 1.0 - proba[np.arange(len(y_cal)), pos]
        m = len(scores)
        level = min(1.0, math.ceil((m + 1) * (1 - self.alpha)) / m)
        self.qhat_ = float(np.quantile(scores, level, method="higher"))
        # Novelty: distances of held-out in-distribution points set the threshold.
        self.novelty_threshold_ = math.inf
        if self._needs_features():
            same = self.prefit or train_idx is cal_idx
            F_train = self._features(_safe_indexing(X, train_idx))
            F_cal = self._features(_safe_indexing(X, cal_idx)) if not same else F_train
            if self.novelty != "none":
                self._fit_novelty(F_train)
                d = self._distance(F_cal, exclude_self=same)
                self.novelty_threshold_ = float(np.quantile(d, 1.0 - self.novelty_rate))
            if self.ambiguity == "learned":
                wrong = (self.classes_[proba.argmax(axis=1)] != y_cal).astype(float)
                self._fit_rejector(self._rejector_inputs(proba, F_cal), wrong)
        if self.featurizer is not None:
            self.n_features_in_ = 1  # one text (or object) per row
        return self

    def _fit_calibration(self, raw: np.ndarray, y: np.ndarray) -> None:
        self.calibrators_: list[dict[str, Any]] = []
        if self.calibration == "none":
            return
        cols = [1] if len(self.classes_) == 2 else range(len(self.classes_))
        # Not CalibratedClassifierCV(FrozenEstimator(estimator_)): it calibrates decision_function where
        # there is one (multinomial scores, not logit(p_j): up to 0.5 apart with 3 classes; isotonic then
        # interpolates in score space, 8e-4..2e-3 apart for binary), and is ~10x slower.
        from sklearn.isotonic import IsotonicRegression

        for j in cols:
            t = (y == self.classes_[j]).astype(float)
            if self.calibration == "sigmoid":
                a, b = _platt(_logit(raw[:, j]), t)
                self.calibrators_.append({"kind": "sigmoid", "a": a, "b": b})
            else:
                iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw[:, j], t)
                self.calibrators_.append(
                    {"kind": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
                )

    def _calibrate(self, raw: np.ndarray) -> np.ndarray:
        if not self.calibrators_:
            return raw
        binary = len(self.classes_) == 2
        cols = [1] if binary else range(len(self.classes_))
        out = np.empty((raw.shape[0], len(cols)))
        for c, (j, cal) in enumerate(zip(cols, self.calibrators_)):
            if cal["kind"] == "sigmoid":
                out[:, c] = 1 / (1 + np.exp(-(cal["a"] * _logit(raw[:, j]) + cal["b"])))
            else:
                out[:, c] = np.interp(raw[:, j], cal["x"], cal["y"])
        if binary:
            return np.column_stack([1 - out[:, 0], out[:, 0]])
        total = out.sum(axis=1, keepdims=True)
        return np.where(total > 0, out / np.where(total > 0, total, 1), 1.0 / out.shape[1])

    def _fit_novelty(self, F: np.ndarray) -> None:
        if self.novelty == "mahalanobis":
            from sklearn.covariance import LedoitWolf

            lw = LedoitWolf().fit(F)
            self.location_ = lw.location_
            self.precision_ = lw.precision_
        else:
            if F.shape[0] <= self.n_neighbors:
                raise ClassifierError(
                    f"k-NN novelty needs more than n_neighbors={self.n_neighbors} "
                    f"training points, got {F.shape[0]}"
                )
            self.reference_ = F.astype(np.float64)

    def _distance(self, F: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        if self.novelty == "mahalanobis":
            D = F - self.location_
            return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", D, self.precision_, D), 0.0))
        from sklearn.neighbors import NearestNeighbors

        # the k-th nearest training point (the k+1-th when F is the training set: itself comes first)
        k = self.n_neighbors + (1 if exclude_self else 0)
        nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(self.reference_)
        return np.asarray(nn.kneighbors(np.asarray(F, dtype=np.float64))[0][:, k - 1])

    def _rejector_inputs(self, proba: np.ndarray, F: np.ndarray) -> np.ndarray:
        conf = proba.max(axis=1, keepdims=True)
        ent = -(proba * np.log(np.clip(proba, 1e-12, 1))).sum(axis=1, keepdims=True)
        parts = [conf, ent, _logit(conf)]
        if self.novelty != "none":
            parts.append(self._distance(F)[:, None])
        self.n_score_inputs_ = len(parts)
        parts.append(F)
        return np.hstack(parts)

    def _fit_rejector(self, Z: np.ndarray, wrong: np.ndarray) -> None:
        from scipy.optimize import minimize

        self.rejector_mean_ = Z.mean(axis=0)
        self.rejector_scale_ = Z.std(axis=0) + 1e-9
        Zs = (Z - self.rejector_mean_) / self.rejector_scale_
        a, b, c = float(self.rejector_alpha), float(self.rejector_beta), float(self.rejection_cost)
        n = Zs.shape[0]
        # L2 on the feature block only: the confidence summaries (first columns) stay free, so a
        # strong penalty shrinks the rejector toward the confidence rule, not toward a constant.
        lam = np.full(Zs.shape[1], 1.0 / (self.rejector_C * n))
        lam[: self.n_score_inputs_] = 0.0

        def loss(wb: np.ndarray) -> tuple[float, np.ndarray]:
            r = np.clip(Zs @ wb[:-1] + wb[-1], -30, 30)
            ea, eb = wrong * np.exp(a * r), c * np.exp(-b * r)
            g_r = (a * ea - b * eb) / n
            val = float((ea + eb).mean() + (lam * wb[:-1]) @ wb[:-1])
            grad = np.concatenate([Zs.T @ g_r + 2 * lam * wb[:-1], [g_r.sum()]])
            return val, grad

        res = minimize(loss, np.zeros(Zs.shape[1] + 1), jac=True, method="L-BFGS-B")
        self.rejector_coef_ = res.x[:-1]
        self.rejector_intercept_ = float(res.x[-1])

    # ------------------------------------------------------------------ prediction
    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated class probabilities; columns follow ``classes_``."""
        check_is_fitted(self, "classes_")
        return self._calibrate(np.asarray(self.estimator_.predict_proba(self._input(X)), dtype=float))

    def _input(self, X: Any) -> Any:
        """X as the wrapped predictor reads it: validated like at fit for numeric features."""
        if self.featurizer is not None:
            return X
        from sklearn.utils.validation import validate_data

        return validate_data(self, X, reset=False, accept_sparse=self._sparse_ok())

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class (rejection is reported by `reject`, not mixed into labels)."""
        check_is_fitted(self, "classes_")
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def confidence(self, X: Any) -> np.ndarray:
        """The calibrated probability of the predicted class."""
        return self.predict_proba(X).max(axis=1)

    def predict_set(self, X: Any) -> np.ndarray:
        """Split-conformal prediction sets: ``(n, n_classes)`` booleans, columns follow ``classes_``."""
        return (1.0 - self.predict_proba(X)) <= self.qhat_ + 1e-12

    def novelty_score(self, X: Any) -> np.ndarray:
        """Distance to the training features (larger is more novel); zeros when novelty is off."""
        check_is_fitted(self, "classes_")
        if self.novelty == "none":
            return np.zeros(len(X))
        return self._distance(self._features(X))

    def rejector_score(self, X: Any) -> np.ndarray:
        """The learned rejector's ``r(x)``: the point is accepted when it is > 0."""
        check_is_fitted(self, "rejector_coef_")
        F = self._features(X)
        Z = (self._rejector_inputs(self.predict_proba(X), F) - self.rejector_mean_) / self.rejector_scale_
        return Z @ self.rejector_coef_ + self.rejector_intercept_

    def reject_reasons(self, X: Any) -> np.ndarray:
        """Per point: ``""`` (accepted), ``"novelty"`` or ``"ambiguity"`` (novelty is checked first)."""
        check_is_fitted(self, "classes_")
        proba = self.predict_proba(X)
        n = proba.shape[0]
        if self.ambiguity == "confidence":
            amb = proba.max(axis=1) < self.threshold_
        elif self.ambiguity == "conformal":
            amb = ((1.0 - proba) <= self.qhat_ + 1e-12).sum(axis=1) != 1
        elif self.ambiguity == "learned":
            amb = self.rejector_score(X) <= 0
        else:
            amb = np.zeros(n, dtype=bool)
        nov = self.novelty_score(X) > self.novelty_threshold_ if self.novelty != "none" else np.zeros(n, bool)
        out = np.full(n, "", dtype=object)
        out[amb] = "ambiguity"
        out[nov] = "novelty"
        return out

    def reject(self, X: Any) -> np.ndarray:
        """True where the classifier abstains (for any reason)."""
        return self.reject_reasons(X) != ""

    def coverage_risk(
        self, X: Any, y: Any, score: Literal["confidence", "rejector"] = "confidence"
    ) -> CoverageRiskCurve:
        """The coverage-risk curve on (X, y), ranking points by confidence or the rejector score."""
        conf = self.confidence(X) if score == "confidence" else self.rejector_score(X)
        return coverage_risk_curve(np.asarray(y), self.predict(X), conf)

    def selective_score(self, X: Any, y: Any) -> dict[str, float]:
        """Coverage, and accuracy on the accepted points, at the fitted rejection rule."""
        keep = ~self.reject(X)
        y = np.asarray(y)
        acc = float((self.predict(X)[keep] == y[keep]).mean()) if keep.any() else float("nan")
        return {
            "coverage": float(keep.mean()),
            "selective_accuracy": acc,
            "accuracy": float((self.predict(X) == y).mean()),
        }

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted wrapper to a folder: ``reject_option.json`` + ``weights.safetensors``.

        The wrapped predictor is saved too when it can be without pickle: a model with its own
        ``save``/``load`` (the text classifiers of this package) goes to ``estimator/``; a
        ``LogisticRegression`` is stored as coefficients.

        Raises:
            ClassifierError: the predictor (or featurizer) cannot be saved without pickle.
        """
        check_is_fitted(self, "classes_")
        st = require("safetensors.numpy")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, np.ndarray] = {}
        est = self.estimator_
        from sklearn.linear_model import LogisticRegression

        if hasattr(est, "save") and hasattr(type(est), "load"):
            est.save(folder / "estimator")
            est_meta: dict[str, Any] = {
                "kind": "saved",
                "class": f"{type(est).__module__}:{type(est).__qualname__}",
            }
        elif isinstance(est, LogisticRegression):
            tensors["lr_coef"] = np.ascontiguousarray(est.coef_)  # safetensors writes the raw buffer
            tensors["lr_intercept"] = np.ascontiguousarray(est.intercept_)
            est_meta = {"kind": "logistic_regression", "params": _jsonable(est.get_params())}
        else:
            raise ClassifierError(
                f"cannot save a wrapped {type(est).__name__} without pickle; wrap a "
                "LogisticRegression or a model with save/load (e.g. PromptRefusalPredictor)"
            )
        feat_meta = None
        if self.featurizer is not None:
            if type(self.featurizer).__name__ != "SentenceEmbedder":
                raise ClassifierError(
                    f"cannot save featurizer {type(self.featurizer).__name__}; only "
                    "SentenceEmbedder (stateless) is supported"
                )
            feat_meta = self.featurizer.get_params()
        for name in (
            "location_",
            "precision_",
            "reference_",
            "rejector_coef_",
            "rejector_mean_",
            "rejector_scale_",
        ):
            if hasattr(self, name):
                tensors[name.rstrip("_")] = np.ascontiguousarray(getattr(self, name))
        params = self.get_params(deep=False)
        params.pop("estimator"), params.pop("featurizer")
        kind = "int" if self.classes_.dtype.kind in "iub" else "str"
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "params": params,
            "estimator": est_meta,
            "featurizer": feat_meta,
            "classes": self.classes_.tolist(),
            "classes_kind": kind,
            "calibrators": self.calibrators_,
            "threshold": self.threshold_,
            "qhat": self.qhat_,
            "novelty_threshold": None if math.isinf(self.novelty_threshold_) else self.novelty_threshold_,
            "rejector_intercept": getattr(self, "rejector_intercept_", None),
            "n_features_in": self.n_features_in_,
        }
        (folder / "reject_option.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        st.save_file(tensors or {"empty": np.zeros(1)}, str(folder / "weights.safetensors"))
        from classifiers._manifest import write_manifest

        write_manifest(folder)
        return folder

    @classmethod
    def load(cls, path: str | Path) -> RejectOptionClassifier:
        """Load a wrapper written by `save`.

        Example:
            >>> import numpy as np, tempfile
            >>> rng = np.random.default_rng(0); X = rng.normal(size=(100, 2)); y = (X[:, 0] > 0).astype(int)
            >>> m = RejectOptionClassifier(novelty="knn").fit(X, y)
            >>> m2 = RejectOptionClassifier.load(m.save(tempfile.mkdtemp()))
            >>> bool((m2.reject_reasons(X) == m.reject_reasons(X)).all())
            True
        """
        st = require("safetensors.numpy")
        folder = Path(path)
        meta_file = folder / "reject_option.json"
        if not meta_file.is_file():
            raise ClassifierError(
                f"{folder} holds no saved RejectOptionClassifier (reject_option.json); "
                "write one with .save(path)"
            )
        from classifiers._manifest import verify_manifest

        verify_manifest(folder, required=("reject_option.json", "weights.safetensors"))
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ClassifierError(
                f"{folder}: format {meta.get('format')!r} v{meta.get('format_version')}, "
                f"expected {FORMAT!r} v{FORMAT_VERSION}"
            )
        tensors = st.load_file(str(folder / "weights.safetensors"))
        em = meta["estimator"]
        if em["kind"] == "saved":
            est = _saved_estimator_class(em.get("class")).load(folder / "estimator")
        else:
            from sklearn.linear_model import LogisticRegression

            est = LogisticRegression(**em["params"])
            est.coef_, est.intercept_ = tensors["lr_coef"], tensors["lr_intercept"]
        featurizer = None
        if meta["featurizer"] is not None:
            from classifiers.embeddings import SentenceEmbedder

            featurizer = SentenceEmbedder(**meta["featurizer"])
        model = cls(estimator=est, featurizer=featurizer, **meta["params"])
        model.estimator_ = est
        classes = np.array(meta["classes"], dtype=np.int64 if meta["classes_kind"] == "int" else object)
        model.classes_ = classes
        if em["kind"] != "saved":
            est.classes_ = classes
        if featurizer is not None:
            model.featurizer_ = featurizer
        model.calibrators_ = meta["calibrators"]
        model.threshold_, model.qhat_ = meta["threshold"], meta["qhat"]
        nt = meta["novelty_threshold"]
        model.novelty_threshold_ = math.inf if nt is None else nt
        model.n_features_in_ = meta["n_features_in"]
        for name in (
            "location",
            "precision",
            "reference",
            "rejector_coef",
            "rejector_mean",
            "rejector_scale",
        ):
            if name in tensors:
                setattr(model, name + "_", tensors[name])
        if meta.get("rejector_intercept") is not None:
            model.rejector_intercept_ = meta["rejector_intercept"]
        return model


#: The wrapped predictors `load` may rebuild, by the name `save` writes. A name read from a file
#: is looked up here and never imported, so a crafted file cannot run code.
SAVED_ESTIMATORS: dict[str, tuple[str, str]] = {
    "classifiers.prompt_refusal:PromptRefusalPredictor": (
        "classifiers.prompt_refusal",
        "PromptRefusalPredictor",
    ),
    "classifiers.response_refusal:ResponseRefusalDetector": (
        "classifiers.response_refusal",
        "ResponseRefusalDetector",
    ),
    "classifiers.reject_option:RejectOptionClassifier": (
        "classifiers.reject_option",
        "RejectOptionClassifier",
    ),
    "classifiers.rules:TsetlinRuleClassifier": ("classifiers.rules", "TsetlinRuleClassifier"),
    "classifiers.reply_harm:ReplyHarmClassifier": ("classifiers.reply_harm", "ReplyHarmClassifier"),
}


def _saved_estimator_class(name: Any) -> Any:
    """The class registered under `name` in `SAVED_ESTIMATORS`.

    Example:
        >>> _saved_estimator_class("os:system")
        Traceback (most recent call last):
        ...
        classifiers.errors.ClassifierError: saved estimator class 'os:system' is not one this package can load; known: classifiers.prompt_refusal:PromptRefusalPredictor, classifiers.reject_option:RejectOptionClassifier, classifiers.reply_harm:ReplyHarmClassifier, classifiers.response_refusal:ResponseRefusalDetector, classifiers.rules:TsetlinRuleClassifier
    """
    import importlib

    entry = SAVED_ESTIMATORS.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ClassifierError(
            f"saved estimator class {name!r} is not one this package can load; known: "
            f"{', '.join(sorted(SAVED_ESTIMATORS))}"
        )
    module, qualname = entry
    return getattr(importlib.import_module(module), qualname)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is None or isinstance(v, (bool, int, float, str))}


__all__ = ["CoverageRiskCurve", "RejectOptionClassifier", "coverage_risk_curve"]
