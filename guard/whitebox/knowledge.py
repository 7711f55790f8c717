"""Knowledge boundaries: will the host answer this factual question correctly?

A linear probe on the host's hidden states at the Latent Guard's layer and positions (the same
capture the guard already reads) predicts whether the host's own answer to a question will be
right ("GRAIT"; "Defining Boundaries"; "The Art of Refusal": a model's states know more about
its reliability than its words say). The guard abstains with "I'm not certain" on questions it
would likely get wrong, and only on questions: the probe is fitted on short factual questions,
so other requests (a poem, code) are not read by it (`looks_factual`).

Example:
    >>> looks_factual("What is the capital of Australia?"), looks_factual("Write a poem about rain.")
    (True, False)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from guard.decision import Evidence
from guard.decision.stats import sigmoid
from guard.errors import ArtifactError, InputError

FORMAT = "latent-guardrail/knowledge-probe"
FORMAT_VERSION = 1
_QUESTION = re.compile(
    r"^\s*(what|who|whom|which|when|where|how (many|much|long|old|far|tall|big)|in (what|which)|"
    r"name the|is|are|was|were|does|did)\b",
    re.IGNORECASE,
)


def looks_factual(text: str, max_words: int = 30) -> bool:
    """A short question asking for a fact (the kind of prompt the probe was fitted on)."""
    t = text.strip()
    return bool(t) and len(t.split()) <= max_words and t.endswith("?") and bool(_QUESTION.match(t))


class KnowledgeProbe:
    """P(the host answers correctly) from its hidden states at the guard's layer.

    Attributes (after fitting):
        layer_, position_: where the probe reads (the Latent Guard's own, so its capture is shared).
        coef_, intercept_: the logistic probe.
        threshold_: abstain when P(correct) is below it (chosen for a target accuracy on held-out
            questions when fitted); `Policy` may override it.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(200, 8)); y = (X[:, 0] > 0).astype(int)
        >>> p = KnowledgeProbe(layer=3, position=-1).fit_states(X, y)
        >>> float(p.proba_correct(np.eye(8)[:1] * 4)[0]) > 0.9
        True
    """

    report_: dict[str, Any]  # set by `load` from the artifact's metadata, absent otherwise

    def __init__(self, layer: int, position: int, C: float = 0.5) -> None:
        self.layer = int(layer)
        self.position = int(position)
        self.C = C

    def fit_states(self, X: np.ndarray, correct: np.ndarray) -> KnowledgeProbe:
        """Fit on states `[n, hidden]` and 0/1 correctness labels."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        X, y = np.asarray(X, dtype=np.float64), np.asarray(correct).astype(int)
        if X.ndim != 2 or X.shape[0] != y.size or set(np.unique(y)) != {0, 1}:
            raise InputError("fit_states needs [n, hidden] states and both 0/1 labels, one per row")
        sc = StandardScaler().fit(X)
        lr = LogisticRegression(C=self.C, max_iter=5000).fit(sc.transform(X), y)
        # fold the scaling into the probe: one dot product at inference
        self.coef_ = (lr.coef_[0] / sc.scale_).astype(np.float64)
        self.intercept_ = float(lr.intercept_[0] - (sc.mean_ / sc.scale_) @ lr.coef_[0])
        self.threshold_ = getattr(self, "threshold_", 0.5)
        return self

    def proba_correct(self, states: np.ndarray) -> np.ndarray:
        """P(correct) for states `[n, hidden]`."""
        if not hasattr(self, "coef_"):
            raise InputError("this KnowledgeProbe is not fitted")
        return np.asarray(sigmoid(np.asarray(states, dtype=np.float64) @ self.coef_ + self.intercept_))

    def evidence(self, p_correct: float, threshold: float | None = None) -> Evidence:
        """``knowledge`` evidence: P(wrong answer), flagged at or above ``1 - threshold``."""
        t = self.threshold_ if threshold is None else threshold
        return Evidence(
            source="latent",
            name="knowledge_risk",
            value=float(1.0 - p_correct),
            threshold=float(1.0 - t),
            detail=f"P(the host answers this factual question wrongly), probe at layer {self.layer}",
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, report: dict[str, Any] | None = None) -> Path:
        """``knowledge.json`` + ``knowledge.safetensors`` + a manifest."""
        from safetensors.numpy import save_file

        from guard.io.artifact_io import write_manifest

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "layer": self.layer,
            "position": self.position,
            "C": self.C,
            "intercept": self.intercept_,
            "threshold": float(self.threshold_),
            "report": report or {},
        }
        (folder / "knowledge.json").write_text(json.dumps(meta, indent=1, default=float), encoding="utf-8")
        save_file({"coef": np.ascontiguousarray(self.coef_)}, str(folder / "knowledge.safetensors"))
        write_manifest(folder)
        return folder

    @classmethod
    def load(cls, path: str | Path) -> KnowledgeProbe:
        """Load what `save` wrote (checksums verified).

        Raises:
            ArtifactError: missing, corrupt or invalid files.
        """
        from guard.io.artifact_io import read_folder

        folder = Path(path)
        meta, tensors = read_folder(
            folder,
            "knowledge.json",
            "knowledge.safetensors",
            FORMAT_VERSION,
            kind="knowledge probe",
            manifest="error",
        )
        if meta.get("format") != FORMAT or "coef" not in tensors:
            raise ArtifactError(f"{folder}: not a knowledge probe v{FORMAT_VERSION}")
        coef = tensors["coef"]
        probe = cls(meta["layer"], meta["position"], meta.get("C", 0.5))
        probe.coef_, probe.intercept_ = coef.astype(np.float64), float(meta["intercept"])
        probe.threshold_ = float(meta["threshold"])
        if not (
            np.isfinite(probe.coef_).all() and np.isfinite(probe.intercept_) and 0 <= probe.threshold_ <= 1
        ):
            raise ArtifactError(f"{folder}: invalid knowledge probe weights")
        probe.report_ = meta.get("report", {})
        return probe


__all__ = ["KnowledgeProbe", "looks_factual"]
