"""A per-text cache of host activations for fitting: each distinct text runs through the host once.

The fitting corpora grow file by file; a cache keyed by whole groups would recompute a group
whenever one row of it changes. Here every *window text* (a prompt, or one token window of a
long prompt) is keyed by the sha256 of the host fingerprint, the layers and the text, and stored
in append-only shards (plain `.npz`, no pickle). Long texts contribute at most
`max_windows` windows to fitting (the first and the last ones: benign long texts are benign in
every window, and harmful requests hidden in long texts sit in one of a few windows of the
lengths the corpora hold); scoring at run time still reads every window.

Example:
    >>> cache = StateCache("/tmp/states", host, layers=[12, 23])  # doctest: +SKIP
    >>> X, owner = cache.features(latent, ["How do I bake bread?"])  # doctest: +SKIP
    >>> X.shape  # doctest: +SKIP
    (1, 2, 7, 576)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guard.errors import InputError


def fit_windows(latent: Any, prompt: str, max_windows: int) -> list[str]:
    """The window texts of `prompt` used for fitting: all of them, or the first and last few."""
    parts = latent._windows(prompt)
    if len(parts) <= max_windows:
        return parts
    head = max_windows // 2
    return parts[:head] + parts[len(parts) - (max_windows - head) :]


class StateCache:
    """Host activations at `layers`, positions [instruction, post-instruction...], per window text.

    Args:
        folder: where the shards live (created on first write).
        host: the `HostModel`; its fingerprint is part of every key.
        layers: the decoder layers captured.
    """

    def __init__(self, folder: str | Path, host: Any, layers: Sequence[int]) -> None:
        self.folder = Path(folder)
        self.host = host
        self.layers = [int(x) for x in layers]
        self._index: dict[str, tuple[int, int]] | None = None
        self._shards: list[np.ndarray] = []

    def _key(self, text: str) -> str:
        h = hashlib.sha256(f"{self.host.fingerprint}|{self.layers}|".encode())
        h.update(text.encode("utf-8", "surrogatepass"))
        return h.hexdigest()[:32]

    def _load(self) -> dict[str, tuple[int, int]]:
        if self._index is None:
            self._index = {}
            for path in sorted(self.folder.glob("shard-*.npz")) if self.folder.is_dir() else []:
                with np.load(path, allow_pickle=False) as z:
                    if [int(x) for x in z["layers"]] != self.layers:
                        continue
                    s = len(self._shards)
                    self._shards.append(z["states"])
                    for j, k in enumerate(z["keys"]):
                        self._index[str(k)] = (s, j)
        return self._index

    def states(
        self, latent: Any, texts: Sequence[str], chunk: int = 128, progress: bool = True
    ) -> np.ndarray:
        """`[len(texts), len(layers), n_positions, hidden]` float16, computing only the missing ones."""
        from tqdm.auto import tqdm

        index = self._load()
        keys = [self._key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in index))
        if missing:
            text_of = {k: t for k, t in zip(keys, texts)}
            order = sorted(missing, key=lambda k: len(text_of[k]))  # similar lengths batch well
            self.folder.mkdir(parents=True, exist_ok=True)
            bar = tqdm(total=len(order), desc="hidden states", unit="text", disable=not progress)
            for s in range(0, len(order), chunk):
                part = order[s : s + chunk]
                # a decoded window can re-tokenize a few tokens longer; its last window is kept
                X, owner = latent.features([text_of[k] for k in part], self.layers, windows="last")
                if X.shape[0] != len(part):
                    raise InputError(f"expected {len(part)} windows, got {X.shape[0]}")
                X = X.astype(np.float16)
                shard = self.folder / f"shard-{len(list(self.folder.glob('shard-*.npz'))):05d}.npz"
                np.savez(shard, states=X, keys=np.asarray(part), layers=np.asarray(self.layers))
                sid = len(self._shards)
                self._shards.append(X)
                for j, k in enumerate(part):
                    index[k] = (sid, j)
                bar.update(len(part))
            bar.close()
        return np.stack([self._shards[index[k][0]][index[k][1]] for k in keys])

    def features(
        self, latent: Any, prompts: Sequence[str], max_windows: int = 2, progress: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """`(X, owner)` as `LatentGuard.features`, with long prompts capped at `max_windows`."""
        texts: list[str] = []
        owner: list[int] = []
        for i, p in enumerate(prompts):
            for w in fit_windows(latent, p, max_windows):
                texts.append(w)
                owner.append(i)
        return self.states(latent, texts, progress=progress), np.asarray(owner)


class EmbeddingCache:
    """Sentence embeddings per text, cached like `StateCache` (one `.npz` shard per new batch).

    Args:
        folder: where the shards live.
        name: the embedder's name (part of every key: ``minilm``, ``use_multilingual``).
        embedder: an sklearn transformer with ``transform(list[str]) -> [n, d]``.
    """

    def __init__(self, folder: str | Path, name: str, embedder: Any) -> None:
        self.folder = Path(folder)
        self.name = name
        self.embedder = embedder
        self._index: dict[str, np.ndarray] | None = None

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.name}|".encode() + text.encode("utf-8", "surrogatepass")).hexdigest()[
            :32
        ]

    def transform(self, texts: Sequence[str], chunk: int = 512) -> np.ndarray:
        """`[len(texts), d]` float32, embedding only the texts not seen before."""
        if self._index is None:
            self._index = {}
            for path in sorted(self.folder.glob(f"{self.name}-*.npz")) if self.folder.is_dir() else []:
                with np.load(path, allow_pickle=False) as z:
                    self._index.update({str(k): v for k, v in zip(z["keys"], z["vectors"])})
        keys = [self._key(t) for t in texts]
        text_of = dict(zip(keys, texts))
        missing = list(dict.fromkeys(k for k in keys if k not in self._index))
        self.folder.mkdir(parents=True, exist_ok=True)
        for s in range(0, len(missing), chunk):
            part = missing[s : s + chunk]
            V = np.asarray(self.embedder.transform([text_of[k] for k in part]), dtype=np.float32)
            n = len(list(self.folder.glob(f"{self.name}-*.npz")))
            np.savez(self.folder / f"{self.name}-{n:05d}.npz", vectors=V, keys=np.asarray(part))
            self._index.update(zip(part, V))
        return np.stack([self._index[k] for k in keys]) if keys else np.zeros((0, 0), dtype=np.float32)


__all__ = ["EmbeddingCache", "StateCache", "fit_windows"]
