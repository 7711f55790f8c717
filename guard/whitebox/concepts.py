"""Concept isolation (RepIt) and layer trajectories (SafeConstellations) as optional guard features.

* `ConceptDirections`: one direction per harm concept (category), the difference between the
  concept's harmful prompts and benign prompts, with the general harmfulness direction projected
  out ("RepIt: Representing Isolated Targets"): what is left is what makes *this* concept
  different, not "harmful in general". Optionally each is also made orthogonal to the other
  concepts.
* `TrajectoryFeatures`: how a prompt's representation moves through the layers
  ("SafeConstellations"): at each layer the projection on that layer's harmful-vs-benign
  direction, and for each step between layers the projection of the displacement on the mean
  displacement difference.

Both are *optional* Latent Guard features: `evaluate_feature_sets` fits a logistic regression on
the guard's own harmfulness score plus each feature set on one split and reports the AUROC on a
held-out split next to the guard's alone, so each set's effect is measured, not assumed.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 8)); X[:10, 0] += 3; X[10:20, 1] += 3
    >>> concepts = ["a"] * 10 + ["b"] * 10 + [None] * 20
    >>> cd = ConceptDirections(min_examples=5).fit(X, concepts, harm_direction=np.eye(8)[2])
    >>> cd.concepts_
    ['a', 'b']
    >>> bool(abs(cd.directions_ @ np.eye(8)[2]).max() < 1e-9)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from guard.decision.stats import auroc
from guard.errors import InputError, NotFittedError
from guard.whitebox.latent import LatentGuard


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


class ConceptDirections:
    """Per-concept directions isolated from the general harmfulness direction (RepIt).

    Follows scikit-learn conventions (`fit` returns self, learned attributes end in `_`).

    Args:
        min_examples: concepts with fewer harmful examples are skipped.
        orthogonalize_between: also remove from each concept the span of the other concepts.

    Attributes:
        concepts_: concept names kept, in order.
        raw_directions_: `[K, hidden]` concept mean minus benign mean.
        directions_: `[K, hidden]` unit, isolated directions.
        offset_: the benign mean (origin of the projections).
        harm_cosine_raw_ / harm_cosine_isolated_: cosine of each concept direction with the
            harmfulness direction, before and after isolation.
    """

    def __init__(self, *, min_examples: int = 8, orthogonalize_between: bool = False) -> None:
        self.min_examples = min_examples
        self.orthogonalize_between = orthogonalize_between

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"min_examples": self.min_examples, "orthogonalize_between": self.orthogonalize_between}

    def set_params(self, **params: Any) -> ConceptDirections:
        for k, v in params.items():
            if k not in self.get_params():
                raise InputError(f"unknown parameter {k!r} for ConceptDirections")
            setattr(self, k, v)
        return self

    def fit(
        self, states: np.ndarray, concepts: Sequence[str | None], harm_direction: np.ndarray
    ) -> ConceptDirections:
        """Learn the directions.

        Args:
            states: `[n, hidden]` activations (e.g. at the guard's layer and position).
            concepts: per row, the harm concept of a harmful prompt, or None for a benign one.
            harm_direction: `[hidden]` the general harmfulness direction (e.g. `latent.direction_`).

        Raises:
            InputError: shapes disagree, no benign rows, or no concept with `min_examples` rows.
        """
        X = np.asarray(states, dtype=np.float64)
        concepts = list(concepts)
        if X.ndim != 2 or len(concepts) != len(X):
            raise InputError(
                f"states must be [n, hidden] with one concept per row; got {X.shape} and {len(concepts)}"
            )
        h = np.asarray(harm_direction, dtype=np.float64)
        if h.shape != (X.shape[1],) or not np.linalg.norm(h) > 0:
            raise InputError(
                f"harm_direction must be a non-zero vector of length {X.shape[1]}, got shape {h.shape}"
            )
        benign = np.array([c is None for c in concepts])
        if benign.sum() < 2:
            raise InputError("need at least 2 benign rows (concept None) to anchor the concept directions")
        names = sorted({c for c in concepts if c is not None})
        kept = [c for c in names if sum(1 for x in concepts if x == c) >= self.min_examples]
        if not kept:
            raise InputError(
                f"no concept has {self.min_examples} examples; counts: "
                f"{ {c: concepts.count(c) for c in names} }"
            )
        h_hat = _unit(h)
        self.offset_ = X[benign].mean(0)
        raw = np.stack([X[np.array([c == k for c in concepts])].mean(0) - self.offset_ for k in kept])
        iso = raw - (raw @ h_hat)[:, None] * h_hat[None, :]
        if self.orthogonalize_between and len(kept) > 1:
            out = []
            for i in range(len(kept)):
                others = np.delete(iso, i, axis=0)
                q, _ = np.linalg.qr(np.concatenate([others, h_hat[None, :]]).T)
                out.append(iso[i] - q @ (q.T @ iso[i]))
            iso = np.stack(out)
        self.concepts_ = kept
        self.raw_directions_ = raw.astype(np.float32)
        self.directions_ = _unit(iso).astype(np.float32)
        self.harm_cosine_raw_ = {k: float(_unit(r) @ h_hat) for k, r in zip(kept, raw)}
        self.harm_cosine_isolated_ = {
            k: float(d @ h_hat) for k, d in zip(kept, self.directions_.astype(np.float64))
        }
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "directions_"):
            raise NotFittedError("ConceptDirections is not fitted; call fit()")

    def transform(self, states: np.ndarray, *, isolated: bool = True) -> np.ndarray:
        """Projections `[n, K]` on the (isolated, else raw unit) concept directions."""
        self._check_fitted()
        X = np.asarray(states, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.directions_.shape[1]:
            raise InputError(f"states must be [n, {self.directions_.shape[1]}], got {X.shape}")
        D = self.directions_ if isolated else _unit(self.raw_directions_.astype(np.float64))
        return (X - self.offset_) @ D.T.astype(np.float64)

    def predict_concept(self, states: np.ndarray, *, isolated: bool = True) -> list[str]:
        """The concept with the largest projection, per row."""
        P = self.transform(states, isolated=isolated)
        return [self.concepts_[i] for i in P.argmax(1)]


class TrajectoryFeatures:
    """Layer-trajectory features (SafeConstellations): per-layer projections and step projections.

    Attributes:
        directions_: `[L, hidden]` unit harmful-minus-benign direction per layer.
        centres_: `[L, hidden]` midpoint of the class means per layer.
        step_directions_: `[L-1, hidden]` unit difference of the mean displacement between layers.
    """

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {}

    def fit(self, states: np.ndarray, y: Sequence[int] | np.ndarray) -> TrajectoryFeatures:
        """Learn from `states` `[n, L, hidden]` and labels (1 harmful, 0 benign)."""
        X = np.asarray(states, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 3 or len(y) != len(X):
            raise InputError(
                f"states must be [n, layers, hidden] with one label per row; got {X.shape}, {len(y)} labels"
            )
        if len(np.unique(y)) != 2:
            raise InputError("TrajectoryFeatures needs both labels")
        m1, m0 = X[y == 1].mean(0), X[y == 0].mean(0)
        self.directions_ = _unit(m1 - m0).astype(np.float32)
        self.centres_ = (0.5 * (m1 + m0)).astype(np.float32)
        steps = np.diff(X, axis=1)
        self.step_directions_ = _unit(steps[y == 1].mean(0) - steps[y == 0].mean(0)).astype(np.float32)
        return self

    def transform(self, states: np.ndarray) -> np.ndarray:
        """`[n, 2L-1]`: per-layer projections, then per-step displacement projections."""
        if not hasattr(self, "directions_"):
            raise NotFittedError("TrajectoryFeatures is not fitted; call fit()")
        X = np.asarray(states, dtype=np.float64)
        if X.ndim != 3 or X.shape[1:] != self.directions_.shape:
            raise InputError(
                f"states must be [n, {self.directions_.shape[0]}, {self.directions_.shape[1]}], got {X.shape}"
            )
        per_layer = np.einsum("nlh,lh->nl", X - self.centres_, self.directions_.astype(np.float64))
        per_step = np.einsum("nlh,lh->nl", np.diff(X, axis=1), self.step_directions_.astype(np.float64))
        return np.concatenate([per_layer, per_step], axis=1)


# ------------------------------------------------------------------------------------ evaluation
class FeatureSetResult(BaseModel):
    """Held-out AUROC of the guard's score plus one feature set."""

    name: str
    n_features: int
    test_auroc: float
    delta_vs_latent: float


class ConceptEvaluation(BaseModel):
    """The measured effect of each optional feature set on a held-out split.

    Attributes:
        n_fit / n_test: rows used to fit the feature sets and to measure them.
        layer / trajectory_layers: where the features were read.
        latent_auroc: the guard's own harmfulness score on the same held-out rows.
        results: one row per feature set.
        concepts: concepts kept by `ConceptDirections`.
        harm_cosine_raw / harm_cosine_isolated: mean |cosine| of the concept directions with the
            harmfulness direction, before and after isolation.
        concept_accuracy_raw / concept_accuracy_isolated: held-out accuracy of naming a harmful
            prompt's concept by the largest projection, raw vs isolated directions.
    """

    n_fit: int
    n_test: int
    layer: int
    trajectory_layers: list[int]
    latent_auroc: float
    results: list[FeatureSetResult]
    concepts: list[str] = Field(default_factory=list)
    harm_cosine_raw: float
    harm_cosine_isolated: float
    concept_accuracy_raw: float
    concept_accuracy_isolated: float


def last_window_states(latent: LatentGuard, prompts: Sequence[str], layers: Sequence[int]) -> np.ndarray:
    """States at the guard's position, for each prompt's last window: `[n, len(layers), hidden]`.

    Example:
        >>> S = last_window_states(latent, ["hi there"], [4, 8])  # doctest: +SKIP
    """
    latent._check_fitted()
    X, _ = latent.features(prompts, list(layers), windows="last")
    return X[:, :, latent.position_, :]


def _logistic_auroc(
    F_fit: np.ndarray, y_fit: np.ndarray, F_test: np.ndarray, y_test: np.ndarray, C: float
) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, class_weight="balanced"))
    clf.fit(F_fit, y_fit)
    return auroc(y_test, clf.decision_function(F_test))


