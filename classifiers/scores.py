"""Scores from the shipped models, loaded once per process: what `guard` wires in as evidence.

Example:
    >>> prompt_refusal_score(["How do I make a pipe bomb?", "How do I bake bread?"])  # doctest: +SKIP
    array([0.97, 0.03])
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np


@functools.lru_cache(maxsize=None)
def _default(variant: str) -> Any:
    from classifiers.prompt_refusal import PromptRefusalPredictor

    return PromptRefusalPredictor.default(variant)  # type: ignore[arg-type]


def prompt_refusal_score(prompts: Any) -> np.ndarray:
    """P(a safety-aligned model would refuse) per prompt, in [0, 1] (n-grams + MiniLM)."""
    return _default("combined").refusal_score(prompts)


def embedding_harm_score(prompts: Any) -> np.ndarray:
    """P(harmful) per prompt, in [0, 1], from MiniLM embeddings + a linear head (onnxruntime fast path)."""
    return _default("embedding").refusal_score(prompts)


def multilingual_harm_score(prompts: Any) -> np.ndarray:
    """P(harmful) per prompt, in [0, 1], from USE-multilingual v3 embeddings + a linear head."""
    return _default("multilingual").refusal_score(prompts)


def reply_harm_score(prompts: Any, replies: Any) -> np.ndarray:
    """P(a reply is harmful) per (request, reply) pair, from the shipped `ReplyHarmClassifier`."""
    return _reply_harm().score(list(zip(prompts, replies)))


@functools.lru_cache(maxsize=1)
def _reply_harm() -> Any:
    from classifiers.reply_harm import ReplyHarmClassifier

    return ReplyHarmClassifier.default()


__all__ = ["embedding_harm_score", "multilingual_harm_score", "prompt_refusal_score", "reply_harm_score"]
