"""Threshold calibration to target rates (per policy category), and reliability measures of
probabilities."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from guard.decision.policy import CategoryPolicy, Policy
from guard.errors import InputError

logger = logging.getLogger(__name__)


def threshold_for_recall(harmful_scores: Sequence[float], target: float = 0.9) -> float:
    """The highest threshold that still blocks at least `target` of the harmful scores.

    A score blocks when `score >= threshold`.

    Example:
        >>> threshold_for_recall([0.1, 0.5, 0.7, 0.9], target=0.75)
        0.5
    """
    s = np.sort(np.asarray(harmful_scores, dtype=float))
    if s.size == 0:
        raise InputError("threshold_for_recall needs at least one harmful score")
    if not 0.0 < target <= 1.0:
        raise InputError(f"target recall must be in (0, 1], got {target}")
    k = int(np.floor((1.0 - target) * s.size + 1e-9))  # how many may be missed
    return float(s[min(k, s.size - 1)])


def threshold_for_rate(benign_scores: Sequence[float], max_rate: float = 0.05) -> float:
    """The lowest threshold that blocks at most `max_rate` of the benign scores.

    Example:
        >>> threshold_for_rate([0.1, 0.2, 0.3, 0.9], max_rate=0.25)
        0.9
    """
    s = np.sort(np.asarray(benign_scores, dtype=float))
    if s.size == 0:
        raise InputError("threshold_for_rate needs at least one benign score")
    allowed = int(np.floor(max_rate * s.size + 1e-9))
    if allowed == 0:
        return float(np.nextafter(s[-1], np.inf))
    return float(s[s.size - allowed])


def blocked_rate(scores: Sequence[float], threshold: float) -> float:
    """Share of scores at or above `threshold` (NaN for no scores)."""
    s = np.asarray(scores, dtype=float)
    return float((s >= threshold).mean()) if s.size else float("nan")


class ReliabilityBin(TypedDict):
    """One non-empty bin of `reliability`."""

    bin: int
    count: int
    confidence: float
    accuracy: float


class Reliability(TypedDict):
    """What `reliability` returns: the ECE and the non-empty bins."""

    ece: float
    bins: list[ReliabilityBin]


def reliability(
    probs: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray, bins: int = 10
) -> Reliability:
    """Reliability diagram data and the expected calibration error (ECE).

    Example:
        >>> r = reliability([0.1, 0.9], [0, 1], bins=2)
        >>> round(r["ece"], 3)
        0.1
    """
    p = np.asarray(probs, dtype=float)
    y = np.asarray(labels, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows: list[ReliabilityBin] = []
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            conf, acc = float(p[m].mean()), float(y[m].mean())
            ece += m.mean() * abs(conf - acc)
            rows.append({"bin": b, "count": int(m.sum()), "confidence": conf, "accuracy": acc})
    return {"ece": float(ece), "bins": rows}


class Target(BaseModel):
    """What a category should reach on the calibration set: one of `refusal_rate` or `recall`.

    Attributes:
        refusal_rate: share of the category's prompts (any label) to block.
        recall: share of the category's harmful prompts to block (needs labels).

    Example:
        >>> Target(recall=0.95).recall
        0.95
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    refusal_rate: float | None = Field(None, ge=0.0, le=1.0)
    recall: float | None = Field(None, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _one(self) -> Target:
        if (self.refusal_rate is None) == (self.recall is None):
            raise ValueError("give exactly one of refusal_rate or recall")
        return self


def threshold_for_refusal_rate(scores: Sequence[float], rate: float) -> float:
    """The lowest threshold at which ``mean(score >= t)`` is at most `rate` (`threshold_for_rate`,
    capped at 1: one rule for every target rate, so a policy never refuses more than asked).

    Example:
        >>> threshold_for_refusal_rate([0.1, 0.2, 0.3, 0.4], 0.5)
        0.3
        >>> threshold_for_refusal_rate([0.1, 0.2, 0.3, 0.4, 0.5], 0.3)  # 1 of 5, not 2 of 5
        0.5
    """
    if len(scores) == 0:
        raise InputError("threshold_for_refusal_rate needs at least one score")
    return float(min(1.0, threshold_for_rate(scores, rate)))


def _is_harmful(label: Any) -> bool:
    return label in (1, True, "harmful", "1")


def calibrate(
    policy: Policy,
    data: Mapping[str, Sequence[float]],
    targets: Mapping[str, Target | float],
    labels: Mapping[str, Sequence[Any]] | None = None,
    min_rows: int = 10,
) -> Policy:
    """A copy of `policy` with per-category thresholds that reach `targets` on `data`.

    Args:
        policy: the policy to start from (not changed).
        data: category -> the pooled P(harmful) scores of the calibration prompts the engine puts
            in that category (see `guard.decision.engine.harm_category`).
        targets: category -> `Target` or a float (a refusal rate). The key ``"*"`` sets the
            policy-wide `threshold` from all rows together.
        labels: category -> labels (1/"harmful" or 0/"benign"), aligned with `data`; needed for
            recall targets.
        min_rows: categories with fewer rows keep their threshold (logged).

    Returns:
        The calibrated policy.

    Raises:
        InputError: a recall target without labels, or a category absent from `data`.

    Example:
        >>> p = calibrate(Policy(), {"drugs": [0.1, 0.2, 0.6, 0.9]}, {"drugs": 0.5}, min_rows=1)
        >>> p.threshold_for("drugs")
        0.6
    """
    out = policy.model_copy(deep=True)
    categories = dict(out.categories)
    for name, target in targets.items():
        target = target if isinstance(target, Target) else Target(refusal_rate=float(target))
        if name == "*":
            scores = [s for v in data.values() for s in v]
            labs = [x for k in data for x in (labels or {}).get(k, [])] if labels else None
        else:
            if name not in data:
                raise InputError(
                    f"no calibration scores for category {name!r}; categories with data: {sorted(data)}"
                )
            scores = list(data[name])
            labs = list(labels[name]) if labels and name in labels else None
        if len(scores) < min_rows:
            logger.warning(
                "category %s has %d calibration rows (< %d); its threshold is unchanged",
                name,
                len(scores),
                min_rows,
            )
            continue
        if target.recall is not None:
            if labs is None or len(labs) != len(scores):
                raise InputError(f"a recall target for {name!r} needs labels aligned with its scores")
            harmful = [s for s, y in zip(scores, labs) if _is_harmful(y)]
            if not harmful:
                logger.warning("category %s has no harmful rows; recall target skipped", name)
                continue
            t = threshold_for_recall(harmful, target.recall)
        else:
            assert target.refusal_rate is not None  # Target's validator: exactly one of the two is set
            t = threshold_for_refusal_rate(scores, float(target.refusal_rate))
        if name == "*":
            out.threshold = t
        else:
            categories[name] = categories.get(name, CategoryPolicy()).model_copy(update={"threshold": t})
    out.categories = categories
    return out


def calibration_report(
    policy: Policy, data: Mapping[str, Sequence[float]], labels: Mapping[str, Sequence[Any]] | None = None
) -> dict[str, dict[str, float]]:
    """Per category: rows, refusal rate and (with labels) recall and over-refusal at the policy.

    Example:
        >>> calibration_report(Policy(threshold=0.5), {"drugs": [0.2, 0.7]})["drugs"]["refusal_rate"]
        0.5
    """
    report: dict[str, dict[str, float]] = {}
    for name, scores in data.items():
        s = np.asarray(scores, dtype=float)
        t = policy.threshold_for(name)
        row: dict[str, float] = {
            "n": float(s.size),
            "threshold": t,
            "refusal_rate": float((s >= t).mean()) if s.size else float("nan"),
        }
        if labels and name in labels:
            y = np.array([_is_harmful(v) for v in labels[name]])
            if y.any():
                row["recall"] = float((s[y] >= t).mean())
            if (~y).any():
                row["over_refusal"] = float((s[~y] >= t).mean())
        report[name] = row
    return report
