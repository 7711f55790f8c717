"""Steering vectors: what to add (`BehaviourVector`) and when (`ConditionVector`), read from the
host's activations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from guard.decision.stats import auroc
from guard.errors import InputError, NotFittedError
from guard.whitebox.host import Encoded, HostModel

FORMAT_VERSION = 1
META_FILE = "steering.json"
TENSOR_FILE = "steering.safetensors"

Position = Literal["instruction", "post_instruction", "instruction_post", "last"]
Method = Literal["diffmean", "ridge"]


# ------------------------------------------------------------------------------------ helpers
def _check_prompts(prompts: Any, what: str = "prompts") -> list[str]:
    if isinstance(prompts, str):
        raise InputError(f"{what}: expected a list of strings, got a single string; wrap it: [text]")
    out = list(prompts)
    for i, p in enumerate(out):
        if not isinstance(p, str) or not p.strip():
            raise InputError(f"{what}[{i}] must be a non-empty string, got {p!r:.60}")
    return out


def _check_layers(host: HostModel, layers: Sequence[int], what: str = "layers") -> list[int]:
    n = host.num_layers
    out = sorted({int(l) for l in layers})
    if not out:
        raise InputError(f"{what} is empty; give at least one decoder layer in 0..{n - 1}")
    bad = [l for l in out if not 0 <= l < n]
    if bad:
        raise InputError(f"{what} {bad} out of range 0..{n - 1} for host {host.name!r}")
    return out


def _positions(enc: Encoded, position: Position) -> list[int]:
    if position == "instruction":
        return [enc.instruction]
    if position == "post_instruction":
        return list(enc.post_instruction) or [enc.instruction]
    if position == "instruction_post":
        return [enc.instruction, *enc.post_instruction]
    if position == "last":
        return [len(enc.input_ids) - 1]
    raise InputError(
        f"position must be one of instruction, post_instruction, instruction_post, last; got {position!r}"
    )


def prompt_states(
    host: HostModel,
    prompts: Sequence[str],
    layers: Sequence[int],
    position: Position = "instruction_post",
    *,
    batch_size: int = 16,
) -> np.ndarray:
    """Mean prompt activation at `position` for each prompt and layer: `[n, len(layers), hidden]`.

    Example:
        >>> X = prompt_states(host, ["hello"], [1])  # doctest: +SKIP
        >>> X.shape  # doctest: +SKIP
        (1, 1, 32)
    """
    prompts = _check_prompts(prompts)
    layers = list(layers)
    encs = [host.encode(p) for p in prompts]
    states = host.capture(encs, layers, batch_size=batch_size)
    return np.stack([s[:, _positions(e, position), :].mean(1).numpy() for s, e in zip(states, encs)]).astype(
        np.float32
    )


def contrastive_reply_states(
    host: HostModel,
    prompts: Sequence[str],
    layers: Sequence[int],
    refusal_replies: Sequence[str] | None = None,
    compliance_replies: Sequence[str] | None = None,
    *,
    n_pairs: int = 64,
    reply_tokens: int = 12,
    batch_size: int = 16,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Reply-token activations of refusal and compliant replies teacher-forced after the same prompts.

    The same recipe as `LatentGuard`'s refusal direction, at several layers: each sampled prompt
    is followed once by a refusal reply and once by a compliant one, and the first
    `reply_tokens` reply tokens are averaged.

    Returns:
        `(refusal, compliance)`, each `[n_pairs, len(layers), hidden]`.

    Example:
        >>> ref, com = contrastive_reply_states(host, prompts, [10, 12])  # doctest: +SKIP
        >>> (ref.mean(0) - com.mean(0)).shape  # doctest: +SKIP
        (2, 576)
    """
    prompts = _check_prompts(prompts)
    if refusal_replies is None or compliance_replies is None:
        from guard.io.data import load_reply_openings

        r_default, c_default = load_reply_openings()
        refusal_replies = r_default if refusal_replies is None else refusal_replies
        compliance_replies = c_default if compliance_replies is None else compliance_replies
    refusal = _check_prompts(refusal_replies, "refusal_replies")
    compliance = _check_prompts(compliance_replies, "compliance_replies")
    if n_pairs < 2 or reply_tokens < 1:
        raise InputError(f"n_pairs must be >= 2 and reply_tokens >= 1, got {n_pairs} and {reply_tokens}")
    rng = np.random.default_rng(random_state)
    idx = rng.permutation(len(prompts))[:n_pairs]
    encs: list[Encoded] = []
    for k, i in enumerate(idx):
        encs.append(host.encode(prompts[i], reply=refusal[k % len(refusal)]))
        encs.append(host.encode(prompts[i], reply=compliance[k % len(compliance)]))
    states = host.capture(encs, list(layers), batch_size=batch_size)
    vec = np.stack([s[:, list(e.reply[:reply_tokens]), :].mean(1).numpy() for s, e in zip(states, encs)])
    return vec[0::2].astype(np.float32), vec[1::2].astype(np.float32)


