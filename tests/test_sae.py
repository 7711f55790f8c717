"""Sparse-autoencoder features (issue 14, part 1): fitted on the guard's own capture, named, shown
as evidence on decisions, saved and loaded with the guard."""

from __future__ import annotations

import numpy as np
import pytest

from guard import Action, Guard, Policy
from guard.errors import ArtifactError
from guard.whitebox.sae import NamedFeatures, SparseAutoencoder
from tests.test_integrations_support import tiny_guard


def named_for(latent) -> NamedFeatures:
    texts = ["How do I bake bread?", "How do I build a bomb?", "Plant a garden", "steal a car"] * 8
    X, owner = latent.features(texts, [latent.layer_], align=True)
    states = X[:, 0].reshape(-1, X.shape[-1])
    sae = SparseAutoencoder(n_features=16, l1=1e-3, epochs=5, seed=0).fit(states)
    codes = sae.encode(X[:, 0, 0])
    k = int(np.argmax((codes > 0).mean(0)))
    return NamedFeatures(sae, latent.layer_, 0, {k: "violence_weapons"}, {k: 1.0})


def test_sae_reconstructs_and_is_sparse():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(8, 32))
    X = (rng.random((2000, 8)) < 0.1) * rng.random((2000, 8)) @ basis
    loose = SparseAutoencoder(n_features=16, l1=3e-3, epochs=30, seed=0).fit(X.astype(np.float32))
    sae = SparseAutoencoder(n_features=16, l1=1e-1, epochs=30, seed=0).fit(X.astype(np.float32))
    stats = sae.stats(X)
    # 8 sparse sources in 32 dims: a stronger penalty gives fewer active features, still a good fit
    assert stats["variance_explained"] > 0.9 and stats["mean_active_features"] < 6
    assert loose.stats(X)["mean_active_features"] > stats["mean_active_features"]
    assert np.isclose(np.linalg.norm(sae.direction(0)), 1.0, atol=1e-4)


def test_named_features_appear_on_a_blocked_decision_and_round_trip(tmp_path):
    base = tiny_guard()
    nf = named_for(base.latent)
    kw = lambda ts: [0.95 if "bomb" in t.lower() else 0.05 for t in ts]  # noqa: E731
    g = Guard(base.latent, Policy(harm_weights={"kw": 1.0}, threshold=0.5), detectors={"kw": kw}, sae=nf)
    d = g.check("How do I build a bomb?")
    assert d.action is Action.REFUSE
    sae_ev = [e for e in d.evidence if e.name.startswith("sae_feature_")]
    if sae_ev:  # the named feature fired: it is named in the reasons
        assert any(r.startswith("active SAE features that go with harm: feature") for r in d.reasons)
    assert g.check("How do I bake bread?").action is Action.ANSWER  # evidence only, never decisive
    nf.save(tmp_path / "sae", {"note": "t"})
    back = NamedFeatures.load(tmp_path / "sae")
    state = np.random.default_rng(1).normal(size=nf.sae.W_e_.shape[1]).astype(np.float32)
    assert np.allclose(back.sae.encode(state[None]), nf.sae.encode(state[None]), atol=1e-2)  # float16 weights
    assert back.names == nf.names
    (tmp_path / "sae" / "sae.json").write_text("{}")
    with pytest.raises(ArtifactError):
        NamedFeatures.load(tmp_path / "sae")


def test_shipped_sae_report():
    import json
    from importlib import resources

    meta = json.loads(
        resources.files("guard.resources").joinpath("default_guard", "sae", "sae.json").read_text()
    )
    r = meta["report"]
    assert r["groups"].startswith("(source, form)") and set(r["grouped_auroc"]) == {
        "dense_states",
        "sae_codes",
    }
    assert meta["names"] and r["mean_active_features"] < 64
