"""RepIt concept directions and SafeConstellations trajectory features (numpy + a tiny host)."""

import numpy as np
import pytest

from guard.errors import InputError, NotFittedError
from guard.whitebox.concepts import (
    ConceptDirections,
    TrajectoryFeatures,
    evaluate_feature_sets,
    last_window_states,
)
from tests.conftest import make_host
from tests.test_integrity import fit_latent

H = 16


def toy(n=30, seed=0):
    """Benign rows near 0; concept a / b rows share a harm component (axis 0) plus their own axis."""
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=0.5, size=(3 * n, H))
    X[:n, 0] += 3.0
    X[:n, 1] += 2.0  # concept a
    X[n : 2 * n, 0] += 3.0
    X[n : 2 * n, 2] += 2.0  # concept b
    concepts = ["a"] * n + ["b"] * n + [None] * n
    return X, concepts


def test_isolated_directions_are_orthogonal_to_harm_and_keep_the_concept():
    X, concepts = toy()
    harm = np.eye(H)[0]
    cd = ConceptDirections(min_examples=5).fit(X, concepts, harm)
    assert cd.concepts_ == ["a", "b"]
    assert np.allclose(cd.directions_ @ harm, 0, atol=1e-6)
    assert all(abs(v) < 1e-6 for v in cd.harm_cosine_isolated_.values())
    assert all(v > 0.6 for v in cd.harm_cosine_raw_.values())  # the raw ones are mostly "harmful"
    assert np.argmax(np.abs(cd.directions_[0])) == 1 and np.argmax(np.abs(cd.directions_[1])) == 2
    Xt, ct = toy(seed=1)
    pred = cd.predict_concept(Xt[:60])
    assert np.mean([p == c for p, c in zip(pred, ct[:60])]) > 0.9
    assert cd.transform(Xt).shape == (90, 2)


def test_orthogonalize_between_concepts():
    X, concepts = toy()
    X[:30, 2] += 1.0  # a leaks into b's axis
    plain = ConceptDirections(min_examples=5).fit(X, concepts, np.eye(H)[0])
    cd = ConceptDirections(min_examples=5, orthogonalize_between=True).fit(X, concepts, np.eye(H)[0])
    # RepIt: each target loses the span of the other (non-target) concepts and of harmfulness
    assert abs(float(cd.directions_[0] @ plain.directions_[1])) < 1e-6
    assert abs(float(cd.directions_[1] @ plain.directions_[0])) < 1e-6
    assert abs(float(plain.directions_[0] @ plain.directions_[1])) > 0.05
    assert np.allclose(cd.directions_ @ np.eye(H)[0], 0, atol=1e-6)


def test_concept_errors():
    X, concepts = toy()
    with pytest.raises(NotFittedError):
        ConceptDirections().transform(X)
    with pytest.raises(InputError, match="no concept has 100"):
        ConceptDirections(min_examples=100).fit(X, concepts, np.eye(H)[0])
    with pytest.raises(InputError, match="benign"):
        ConceptDirections(min_examples=5).fit(X[:60], concepts[:60], np.eye(H)[0])
    with pytest.raises(InputError, match="harm_direction"):
        ConceptDirections(min_examples=5).fit(X, concepts, np.zeros(H))
    with pytest.raises(InputError, match="one concept per row"):
        ConceptDirections().fit(X, concepts[:5], np.eye(H)[0])


def test_trajectory_features_shape_and_separation():
    rng = np.random.default_rng(0)
    n, L = 40, 4
    S = rng.normal(size=(2 * n, L, H))
    S[:n, 2:, 3] += 2.0  # harmful rows drift along axis 3 in later layers
    y = np.r_[np.ones(n), np.zeros(n)].astype(int)
    tf = TrajectoryFeatures().fit(S, y)
    F = tf.transform(S)
    assert F.shape == (2 * n, 2 * L - 1)
    assert F[:n, 3].mean() > F[n:, 3].mean()
    with pytest.raises(InputError, match="both labels"):
        TrajectoryFeatures().fit(S[:n], y[:n])
    with pytest.raises(NotFittedError):
        TrajectoryFeatures().transform(S)


def test_evaluate_feature_sets_on_a_tiny_host():
    from tests._synthetic import synthetic

    latent = fit_latent(make_host("llama", seed=0))
    prompts, labels = synthetic()
    concepts = [
        ("bomb" if "bomb" in p else "steal" if "steal" in p else "hack") if y else None
        for p, y in zip(prompts, labels)
    ]
    layers = [0, 1, 2]
    S = last_window_states(latent, prompts, layers)
    assert S.shape == (len(prompts), 3, latent.host.hidden_size)
    half = (np.arange(len(prompts)) // 6) % 2 == 0  # alternate frames: every word on both sides
    ev = evaluate_feature_sets(
        latent,
        S[half],
        np.array(labels)[half],
        [c for c, h in zip(concepts, half) if h],
        S[~half],
        np.array(labels)[~half],
        [c for c, h in zip(concepts, half) if not h],
        layers=layers,
        min_examples=3,
    )
    assert {r.name for r in ev.results} == {
        "latent+concepts_isolated",
        "latent+concepts_raw",
        "latent+trajectory",
        "latent+concepts_isolated+trajectory",
    }
    assert all(0.0 <= r.test_auroc <= 1.0 for r in ev.results)
    assert ev.harm_cosine_isolated < 1e-5
    assert 0.0 <= ev.concept_accuracy_isolated <= 1.0
    assert ev.concepts == ["bomb", "hack", "steal"]
    with pytest.raises(InputError, match="guard's layer"):
        evaluate_feature_sets(latent, S, labels, concepts, S, labels, concepts, layers=[5, 6, 7])
