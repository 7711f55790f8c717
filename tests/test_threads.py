"""BLAS threads: one for a request's numpy stages and for USE at request time, the fitting ones in `guard fit`."""

from __future__ import annotations

import argparse

from threadpoolctl import threadpool_info

from classifiers.multilingual import FIT_THREADS, MultilingualEmbedder, fitting_threads
from guard.features.threads import one_blas_thread


def _blas_threads() -> set[int]:
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_one_blas_thread_inside_and_restored_after():
    before = _blas_threads()
    with one_blas_thread():
        assert _blas_threads() == {1}
    assert _blas_threads() == before


def test_use_runs_on_one_thread_unless_fitting_or_asked():
    assert MultilingualEmbedder().threads() == 1
    assert MultilingualEmbedder(num_threads=3).threads() == 3
    with fitting_threads():
        assert MultilingualEmbedder().threads() == FIT_THREADS == 2
        assert MultilingualEmbedder(num_threads=1).threads() == 1
    assert MultilingualEmbedder().threads() == 1


def test_guard_fit_grouped_fits_on_the_fitting_threads(monkeypatch, tmp_path):
    import guard.fitting.grouped_fit as grouped_fit
    from guard import cli

    seen: dict[str, int] = {}

    def run(out_dir, host, **kwargs):  # stands in for the (long) fit: records what it would embed with
        seen["threads"] = MultilingualEmbedder().threads()
        return {"chosen": {"latent": "latent@16"}}

    monkeypatch.setattr(grouped_fit, "run", run)
    args = argparse.Namespace(
        data=None,
        features_cache=str(tmp_path),
        external=None,
        seed=0,
        target_recall=0.9,
        latent_per_group=None,
        no_progress=True,
    )
    assert cli._fit_grouped(args, None, tmp_path) == 0
    assert seen["threads"] == FIT_THREADS
    assert MultilingualEmbedder().threads() == 1