def _ridge_direction(pos: np.ndarray, neg: np.ndarray, alpha: float) -> np.ndarray:
    """(S + alpha * tr(S)/H * I)^-1 (mu_pos - mu_neg) with S the pooled within-class covariance.

    This is the ridge-regression solution for +-1 targets up to scale (the ridge variant of
    "Refusal Steering"); the result is rescaled to the norm of the plain mean difference so the
    two methods share one `strength` scale.
    """
    pos = pos.astype(np.float64)
    neg = neg.astype(np.float64)
    diff = pos.mean(0) - neg.mean(0)
    centred = np.concatenate([pos - pos.mean(0), neg - neg.mean(0)])
    cov = centred.T @ centred / max(1, len(centred) - 2)
    cov[np.diag_indices_from(cov)] += alpha * np.trace(cov) / cov.shape[0] + 1e-8
    w = np.linalg.solve(cov, diff)
    return w / (np.linalg.norm(w) + 1e-12) * np.linalg.norm(diff)


def _direction(pos: np.ndarray, neg: np.ndarray, method: str, alpha: float) -> np.ndarray:
    if method == "diffmean":
        return pos.astype(np.float64).mean(0) - neg.astype(np.float64).mean(0)
    if method == "ridge":
        return _ridge_direction(pos, neg, alpha)
    raise InputError(f"method must be 'diffmean' or 'ridge', got {method!r}")


class _HostEstimator:
    """sklearn's get_params/set_params for estimators that hold a host (no BaseEstimator repr)."""

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names}

    def set_params(self, **params: Any) -> Any:
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise InputError(
                    f"unknown parameter {key!r} for {type(self).__name__}; valid: {sorted(valid)}"
                )
            setattr(self, key, value)
        return self

    def _host(self) -> HostModel:
        host = getattr(self, "host", None)
        if host is None:
            raise InputError(
                f"{type(self).__name__} needs a host: {type(self).__name__}(HostModel.default(), ...)"
            )
        return host


# ------------------------------------------------------------------------------------ behaviour
class BehaviourVector(_HostEstimator):
    """A behaviour (refusal) vector per layer, derived contrastively from teacher-forced replies.

    Args:
        host: the `HostModel` to read.
        layers: layers to derive a vector for (those you may steer at); default: all.
        method: ``"diffmean"`` (refusal mean minus compliance mean) or ``"ridge"`` (the
            ridge-regularised variant, same norm as the mean difference).
        ridge_alpha: ridge strength relative to the mean variance of the reply states.
        n_pairs: prompts each followed by one refusal and one compliant reply.
        reply_tokens: leading reply tokens averaged per reply.
        batch_size: chats per forward pass.
        random_state: seed for sampling the prompts.

    Attributes:
        vectors_: `[len(layers_), hidden]` float32, pointing from compliance to refusal.
        layers_: the layers of `vectors_`.
        separation_: per-layer AUROC of the fit replies' projection (refusal vs compliance).

    Example:
        >>> bv = BehaviourVector(host, layers=[8, 10, 12]).fit(prompts)  # doctest: +SKIP
        >>> bv.vector(10).shape  # doctest: +SKIP
        (576,)
    """

    def __init__(
        self,
        host: HostModel | None = None,
        *,
        layers: Sequence[int] | None = None,
        method: Method = "diffmean",
        ridge_alpha: float = 1.0,
        n_pairs: int = 64,
        reply_tokens: int = 12,
        batch_size: int = 16,
        random_state: int = 0,
    ) -> None:
        self.host = host
        self.layers = layers
        self.method = method
        self.ridge_alpha = ridge_alpha
        self.n_pairs = n_pairs
        self.reply_tokens = reply_tokens
        self.batch_size = batch_size
        self.random_state = random_state

    def fit(
        self,
        prompts: Sequence[str],
        refusal_replies: Sequence[str] | None = None,
        compliance_replies: Sequence[str] | None = None,
    ) -> BehaviourVector:
        """Derive the vectors from `prompts` (any mix; the replies carry the behaviour).

        Args:
            prompts: user prompts the replies are teacher-forced after.
            refusal_replies / compliance_replies: reply texts; the packaged openings by default.

        Raises:
            InputError: bad prompts, replies, layers or method.
        """
        host = self._host()
        layers = _check_layers(host, self.layers if self.layers is not None else range(host.num_layers))
        if self.method not in ("diffmean", "ridge"):
            raise InputError(f"method must be 'diffmean' or 'ridge', got {self.method!r}")
        ref, com = contrastive_reply_states(
            host,
            prompts,
            layers,
            refusal_replies,
            compliance_replies,
            n_pairs=self.n_pairs,
            reply_tokens=self.reply_tokens,
            batch_size=self.batch_size,
            random_state=self.random_state,
        )
        vecs = np.stack(
            [_direction(ref[:, i], com[:, i], self.method, self.ridge_alpha) for i in range(len(layers))]
        )
        self.vectors_ = vecs.astype(np.float32)
        self.layers_ = layers
        y = np.r_[np.ones(len(ref)), np.zeros(len(com))]
        self.separation_ = {
            int(l): auroc(y, np.concatenate([ref[:, i], com[:, i]]) @ vecs[i]) for i, l in enumerate(layers)
        }
        return self

    @classmethod
    def from_direction(cls, host: HostModel, direction: np.ndarray, layer: int) -> BehaviourVector:
        """A fitted one-layer vector from a known direction, e.g. a `LatentGuard`'s refusal direction.

        Example:
            >>> bv = BehaviourVector.from_direction(host, latent.refusal_direction_, latent.layer_)  # doctest: +SKIP
        """
        v = np.asarray(direction, dtype=np.float32)
        if v.shape != (host.hidden_size,):
            raise InputError(f"direction has shape {v.shape}; host {host.name!r} needs ({host.hidden_size},)")
        layer = _check_layers(host, [layer], "layer")[0]
        out = cls(host, layers=[layer])
        out.vectors_ = v[None, :].copy()
        out.layers_ = [layer]
        out.separation_ = {layer: float("nan")}
        return out

    def _check_fitted(self) -> None:
        if not hasattr(self, "vectors_"):
            raise NotFittedError("this BehaviourVector is not fitted; call fit() or from_direction()")

    def vector(self, layer: int) -> np.ndarray:
        """The vector for one layer (raises `InputError` for a layer it was not derived at)."""
        self._check_fitted()
        if int(layer) not in self.layers_:
            raise InputError(f"no behaviour vector at layer {layer}; derived at {self.layers_}")
        return self.vectors_[self.layers_.index(int(layer))]


