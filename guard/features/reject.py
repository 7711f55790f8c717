"""Reject-option evidence: how ambiguous and how novel a prompt is, for the policy to abstain on.

A `RejectOptionClassifier` (`classifiers.reject_option`) over the prompt's MiniLM sentence
embedding gives two signals per prompt:

- **ambiguity**: one minus the calibrated confidence of its harmful/benign call; flagged when the
  confidence is under the threshold fitted for the target coverage (Chow's rule);
- **novelty**: the Mahalanobis distance of the embedding to the fitting corpus; flagged over the
  distance that a target share of held-out fitting prompts exceeds.

Both reach the decision as ``reject_option`` evidence; `Policy.reject_option` says whether a
flag abstains. The embedding is the one every other MiniLM head of the request reads
(`classifiers.embeddings.shared_embeddings`), so the evidence costs one small matrix product.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.reject_option import RejectOptionClassifier
from guard.decision import Evidence
from guard.errors import ArtifactError, InputError

Embed = Callable[[list[str]], np.ndarray]


def _minilm() -> Embed:
    from classifiers.embeddings import SentenceEmbedder

    emb = SentenceEmbedder()
    return lambda texts: emb.transform(texts)


class RejectOptionEvidence:
    """Ambiguity and novelty evidence from a fitted `RejectOptionClassifier` on sentence embeddings.

    Args:
        model: fitted on embeddings of labelled prompts (1 = harmful), with
            ``ambiguity="confidence"``; its novelty test may be off.
        embed: texts -> embeddings the model was fitted on (default: MiniLM, loaded on first use).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(200, 4)); y = (X[:, 0] > 0).astype(int)
        >>> model = RejectOptionClassifier(novelty="mahalanobis", coverage=0.9).fit(X, y)
        >>> table = {"far": np.full(4, 40.0), "near": np.r_[3.0, 0, 0, 0]}
        >>> ro = RejectOptionEvidence(model, embed=lambda ts: np.stack([table[t] for t in ts]))
        >>> [(e.name, e.value >= e.threshold) for e in ro.evidence(["far"])[0]]
        [('ambiguity', False), ('novelty', True)]
    """

    def __init__(self, model: RejectOptionClassifier, embed: Embed | None = None) -> None:
        if getattr(model, "ambiguity", None) != "confidence" or not hasattr(model, "threshold_"):
            raise InputError(
                "RejectOptionEvidence needs a fitted RejectOptionClassifier with ambiguity='confidence'"
            )
        self.model = model
        self._embed = embed

    def embed(self, texts: list[str]) -> np.ndarray:
        if self._embed is None:
            self._embed = _minilm()
        return np.asarray(self._embed(texts), dtype=np.float64)

    def evidence(self, texts: Sequence[str]) -> list[list[Evidence]]:
        """Per text: ``ambiguity`` (and ``novelty`` when the model tests it) as ``reject_option`` evidence."""
        if not texts:
            return []
        X = self.embed(list(texts))
        conf = self.model.confidence(X)
        amb_t = 1.0 - float(self.model.threshold_)
        out: list[list[Evidence]] = []
        nov = self.model.novelty_score(X) if self.model.novelty != "none" else None
        nov_t = float(self.model.novelty_threshold_)
        for k, c in enumerate(conf):
            ev = [
                Evidence(
                    source="reject_option",
                    name="ambiguity",
                    value=float(1.0 - c),
                    threshold=amb_t,
                    detail=f"1 - calibrated confidence {float(c):.3f}; flagged at confidence <= "
                    f"{float(self.model.threshold_):.3f}",
                )
            ]
            if nov is not None and math.isfinite(nov_t):
                ev.append(
                    Evidence(
                        source="reject_option",
                        name="novelty",
                        value=float(nov[k]),
                        threshold=nov_t,
                        detail="Mahalanobis distance of the sentence embedding to the fitting prompts",
                    )
                )
            out.append(ev)
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the model to a folder (``reject_option.json`` + safetensors + manifest)."""
        return self.model.save(path)

    @classmethod
    def load(cls, path: str | Path, embed: Embed | None = None) -> RejectOptionEvidence:
        """Load what `save` wrote.

        Raises:
            ArtifactError: no reject-option model at `path`, or a corrupt one.
        """
        try:
            model = RejectOptionClassifier.load(path)
        except Exception as exc:
            raise ArtifactError(
                f"cannot load the reject option from {path} ({type(exc).__name__}: {exc})"
            ) from exc
        return cls(model, embed)


def fit_reject_option(
    texts: Sequence[str],
    labels: Sequence[int],
    groups: Sequence[Any],
    *,
    coverage: float = 0.97,
    novelty_rate: float = 0.01,
    embed: Embed | None = None,
    X: np.ndarray | None = None,
    test_size: float = 0.25,
    seed: int = 0,
) -> tuple[RejectOptionEvidence, dict[str, Any]]:
    """Fit the reject option on labelled prompts and measure it on held-out *groups*.

    The prompts are split by group (`GroupShuffleSplit`: no source/form in both parts), the model
    is fitted on one part and its coverage-risk curve, selective accuracy and novelty rate are
    measured on the other; then it is refitted on everything for shipping.

    Args:
        texts, labels: prompts and their labels (1 = harmful).
        groups: one group id per prompt (e.g. `guard.fitting.grouped.group_of`).
        coverage: share of held-out prompts the ambiguity rule accepts.
        novelty_rate: share of held-out in-distribution prompts the novelty test flags.
        embed: texts -> embeddings (default MiniLM); the returned evidence embeds with it.
        X: the texts' embeddings when already computed (a fitting cache); else `embed` makes them.

    Returns:
        `(evidence, report)`: the refitted evidence producer and the grouped figures.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupShuffleSplit

    texts, y = list(texts), np.asarray(labels, dtype=int)
    group_ids = np.asarray([str(g) for g in groups])
    if not (len(texts) == y.size == group_ids.size) or y.size < 40:
        raise InputError(
            f"need as many labels and groups as texts, and at least 40 (got {len(texts)}, "
            f"{y.size}, {group_ids.size})"
        )
    if X is None:
        X = np.asarray((embed or _minilm())(texts), dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    if X.shape[0] != len(texts):
        raise InputError(f"X has {X.shape[0]} rows for {len(texts)} texts")

    def model() -> RejectOptionClassifier:
        return RejectOptionClassifier(
            LogisticRegression(C=2.0, max_iter=2000),
            calibration="sigmoid",
            ambiguity="confidence",
            coverage=coverage,
            novelty="mahalanobis",
            novelty_rate=novelty_rate,
            calibration_size=0.3,
            random_state=seed,
        )

    tr, te = next(
        GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed).split(X, y, group_ids)
    )
    held = model().fit(X[tr], y[tr])
    reasons = held.reject_reasons(X[te])
    report = {
        "split": f"GroupShuffleSplit by group, {len(set(group_ids[te]))} held-out groups, {te.size} prompts",
        "coverage_target": coverage,
        "novelty_rate_target": novelty_rate,
        "held_out": {
            **held.selective_score(X[te], y[te]),
            "ambiguity_rate": float(np.mean(reasons == "ambiguity")),
            "novelty_rate": float(np.mean(reasons == "novelty")),
            "coverage_risk": held.coverage_risk(X[te], y[te]).table(),
        },
    }
    final = model().fit(X, y)
    return RejectOptionEvidence(final, embed), report
