"""Conditional activation steering (CAST): rules, results and `ConditionalSteering`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from guard.errors import ArtifactError, InputError
from guard.whitebox.host import HostModel
from guard.whitebox.steering.hooks import generate_ids, steer
from guard.whitebox.steering.triggers import Trigger
from guard.whitebox.steering.vectors import (
    FORMAT_VERSION,
    META_FILE,
    TENSOR_FILE,
    BehaviourVector,
    ConditionVector,
    Position,
    _check_prompts,
    _positions,
)


class SteeringRule(BaseModel):
    """When `when` holds on the prompt, add `strength` x the behaviour vector at `layers`.

    Attributes:
        when: the trigger; None means always (plain, unconditional activation addition).
        behaviour: the name of the `BehaviourVector` to add.
        strength: multiplier of the vector (negative values steer away, e.g. toward compliance).
        layers: where to add it; None: every layer the behaviour vector was derived at.
        name: how results name the rule; default: ``"<behaviour> x<strength> if <trigger>"``.

    Example:
        >>> from guard.whitebox.steering.triggers import Matches
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
                raise InputError(
                    f"rule {r.name!r} uses behaviour {r.behaviour!r}; known: {sorted(self.behaviours)}"
                )
            unknown = (r.when.names() if r.when else set()) - set(names)
            if unknown:
                raise InputError(
                    f"rule {r.name!r} refers to unknown conditions {sorted(unknown)}; known: {names}"
                )
            for layer in r.layers or []:
                self.behaviours[r.behaviour].vector(layer)

    def decide(self, prompts: Sequence[str]) -> list[SteeringDecision]:
        """Read every condition on the prompts (one forward pass, cut after the deepest layer)."""
        self._validate()
        prompts = _check_prompts(prompts)
        sims: dict[str, np.ndarray] = {}
        by_key: dict[tuple[int, Position], list[ConditionVector]] = {}
        for c in self.conditions:
            by_key.setdefault((c.layer_, c.position), []).append(c)
        if by_key:
            layers = sorted({k[0] for k in by_key})
            encs = [self.host.encode(p) for p in prompts]
            states = self.host.capture(encs, layers)
            for (layer, position), conds in by_key.items():
                li = layers.index(layer)
                X = np.stack(
                    [s[li, _positions(e, position), :].mean(0).numpy() for s, e in zip(states, encs)]
                )
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
        ids = generate_ids(
            self.host, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, additions=adds
        )
        tok = self.host.tokenizer
        return [
            SteeredReply(
                prompt=p,
                text=tok.decode(t, skip_special_tokens=True).strip(),
                token_ids=t,
                steered=steer_enabled and d.steered,
                rules=d.rules if steer_enabled else [],
                similarities=d.similarities,
            )
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
            behaviours[name] = {
                "params": params,
                "layers": list(b.layers_),
                "separation": {str(k): v for k, v in b.separation_.items()},
            }
        conditions = []
        for c in self.conditions:
            tensors[f"condition.{c.name}.direction"] = np.ascontiguousarray(c.direction_, dtype=np.float32)
            tensors[f"condition.{c.name}.centre"] = np.ascontiguousarray(c.centre_, dtype=np.float32)
            params = {k: v for k, v in c.get_params().items() if k != "host"}
            conditions.append(
                {"params": params, "layer": c.layer_, "threshold": c.threshold_, "fit_auroc": c.fit_auroc_}
            )
        meta = {
            "format_version": FORMAT_VERSION,
            "host": {
                "name": self.host.name,
                "fingerprint": self.host.fingerprint,
                "hidden_size": self.host.hidden_size,
            },
            "behaviours": behaviours,
            "conditions": conditions,
            "rules": [r.model_dump() for r in self.rules],
        }
        save_file(tensors, str(out / TENSOR_FILE))
        (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        from guard.io.artifact_io import write_manifest

        write_manifest(out)
        return out

    @classmethod
    def load(cls, path: str | Path, host: HostModel) -> ConditionalSteering:
        """Read a folder written by `save`, for the same host.

        Raises:
            ArtifactError: missing or corrupt files, another format version or another host.
        """
        from guard.io.artifact_io import read_folder

        folder = Path(path)
        tensor_path = folder / TENSOR_FILE
        meta, tensors = read_folder(folder, META_FILE, TENSOR_FILE, FORMAT_VERSION, kind="steering artifact")
        if meta.get("host", {}).get("fingerprint") != host.fingerprint:
            raise ArtifactError(
                f"{folder} was made for host {meta.get('host', {}).get('name')!r}, not {host.name!r}"
            )
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
