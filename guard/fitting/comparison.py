"""Latent score alone vs the pooled evidence, at the same harmful recall, on the same split.

The decision engine pools its harm signals (`guard.decision.engine.pool_harm`: a weighted mean of
log-odds). Whether the black-box signals help is an empirical question, answered here the way a
user would pick a policy: each candidate weighting gets the threshold that reaches the target
recall on the *calib* split, the candidate that refuses the fewest seemingly-edgy benign calib
prompts is chosen, and both it and the latent score alone are then measured on the *test* split,
which nothing was fitted or chosen on.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from guard.decision.stats import logit, sigmoid
from guard.errors import InputError
from guard.fitting.calibrate import blocked_rate, threshold_for_recall

LATENT = "harmfulness"


def pooled_probability(scores: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """`guard.decision.engine.pool_harm` over arrays: the weighted mean of the signals' log-odds.

    Example:
        >>> p = pooled_probability({"a": np.array([0.9]), "b": np.array([0.5])}, {"a": 1, "b": 1})
        >>> round(float(p[0]), 3)
        0.75
    """
    used = {k: float(w) for k, w in weights.items() if w > 0}
    if not used:
        raise InputError("pooling needs at least one signal with a positive weight")
    missing = sorted(set(used) - set(scores))
    if missing:
        raise InputError(f"no scores for {missing}; have {sorted(scores)}")
    z = sum(w * logit(np.asarray(scores[k], dtype=float)) for k, w in used.items()) / sum(used.values())
    return sigmoid(z)


class OperatingPoint(BaseModel):
    """One weighting at its calib-chosen threshold, measured on calib and test."""

    model_config = ConfigDict(frozen=True)

    weights: dict[str, float]
    threshold: float
    calib_recall: float
    calib_edgy_over_refusal: float
    test_recall: float
    test_edgy_over_refusal: float
    test_over_refusal: float
    test_edgy_over_refusal_at_exact_recall: float


def operating_point(
    scores: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    y: np.ndarray,
    split: np.ndarray,
    edgy: np.ndarray,
    recall: float,
) -> OperatingPoint:
    """Threshold for `recall` on calib harmful rows; rates on calib and test.

    `test_edgy_over_refusal_at_exact_recall` uses the threshold that reaches `recall` on the test
    harmful rows themselves, so two detectors can be compared at exactly the same recall.
    """
    p = pooled_probability(scores, weights)
    calib, test = split == "calib", split == "test"
    t = threshold_for_recall(p[calib & (y == 1)], recall)
    t_test = threshold_for_recall(p[test & (y == 1)], recall)
    return OperatingPoint(
        weights={k: float(v) for k, v in weights.items() if v > 0},
        threshold=float(t),
        calib_recall=blocked_rate(p[calib & (y == 1)], t),
        calib_edgy_over_refusal=blocked_rate(p[calib & edgy], t),
        test_recall=blocked_rate(p[test & (y == 1)], t),
        test_edgy_over_refusal=blocked_rate(p[test & edgy], t),
        test_over_refusal=blocked_rate(p[test & (y == 0)], t),
        test_edgy_over_refusal_at_exact_recall=blocked_rate(p[test & edgy], t_test),
    )


def compare_at_recall(
    scores: Mapping[str, np.ndarray],
    labels: Sequence[int] | np.ndarray,
    split: Sequence[str] | np.ndarray,
    edgy: Sequence[bool] | np.ndarray,
    *,
    recall: float = 0.95,
    grid: Sequence[float] = (0.0, 0.25, 0.5, 1.0),
) -> dict[str, Any]:
    """The latent score alone vs the best pooled weighting (chosen on calib), both on test.

    Args:
        scores: signal name -> P(harmful) per example; must hold ``"harmfulness"`` (the latent
            score) and may hold black-box signals (``"prompt_refusal"``, ``"embedding_harm"``).
        labels: 1 for harmful, 0 for benign.
        split: ``"fit"``, ``"calib"`` or ``"test"`` per example (`guard.fitting.training.split_of`);
            the black-box signals must have been fitted on the fit split only.
        edgy: benign prompts that merely sound harmful.
        recall: the harmful recall the thresholds must reach on calib.
        grid: weights tried for each black-box signal (the latent weight is 1).

    Returns:
        ``{"recall_target", "latent", "combined", "candidates", "combined_is_better"}``, where
        ``latent`` and ``combined`` are `OperatingPoint` dicts.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = np.r_[np.ones(300), np.zeros(300)].astype(int)
        >>> lat = np.clip(0.5 * y + rng.uniform(0, 0.6, 600), 0, 1)
        >>> split = np.array(["calib", "test"] * 300)
        >>> out = compare_at_recall({"harmfulness": lat}, y, split, (y == 0))
        >>> out["combined"]["weights"]
        {'harmfulness': 1.0}
    """
    y = np.asarray(labels, dtype=int)
    split_a = np.asarray(split)
    edgy_a = np.asarray(edgy, dtype=bool) & (y == 0)
    if LATENT not in scores:
        raise InputError(f"compare_at_recall needs the latent score {LATENT!r}")
    n = y.size
    if any(np.asarray(v).shape != (n,) for v in scores.values()) or split_a.shape != (n,):
        raise InputError("scores, labels, split and edgy must have one entry per example")
    for part in ("calib", "test"):
        if not ((split_a == part) & (y == 1)).any() or not ((split_a == part) & edgy_a).any():
            raise InputError(f"the {part} split needs harmful and edgy benign rows")
    others = [k for k in scores if k != LATENT]
    candidates = []
    for ws in itertools.product(grid, repeat=len(others)):
        weights = {LATENT: 1.0} | dict(zip(others, ws))
        candidates.append(operating_point(scores, weights, y, split_a, edgy_a, recall))
    latent = candidates[0]  # every black-box weight 0
    best = min(candidates, key=lambda c: (c.calib_edgy_over_refusal, len(c.weights)))
    return {
        "recall_target": recall,
        "n": {
            "calib_harmful": int(((split_a == "calib") & (y == 1)).sum()),
            "calib_edgy": int(((split_a == "calib") & edgy_a).sum()),
            "test_harmful": int(((split_a == "test") & (y == 1)).sum()),
            "test_edgy": int(((split_a == "test") & edgy_a).sum()),
        },
        "latent": latent.model_dump(),
        "combined": best.model_dump(),
        "combined_is_better": best.test_edgy_over_refusal_at_exact_recall
        < latent.test_edgy_over_refusal_at_exact_recall,
        "candidates": [c.model_dump() for c in candidates],
    }


__all__ = ["OperatingPoint", "compare_at_recall", "operating_point", "pooled_probability"]
