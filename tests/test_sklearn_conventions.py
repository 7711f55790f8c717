"""scikit-learn conventions of the classifiers (issue 13): every estimator passes
`parametrize_with_checks`; sparse input through a pipeline, grid search over the wrapped predictor.

The reject option reads numeric matrices and runs all of sklearn's checks. The text estimators
are tagged ``input_tags.string = True, two_d_array = False`` (what sklearn's own vectorizers
declare); sklearn builds numeric data only, so for them it runs `check_estimator_cloneable` and
skips the data checks (a `SkipTestWarning`). `test_sklearn_api_checks_without_data` runs the
sklearn checks that need no data on them directly, and `tests/test_sklearn_text_estimators.py`
the text version of each data check.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import SkipTestWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils import estimator_checks as sk
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

from classifiers import (
    MpnetEmbedder,
    MultilingualEmbedder,
    PromptRefusalPredictor,
    RejectOptionClassifier,
    ReplyHarmClassifier,
    ResponseRefusalDetector,
    SentenceEmbedder,
    TsetlinRuleClassifier,
)
from classifiers.conversation import ConversationHarmClassifier
from classifiers.harm_mlp import HarmMLPClassifier
from classifiers.image_prompt import ImagePromptClassifier

NUMERIC = [
    RejectOptionClassifier(),
    RejectOptionClassifier(novelty="knn"),
    RejectOptionClassifier(ambiguity="conformal", novelty="mahalanobis"),
]
# Constructing them loads no model (nor needs pyTsetlinMachine): only fitting or transforming does.
TEXT = [
    SentenceEmbedder(),
    SentenceEmbedder(backend="torch"),
    MultilingualEmbedder(),
    MpnetEmbedder(),
    PromptRefusalPredictor(),
    PromptRefusalPredictor(features="both"),
    ResponseRefusalDetector(),
    ImagePromptClassifier(features="embedding"),
    TsetlinRuleClassifier(),
    HarmMLPClassifier(),
    ReplyHarmClassifier(),
    ReplyHarmClassifier(head="mlp", multilingual=True),
    ConversationHarmClassifier(),
    RejectOptionClassifier(PromptRefusalPredictor(), featurizer=SentenceEmbedder(), novelty="knn"),
]
#: {check name: why it cannot apply}; no check needs it today.
EXPECTED_FAILED: dict[str, str] = {}


with warnings.catch_warnings():  # sklearn's "can't test ... string" notice for each text estimator
    warnings.simplefilter("ignore", SkipTestWarning)
    _CHECKS = parametrize_with_checks(
        NUMERIC + TEXT, expected_failed_checks=lambda est: EXPECTED_FAILED, xfail_strict=True
    )


@_CHECKS
def test_sklearn_compatible(estimator, check):
    with _quiet():
        check(estimator)


def test_text_estimators_are_tagged_as_text():
    for est in TEXT:
        tags = get_tags(est)
        assert tags.input_tags.string and not tags.input_tags.two_d_array, type(est).__name__
    assert all(get_tags(est).input_tags.two_d_array for est in NUMERIC)


# The checks of `sklearn.utils.estimator_checks` that read no data: parameters, tags, repr, mixins.
WITHOUT_DATA = [
    sk.check_estimator_tags_renamed,
    sk.check_valid_tag_types,
    sk.check_estimator_repr,
    sk.check_no_attributes_set_in_init,
    sk.check_do_not_raise_errors_in_init_or_set_params,
    sk.check_mixin_order,
    sk.check_parameters_default_constructible,
    sk.check_get_params_invariance,
    sk.check_set_params,
]


@pytest.mark.parametrize("check", WITHOUT_DATA, ids=lambda c: c.__name__)
@pytest.mark.parametrize("estimator", TEXT, ids=lambda e: repr(e).replace("\n", ""))
def test_sklearn_api_checks_without_data(estimator, check):
    with _quiet():
        check(type(estimator).__name__, estimator)


class _quiet:
    def __enter__(self):
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
    gs = GridSearchCV(RejectOptionClassifier(LogisticRegression()), {"estimator__C": [0.1, 1.0]}, cv=3).fit(
        X, y
    )
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
