"""The hand-written shrinkage LDA and Platt fits against their scikit-learn equivalents.

The hand-written versions are kept because they are faster for these inputs. Their comments say
how far they are from the library. These tests check that distance, so a scikit-learn change
that breaks it fails here and not silently in a fitted guard.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

import guard.whitebox.latent as latent
from classifiers.reject_option import RejectOptionClassifier
from classifiers.reject_option import _platt as reject_platt
from guard.decision.stats import auroc

SHRINKAGE = 0.1  # `_lda_direction`'s default


# ------------------------------------------------------------------------------------ references
def _reference_lda(Z: np.ndarray, y: np.ndarray, shrinkage: float, jitter: float) -> np.ndarray:
    """(W / (n - 2) + shrinkage * tr(.)/p * I + jitter * I)^-1 (mu1 - mu0), W the pooled within-class scatter."""
    diff = Z[y == 1].mean(0) - Z[y == 0].mean(0)
    centred = np.concatenate([Z[y == k] - Z[y == k].mean(0) for k in (1, 0)])
    cov = centred.T @ centred / (len(Z) - 2)
    cov += (shrinkage * np.trace(cov) / cov.shape[0] + jitter) * np.eye(cov.shape[0])
    return np.linalg.solve(cov, diff)


def _sklearn_lda(Z: np.ndarray, y: np.ndarray, shrinkage: float = SHRINKAGE) -> np.ndarray:
    # sklearn shrinks as (1 - a) S + a tr(S)/p I; ours adds shrinkage * tr(S)/p I: a = s / (1 + s)
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrinkage / (1 + shrinkage))
    return np.asarray(lda.fit(Z, y).coef_[0])


class _Score(ClassifierMixin, BaseEstimator):
    """A fitted pass-through classifier: its decision function is the one input column."""

    def fit(self, X: object, y: object) -> _Score:
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64)[:, 0]

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(int)


def _sklearn_platt(s: np.ndarray, y: np.ndarray) -> tuple[float, float, CalibratedClassifierCV]:
    """(a, b) of sigmoid(a * s + b) from sklearn's sigmoid calibration of the raw scores `s`."""
    cal = CalibratedClassifierCV(FrozenEstimator(_Score().fit(None, None)), method="sigmoid")
    cal.fit(s[:, None], y)
    c = cal.calibrated_classifiers_[0].calibrators[0]
    return -float(c.a_), -float(c.b_), cal  # sklearn writes 1 / (1 + exp(a s + b))


def _sigmoid(a: float, b: float, s: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(a * s + b)))


