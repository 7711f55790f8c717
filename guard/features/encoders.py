"""The encoders `About` conditions measure similarity in, and the one step that runs them.

`guard.decision.rules` holds the pure condition algebra; this module owns the models: MiniLM
sentence embeddings or the host's hidden states.

Example:
    >>> from guard.features.encoders import about_scores
    >>> about_scores([], ["hi"])
    [{}]
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from guard.decision.rules import REFERENCE_PROMPTS, Encoder, Rule, _unique_abouts, fit_rules
from guard.errors import InputError


@functools.lru_cache(maxsize=1)
def embedding_encoder() -> Encoder:
    """The shared MiniLM sentence-embedding encoder (loaded on first use, once per process)."""
    from classifiers import SentenceEmbedder

    emb = SentenceEmbedder(cache=True)
    return Encoder(emb.transform, key="minilm")


def host_encoder(
    host: Any, layer: int | None = None, reference: Sequence[str] = REFERENCE_PROMPTS
) -> Encoder:
    """Hidden states of `host` at the last instruction token of `layer`, centred on `reference`.

    Raw residual-stream vectors share a large common component (all cosines are high), so the
    mean over generic prompts is removed before normalising.

    Args:
        host: a `guard.whitebox.host.HostModel`.
        layer: the decoder layer; default: two thirds of the way up.
        reference: generic prompts whose mean state is subtracted.
    """
    layer = int(host.num_layers * 2 // 3) if layer is None else int(layer)

    def states(texts: list[str]) -> np.ndarray:
        encs = [host.encode(t if t.strip() else ".") for t in texts]
        caps = host.capture(encs, [layer])
        return np.stack([c[0, e.instruction, :].numpy() for c, e in zip(caps, encs)]).astype(np.float64)

    mean = states(list(reference)).mean(axis=0)
    return Encoder(
        lambda texts: states(texts) - mean, key=f"host:{getattr(host, 'fingerprint', id(host))}:{layer}"
    )


def about_scores(
    rules: Sequence[Rule], prompts: Sequence[str], encoder: Encoder | None = None
) -> list[dict[str, float]]:
    """Similarity of each prompt to each `About` topic in the rules: one dict per prompt.

    Fits unfitted conditions on `encoder` first. The prompts are encoded once, in one batch.

    Example:
        >>> about_scores([], ["hi"])
        [{}]
    """
    if isinstance(prompts, str):
        raise InputError("about_scores expects a list of prompts")
    abouts = _unique_abouts(rules)
    if not abouts:
        return [{} for _ in prompts]
    encoder = encoder or embedding_encoder()
    fit_rules(rules, encoder)
    vecs = encoder.encode(list(prompts))
    cols = {a.name: a.similarity(vecs) for a in abouts}
    return [{name: float(v[i]) for name, v in cols.items()} for i in range(len(prompts))]


__all__ = ["about_scores", "embedding_encoder", "host_encoder"]
