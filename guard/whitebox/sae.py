"""A small sparse autoencoder on the host's residual activations, with named features.

"Steering Language Model Refusal with Sparse Autoencoders": a sparse dictionary of the residual
stream at the Latent Guard's layer gives features a person can read. This module holds the
dictionary (encoder, decoder, biases) and the names the fitting gave its features that go with
harm (`guard.fitting.sae_fit`): a decision can then say which features fired
("feature 412: violence_weapons"), beside the dense harmfulness direction.

Example:
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(512, 16)).astype(np.float32)
    >>> sae = SparseAutoencoder(n_features=32, l1=1e-3, epochs=3, seed=0).fit(X)
    >>> sae.encode(X[:2]).shape
    (2, 32)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from guard.decision import Evidence
from guard.errors import ArtifactError, InputError

FORMAT = "latent-guardrail/sae"
FORMAT_VERSION = 1


class SparseAutoencoder:
    """ReLU sparse autoencoder ``f = relu(W_e (x / s - b_d) + b_e)``, ``x^ = s (W_d f + b_d)``.

    Fitted with Adam on MSE + `l1` times the decoder-norm-weighted L1 of the codes; decoder
    columns are kept at unit norm, inputs are scaled by their mean norm `s` (so `l1` does not
    depend on the layer's scale).

    Args:
        n_features: dictionary size.
        l1: sparsity penalty.
        epochs, batch_size, lr: the optimiser's schedule.
        seed: initialisation and shuffling seed.
    """

    def __init__(
        self,
        n_features: int = 1024,
        l1: float = 3e-3,
        epochs: int = 20,
        batch_size: int = 256,
        lr: float = 1e-3,
        seed: int = 0,
    ) -> None:
        self.n_features = int(n_features)
        self.l1 = float(l1)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.seed = int(seed)

    def fit(self, X: np.ndarray) -> SparseAutoencoder:
        """Learn the dictionary from activations ``[n, hidden]``."""
        import torch

        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[0] < 2 or not np.isfinite(X).all():
            raise InputError("fit needs finite activations of shape [n >= 2, hidden]")
        g = torch.Generator().manual_seed(self.seed)
        self.scale_ = float(np.linalg.norm(X, axis=1).mean()) or 1.0
        x = torch.from_numpy(X / self.scale_)
        d = x.shape[1]
        W_d = torch.randn(d, self.n_features, generator=g)
        W_d /= W_d.norm(dim=0, keepdim=True)
        params = {
            "W_e": W_d.T.clone().requires_grad_(),
            "b_e": torch.zeros(self.n_features, requires_grad=True),
            "W_d": W_d.requires_grad_(),
            "b_d": x.mean(0).clone().requires_grad_(),
        }
        opt = torch.optim.Adam(params.values(), lr=self.lr)
        for _ in range(self.epochs):
            for idx in torch.randperm(x.shape[0], generator=g).split(self.batch_size):
                xb = x[idx]
                f = torch.relu((xb - params["b_d"]) @ params["W_e"].T + params["b_e"])
                rec = f @ params["W_d"].T + params["b_d"]
                loss = ((rec - xb) ** 2).sum(1).mean() + self.l1 * (f * params["W_d"].norm(dim=0)).sum(
                    1
                ).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    params["W_d"] /= params["W_d"].norm(dim=0, keepdim=True).clamp(min=1e-8)
        self.W_e_, self.b_e_ = params["W_e"].detach().numpy(), params["b_e"].detach().numpy()
        self.W_d_, self.b_d_ = params["W_d"].detach().numpy(), params["b_d"].detach().numpy()
        return self

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Feature activations ``[n, n_features]`` (mostly zero)."""
        if not hasattr(self, "W_e_"):
            raise InputError("this SparseAutoencoder is not fitted")
        x = np.asarray(X, dtype=np.float32) / self.scale_
        return np.maximum((x - self.b_d_) @ self.W_e_.T + self.b_e_, 0.0)

    def decode(self, F: np.ndarray) -> np.ndarray:
        """Reconstructed activations from codes."""
        return (np.asarray(F, dtype=np.float32) @ self.W_d_.T + self.b_d_) * self.scale_

    def direction(self, feature: int) -> np.ndarray:
        """A feature's decoder direction (unit norm): a steering vector for it."""
        return self.W_d_[:, int(feature)].copy()

    def closest_feature(self, reference: np.ndarray) -> tuple[int, float]:
        """The feature whose decoder direction is closest (cosine) to `reference` ``[hidden]``,
        e.g. a dense refusal vector at the same layer: ``(feature, cosine)``.

        Example:
            >>> rng = np.random.default_rng(0)
            >>> sae = SparseAutoencoder(n_features=8, epochs=1).fit(rng.normal(size=(64, 4)))
            >>> k, cos = sae.closest_feature(sae.direction(3))
            >>> k, round(cos, 3)
            (3, 1.0)
        """
        r = np.asarray(reference, dtype=np.float64)
        if r.shape != (self.W_d_.shape[0],) or not np.isfinite(r).all() or not r.any():
            raise InputError(
                f"reference must be a finite non-zero vector of shape ({self.W_d_.shape[0]},), got {r.shape}"
            )
        W = self.W_d_.astype(np.float64)
        cos = (r @ W) / (np.linalg.norm(r) * np.maximum(np.linalg.norm(W, axis=0), 1e-12))
        k = int(np.argmax(cos))
        return k, float(cos[k])

    def stats(self, X: np.ndarray) -> dict[str, float]:
        """Fraction of variance explained and mean active features per input."""
        F = self.encode(X)
        rec = self.decode(F)
        X = np.asarray(X, dtype=np.float32)
        fve = 1.0 - float(((rec - X) ** 2).sum() / ((X - X.mean(0)) ** 2).sum())
        return {"variance_explained": fve, "mean_active_features": float((F > 0).sum(1).mean())}


class NamedFeatures:
    """A fitted SAE at the guard's layer and position, and the names of its harm-related features.

    Args:
        sae: the dictionary.
        layer, position: where it reads (the Latent Guard's layer; a position of its capture).
        names: feature index -> a human-readable name (the harm category it fires on most).
        harm_weight: feature index -> how much more it fires on harmful than benign fitting prompts.
    """

    report_: dict[str, Any]  # set by `load` from the artifact's metadata, absent otherwise

    def __init__(
        self,
        sae: SparseAutoencoder,
        layer: int,
        position: int,
        names: Mapping[int, str],
        harm_weight: Mapping[int, float],
    ) -> None:
        self.sae = sae
        self.layer = int(layer)
        self.position = int(position)
        self.names = {int(k): str(v) for k, v in names.items()}
        self.harm_weight = {int(k): float(v) for k, v in harm_weight.items()}

    def evidence(self, state: np.ndarray, top: int = 3) -> list[Evidence]:
        """The named harm features active on one prompt's state ``[hidden]``, strongest first."""
        f = self.sae.encode(np.asarray(state)[None])[0]
        active = [
            (k, float(f[k]) * self.harm_weight[k]) for k in self.names if f[k] > 0 and self.harm_weight[k] > 0
        ]
        active.sort(key=lambda x: -x[1])
        return [
            Evidence(
                source="latent",
                name=f"sae_feature_{k}",
                value=float(f[k]),
                detail=f"feature {k}: {self.names[k]}",
            )
            for k, _ in active[:top]
        ]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, report: dict[str, Any] | None = None) -> Path:
        """``sae.json`` + ``sae.safetensors`` (float16 weights) + a manifest."""
        from safetensors.numpy import save_file

        from guard.io.artifact_io import write_manifest

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        s = self.sae
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "layer": self.layer,
            "position": self.position,
            "n_features": s.n_features,
            "l1": s.l1,
            "scale": s.scale_,
            "names": {str(k): v for k, v in self.names.items()},
            "harm_weight": {str(k): v for k, v in self.harm_weight.items()},
            "report": report or {},
        }
        (folder / "sae.json").write_text(json.dumps(meta, indent=1, default=float), encoding="utf-8")
        save_file(
            {
                k: np.ascontiguousarray(getattr(s, k + "_").astype(np.float16))
                for k in ("W_e", "b_e", "W_d", "b_d")
            },
            str(folder / "sae.safetensors"),
        )
        write_manifest(folder)
        return folder

    @classmethod
    def load(cls, path: str | Path) -> NamedFeatures:
        """Load what `save` wrote (checksums verified).

        Raises:
            ArtifactError: missing, corrupt or invalid files.
        """
        from guard.io.artifact_io import read_folder

        folder = Path(path)
        meta, t = read_folder(
            folder, "sae.json", "sae.safetensors", FORMAT_VERSION, kind="SAE", manifest="error"
        )
        if meta.get("format") != FORMAT or not {"W_e", "b_e", "W_d", "b_d"} <= set(t):
            raise ArtifactError(f"{folder}: not an SAE v{FORMAT_VERSION}")
        sae = SparseAutoencoder(n_features=meta["n_features"], l1=meta["l1"])
        for k in ("W_e", "b_e", "W_d", "b_d"):
            setattr(sae, k + "_", t[k].astype(np.float32))
        sae.scale_ = float(meta["scale"])
        if not all(np.isfinite(getattr(sae, k + "_")).all() for k in ("W_e", "b_e", "W_d", "b_d")):
            raise ArtifactError(f"{folder}: non-finite SAE weights")
        out = cls(
            sae,
            meta["layer"],
            meta["position"],
            {int(k): v for k, v in meta["names"].items()},
            {int(k): v for k, v in meta["harm_weight"].items()},
        )
        out.report_ = meta.get("report", {})
        return out


__all__ = ["NamedFeatures", "SparseAutoencoder"]