def _states(n: int, d: int, seed: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Correlated activation-like features, two classes 40/60, mean shift along a random direction."""
    rng = np.random.default_rng(seed)
    y = np.repeat([1, 0], [int(0.4 * n), n - int(0.4 * n)])
    A = rng.normal(size=(d, 8)) * 2
    X = rng.normal(size=(n, 8)) @ A.T + rng.normal(size=(n, d)) * np.exp(rng.normal(size=d))
    X += np.outer(y, rng.normal(size=d) * 0.3) + 3
    order = rng.permutation(n)
    return scale * X[order], y[order]


# ------------------------------------------------------------------------------------ LDA
@pytest.mark.parametrize("n,d", [(40, 32), (150, 96), (60, 200)])
def test_lda_direction_is_sklearn_lsqr_shrinkage_lda(n: int, d: int) -> None:
    X, y = _states(n + 200, d, seed=n)
    Z, yz = X[:n], y[:n]
    ours = latent._lda_direction(Z, yz, "logistic", SHRINKAGE)
    np.testing.assert_allclose(ours, _reference_lda(Z, yz, SHRINKAGE, jitter=1e-8), rtol=1e-10, atol=0)
    lib = _sklearn_lda(Z, yz)
    cos = ours @ lib / (np.linalg.norm(ours) * np.linalg.norm(lib))
    assert cos > 1 - 1e-10  # the same direction, up to a positive scale
    held, y_held = X[n:], y[n:]
    assert auroc(y_held, held @ ours) == pytest.approx(auroc(y_held, held @ lib), abs=1e-12)


def test_sklearn_lda_covariance_is_pooled_scatter_over_n_shrunk() -> None:
    """What the equivalence rests on: sklearn pools bias-normalised class covariances weighted by the
    empirical priors (= W / n) and shrinking each one then summing equals shrinking the pool."""
    Z, y = _states(80, 24, seed=3)
    a = SHRINKAGE / (1 + SHRINKAGE)
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=a).fit(Z, y)
    centred = np.concatenate([Z[y == k] - Z[y == k].mean(0) for k in (1, 0)])
    S = centred.T @ centred / len(Z)
    expected = (1 - a) * S + a * np.trace(S) / S.shape[0] * np.eye(S.shape[0])
    np.testing.assert_allclose(lda.covariance_, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(lda.priors_, np.bincount(y) / len(y))


def test_lda_tiny_scale_differs_only_by_the_jitter() -> None:
    """At tr(Sigma) ~ 1e-4 (the tiny test hosts) the 1e-8 jitter is a few % of the ridge; without it the
    closed form is sklearn's again."""
    Z, y = _states(40, 32, seed=5, scale=1e-3)
    lib = _sklearn_lda(Z, y)
    bare = _reference_lda(Z, y, SHRINKAGE, jitter=0.0)
    assert bare @ lib / (np.linalg.norm(bare) * np.linalg.norm(lib)) > 1 - 1e-10


def test_latent_fit_chooses_the_same_with_sklearn_lda(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's figures: the selection grid, chosen layer/position and calibration are unchanged."""
    rng = np.random.default_rng(7)
    n, n_layers, n_pos, d = 60, 3, 2, 40
    y = np.repeat([1, 0], n // 2)
    X = rng.normal(size=(n, n_layers, n_pos, d))
    for layer in range(n_layers):  # a different signal strength per (layer, position)
        for p in range(n_pos):
            X[:, layer, p] += np.outer(y, rng.normal(size=d)) * 0.1 * (1 + layer + 2 * p)
    X = X.astype(np.float32)
    prompts = [f"prompt {i}" for i in range(n)]

    def fit() -> latent.LatentGuard:
        host = SimpleNamespace(num_layers=n_layers)
        lg = latent.LatentGuard(host, layers=[0, 1, 2], cv=3, cosmic_shortlist=0, selection="auroc")  # type: ignore[arg-type]
        return lg.fit(prompts, y, features=X, with_refusal=False)

    ours = fit()
    monkeypatch.setattr(latent, "_lda_direction", lambda Z, y, method: _sklearn_lda(Z.astype(np.float64), y))
    lib = fit()
    np.testing.assert_allclose(lib.auroc_grid_, ours.auroc_grid_, atol=1e-12)
    assert (lib.layer_, lib.position_) == (ours.layer_, ours.position_)
    assert lib.selection_auroc_ == pytest.approx(ours.selection_auroc_, abs=1e-12)
    assert lib.platt_ == ours.platt_


# ------------------------------------------------------------------------------------ Platt
@pytest.mark.parametrize("n,scale", [(30, 1.0), (300, 2.0), (3000, 0.5), (1000, 8.0)])
def test_reject_option_platt_is_sklearn_sigmoid_calibration(n: int, scale: float) -> None:
    rng = np.random.default_rng(n)
    y = (rng.random(n) < 0.4).astype(int)
    s = scale * (rng.normal(size=n) + 1.5 * y - 0.6)
    a, b = reject_platt(s, y.astype(float))
    a_lib, b_lib, cal = _sklearn_platt(s, y)
    grid = np.linspace(s.min() - 1, s.max() + 1, 501)
    np.testing.assert_allclose(
        cal.predict_proba(grid[:, None])[:, 1], _sigmoid(a_lib, b_lib, grid), atol=1e-12
    )
    # measured <= 4.1e-6 over 210 draws (ours stops earlier: scipy's default L-BFGS tolerances)
    np.testing.assert_allclose(_sigmoid(a, b, grid), _sigmoid(a_lib, b_lib, grid), atol=1e-5)
    assert a == pytest.approx(a_lib, rel=1e-4) and b == pytest.approx(b_lib, rel=1e-4, abs=1e-5)


def _binary_problem(seed: int) -> tuple[LogisticRegression, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(600, 6))
    y = (X[:, 0] + 0.7 * rng.normal(size=600) > 0).astype(int)
    est = LogisticRegression(max_iter=2000).fit(X[:300], y[:300])
    return est, X[300:], y[300:], rng.normal(size=(1000, 6)) * 1.5


def test_reject_option_sigmoid_matches_calibrated_classifier_cv() -> None:
    """Binary logistic regression (the shipped reject-option head): logit(p) is its decision function."""
    est, X, y, Xq = _binary_problem(0)
    ours = RejectOptionClassifier(est, calibration="sigmoid", prefit=True).fit(X, y)
    lib = CalibratedClassifierCV(FrozenEstimator(est), method="sigmoid").fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(Xq), lib.predict_proba(Xq), atol=1e-5)


def test_reject_option_isotonic_matches_calibrated_classifier_cv_at_the_fitting_points() -> None:
    """Isotonic regression depends on the order only, so the fitted steps agree; between them sklearn
    interpolates in decision-function space and ours in probability space."""
    est, X, y, _ = _binary_problem(1)
    ours = RejectOptionClassifier(est, calibration="isotonic", prefit=True).fit(X, y)
    lib = CalibratedClassifierCV(FrozenEstimator(est), method="isotonic").fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(X), lib.predict_proba(X), atol=1e-12)


@pytest.mark.parametrize("n,scale", [(60, 1.0), (400, 3.0), (2000, 10.0)])
def test_latent_platt_is_the_plain_logistic_mle(n: int, scale: float) -> None:
    """`latent._platt` (C=1e4) is unpenalised Platt without target smoothing on O(1) scores."""
    rng = np.random.default_rng(n)
    y = (rng.random(n) < 0.5).astype(int)
    s = scale * (rng.normal(size=n) + 1.5 * y - 0.75)
    a, b = latent._platt(s, y)
    mle = LogisticRegression(C=np.inf, max_iter=1000, tol=1e-10).fit(s[:, None], y)
    grid = np.linspace(s.min(), s.max(), 501)
    expected = _sigmoid(float(mle.coef_[0, 0]), float(mle.intercept_[0]), grid)
    np.testing.assert_allclose(
        _sigmoid(a, b, grid), expected, atol=5e-4
    )  # measured <= 2.7e-4 (lbfgs tol 1e-4, C=1e4)
