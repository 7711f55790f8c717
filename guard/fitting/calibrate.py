"""Threshold calibration to target rates, and reliability measures of probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guard.errors import InputError


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


def reliability(probs: Sequence[float], labels: Sequence[int], bins: int = 10) -> dict[str, object]:
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
    rows = []
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            conf, acc = float(p[m].mean()), float(y[m].mean())
            ece += m.mean() * abs(conf - acc)
            rows.append({"bin": b, "count": int(m.sum()), "confidence": conf, "accuracy": acc})
    return {"ece": float(ece), "bins": rows}
