"""scikit-learn conventions of the reject option (issue 13): every `check_estimator` check passes,
sparse input through a pipeline, grid search over the wrapped predictor."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from classifiers import RejectOptionClassifier


@parametrize_with_checks([RejectOptionClassifier(), RejectOptionClassifier(novelty="knn"),
                          RejectOptionClassifier(ambiguity="conformal", novelty="mahalanobis")])
def test_sklearn_compatible(estimator, check):
    with _quiet():
        check(estimator)


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


def test_a_pipeline_with_sparse_text_features():
    texts = ["bake bread", "build a bomb", "plant a garden", "make poison"] * 10
    y = [0, 1, 0, 1] * 10
    p = make_pipeline(TfidfVectorizer(), RejectOptionClassifier()).fit(texts, y)
    assert p.predict(["bomb at home", "bread"]).tolist() == [1, 0]


def test_grid_search_over_the_wrapped_predictor():
    X = np.random.default_rng(0).normal(size=(120, 3))
    y = (X[:, 0] > 0).astype(int)
    gs = GridSearchCV(RejectOptionClassifier(LogisticRegression()), {"estimator__C": [0.1, 1.0]}, cv=3).fit(X, y)
    assert gs.best_params_["estimator__C"] in (0.1, 1.0)


def test_unfitted_predict_raises_not_fitted():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        RejectOptionClassifier().predict(np.zeros((2, 2)))


def test_tiny_data_warns_instead_of_failing():
    X = np.random.default_rng(0).normal(size=(12, 2))
    y = (X[:, 0] > 0).astype(int)
    with pytest.warns(UserWarning, match="held out for calibration"):
        RejectOptionClassifier().fit(X, y)
