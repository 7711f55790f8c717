"""`guard eval --engine ray`: Ray Data scoring gives the local engine's metrics to 1e-9.

A local Ray (`ray.init(num_cpus=2)`) is started once for the module and shut down after. Starting
Ray and its actors takes 10-30 s on two busy cores, so these tests are marked slow.
"""

from __future__ import annotations

import json
import math
import sys
import zlib

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from guard.evaluation.engine import DetectorScorer, score_local, score_ray, synthetic_eval_set  # noqa: E402 (after importorskip)
from guard.evaluation.metrics import compute_metrics, strip_timings  # noqa: E402

pytestmark = pytest.mark.slow


def lexical(prompts, contexts):
    words = ("bomb", "hack", "steal", "poison", "ransomware", "launder", "stalk", "meth")
    s = np.array(
        [
            0.55 * any(w in p.lower() for w in words)
            + 0.45 * (zlib.crc32(p.encode()) % 997) / 997
            + 0.01 * bool(c)
            for p, c in zip(prompts, contexts)
        ]
    )
    return s, s >= 0.5


class LexicalFactory:
    """Picklable zero-argument factory, as `score_ray` needs (a `ScorerSpec` for shipped detectors)."""

    def __call__(self) -> DetectorScorer:
        return DetectorScorer("lexical", lexical, 0.5)


def _threads_seen(prompts, contexts):
    from classifiers.embeddings import session_options

    s = np.full(len(prompts), float(session_options().intra_op_num_threads))
    return s, s >= 0.5


class ThreadsFactory:
    """A scorer whose score is the intra-op thread count an embedder would get in this actor."""

    def __call__(self) -> DetectorScorer:
        return DetectorScorer("threads", _threads_seen, 0.5)


@pytest.fixture(scope="module")
def local_ray():
    import ray.cloudpickle

    # the workers cannot import this test module: ship its functions by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _assert_close(a, b, path="metrics"):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=0, abs_tol=1e-9), (path, a, b)
    else:
        assert a == b, (path, a, b)


def test_ray_and_local_engines_agree(local_ray):
    rows = synthetic_eval_set(600, seed=11)
    # a few RAG rows: contexts must reach the scorer on both engines
    rows = [
        r.model_copy(update={"context": "retrieved doc"}) if i % 50 == 0 else r for i, r in enumerate(rows)
    ]
    local = score_local(rows, LexicalFactory()(), batch_size=16, progress=False)
    remote = score_ray(rows, LexicalFactory(), workers=2, batch_size=16, progress=False)
    assert np.array_equal(local.scores, remote.scores) and np.array_equal(local.blocked, remote.blocked)
    assert remote.latency_ms.shape == (600,)
    m_local = compute_metrics(
        rows, local.scores, local.blocked, local.latency_ms, detector="lexical", guard="g"
    )
    m_ray = compute_metrics(
        rows, remote.scores, remote.blocked, remote.latency_ms, detector="lexical", guard="g"
    )
    _assert_close(strip_timings(m_local), strip_timings(m_ray))
    assert m_local["ci"]["auroc"] is not None and len(m_local["by_category"]) > 4


def test_cli_engine_ray_with_a_shipped_detector(local_ray, tmp_path):
    """The CLI reuses the running Ray, builds the shipped embedding detector in each actor, and
    writes the same metrics as the local engine."""
    from guard.cli import main

    data = tmp_path / "eval.jsonl"
    data.write_text(
        "\n".join(json.dumps(r.model_dump(exclude_none=True)) for r in synthetic_eval_set(64, seed=2))
    )
    common = [
        "eval",
        "--data",
        str(data),
        "--detector",
        "embedding",
        "--n-boot",
        "200",
        "--no-report",
        "--quiet",
    ]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert (
        main(
            [
                *common,
                "--out",
                str(tmp_path / "ray"),
                "--engine",
                "ray",
                "--workers",
                "2",
                "--batch-size",
                "16",
            ]
        )
        == 0
    )
    assert ray.is_initialized()  # a Ray the CLI did not start is left running
    local = json.loads((tmp_path / "local" / "metrics.json").read_text())
    remote = json.loads((tmp_path / "ray" / "metrics.json").read_text())
    _assert_close(strip_timings(local), strip_timings(remote))

    # the actors saw the local engine's batches, so even the model's float32 scores are identical
    def read(d):
        return [json.loads(line) for line in (tmp_path / d / "scores.jsonl").read_text().splitlines()]

    assert read("local") == read("ray")
    run = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert run[0]["engine"] == "ray" and run[0]["workers"] == 2 and run[0]["n"] == 64
    assert run[0]["cpus_per_worker"] == 1  # a Ray the CLI did not start: one CPU per actor


def test_actors_use_as_many_threads_as_they_reserved(local_ray):
    """Two 1-CPU actors on 2 cores: each onnxruntime session gets 1 thread, not one per core."""
    rows = synthetic_eval_set(64, seed=3)
    got = score_ray(rows, ThreadsFactory(), workers=2, batch_size=16, cpus_per_worker=1.0, progress=False)
    assert set(got.scores.tolist()) == {1.0}