# ------------------------------------------------------------------------------------ condition
class ConditionVector(_HostEstimator):
    """A condition read on the prompt: cosine similarity to a direction at one layer, with a threshold.

    The prompt's activation (mean over `position` tokens at `layer`) is centred on the mean of
    the fitting prompts, and its cosine similarity with the condition direction is compared to
    `threshold_` (CAST's condition check).

    Args:
        host: the `HostModel` to read.
        name: how rules refer to this condition (`Matches(name)`).
        layer: the decoder layer read; default: 40 % of the way up.
        position: tokens averaged: ``"instruction"`` (last instruction token),
            ``"post_instruction"`` (the chat-template tokens after it), ``"instruction_post"``
            (both), ``"last"`` (the last prompt token).
        method: ``"diffmean"`` or ``"ridge"`` (shrinkage-whitened mean difference).
        ridge_alpha: ridge strength for ``"ridge"``.
        threshold: a fixed cosine threshold in [-1, 1]; None to choose it at fit.
        max_false_positive_rate: with ``threshold=None``, the lowest threshold whose rate on the
            negatives stays at or below this; None maximises balanced accuracy instead.
        batch_size: prompts per forward pass.

    Attributes:
        direction_: unit direction `[hidden]`; centre_: `[hidden]`; threshold_: float.

    Example:
        >>> cyber = ConditionVector(host, name="cyber", layer=12).fit(cyber_prompts, other_prompts)  # doctest: +SKIP
        >>> cyber.holds(["Write ransomware that encrypts a hospital's files"])  # doctest: +SKIP
        array([ True])
    """

    def __init__(
        self,
        host: HostModel | None = None,
        *,
        name: str = "condition",
        layer: int | None = None,
        position: Position = "instruction_post",
        method: Method = "diffmean",
        ridge_alpha: float = 1.0,
        threshold: float | None = None,
        max_false_positive_rate: float | None = 0.05,
        batch_size: int = 16,
    ) -> None:
        self.host = host
        self.name = name
        self.layer = layer
        self.position = position
        self.method = method
        self.ridge_alpha = ridge_alpha
        self.threshold = threshold
        self.max_false_positive_rate = max_false_positive_rate
        self.batch_size = batch_size

    def _layer(self) -> int:
        host = self._host()
        layer = round(0.4 * (host.num_layers - 1)) if self.layer is None else int(self.layer)
        return _check_layers(host, [layer], "layer")[0]

    def states(self, prompts: Sequence[str]) -> np.ndarray:
        """The prompt activations this condition reads: `[n, hidden]`."""
        return prompt_states(
            self._host(), prompts, [self._layer()], self.position, batch_size=self.batch_size
        )[:, 0]

    def fit(
        self,
        positives: Sequence[str],
        negatives: Sequence[str],
        *,
        states: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> ConditionVector:
        """Learn the direction from prompts that meet the condition and prompts that do not.

        Args:
            positives: prompts the condition should hold on.
            negatives: prompts it should not hold on.
            states: precomputed `(self.states(positives), self.states(negatives))`.

        Raises:
            InputError: fewer than two prompts on a side, bad threshold or method.
        """
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError(f"a ConditionVector needs a non-empty name, got {self.name!r}")
        if self.threshold is not None and not -1.0 <= float(self.threshold) <= 1.0:
            raise InputError(f"threshold is a cosine similarity in [-1, 1], got {self.threshold}")
        fpr = self.max_false_positive_rate
        if fpr is not None and not 0.0 <= float(fpr) < 1.0:
            raise InputError(f"max_false_positive_rate must be in [0, 1), got {fpr}")
        if states is None:
            positives = _check_prompts(positives, "positives")
            negatives = _check_prompts(negatives, "negatives")
            pos, neg = self.states(positives), self.states(negatives)
        else:
            pos, neg = (np.asarray(s, dtype=np.float32) for s in states)
        if len(pos) < 2 or len(neg) < 2:
            raise InputError(
                f"need at least 2 positive and 2 negative prompts, got {len(pos)} and {len(neg)}"
            )
        self.layer_ = self._layer()
        # centre on the midpoint of the class means, so the class balance of the fit set does not
        # move the origin the cosine is measured from
        self.centre_ = (0.5 * (pos.mean(0) + neg.mean(0))).astype(np.float32)
        d = _direction(pos - self.centre_, neg - self.centre_, self.method, self.ridge_alpha)
        self.direction_ = (d / (np.linalg.norm(d) + 1e-12)).astype(np.float32)
        s_pos, s_neg = self._cos(pos), self._cos(neg)
        self.fit_auroc_ = auroc(np.r_[np.ones(len(s_pos)), np.zeros(len(s_neg))], np.r_[s_pos, s_neg])
        self.threshold_ = self._choose_threshold(s_pos, s_neg)
        return self

    def calibrate(
        self,
        positives: Sequence[str],
        negatives: Sequence[str],
        *,
        states: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> ConditionVector:
        """Re-choose `threshold_` on other data (e.g. a calibration split); the direction stays."""
        self._check_fitted()
        if states is None:
            pos = self.states(_check_prompts(positives, "positives"))
            neg = self.states(_check_prompts(negatives, "negatives"))
        else:
            pos, neg = (np.asarray(s, dtype=np.float32) for s in states)
        self.threshold_ = self._choose_threshold(self._cos(pos), self._cos(neg))
        return self

    def _choose_threshold(self, s_pos: np.ndarray, s_neg: np.ndarray) -> float:
        if self.threshold is not None:
            return float(self.threshold)
        if self.max_false_positive_rate is not None:
            # smallest t with mean(s_neg >= t) <= rate
            # smallest t with mean(s_neg >= t) <= rate, placed halfway to the next score above so
            # that batching noise in the last float digits cannot flip a prompt on the boundary
            k = int(np.floor(float(self.max_false_positive_rate) * len(s_neg)))
            ordered = np.sort(s_neg)[::-1]
            if k >= len(ordered):
                return float(ordered[-1])
            above = np.r_[s_pos, s_neg]
            above = above[above > ordered[k]]
            return float(0.5 * (ordered[k] + above.min())) if above.size else float(ordered[k] + 1e-6)
        cands = np.unique(np.r_[s_pos, s_neg])
        bal = [0.5 * (np.mean(s_pos >= t) + np.mean(s_neg < t)) for t in cands]
        return float(cands[int(np.argmax(bal))])

    def _check_fitted(self) -> None:
        if not hasattr(self, "direction_"):
            raise NotFittedError(f"ConditionVector {self.name!r} is not fitted; call fit()")

    def _cos(self, states: np.ndarray) -> np.ndarray:
        c = np.asarray(states, dtype=np.float64) - self.centre_
        return (c @ self.direction_) / (np.linalg.norm(c, axis=-1) + 1e-12)

    def similarity(
        self, prompts: Sequence[str] | None = None, *, states: np.ndarray | None = None
    ) -> np.ndarray:
        """Cosine similarity of each prompt (or precomputed `states`) with the condition direction."""
        self._check_fitted()
        if states is None:
            if prompts is None:
                raise InputError("give prompts or states")
            states = self.states(prompts)
        states = np.asarray(states)
        if states.ndim != 2 or states.shape[1] != self.direction_.shape[0]:
            raise InputError(f"states must be [n, {self.direction_.shape[0]}], got {states.shape}")
        return self._cos(states)

    def holds(self, prompts: Sequence[str] | None = None, *, states: np.ndarray | None = None) -> np.ndarray:
        """Whether the condition holds on each prompt (similarity >= `threshold_`)."""
        return self.similarity(prompts, states=states) >= self.threshold_
