"""The few numeric helpers every layer shares: AUROC, logit and sigmoid (one implementation each).

Example:
    >>> import numpy as np
    >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> auroc([1, 1], [0.2, 0.9])  # one label only: undefined
    nan
    >>> float(sigmoid(logit(0.25)))
    0.25
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Probabilities are clipped to [EPS, 1 - EPS] before the logit, so 0 and 1 stay finite.
EPS = 1e-6


def auroc(y: Any, scores: Any) -> float:
    """Area under the ROC curve of `scores` for labels `y` (1 = positive), in scikit-learn's order.

    NaN when `y` holds a single label (the AUROC is undefined there); never raises for it.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y).ravel()
    if np.unique(y).size < 2:
        return float("nan")
    return float(roc_auc_score(y, np.asarray(scores, dtype=float).ravel()))


def logit(p: Any) -> Any:
    """log(p / (1 - p)) with p clipped to [EPS, 1 - EPS]; floats in, floats out; arrays likewise."""
    q = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    out = np.log(q / (1 - q))
    return float(out) if out.ndim == 0 else out


def sigmoid(z: Any) -> Any:
    """1 / (1 + exp(-z)), z clipped to [-60, 60] (no overflow warnings); floats in, floats out."""
    out = 1.0 / (1.0 + np.exp(-np.clip(np.asarray(z, dtype=float), -60, 60)))
    return float(out) if out.ndim == 0 else out
