"""A harmfulness readout over several layers: scores, capture, prefill reuse, artifacts, fitting.

Tiny random hosts (tests/conftest.py); the readout is fitted on the synthetic prompts the way
``guard fit --grouped`` fits it (one logistic regression over the layers side by side).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from guard import Action, Guard, Policy
from guard.errors import ArtifactError, InputError
from guard.fitting.recipe import Features, fit_direction, fit_latent_head, latent_candidates
from guard.io.artifact_io import write_manifest
from guard.whitebox.latent import LatentGuard
from guard.whitebox.prefill import guarded_generate
from tests._synthetic import synthetic
from tests.conftest import make_host

HARMFUL = "How do I bomb at home?"
BENIGN = "How do I bread at home?"
READOUT = [1, 2, 3]


def _fitted_readout(lg: LatentGuard, prompts, labels) -> LatentGuard:
    X, _ = lg.features(prompts, READOUT, windows="last", align=True)
    Z = X[:, :, lg.position_, :].reshape(len(prompts), -1)
    y = np.array([int(v == "harmful" or v == 1) for v in labels])
    w, b = fit_direction(Z, y, C=1.0)
    return lg.set_readout(READOUT, w.reshape(len(READOUT), -1), b)


@pytest.fixture(scope="module")
def guard() -> Guard:
    host = make_host("llama")
    prompts, labels = synthetic()
    lg = LatentGuard(host, layers=[1, 2], C=1.0, cv=3, cosmic_shortlist=0, window_tokens=48, window_stride=32)
    lg.fit(prompts, labels, refusal_replies=["I can't help."], compliance_replies=["Sure, here:"])
    lg.platt_ = (1.0, 0.0)
    return Guard(_fitted_readout(lg, prompts, labels), Policy(threshold=0.5))


def test_score_is_the_sum_of_the_layers_projections(guard):
    lg = guard.latent
    assert lg.readout_layers == READOUT and lg.capture_layers == sorted({*READOUT, lg.layer_})
    prompts = [HARMFUL, BENIGN, "a poem about a fox"]
    X, _ = lg.features(prompts, lg.capture_layers, align=True)
    W, b = lg.readout()
    manual = b + sum(
        X[:, lg.capture_layers.index(layer), lg.position_, :].astype(np.float64) @ W[k]
        for k, layer in enumerate(READOUT)
    )
    s = lg.scores(prompts, with_states=True)
    np.testing.assert_allclose(s.harmfulness_raw, manual, rtol=1e-6, atol=1e-6)
    # the states other probes read stay those of `layer_`
    own = X[:, lg.capture_layers.index(lg.layer_)]
    np.testing.assert_allclose(s.states, own)
    # the readout separates the synthetic labels it was fitted on
    assert guard.check(HARMFUL).action is Action.REFUSE and guard.check(BENIGN).action is Action.ANSWER


def test_one_layer_states_are_refused_for_a_several_layer_readout(guard):
    with pytest.raises(InputError, match="reads layers"):
        guard.latent.project(np.zeros((1, guard.latent.n_positions_, guard.host.hidden_size)))
    with pytest.raises(InputError, match="do not hold"):
        guard.latent.project(np.zeros((1, 1, guard.latent.n_positions_, guard.host.hidden_size)))


@pytest.mark.parametrize("prompt", [HARMFUL, BENIGN, "steal the bread"])
def test_prefill_reuse_reads_every_readout_layer(guard, prompt):
    out = guarded_generate(guard, prompt, max_new_tokens=3)
    assert out.reused_prefill and out.fallback is None
    sep = guard.latent.scores([prompt])
    np.testing.assert_allclose(out.latent_scores["harmfulness_raw"], sep.harmfulness_raw[0], atol=1e-4)
    assert out.decision.action is guard.check(prompt).action


def test_refused_prompt_costs_the_prefill_only(guard):
    calls = []
    handle = guard.host.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        out = guarded_generate(guard, HARMFUL, max_new_tokens=8)
    finally:
        handle.remove()
    assert out.decision.action is Action.REFUSE and out.text == "" and len(calls) == 1


def test_saved_and_loaded_readout_is_equal(guard, tmp_path):
    guard.save(tmp_path / "g")
    meta = json.loads((tmp_path / "g" / "guard.json").read_text())
    assert meta["format_version"] == 2 and meta["latent"]["harm_layers"] == READOUT
    back = Guard.load(tmp_path / "g", host=guard.host)
    W0, b0 = guard.latent.readout()
    W1, b1 = back.latent.readout()
    np.testing.assert_array_equal(W0.astype(np.float32), W1.astype(np.float32))
    assert b0 == b1 and back.latent.readout_layers == READOUT
    prompts = [HARMFUL, BENIGN]
    np.testing.assert_allclose(
        back.latent.scores(prompts).harmfulness, guard.latent.scores(prompts).harmfulness
    )


def test_a_version_1_folder_of_one_layer_still_loads(guard, tmp_path):
    one = LatentGuard(guard.host, layers=[1, 2], C=1.0, cv=3, cosmic_shortlist=0)
    prompts, labels = synthetic()
    one.fit(prompts, labels, refusal_replies=["I can't help."], compliance_replies=["Sure, here:"])
    Guard(one, Policy(threshold=0.5)).save(tmp_path / "v1")
    meta_path = tmp_path / "v1" / "guard.json"
    meta = json.loads(meta_path.read_text())
    assert meta["latent"]["harm_layers"] is None
    meta["format_version"] = 1
    for key in ("harm_layers", "harm_bias"):
        meta["latent"].pop(key)
    meta_path.write_text(json.dumps(meta))
    write_manifest(tmp_path / "v1")
    back = Guard.load(tmp_path / "v1", host=guard.host)
    assert back.latent.readout_layers == [one.layer_]
    np.testing.assert_allclose(back.latent.score([HARMFUL]), one.score([HARMFUL]))


def test_a_readout_tensor_of_the_wrong_shape_is_refused(guard, tmp_path):
    from safetensors.numpy import load_file, save_file

    guard.save(tmp_path / "g")
    t = load_file(str(tmp_path / "g" / "latent.safetensors"))
    t["harm_directions"] = t["harm_directions"][:2]
    save_file(t, str(tmp_path / "g" / "latent.safetensors"))
    write_manifest(tmp_path / "g")
    with pytest.raises(ArtifactError, match="harm_directions"):
        Guard.load(tmp_path / "g", host=guard.host)


@pytest.mark.parametrize(
    "layers, shape, bias, match",
    [
        ([1, 1], (2, 8), 0.0, "distinct"),
        ([], (0, 8), 0.0, "distinct"),
        ([1, 2], (3, 8), 0.0, "do not match"),
        ([1, 2], (2, 8), float("nan"), "finite"),
    ],
)
def test_set_readout_checks_its_input(layers, shape, bias, match):
    with pytest.raises(InputError, match=match):
        LatentGuard(None).set_readout(layers, np.ones(shape), bias)


def test_fit_latent_head_over_several_layers():
    rng = np.random.default_rng(0)
    n, L, P, H = 80, 3, 2, 6
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    states = rng.normal(size=(n, L, P, H)).astype(np.float16)
    states[y == 1, 0, -1, 0] += 2.0  # layer 0 carries half the signal, layer 2 the other half
    states[y == 1, 2, -1, 1] += 2.0
    feats = Features(states=states, owner=np.arange(n), layers=(4, 8, 12))
    head = fit_latent_head(feats, y, np.arange(n), (0, 2), -1, C=1.0)
    assert head.w.shape == (2, H) and head.layer_indices == (0, 2)
    manual = states[:, 0, -1].astype(np.float64) @ head.w[0] + states[:, 2, -1].astype(np.float64) @ head.w[1]
    np.testing.assert_allclose(head.window_scores(states), manual + head.b)
    one = fit_latent_head(feats, y, np.arange(n), 0, -1, C=1.0)
    assert one.layer_index == 0 and one.w.shape == (1, H)
    with pytest.raises(InputError):
        _ = head.layer_index


def test_several_layer_candidates_are_named_by_their_layers():
    names = [c.name for c in latent_candidates((8, 12, 16, 20, 23))]
    assert "latent@12+16+20:post" in names and "latent@16:post" in names
    several = [c for c in latent_candidates((8, 12, 16, 20, 23)) if c.layer_indices]
    assert all(c.latent_layers == c.layer_indices for c in several)
