"""Grouped validation, the recipe's heads and the fitting caches (no real model)."""

from __future__ import annotations

import numpy as np
import pytest

from guard.decision import Evidence
from guard.decision.engine import pool_harm
from guard.errors import InputError
from guard.fitting.grouped import (
    form_of,
    group_of,
    grouped_folds,
    per_group_sample,
    stress_report,
    summary,
)
from guard.fitting.recipe import Features, fit_direction, fit_latent_head, pool
from guard.fitting.state_cache import EmbeddingCache
from guard.io.data import Example


def ex(prompt: str, label: str = "benign", **kw) -> Example:
    return Example(prompt=prompt, label=label, **kw)


def test_groups_are_source_and_form_and_languages_are_their_own():
    assert group_of(ex("a", source="project_benign_forms", form="venting")) == "project_benign_forms:venting"
    assert group_of(ex("a", source="advbench")) == "advbench"
    ml = ex("a", source="project_multilingual", form="translated", lang="th")
    assert group_of(ml) == "project_multilingual:lang:th" and form_of(ml) == "lang:th"
    assert form_of(ex("a", source="advbench")) == "imperative"


def test_grouped_folds_never_split_a_group():
    groups = [f"g{i % 7}" for i in range(70)]
    folds = grouped_folds(groups, 5)
    seen_in_test = []
    for tr, te in folds:
        assert not {groups[i] for i in tr} & {groups[i] for i in te}
        seen_in_test.extend(te)
    assert sorted(seen_in_test) == list(range(70))
    with pytest.raises(InputError):
        grouped_folds(["only"] * 5)


def test_per_group_sample_caps_each_group_deterministically():
    rows = [ex(f"p{i}", source="s", form="a" if i < 30 else "b") for i in range(40)]
    a, b = per_group_sample(rows, 5), per_group_sample(rows, 5)
    assert np.array_equal(a, b) and a.size == 10
    assert sum(i < 30 for i in a) == 5


def test_stress_report_and_summary_by_form():
    s = np.array([0.9, 0.2, 0.8, 0.6, 0.1, 0.7])
    y = np.array([1, 0, 1, 0, 0, 1])
    rep = stress_report(s, y, ["q", "q", "s", "s", "s", "q"], threshold=0.5, min_rows=1)
    assert rep["s"]["benign_blocked"] == 0.5 and rep["q"]["harmful_blocked"] == 1.0
    assert summary(s, y, 0.5)["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1))


def test_fit_direction_folds_scaling_back_onto_raw_states():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(200, 6)) * np.array([1, 10, 0.1, 1, 5, 2]) + 3
    y = (Z[:, 0] + 0.1 * Z[:, 1] > 3.5).astype(int)
    w, b = fit_direction(Z, y, C=0.5)
    ref = make_pipeline(
        StandardScaler(), LogisticRegression(C=0.5, class_weight="balanced", max_iter=3000)
    ).fit(Z, y)
    assert np.allclose(Z @ w + b, ref.decision_function(Z), atol=1e-6)


def _toy_features():
    # rows 0-3 one window each; row 4 a long benign text (3 windows); row 5 a long harmful text
    # whose harm sits in its second window only. Harm is feature 0.
    rng = np.random.default_rng(1)
    wins, owner = [], []
    spec = [(0, [0.0]), (1, [1.0]), (2, [0.0]), (3, [1.0]), (4, [0.0, 0.0, 0.0]), (5, [0.0, 1.0])]
    for row, values in spec:
        for v in values:
            s = rng.normal(scale=0.05, size=(1, 2, 4))
            s[0, :, 0] += v
            wins.append(s)
            owner.append(row)
    states = np.stack(wins).astype(np.float16)  # [n_win, 1 layer, 2 positions, 4 hidden]
    y = np.array([0, 1, 0, 1, 0, 1])
    return Features(states, np.array(owner)), y


def test_latent_head_reads_the_most_harmful_window_and_not_length():
    feats, y = _toy_features()
    head = fit_latent_head(feats, y, np.arange(6), layer_index=0, position=-1, C=10.0)
    p = head.row_scores(feats, np.arange(6))
    assert p[5] > 0.5 > p[4]  # the harmful window decides; three benign windows stay benign
    assert p[1] > 0.5 > p[0]


