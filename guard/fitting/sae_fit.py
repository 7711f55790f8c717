"""Fit the sparse autoencoder (`guard fit-sae`) and compare SAE features with the dense direction.

The activations are the grouped recipe's (`guard fit --grouped`): the Latent Guard's layer, every
captured position ([instruction, post-instruction...]) of a per-group sample of the fitting rows,
read from its `StateCache` (no host pass when that cache exists). The SAE learns a dictionary of
all of them; then, under the grouped folds of the generalisation issue, a logistic probe on the
SAE codes at the guard's position is compared with one on the dense states there (the dense
direction), and the features that fire more on harmful prompts are named by the harm category
they fire on most.

Example:
    >>> report = fit_sae(latent, "/tmp/sae", cache_dir="/tmp/fitwork")  # doctest: +SKIP
    >>> report["grouped_auroc"]["sae_codes"] > 0.8  # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from guard.decision.stats import auroc
from guard.fitting.grouped import group_of, grouped_folds, per_group_sample


def _probe_oof(
    F: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], C: float
) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    oof = np.zeros(len(y))
    for tr, te in folds:
        sc = StandardScaler().fit(F[tr])
        lr = LogisticRegression(C=C, max_iter=3000, class_weight="balanced").fit(sc.transform(F[tr]), y[tr])
        oof[te] = lr.decision_function(sc.transform(F[te]))
    return oof


def fit_sae(
    latent: Any,
    out: str | Path,
    *,
    cache_dir: str | Path,
    latent_per_group: int = 60,
    seed: int = 0,
    n_features: int = 1024,
    l1: float = 3e-2,
    epochs: int = 15,
    top_named: int = 40,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit, compare and save (``out``); returns the report.

    Args:
        latent: the shipped `LatentGuard` (its host, layer and position).
        out: folder for the SAE and its feature names.
        cache_dir: the grouped fit's features cache (``guard fit --grouped --features-cache``).
        latent_per_group: rows per (source, form) group, as in the grouped fit.
        n_features, l1, epochs: the dictionary's size, sparsity and schedule.
        top_named: how many harm-leaning features get a name.
    """
    from guard.fitting.grouped_fit import load_rows
    from guard.fitting.recipe import candidate_layers
    from guard.fitting.state_cache import StateCache
    from guard.whitebox.sae import NamedFeatures, SparseAutoencoder

    rows_all = load_rows()
    rows = [rows_all[i] for i in per_group_sample(rows_all, latent_per_group, seed)]
    host = latent._host()
    layers = list(candidate_layers(host.num_layers))
    cache = StateCache(Path(cache_dir) / "states", host, layers)
    X, owner = cache.features(latent, [r.prompt for r in rows], progress=progress)
    li = layers.index(int(latent.layer_))
    S = X[:, li].astype(np.float32)  # [n_windows, n_positions, hidden]
    last = np.array([np.flatnonzero(owner == i)[-1] for i in range(len(rows))])
    S = S[last]  # each row's last window, as the guard scores it
    pos = int(latent.position_) % S.shape[1]
    y = np.array([int(r.label == "harmful") for r in rows])
    sae = SparseAutoencoder(n_features=n_features, l1=l1, epochs=epochs, seed=seed).fit(
        S.reshape(-1, S.shape[-1])
    )
    codes = sae.encode(S[:, pos])
    folds = grouped_folds([group_of(r) for r in rows])
    dense = _probe_oof(S[:, pos], y, folds, C=0.05)
    sparse = _probe_oof(codes, y, folds, C=0.05)
    # harm-leaning features: fire more on harmful rows, then named by the category they fire on most
    act = codes > 0
    lift = act[y == 1].mean(0) - act[y == 0].mean(0)
    order = [int(k) for k in np.argsort(-lift)[:top_named] if lift[k] > 0]
    cats = np.array([r.category or "other_harm" for r in rows])
    sizes = Counter(cats[y == 1].tolist())
    big = [c for c, n in sizes.items() if n >= 20]
    names: dict[int, str] = {}
    for k in order:  # the category whose harmful rows it fires on most often (by rate, not count)
        rates = {c: float(act[(cats == c) & (y == 1), k].mean()) for c in big}
        names[k] = max(rates, key=lambda c: rates[c]) if rates else "harmful"
    single = {k: auroc(y, codes[:, k]) for k in order[:10]}
    report = {
        "n_rows": len(rows),
        "n_vectors": int(S.shape[0] * S.shape[1]),
        "layer": int(latent.layer_),
        "position": pos,
        "n_features": n_features,
        "l1": l1,
        **sae.stats(S.reshape(-1, S.shape[-1])),
        "groups": "(source, form), grouped_folds",
        "grouped_auroc": {"dense_states": auroc(y, dense), "sae_codes": auroc(y, sparse)},
        "named_features": {
            str(k): {
                "name": names[k],
                "harmful_minus_benign_firing": float(lift[k]),
                "single_feature_auroc": single.get(k),
            }
            for k in order
        },
    }
    NamedFeatures(sae, int(latent.layer_), pos, names, {k: float(lift[k]) for k in order}).save(out, report)
    return report


__all__ = ["fit_sae"]
