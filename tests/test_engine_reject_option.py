"""RejectOptionClassifier: sklearn contract, each rejection mode, curves, pickle-free save/load."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

from classifiers import ClassifierError, RejectOptionClassifier, coverage_risk_curve


def data(n=1200, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] + X[:, 1] + noise * rng.normal(size=n) > 0).astype(int)
    return X, y


def test_sklearn_contract():
    m = RejectOptionClassifier(LogisticRegression(C=0.5), novelty="knn", coverage=0.8)
    c = clone(m)
    assert c.get_params()["estimator"].C == 0.5 and c.get_params()["novelty"] == "knn"
    with pytest.raises(NotFittedError):
        m.predict_proba(np.zeros((1, 4)))
    X, y = data()
    assert m.fit(X, y) is m and m.n_features_in_ == 4
    assert m.predict(X).shape == (len(X),) and np.allclose(m.predict_proba(X).sum(axis=1), 1)
    with pytest.raises(ClassifierError):
        RejectOptionClassifier(ambiguity="maybe").fit(X, y)


def test_confidence_rejection_lowers_the_error():
    X, y = data()
    Xt, yt = data(seed=1)
    m = RejectOptionClassifier(coverage=0.9).fit(X, y)
    s = m.selective_score(Xt, yt)
    assert 0.86 <= s["coverage"] <= 0.94
    assert s["selective_accuracy"] > s["accuracy"]
    curve = m.coverage_risk(Xt, yt)
    assert curve.at(0.9) < curve.at(1.0) and curve.at(0.5) <= curve.at(0.9)


def test_conformal_sets_cover():
    X, y = data()
    Xt, yt = data(n=3000, seed=2)
    m = RejectOptionClassifier(ambiguity="conformal", alpha=0.1).fit(X, y)
    sets = m.predict_set(Xt)
    covered = sets[np.arange(len(yt)), yt].mean()
    assert covered >= 0.87  # 1 - alpha, up to sampling noise
    assert set(m.reject_reasons(Xt)) <= {"", "ambiguity"}
    assert (m.reject(Xt) == (sets.sum(axis=1) != 1)).all()


@pytest.mark.parametrize("kind", ["mahalanobis", "knn"])
def test_novelty_rate_and_far_points(kind):
    X, y = data()
    Xt, _ = data(n=2000, seed=3)
    m = RejectOptionClassifier(novelty=kind, novelty_rate=0.05, ambiguity="none").fit(X, y)
    assert abs((m.reject_reasons(Xt) == "novelty").mean() - 0.05) < 0.035
    assert (m.reject_reasons(np.full((3, 4), 25.0)) == "novelty").all()


def test_learned_rejector_on_a_fixed_predictor():
    X, y = data(n=3000, noise=0.3)
    Xfit, yfit = X[:1000], y[:1000]
    base = LogisticRegression().fit(Xfit, yfit)
    # errors concentrate where x2 is large: invisible to the confidence, visible to the rejector
    rng = np.random.default_rng(5)
    Xc = rng.normal(size=(3000, 4))
    yc = (Xc[:, 0] + Xc[:, 1] > 0).astype(int)
    flip = Xc[:, 2] > 0.8
    yc[flip] = 1 - yc[flip]
    m = RejectOptionClassifier(base, prefit=True, ambiguity="learned", rejection_cost=0.3).fit(
        Xc[:2000], yc[:2000]
    )
    assert m.estimator_ is base
    s = m.selective_score(Xc[2000:], yc[2000:])
    assert 0.5 < s["coverage"] < 0.95
    assert s["selective_accuracy"] > s["accuracy"] + 0.05
    conf = RejectOptionClassifier(base, prefit=True, coverage=s["coverage"]).fit(Xc[:2000], yc[:2000])
    assert s["selective_accuracy"] > conf.selective_score(Xc[2000:], yc[2000:])["selective_accuracy"]


def test_multiclass_string_labels_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    y = np.array(["a", "b", "c"])[np.argmax(X + 0.5 * rng.normal(size=X.shape), axis=1)]
    for kw in (
        {"ambiguity": "conformal", "novelty": "mahalanobis"},
        {"ambiguity": "learned", "calibration": "isotonic"},
    ):
        m = RejectOptionClassifier(**kw).fit(X, y)
        m2 = RejectOptionClassifier.load(m.save(tmp_path / kw["ambiguity"]))
        assert (m2.predict(X) == m.predict(X)).all()
        assert np.allclose(m2.predict_proba(X), m.predict_proba(X))
        assert (m2.reject_reasons(X) == m.reject_reasons(X)).all()
        assert not list((tmp_path / kw["ambiguity"]).glob("*.pkl"))


def test_unsavable_estimator_is_refused(tmp_path):
    from sklearn.tree import DecisionTreeClassifier

    X, y = data(n=200)
    with pytest.raises(ClassifierError, match="without pickle"):
        RejectOptionClassifier(DecisionTreeClassifier()).fit(X, y).save(tmp_path)


def test_coverage_risk_curve_by_hand():
    c = coverage_risk_curve([1, 0, 1, 0], [1, 0, 0, 1], [0.9, 0.8, 0.7, 0.6])
    assert c.risk == [0.0, 0.0, 1 / 3, 0.5] and c.coverage == [0.25, 0.5, 0.75, 1.0]
    assert c.table((1.0, 0.5)) == [{"coverage": 1.0, "risk": 0.5}, {"coverage": 0.5, "risk": 0.0}]
    with pytest.raises(ClassifierError):
        coverage_risk_curve([1], [1, 0], [0.5, 0.5])


def test_knn_novelty_is_the_distance_to_the_kth_training_point():
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8))
    m = RejectOptionClassifier(novelty="knn", n_neighbors=5).fit(X, (X[:, 0] > 0).astype(int))
    F = rng.normal(size=(50, 8))
    want = np.sort(cdist(F, m.reference_), axis=1)[:, 4]
    np.testing.assert_allclose(m._distance(F), want, atol=1e-9)
    # on the training points themselves, each point's own zero distance is skipped
    own = np.sort(cdist(m.reference_, m.reference_), axis=1)[:, 5]
    np.testing.assert_allclose(m._distance(m.reference_, exclude_self=True), own, atol=1e-9)
