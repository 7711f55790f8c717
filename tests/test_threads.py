"""BLAS threads: one for a request's numpy stages and for USE."""

from __future__ import annotations

from threadpoolctl import threadpool_info

from classifiers.multilingual import MultilingualEmbedder
from guard.features.threads import one_blas_thread


def _blas_threads() -> set[int]:
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_one_blas_thread_inside_and_restored_after():
    before = _blas_threads()
    with one_blas_thread():
        assert _blas_threads() == {1}
    assert _blas_threads() == before


def test_use_runs_on_one_thread_unless_asked():
    assert MultilingualEmbedder().threads() == 1
    assert MultilingualEmbedder(num_threads=3).threads() == 3
