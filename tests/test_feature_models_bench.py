"""benchmarks/feature_models.py: raw-text features, padded batches equal to one text at a time."""

from __future__ import annotations

import numpy as np
import torch
from conftest import load_benchmark, make_host


def _bench():
    return load_benchmark("feature_models")


def test_four_depths_end_with_the_last_layer():
    bench = _bench()
    host = make_host("llama", layers=4)
    assert bench.depths_of(host) == [0, 1, 2, 3]


def test_batched_features_equal_one_text_at_a_time():
    bench = _bench()
    host = make_host("llama", layers=4)
    texts = ["bake bread", "How do I kill a Python process?", "the quick brown fox jumps over the lazy dog"]
    batched = bench.features(host, texts, [1, 3], max_tokens=16, batch=3)
    assert batched[(3, "mean")].shape == (3, host.hidden_size)
    for i, t in enumerate(texts):
        ids = host.tokenizer(t, add_special_tokens=True, truncation=True, max_length=16)["input_ids"]
        with torch.inference_mode():
            hs = host.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        np.testing.assert_allclose(batched[(1, "last")][i], hs[2][0, -1].numpy(), atol=1e-5)
        np.testing.assert_allclose(batched[(3, "mean")][i], hs[4][0].mean(0).numpy(), atol=1e-5)
    assert not np.allclose(batched[(1, "mean")], batched[(3, "mean")])


def test_the_head_is_scored_out_of_fold_and_on_the_external_rows():
    bench = _bench()
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (40, 5)), rng.normal(2, 1, (40, 5))])
    y = np.array([0] * 40 + [1] * 40)
    folds = [(np.setdiff1d(np.arange(80), te), te) for te in np.array_split(rng.permutation(80), 4)]
    ext = {"coconot_contrast_pref": (rng.normal(0, 1, (10, 5)), ["en"] * 10)}
    row = bench.evaluate(X, y, folds, ext)
    assert row["grouped_auroc"] > 0.9 and row["benign_blocked"] < 0.3
    assert 0.0 <= row["coconot_contrast_blocked"] <= 0.5
