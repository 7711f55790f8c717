"""Directional ablation: remove one direction from a host's residual stream ("abliteration").

Two equivalent ways ("Refusal in Language Models Is Mediated by a Single Direction"):

* from **activations**: `ablated(host, r)` projects r̂ out of the embedding output and of every
  attention and MLP output while inside the block (hooks removed in `finally`);
* from **weights**: `orthogonalize_weights(host, r)` returns a *new* host whose matrices that
  write into the residual stream (token embeddings, attention output and MLP down projections)
  are orthogonalised against r̂, which is what an abliterated checkpoint is. The original host is
  left untouched. Tied input/output embeddings are untied first so the unembedding is unchanged.

For a pre-norm decoder (llama, qwen2, mistral, gemma 1) both give the same activations up to
floating-point error. The guard uses them to test itself: after ablating the refusal direction,
its harmfulness reading must hold (`guard steer-eval`), and `guard.whitebox.integrity` must notice.

Example:
    >>> import numpy as np
    >>> h = np.array([[1.0, 2.0]]); r = np.array([0.0, 3.0])
    >>> project_out(h, r)
    array([[1., 0.]])
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from guard.errors import InputError
from guard.whitebox.host import HostModel, _decoder_layers

# module names that write a sublayer's output into the residual stream, by architecture family
_WRITERS = ("o_proj", "down_proj", "out_proj", "dense_4h_to_h", "fc2", "c_proj")
# norms applied *after* a sublayer (gemma 2/3, olmo 2): weight orthogonalisation is not exact there
_POST_NORMS = ("post_feedforward_layernorm", "post_attention_norm", "post_mlp_layernorm")


def unit(direction: Any, hidden_size: int | None = None) -> np.ndarray:
    """The direction as a float64 unit vector, checked.

    Raises:
        InputError: not 1-D, wrong length, zero or not finite.

    Example:
        >>> unit([3.0, 4.0]).tolist()
        [0.6, 0.8]
    """
    r = np.asarray(direction, dtype=np.float64)
    if r.ndim != 1:
        raise InputError(f"a direction must be 1-D, got shape {r.shape}")
    if hidden_size is not None and r.shape[0] != hidden_size:
        raise InputError(f"direction has length {r.shape[0]}, the host's hidden size is {hidden_size}")
    n = np.linalg.norm(r)
    if not np.isfinite(n) or n < 1e-12:
        raise InputError("the direction is zero or not finite; nothing to ablate")
    return r / n


def project_out(states: np.ndarray, direction: Any) -> np.ndarray:
    """`states - (states . r̂) r̂` along the last axis (numpy)."""
    r = unit(direction, np.shape(states)[-1])
    s = np.asarray(states, dtype=np.float64)
    return s - (s @ r)[..., None] * r


def _ablate_fn(r_hat: Any) -> Any:
    def fn(h: Any) -> Any:
        r = r_hat.to(device=h.device, dtype=h.dtype)
        return h - (h @ r).unsqueeze(-1) * r

    return fn


@contextlib.contextmanager
def ablated(
    host: HostModel, direction: Any, layers: Sequence[int] | None = None, *, embeddings: bool = True
) -> Iterator[None]:
    """Project `direction` out of everything written into the residual stream, inside the block.

    The direction is removed from the token-embedding output and from the output of every
    sublayer that writes into the stream (attention output and MLP down projections), so no
    read of the stream (the next sublayer's input, a decoder layer's output) sees it. This is
    exactly what `orthogonalize_weights` does to the weights. For a layer where no such
    projection is recognised, the decoder layer's output is ablated instead. Hooks are removed
    in `finally`.

    Args:
        host: the host.
        direction: `[hidden]`, any norm.
        layers: decoder layers whose writes are ablated; default: all of them.
        embeddings: also ablate the token-embedding output (the stream's start).

    Example:
        >>> with ablated(host, latent.refusal_direction_):  # doctest: +SKIP
        ...     latent.scores(prompts)
    """
    import torch

    r_hat = torch.as_tensor(unit(direction, host.hidden_size), dtype=torch.float32)
    blocks = _decoder_layers(host.model)
    layers = list(range(len(blocks))) if layers is None else [int(l) for l in layers]
    bad = [l for l in layers if not 0 <= l < len(blocks)]
    if bad:
        raise InputError(f"layers {bad} out of range 0..{len(blocks) - 1}")
    fn = _ablate_fn(r_hat)
    modules = [host.model.get_input_embeddings()] if embeddings else []
    fallback: dict[int, Any] = {}
    for l in layers:
        writers = _writers(blocks[l])
        if writers:
            modules.extend(writers)
        else:
            fallback[l] = fn
    handles = []
    # intervene holds the host's lock (one forward pass at a time) and owns the fallback hooks
    with host.intervene(fallback):
        try:
            for module in modules:
                handles.append(module.register_forward_hook(lambda _m, _i, out: fn(out)))
            yield
        finally:
            for handle in handles:
                handle.remove()


def _writers(layer: Any) -> list[Any]:
    import torch

    found = []
    for name, module in layer.named_modules():
        if name.split(".")[-1] in _WRITERS and isinstance(module, torch.nn.Linear):
            found.append(module)
    return found


def orthogonalize_weights(
    host: HostModel, direction: Any, *, fingerprint: str | None = None, name: str | None = None
) -> HostModel:
    """A copy of `host` whose weights can no longer write `direction` into the residual stream.

    Args:
        host: the host (not modified).
        direction: `[hidden]`, any norm.
        fingerprint: the new host's fingerprint; default: the original's plus a hash of the
            direction (the weights differ, so artifacts fitted on the original do not load on it).
        name: the new host's name; default: ``"<name>+ablated"``.

    Raises:
        InputError: a bad direction, or an architecture with norms after its sublayers (where
            weight orthogonalisation is not exact; use `ablated` instead).

    Example:
        >>> abliterated = orthogonalize_weights(host, latent.refusal_direction_)  # doctest: +SKIP
    """
    import torch

    r = unit(direction, host.hidden_size)
    blocks = _decoder_layers(host.model)
    for block in blocks:
        post = [n for n in _POST_NORMS if hasattr(block, n)]
        if post:
            raise InputError(
                f"{type(block).__name__} normalises after its sublayers ({post}); weight orthogonalisation is not "
                "exact there: use guard.whitebox.ablation.ablated(host, direction) on activations instead"
            )
        if not _writers(block):
            raise InputError(f"found no output projection ({', '.join(_WRITERS)}) in {type(block).__name__}")
    model = copy.deepcopy(host.model)
    with torch.no_grad():
        emb = model.get_input_embeddings()
        out_emb = model.get_output_embeddings()
        if out_emb is not None and out_emb.weight is emb.weight:
            out_emb.weight = torch.nn.Parameter(emb.weight.detach().clone())
            model.config.tie_word_embeddings = False
            if hasattr(model.config, "get_text_config"):
                model.config.get_text_config().tie_word_embeddings = False
        r_t = torch.as_tensor(r, dtype=emb.weight.dtype, device=emb.weight.device)
        # embeddings: rows live in the residual space
        emb.weight -= (emb.weight @ r_t)[:, None] * r_t[None, :]
        for block in _decoder_layers(model):
            for lin in _writers(block):
                W = lin.weight  # [hidden_out, in]
                rw = r_t.to(W.dtype).to(W.device)
                W -= rw[:, None] * (rw @ W)[None, :]
                if lin.bias is not None:
                    lin.bias -= (lin.bias @ rw) * rw
    digest = hashlib.sha256(np.asarray(r, dtype=np.float32).tobytes()).hexdigest()[:12]
    return HostModel(
        model.eval(),
        host.tokenizer,
        name=name or f"{host.name}+ablated",
        fingerprint=fingerprint if fingerprint is not None else f"{host.fingerprint}+ablated-{digest}",
        source=host.source,
    )


def residual_component(
    host: HostModel, prompts: Sequence[str], direction: Any, layers: Sequence[int] | None = None
) -> np.ndarray:
    """Largest |projection| on r̂ over all token positions, per prompt and layer: `[n, layers]`.

    Near zero at every layer for an ablated host (a quick check that the ablation took).

    Example:
        >>> residual_component(host, ["hi"], r, [3]).shape  # doctest: +SKIP
        (1, 1)
    """
    if isinstance(prompts, str):
        raise InputError("residual_component expects a list of prompts")
    r = unit(direction, host.hidden_size)
    layers = list(range(host.num_layers)) if layers is None else list(layers)
    states = host.capture([host.encode(p) for p in prompts], layers)
    return np.stack([np.abs(s.numpy().astype(np.float64) @ r).max(axis=-1) for s in states])


__all__ = ["ablated", "orthogonalize_weights", "project_out", "residual_component", "unit"]