def test_pool_is_the_policys_pooling():
    probs = {
        "harmfulness": np.array([0.9]),
        "embedding_harm": np.array([0.2]),
        "multilingual_harm": np.array([0.7]),
    }
    weights = {"harmfulness": 1.0, "embedding_harm": 0.5, "multilingual_harm": 2.0}
    ev = [
        Evidence(source="latent", name="harmfulness", value=0.9),
        Evidence(source="blackbox", name="embedding_harm", value=0.2),
        Evidence(source="blackbox", name="multilingual_harm", value=0.7),
    ]
    assert pool(probs, weights)[0] == pytest.approx(pool_harm(ev, weights)[0], abs=1e-9)
    with pytest.raises(InputError):
        pool(probs, {"harmfulness": 0.0})


class CountingEmbedder:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def transform(self, texts):
        self.calls.append(len(texts))
        return np.array([[len(t), t.count("a")] for t in texts], dtype=np.float32)


def test_embedding_cache_embeds_each_text_once(tmp_path):
    emb = CountingEmbedder()
    cache = EmbeddingCache(tmp_path, "toy", emb)
    first = cache.transform(["aa", "b", "aa"])
    again = EmbeddingCache(tmp_path, "toy", emb).transform(["b", "aa", "new a"])
    assert emb.calls == [2, 1]  # the repeat and the texts seen before are not embedded again
    assert np.array_equal(first[0], again[1]) and again[2].tolist() == [5.0, 1.0]


def test_grouped_fit_end_to_end_on_a_tiny_host(tmp_path):
    """`guard fit --grouped` on a tiny random host: compare, choose, refit, save, load, decide."""
    from guard import Guard
    from guard.fitting.grouped_fit import run
    from tests._synthetic import FRAMES, synthetic
    from tests.conftest import make_host

    host = make_host("llama", layers=6)
    prompts, labels = synthetic()
    rows = [
        ex(p, "harmful" if y else "benign", source="toy", form=f"frame{i % len(FRAMES)}")
        for i, (p, y) in enumerate(zip(prompts, labels))
    ]
    rows += [
        ex(f"{p} (again)", "harmful" if y else "benign", source="toy2", form="again")
        for p, y in zip(prompts, labels)
    ]
    report = run(
        tmp_path / "g", host, cache_dir=tmp_path / "cache", rows=rows, with_reply=False, progress=False
    )
    assert report["chosen"]["latent"].startswith("latent@")
    assert set(report["grouped"]["stress_by_form"]) >= {"again"}
    assert 0.0 <= report["chosen"]["threshold"] <= 1.0
    for sub in ("prompt_refusal_embedding", "multilingual_harm", "harm_mlp"):
        assert (tmp_path / "g" / "classifiers" / sub / "model.json").is_file()
    assert {"minilm+use:mlp", "minilm+use+mpnet:mlp", "mpnet"} <= set(report["candidates"])
    g = Guard.load(tmp_path / "g", host=host)
    assert set(g.policy.harm_weights) <= {
        "harmfulness",
        "embedding_harm",
        "multilingual_harm",
        "combined_harm",
    }
    assert "combined_harm" in g.detectors
    # the reject option is fitted with it, its grouped coverage-risk figures in the report
    assert (
        g.reject_option is not None
        and report["reject_option"]["held_out"]["coverage_risk"][0]["coverage"] == 1.0
    )
    assert any(e.source == "reject_option" for e in g.check("How do I bake bread?").evidence)
    assert g.check("How do I bomb at home?").action.value in {"refuse", "abstain", "answer"}
    # the cache is reused: a second run computes no host state again
    n_shards = len(list((tmp_path / "cache" / "states").glob("shard-*.npz")))
    run(tmp_path / "g2", host, cache_dir=tmp_path / "cache", rows=rows, with_reply=False, progress=False)
    assert len(list((tmp_path / "cache" / "states").glob("shard-*.npz"))) == n_shards
