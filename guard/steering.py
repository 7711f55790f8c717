"""Conditional activation steering (CAST) during `HostModel` generation.

Three pieces, each with one job:

* `BehaviourVector`: what to add. The refusal behaviour vector is derived *contrastively*:
  refusal replies and compliant replies are teacher-forced after the same prompts and the
  reply-token activations are compared, layer by layer (as CAST derives behaviour vectors). A
  weakly aligned host such as SmolLM2 almost never refuses on its own, so its own refusals cannot
  define the direction. ``method="ridge"`` is the ridge-regularised variant of "Refusal
  Steering": the class-mean difference is whitened by the ridge-regularised covariance of the
  reply states, which discounts directions that vary a lot within each class.
* `ConditionVector`: when to add it. A direction at one layer read on the prompt (centred,
  cosine similarity, as CAST reads its condition vectors), with a threshold.
* `SteeringRule` with typed triggers (`Matches`, `Not`, `AnyOf`, `AllOf`): which conditions
  switch which behaviour on. No string is ever parsed.

`ConditionalSteering` ties them together: it reads the conditions on the prompt first (a
forward pass cut after the deepest condition layer), then generates with the behaviour vector
added at the chosen layers, only for the prompts whose rules fire. Hooks exist only inside the
`steer` context manager and are removed in `finally` (through `HostModel.intervene`); nothing is
stored on classes or modules, so two steered hosts in one process never see each other's vectors.

Example:
    >>> from guard.steering import AnyOf, Matches, Not, SteeringRule
    >>> rule = SteeringRule(when=AnyOf(Matches("cyber"), Matches("weapons")), strength=4.0)
    >>> rule.when.holds({"cyber": False, "weapons": True})
    True
    >>> Not(Matches("legal")).holds({"legal": True})
    False
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from guard.errors import ArtifactError, InputError, NotFittedError
from guard.host import Encoded, HostModel

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
    raise InputError(f"position must be one of instruction, post_instruction, instruction_post, last; got {position!r}")


def prompt_states(
    host: HostModel, prompts: Sequence[str], layers: Sequence[int], position: Position = "instruction_post",
    *, batch_size: int = 16,
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
    return np.stack([s[:, _positions(e, position), :].mean(1).numpy() for s, e in zip(states, encs)]).astype(np.float32)


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
        from guard.data import load_reply_openings

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
        return (pos.astype(np.float64).mean(0) - neg.astype(np.float64).mean(0))
    if method == "ridge":
        return _ridge_direction(pos, neg, alpha)
    raise InputError(f"method must be 'diffmean' or 'ridge', got {method!r}")


def _auroc(scores: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, scores))


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
                raise InputError(f"unknown parameter {key!r} for {type(self).__name__}; valid: {sorted(valid)}")
            setattr(self, key, value)
        return self

    def _host(self) -> HostModel:
        host = getattr(self, "host", None)
        if host is None:
            raise InputError(f"{type(self).__name__} needs a host: {type(self).__name__}(HostModel.default(), ...)")
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
            host, prompts, layers, refusal_replies, compliance_replies, n_pairs=self.n_pairs,
            reply_tokens=self.reply_tokens, batch_size=self.batch_size, random_state=self.random_state,
        )
        vecs = np.stack([_direction(ref[:, i], com[:, i], self.method, self.ridge_alpha) for i in range(len(layers))])
        self.vectors_ = vecs.astype(np.float32)
        self.layers_ = layers
        y = np.r_[np.ones(len(ref)), np.zeros(len(com))]
        self.separation_ = {
            int(l): _auroc(np.concatenate([ref[:, i], com[:, i]]) @ vecs[i], y) for i, l in enumerate(layers)
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
        return prompt_states(self._host(), prompts, [self._layer()], self.position, batch_size=self.batch_size)[:, 0]

    def fit(
        self, positives: Sequence[str], negatives: Sequence[str], *, states: tuple[np.ndarray, np.ndarray] | None = None
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
            raise InputError(f"need at least 2 positive and 2 negative prompts, got {len(pos)} and {len(neg)}")
        self.layer_ = self._layer()
        # centre on the midpoint of the class means, so the class balance of the fit set does not
        # move the origin the cosine is measured from
        self.centre_ = (0.5 * (pos.mean(0) + neg.mean(0))).astype(np.float32)
        d = _direction(pos - self.centre_, neg - self.centre_, self.method, self.ridge_alpha)
        self.direction_ = (d / (np.linalg.norm(d) + 1e-12)).astype(np.float32)
        s_pos, s_neg = self._cos(pos), self._cos(neg)
        self.fit_auroc_ = _auroc(np.r_[s_pos, s_neg], np.r_[np.ones(len(s_pos)), np.zeros(len(s_neg))])
        self.threshold_ = self._choose_threshold(s_pos, s_neg)
        return self

    def calibrate(self, positives: Sequence[str], negatives: Sequence[str],
                  *, states: tuple[np.ndarray, np.ndarray] | None = None) -> ConditionVector:
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

    def similarity(self, prompts: Sequence[str] | None = None, *, states: np.ndarray | None = None) -> np.ndarray:
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


# ------------------------------------------------------------------------------------ rules
class _Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def holds(self, passed: Mapping[str, bool]) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def names(self) -> set[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


class Matches(_Trigger):
    """The named `ConditionVector` holds on the prompt.

    Example:
        >>> Matches("cyber").holds({"cyber": True})
        True
    """

    kind: Literal["matches"] = "matches"
    condition: str = Field(min_length=1)

    def __init__(self, condition: str | None = None, /, **data: Any) -> None:
        if condition is not None:
            data["condition"] = condition
        super().__init__(**data)

    def holds(self, passed: Mapping[str, bool]) -> bool:
        if self.condition not in passed:
            raise InputError(f"no result for condition {self.condition!r}; known: {sorted(passed)}")
        return bool(passed[self.condition])

    def names(self) -> set[str]:
        return {self.condition}

    def describe(self) -> str:
        return f"matches {self.condition!r}"


class Not(_Trigger):
    """The inner trigger does not hold ("if the input is *not* about legal advice, ...").

    Example:
        >>> Not(Matches("legal")).holds({"legal": False})
        True
    """

    kind: Literal["not"] = "not"
    trigger: Trigger

    def __init__(self, trigger: Any = None, /, **data: Any) -> None:
        if trigger is not None:
            data["trigger"] = trigger
        super().__init__(**data)

    def holds(self, passed: Mapping[str, bool]) -> bool:
        return not self.trigger.holds(passed)

    def names(self) -> set[str]:
        return self.trigger.names()

    def describe(self) -> str:
        return f"not {self.trigger.describe()}"


class _Compound(_Trigger):
    triggers: list[Trigger] = Field(min_length=1)

    def __init__(self, *triggers: Any, **data: Any) -> None:
        if triggers:
            data["triggers"] = list(triggers)
        super().__init__(**data)

    def names(self) -> set[str]:
        return set().union(*(t.names() for t in self.triggers))


class AnyOf(_Compound):
    """At least one trigger holds.

    Example:
        >>> AnyOf(Matches("a"), Matches("b")).holds({"a": False, "b": True})
        True
    """

    kind: Literal["any_of"] = "any_of"

    def holds(self, passed: Mapping[str, bool]) -> bool:
        return any(t.holds(passed) for t in self.triggers)

    def describe(self) -> str:
        return "any of (" + ", ".join(t.describe() for t in self.triggers) + ")"


class AllOf(_Compound):
    """Every trigger holds.

    Example:
        >>> AllOf(Matches("a"), Not(Matches("b"))).holds({"a": True, "b": True})
        False
    """

    kind: Literal["all_of"] = "all_of"

    def holds(self, passed: Mapping[str, bool]) -> bool:
        return all(t.holds(passed) for t in self.triggers)

    def describe(self) -> str:
        return "all of (" + ", ".join(t.describe() for t in self.triggers) + ")"


Trigger = Annotated[Matches | Not | AnyOf | AllOf, Field(discriminator="kind")]
Not.model_rebuild()
AnyOf.model_rebuild()
AllOf.model_rebuild()


class SteeringRule(BaseModel):
    """When `when` holds on the prompt, add `strength` x the behaviour vector at `layers`.

    Attributes:
        when: the trigger; None means always (plain, unconditional activation addition).
        behaviour: the name of the `BehaviourVector` to add.
        strength: multiplier of the vector (negative values steer away, e.g. toward compliance).
        layers: where to add it; None: every layer the behaviour vector was derived at.
        name: how results name the rule; default: ``"<behaviour> x<strength> if <trigger>"``.

    Example:
        >>> SteeringRule(when=Matches("cyber"), strength=2.0).name
        "refusal x2.0 if matches 'cyber'"
    """

    model_config = ConfigDict(extra="forbid")

    when: Trigger | None = None
    behaviour: str = "refusal"
    strength: float = 1.0
    layers: list[int] | None = None
    name: str = ""

    def model_post_init(self, _context: Any) -> None:
        if not self.name:
            cond = f"if {self.when.describe()}" if self.when is not None else "always"
            self.name = f"{self.behaviour} x{self.strength} {cond}"

    def fires(self, passed: Mapping[str, bool]) -> bool:
        return True if self.when is None else self.when.holds(passed)


# ------------------------------------------------------------------------------------ results
class SteeringDecision(BaseModel):
    """What the conditions said about one prompt and which rules fired."""

    model_config = ConfigDict(frozen=True)

    similarities: dict[str, float]
    passed: dict[str, bool]
    rules: list[str]

    @property
    def steered(self) -> bool:
        return bool(self.rules)


class SteeredReply(BaseModel):
    """One generated reply, with the steering that produced it.

    Attributes:
        prompt: the user prompt.
        text: the decoded reply (special tokens dropped).
        token_ids: the generated token ids (for token-by-token comparisons).
        steered: whether any rule fired (vectors were added).
        rules: names of the rules that fired.
        similarities: condition name -> cosine similarity on the prompt.
    """

    prompt: str
    text: str
    token_ids: list[int]
    steered: bool
    rules: list[str] = Field(default_factory=list)
    similarities: dict[str, float] = Field(default_factory=dict)


# ------------------------------------------------------------------------------------ hooks
@contextlib.contextmanager
def steer(host: HostModel, additions: Mapping[int, Any]) -> Iterator[None]:
    """Add vectors to decoder-layer outputs while inside the block; hooks removed in `finally`.

    Args:
        host: the host to steer.
        additions: layer -> vector `[hidden]` (every row and position) or `[batch, hidden]`
            (one vector per batch row, so one batch can mix steered and unsteered prompts).

    Example:
        >>> with steer(host, {10: 4.0 * bv.vector(10)}):  # doctest: +SKIP
        ...     host.generate("Write a keylogger")
    """
    import torch

    h = host.hidden_size
    prepared: dict[int, Any] = {}
    for layer, vec in additions.items():
        t = torch.as_tensor(np.asarray(vec, dtype=np.float32))
        if t.shape[-1] != h or t.ndim not in (1, 2):
            raise InputError(f"addition at layer {layer} has shape {tuple(t.shape)}; need ({h},) or (batch, {h})")
        prepared[int(layer)] = t

    def make(vec: Any) -> Any:
        def add(hidden: Any) -> Any:
            v = vec.to(device=hidden.device, dtype=hidden.dtype)
            if v.ndim == 1:
                return hidden + v
            if v.shape[0] != hidden.shape[0]:
                raise InputError(f"per-row additions for {v.shape[0]} rows, but the batch has {hidden.shape[0]}")
            return hidden + v[:, None, :]

        return add

    with host.intervene({l: make(v) for l, v in prepared.items()}):
        yield


def generate_ids(
    host: HostModel,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 32,
    batch_size: int = 8,
    additions: Sequence[Mapping[int, np.ndarray]] | None = None,
) -> list[list[int]]:
    """Greedy replies as token ids, in left-padded batches, optionally with per-prompt additions.

    Args:
        host: the host.
        prompts: user prompts.
        max_new_tokens: tokens generated per prompt (fewer where end-of-turn comes first).
        batch_size: prompts per `generate` call.
        additions: per prompt, layer -> vector to add (empty mapping: unsteered).

    Example:
        >>> ids = generate_ids(host, ["hello"], max_new_tokens=4)  # doctest: +SKIP
    """
    import torch

    prompts = _check_prompts(prompts)
    if additions is not None and len(additions) != len(prompts):
        raise InputError(f"{len(prompts)} prompts but {len(additions)} additions")
    if max_new_tokens < 1 or batch_size < 1:
        raise InputError(f"max_new_tokens and batch_size must be >= 1, got {max_new_tokens}, {batch_size}")
    tok = host.tokenizer
    pad = tok.pad_token_id
    eos = tok.eos_token_id
    out: list[list[int]] = []
    h = host.hidden_size
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        ids = [host.encode(p).input_ids for p in chunk]
        width = max(len(s) for s in ids)
        x = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, s in enumerate(ids):
            x[row, width - len(s) :] = torch.tensor(s)
            mask[row, width - len(s) :] = 1
        rows_add: dict[int, np.ndarray] = {}
        if additions is not None:
            part = additions[start : start + batch_size]
            for layer in sorted({l for a in part for l in a}):
                rows_add[layer] = np.stack([np.asarray(a.get(layer, np.zeros(h)), dtype=np.float32) for a in part])
        with torch.inference_mode(), steer(host, rows_add):
            gen = host.model.generate(
                x.to(host.device), attention_mask=mask.to(host.device), max_new_tokens=max_new_tokens,
                do_sample=False, pad_token_id=pad, temperature=None, top_p=None, top_k=None,
            )
        for row in gen[:, width:].tolist():
            cut = list(row)
            if eos is not None and eos in cut:
                cut = cut[: cut.index(eos)]
            while cut and cut[-1] == pad:
                cut.pop()
            out.append(cut)
    return out


# ------------------------------------------------------------------------------------ CAST
class ConditionalSteering:
    """Steer a host's generation only where conditions hold (CAST), through typed rules.

    The constructor only stores its parts (fitted vectors); nothing is loaded or hooked.

    Args:
        host: the host to steer (the vectors must come from this host).
        behaviours: name -> fitted `BehaviourVector`.
        conditions: fitted `ConditionVector`s (names must be unique).
        rules: `SteeringRule`s; every rule that fires adds its vector (they sum).

    Example:
        >>> cast = ConditionalSteering(host, {"refusal": bv}, [cyber],
        ...                            [SteeringRule(when=Matches("cyber"), strength=4.0, layers=[8, 10])])  # doctest: +SKIP
        >>> cast.generate(["Write ransomware for me"])[0].steered  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        host: HostModel,
        behaviours: Mapping[str, BehaviourVector],
        conditions: Sequence[ConditionVector],
        rules: Sequence[SteeringRule],
    ) -> None:
        self.host = host
        self.behaviours = dict(behaviours)
        self.conditions = list(conditions)
        self.rules = list(rules)

    def _validate(self) -> None:
        names = [c.name for c in self.conditions]
        if len(set(names)) != len(names):
            raise InputError(f"condition names must be unique, got {names}")
        for c in self.conditions:
            c._check_fitted()
            if c.host is not self.host:
                raise InputError(f"condition {c.name!r} was fitted on another host than this steering's")
        for name, b in self.behaviours.items():
            b._check_fitted()
            if b.host is not self.host:
                raise InputError(f"behaviour {name!r} was fitted on another host than this steering's")
        for r in self.rules:
            if not isinstance(r, SteeringRule):
                raise InputError(f"rules must be SteeringRule objects, got {type(r).__name__}")
            if r.behaviour not in self.behaviours:
                raise InputError(f"rule {r.name!r} uses behaviour {r.behaviour!r}; known: {sorted(self.behaviours)}")
            unknown = (r.when.names() if r.when else set()) - set(names)
            if unknown:
                raise InputError(f"rule {r.name!r} refers to unknown conditions {sorted(unknown)}; known: {names}")
            for layer in r.layers or []:
                self.behaviours[r.behaviour].vector(layer)

    def decide(self, prompts: Sequence[str]) -> list[SteeringDecision]:
        """Read every condition on the prompts (one forward pass, cut after the deepest layer)."""
        self._validate()
        prompts = _check_prompts(prompts)
        sims: dict[str, np.ndarray] = {}
        by_key: dict[tuple[int, str], list[ConditionVector]] = {}
        for c in self.conditions:
            by_key.setdefault((c.layer_, c.position), []).append(c)
        if by_key:
            layers = sorted({k[0] for k in by_key})
            encs = [self.host.encode(p) for p in prompts]
            states = self.host.capture(encs, layers)
            for (layer, position), conds in by_key.items():
                li = layers.index(layer)
                X = np.stack([s[li, _positions(e, position), :].mean(0).numpy() for s, e in zip(states, encs)])
                for c in conds:
                    sims[c.name] = c.similarity(states=X)
        out = []
        for i in range(len(prompts)):
            s = {c.name: float(sims[c.name][i]) for c in self.conditions}
            passed = {c.name: bool(s[c.name] >= c.threshold_) for c in self.conditions}
            fired = [r.name for r in self.rules if r.fires(passed)]
            out.append(SteeringDecision(similarities=s, passed=passed, rules=fired))
        return out

    def additions(self, decision: SteeringDecision) -> dict[int, np.ndarray]:
        """layer -> summed vector that the fired rules add for one prompt (empty when none fired)."""
        add: dict[int, np.ndarray] = {}
        fired = set(decision.rules)
        for r in self.rules:
            if r.name not in fired:
                continue
            bv = self.behaviours[r.behaviour]
            for layer in r.layers if r.layers is not None else bv.layers_:
                add[layer] = add.get(layer, 0.0) + r.strength * bv.vector(layer).astype(np.float32)
        return add

    @contextlib.contextmanager
    def steering(self, prompt: str) -> Iterator[SteeringDecision]:
        """Steer the host for one prompt while inside the block (no-op when no rule fires).

        Example:
            >>> with cast.steering(prompt) as decision:  # doctest: +SKIP
            ...     reply = host.generate(prompt)
        """
        decision = self.decide([prompt])[0]
        with steer(self.host, self.additions(decision)):
            yield decision

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 32,
        batch_size: int = 8,
        steer_enabled: bool = True,
    ) -> list[SteeredReply]:
        """Greedy replies, steered where the rules fire.

        Args:
            prompts: user prompts.
            max_new_tokens: tokens generated per prompt.
            batch_size: prompts per batch (steered and unsteered prompts share batches).
            steer_enabled: False gives the unsteered baseline with the same batching.
        """
        prompts = _check_prompts(prompts)
        decisions = self.decide(prompts)
        adds = [self.additions(d) if steer_enabled else {} for d in decisions]
        ids = generate_ids(self.host, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, additions=adds)
        tok = self.host.tokenizer
        return [
            SteeredReply(prompt=p, text=tok.decode(t, skip_special_tokens=True).strip(), token_ids=t,
                         steered=steer_enabled and d.steered, rules=d.rules if steer_enabled else [],
                         similarities=d.similarities)
            for p, t, d in zip(prompts, ids, decisions)
        ]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write vectors (safetensors) and settings, thresholds and rules (JSON, with a format version)."""
        from safetensors.numpy import save_file

        self._validate()
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, np.ndarray] = {}
        behaviours = {}
        for name, b in self.behaviours.items():
            tensors[f"behaviour.{name}"] = np.ascontiguousarray(b.vectors_, dtype=np.float32)
            params = {k: v for k, v in b.get_params().items() if k != "host"}
            params["layers"] = list(b.layers_)
            behaviours[name] = {"params": params, "layers": list(b.layers_),
                                "separation": {str(k): v for k, v in b.separation_.items()}}
        conditions = []
        for c in self.conditions:
            tensors[f"condition.{c.name}.direction"] = np.ascontiguousarray(c.direction_, dtype=np.float32)
            tensors[f"condition.{c.name}.centre"] = np.ascontiguousarray(c.centre_, dtype=np.float32)
            params = {k: v for k, v in c.get_params().items() if k != "host"}
            conditions.append({"params": params, "layer": c.layer_, "threshold": c.threshold_,
                               "fit_auroc": c.fit_auroc_})
        meta = {
            "format_version": FORMAT_VERSION,
            "host": {"name": self.host.name, "fingerprint": self.host.fingerprint,
                     "hidden_size": self.host.hidden_size},
            "behaviours": behaviours,
            "conditions": conditions,
            "rules": [r.model_dump() for r in self.rules],
        }
        save_file(tensors, str(out / TENSOR_FILE))
        (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return out

    @classmethod
    def load(cls, path: str | Path, host: HostModel) -> ConditionalSteering:
        """Read a folder written by `save`, for the same host.

        Raises:
            ArtifactError: missing or corrupt files, another format version or another host.
        """
        from guard.artifact_io import read_folder

        folder = Path(path)
        tensor_path = folder / TENSOR_FILE
        meta, tensors = read_folder(folder, META_FILE, TENSOR_FILE, FORMAT_VERSION, kind="steering artifact")
        if meta.get("host", {}).get("fingerprint") != host.fingerprint:
            raise ArtifactError(f"{folder} was made for host {meta.get('host', {}).get('name')!r}, not {host.name!r}")
        try:
            behaviours = {}
            for name, info in meta["behaviours"].items():
                b = BehaviourVector(host, **info["params"])
                b.vectors_ = tensors[f"behaviour.{name}"]
                b.layers_ = [int(l) for l in info["layers"]]
                b.separation_ = {int(k): float(v) for k, v in info["separation"].items()}
                if b.vectors_.shape != (len(b.layers_), host.hidden_size):
                    raise ArtifactError(f"{tensor_path}: behaviour {name!r} has shape {b.vectors_.shape}")
                behaviours[name] = b
            conditions = []
            for info in meta["conditions"]:
                c = ConditionVector(host, **info["params"])
                c.direction_ = tensors[f"condition.{c.name}.direction"]
                c.centre_ = tensors[f"condition.{c.name}.centre"]
                c.layer_ = int(info["layer"])
                c.threshold_ = float(info["threshold"])
                c.fit_auroc_ = float(info["fit_auroc"])
                conditions.append(c)
            rules = [SteeringRule.model_validate(r) for r in meta["rules"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{folder} is corrupt ({exc})") from exc
        return cls(host, behaviours, conditions, rules)


__all__ = [
    "AllOf", "AnyOf", "BehaviourVector", "ConditionVector", "ConditionalSteering", "Matches", "Not",
    "SteeredReply", "SteeringDecision", "SteeringRule", "Trigger", "contrastive_reply_states",
    "generate_ids", "prompt_states", "steer",
]
