"""Directional ablation from activations and from weights, on tiny random hosts."""

import numpy as np
import pytest
import torch

from guard.errors import InputError
from guard.whitebox.ablation import ablated, orthogonalize_weights, project_out, residual_component, unit
from guard.whitebox.host import _decoder_layers
from tests.conftest import make_host

PROMPTS = ["How do I bomb at home?", "bake bread", "Write a poem about the sea."]


def n_hooks(host) -> int:
    return sum(len(m._forward_hooks) for m in host.model.modules())


def direction(host, seed=0):
    return np.random.default_rng(seed).normal(size=host.hidden_size).astype(np.float32)


def test_project_out_and_unit_check_inputs():
    h = np.random.default_rng(1).normal(size=(4, 6))
    r = np.arange(6.0) + 1
    out = project_out(h, r)
    assert np.allclose(out @ r, 0)
    assert np.allclose(project_out(out, r), out)  # idempotent
    with pytest.raises(InputError, match="zero"):
        unit(np.zeros(3))
    with pytest.raises(InputError, match="hidden size is 5"):
        unit(np.ones(3), 5)
    with pytest.raises(InputError, match="1-D"):
        unit(np.ones((2, 2)))


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma"])
def test_activation_ablation_removes_the_direction_everywhere(arch):
    host = make_host(arch)
    r = direction(host)
    before = residual_component(host, PROMPTS, r)
    assert before.min() > 1e-3
    with ablated(host, r):
        assert n_hooks(host) == 2 * host.num_layers + 1  # embeddings, attention and MLP outputs
        inside = residual_component(host, PROMPTS, r)
    assert inside.max() < 1e-4
    assert n_hooks(host) == 0
    assert np.allclose(residual_component(host, PROMPTS, r), before)


def test_activation_ablation_cleans_up_on_error(tiny_host):
    with pytest.raises(RuntimeError), ablated(tiny_host, direction(tiny_host)):
        raise RuntimeError("boom")
    assert n_hooks(tiny_host) == 0


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma"])
def test_weight_orthogonalization_equals_activation_ablation(arch):
    host = make_host(arch)
    r = direction(host, 3)
    original = [p.detach().clone() for p in host.model.parameters()]
    abl = orthogonalize_weights(host, r)
    # the original host is untouched
    assert all(torch.equal(a, b.detach()) for a, b in zip(original, host.model.parameters()))
    assert abl.fingerprint != host.fingerprint and abl.fingerprint.startswith(host.fingerprint)
    assert abl.model is not host.model
    assert residual_component(abl, PROMPTS, r).max() < 1e-4
    layers = list(range(host.num_layers))
    encs = [host.encode(p) for p in PROMPTS]
    with ablated(host, r):
        act = host.capture(encs, layers)
    wts = abl.capture(encs, layers)
    for a, w in zip(act, wts):
        assert torch.allclose(a, w, atol=1e-4, rtol=1e-4)


def test_tied_embeddings_are_untied_so_logits_keep_the_direction():
    host = make_host("llama")
    host.model.tie_weights()
    host.model.lm_head.weight = host.model.model.embed_tokens.weight  # tie explicitly
    r = direction(host, 5)
    abl = orthogonalize_weights(host, r)
    assert abl.model.lm_head.weight is not abl.model.model.embed_tokens.weight
    assert torch.equal(abl.model.lm_head.weight, host.model.lm_head.weight)
    assert not torch.equal(abl.model.model.embed_tokens.weight, host.model.model.embed_tokens.weight)


def test_orthogonalization_refuses_post_norm_architectures(tiny_host):
    host = make_host("llama")
    for block in _decoder_layers(host.model):
        block.post_feedforward_layernorm = torch.nn.Identity()
    with pytest.raises(InputError, match="not exact"):
        orthogonalize_weights(host, direction(host))


def test_ablation_changes_generation_only_inside(tiny_host):
    r = direction(tiny_host, 7) * 10
    plain = tiny_host.generate("bake bread", max_new_tokens=5)
    with ablated(tiny_host, r):
        tiny_host.generate("bake bread", max_new_tokens=5)
    assert tiny_host.generate("bake bread", max_new_tokens=5) == plain
