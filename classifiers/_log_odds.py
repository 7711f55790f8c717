"""What the two-class heads scored by log-odds share: probabilities and predictions from
`decision_function` and `threshold_`, and their JSON + safetensors folder (no pickle).

Example:
    >>> class Half(LogOddsBinaryMixin):
    ...     threshold_ = 0.5
    ...     def decision_function(self, X): return np.zeros(len(X))
    >>> Half().predict_proba(["a"]).tolist(), Half().predict(["a"]).tolist()
    ([[0.5, 0.5]], [1])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from classifiers._deps import require
from classifiers._manifest import verify_manifest
from classifiers.errors import ClassifierError


class LogOddsBinaryMixin:
    """`score` = sigmoid(`decision_function`), `predict_proba`, `predict` at `threshold_`.

    Put it before sklearn's `ClassifierMixin`: `score(X, y)` with labels is still sklearn's
    accuracy.
    """

    threshold_: float

    def decision_function(self, X: Any) -> np.ndarray:
        raise NotImplementedError

    def score(self, X: Any, y: Any = None) -> Any:
        """P(class 1) per input (with `y`, sklearn's accuracy instead)."""
        if y is not None:
            return super().score(X, y)  # type: ignore[misc]
        return 1.0 / (1.0 + np.exp(-self.decision_function(X)))

    def predict_proba(self, X: Any) -> np.ndarray:
        p = self.score(X)
        return np.column_stack([1 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """1 where the score is at or above `threshold_`."""
        return (self.score(X) >= self.threshold_).astype(int)


def save_log_odds_folder(folder: Path, meta: dict[str, Any], coef: np.ndarray) -> Path:
    """Write ``model.json`` (`meta`) and ``weights.safetensors`` (`coef`) to `folder`; the caller
    adds its own files, then `write_manifest`."""
    st = require("safetensors.numpy")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    st.save_file({"coef": np.ascontiguousarray(coef)}, str(folder / "weights.safetensors"))
    return folder


def load_log_odds_folder(
    folder: Path, fmt: str, versions: tuple[int, ...], what: str
) -> tuple[dict[str, Any], np.ndarray, float, float]:
    """(meta, coef, intercept, threshold) of a folder written by `save_log_odds_folder` and
    `write_manifest`, checked: the manifest, the format and its version, finite values.

    Raises:
        ClassifierError: missing, corrupt or tampered files, another format or version, weights
            or a threshold that are not numbers.
    """
    st = require("safetensors.numpy")
    verify_manifest(folder, required=("model.json", "weights.safetensors"))
    try:
        meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        coef = st.load_file(str(folder / "weights.safetensors"))["coef"]
    except Exception as exc:  # noqa: BLE001 - any unreadable file
        raise ClassifierError(f"{folder}: no readable {what} ({exc}); fit one") from None
    if meta.get("format") != fmt or meta.get("format_version") not in versions:
        raise ClassifierError(
            f"{folder}: format {meta.get('format')!r} v{meta.get('format_version')}, "
            f"expected {fmt!r} v{max(versions)}"
        )
    intercept, threshold = float(meta["intercept"]), float(meta["threshold"])
    if coef.ndim != 1 or not np.isfinite(coef).all() or not np.isfinite(intercept) or not 0 <= threshold <= 1:
        raise ClassifierError(f"{folder}: invalid weights or threshold; fit it again")
    return meta, coef, intercept, threshold


__all__ = ["LogOddsBinaryMixin", "load_log_odds_folder", "save_log_odds_folder"]