def evaluate_feature_sets(
    latent: LatentGuard,
    fit_states: np.ndarray,
    fit_labels: Sequence[int],
    fit_concepts: Sequence[str | None],
    test_states: np.ndarray,
    test_labels: Sequence[int],
    test_concepts: Sequence[str | None],
    *,
    layers: Sequence[int],
    min_examples: int = 8,
    C: float = 0.1,
) -> ConceptEvaluation:
    """Fit RepIt concept features and trajectory features on one split, measure them on another.

    Args:
        latent: the fitted guard (its direction, bias, layer).
        fit_states / test_states: `[n, len(layers), hidden]` from `last_window_states`; `layers`
            must contain `latent.layer_`.
        fit_labels / test_labels: 1 harmful, 0 benign.
        fit_concepts / test_concepts: harm category of harmful rows, None for benign ones.
        layers: the layers of the states (the trajectory).
        min_examples: concepts with fewer fitting rows are skipped.
        C: inverse L2 strength of the logistic regressions on top.

    Raises:
        InputError: shapes disagree, or `latent.layer_` is not among `layers`.
    """
    layers = [int(l) for l in layers]
    if latent.layer_ not in layers:
        raise InputError(f"layers {layers} must include the guard's layer {latent.layer_}")
    Sf, St = np.asarray(fit_states, dtype=np.float64), np.asarray(test_states, dtype=np.float64)
    yf, yt = np.asarray(fit_labels, dtype=int), np.asarray(test_labels, dtype=int)
    if Sf.ndim != 3 or Sf.shape[1] != len(layers) or St.shape[1:] != Sf.shape[1:]:
        raise InputError(f"states must be [n, {len(layers)}, hidden]; got {Sf.shape} and {St.shape}")
    if (
        len(yf) != len(Sf)
        or len(yt) != len(St)
        or len(fit_concepts) != len(Sf)
        or len(test_concepts) != len(St)
    ):
        raise InputError("one label and one concept per row of states")
    li = layers.index(latent.layer_)
    w = latent.direction_.astype(np.float64)
    lat_f, lat_t = Sf[:, li] @ w + latent.bias_, St[:, li] @ w + latent.bias_
    base = auroc(yt, lat_t)
    cd = ConceptDirections(min_examples=min_examples).fit(Sf[:, li], list(fit_concepts), w)
    tf = TrajectoryFeatures().fit(Sf, yf)
    sets = {
        "latent+concepts_isolated": (cd.transform(Sf[:, li]), cd.transform(St[:, li])),
        "latent+concepts_raw": (
            cd.transform(Sf[:, li], isolated=False),
            cd.transform(St[:, li], isolated=False),
        ),
        "latent+trajectory": (tf.transform(Sf), tf.transform(St)),
    }
    sets["latent+concepts_isolated+trajectory"] = (
        np.concatenate([sets["latent+concepts_isolated"][0], sets["latent+trajectory"][0]], 1),
        np.concatenate([sets["latent+concepts_isolated"][1], sets["latent+trajectory"][1]], 1),
    )
    results = []
    for name, (Ff, Ft) in sets.items():
        auc = _logistic_auroc(np.c_[lat_f, Ff], yf, np.c_[lat_t, Ft], yt, C)
        results.append(
            FeatureSetResult(
                name=name, n_features=Ff.shape[1] + 1, test_auroc=auc, delta_vs_latent=auc - base
            )
        )
    harm_t = [i for i, c in enumerate(test_concepts) if c in cd.concepts_]
    truth = [test_concepts[i] for i in harm_t]

    def acc(isolated: bool) -> float:
        if not harm_t:
            return float("nan")
        pred = cd.predict_concept(St[harm_t, li], isolated=isolated)
        return float(np.mean([p == t for p, t in zip(pred, truth)]))

    return ConceptEvaluation(
        n_fit=len(Sf),
        n_test=len(St),
        layer=latent.layer_,
        trajectory_layers=layers,
        latent_auroc=base,
        results=results,
        concepts=cd.concepts_,
        harm_cosine_raw=float(np.mean(np.abs(list(cd.harm_cosine_raw_.values())))),
        harm_cosine_isolated=float(np.mean(np.abs(list(cd.harm_cosine_isolated_.values())))),
        concept_accuracy_raw=acc(False),
        concept_accuracy_isolated=acc(True),
    )


__all__ = [
    "ConceptDirections",
    "ConceptEvaluation",
    "FeatureSetResult",
    "TrajectoryFeatures",
    "evaluate_feature_sets",
    "last_window_states",
]
