"""The file layout of a saved guard folder: `guard.json` (format version, host fingerprint, fitted
scalars, policy, fit report) and `latent.safetensors` (the harmfulness and refusal directions).

Reading and writing the folder with checksums is `guard.io.artifact_io`; building a
`LatentGuard` from it is `guard.whitebox.artifacts`.
"""

from __future__ import annotations

#: Version 2 added the readout over several layers (``latent.harm_layers``, ``harm_bias`` and the
#: ``harm_directions`` tensor); version 1 folders (one layer) still load.
FORMAT_VERSION = 2
READABLE_VERSIONS: tuple[int, ...] = (1, 2)
META_FILE = "guard.json"
TENSOR_FILE = "latent.safetensors"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "latent-guardrail/manifest"

__all__ = [
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "META_FILE",
    "TENSOR_FILE",
]


# ---------------------------------------------------------------------------- guard.json schema
import math  # noqa: E402
from typing import Annotated, Any  # noqa: E402

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, model_validator  # noqa: E402


def _number(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"must be a number, got {v!r:.40}")
    return v


def _finite(v: Any) -> Any:
    v = _number(v)
    if not math.isfinite(v):
        raise ValueError(f"must be a finite number, got {v!r}")
    return v


#: a fitted number the guard computes with: finite, and a real number (not a bool or a str)
Finite = Annotated[float, BeforeValidator(_finite)]
#: a number reported by the fit (NaN allowed: e.g. no refusal direction was fitted)
Reported = Annotated[float, BeforeValidator(_number)]


class HostMeta(BaseModel):
    """The host a guard was fitted on (``guard.json["host"]``)."""

    model_config = ConfigDict(extra="allow")

    name: StrictStr
    fingerprint: StrictStr = Field(min_length=1)
    hidden_size: StrictInt = Field(gt=0)
    num_layers: StrictInt = Field(gt=0)
    source: StrictStr = ""


class LatentParams(BaseModel):
    """The `LatentGuard` constructor parameters a guard folder stores (others pass through)."""

    model_config = ConfigDict(extra="allow")

    window_tokens: StrictInt = Field(384, gt=0)
    window_stride: StrictInt = Field(256, gt=0)
    history_tokens: StrictInt = Field(1024, ge=0)
    batch_size: StrictInt = Field(16, gt=0)
    layers: list[StrictInt] | None = None


class LatentMeta(BaseModel):
    """The fitted scalars of a `LatentGuard` (``guard.json["latent"]``)."""

    model_config = ConfigDict(extra="allow")

    params: LatentParams
    layer: StrictInt = Field(ge=0)
    position: StrictInt = Field(ge=0)
    n_positions: StrictInt = Field(gt=0)
    bias: Finite
    platt: tuple[Finite, Finite]
    candidate_layers: list[StrictInt]
    cosmic_scores: dict[str, Reported]
    cv_auroc: Reported
    selection_auroc: Reported
    harm_refusal_cosine: Reported
    refusal_reply_auroc: Reported
    #: a readout over several layers (format 2); None: the score reads `layer` alone
    harm_layers: list[Annotated[StrictInt, Field(ge=0)]] | None = None
    harm_bias: Finite | None = None

    @model_validator(mode="after")
    def _position_in_range(self) -> LatentMeta:
        if self.position >= self.n_positions:
            raise ValueError(f"position {self.position} is not below n_positions {self.n_positions}")
        if (self.harm_layers is None) != (self.harm_bias is None):
            raise ValueError("harm_layers and harm_bias come together (a several-layer readout)")
        if self.harm_layers is not None and (
            not self.harm_layers or len(set(self.harm_layers)) != len(self.harm_layers)
        ):
            raise ValueError(f"harm_layers {self.harm_layers} must be distinct layers, at least one")
        return self


class GuardMeta(BaseModel):
    """The schema of ``guard.json``: types, ranges and finite numbers, checked at load.

    Example:
        >>> GuardMeta.model_validate({"format_version": 1.0, "host": {}, "latent": {}, "policy": {}})
        Traceback (most recent call last):
        ...
        pydantic_core._pydantic_core.ValidationError: ...
    """

    model_config = ConfigDict(extra="allow")

    format_version: StrictInt
    host: HostMeta
    latent: LatentMeta
    policy: dict[str, Any]
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _version(self) -> GuardMeta:
        if self.format_version not in READABLE_VERSIONS:
            raise ValueError(f"format_version {self.format_version}; this library reads {READABLE_VERSIONS}")
        return self


__all__ += ["GuardMeta", "HostMeta", "LatentMeta", "LatentParams"]
