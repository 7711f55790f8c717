"""Model-backed request evidence: noncompliance probabilities, `About` similarities, language.

The pure decision (`guard.decision.engine.decide`) consumes this evidence; `DecisionEngine` is
where the models that produce it live, so the decision layer never loads one.

Example:
    >>> from guard.decision.policy import Policy
    >>> DecisionEngine(Policy(), noncompliance=False).evidence(["hi"])
    [[]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from guard.decision.decision import Evidence
from guard.decision.engine import OTHER_LANGUAGE, Verdict, decide
from guard.decision.policy import Policy
from guard.decision.rules import Encoder
from guard.features.encoders import about_scores
from guard.features.noncompliance import NoncomplianceClassifier
from guard.text.language import detect_language


def language_evidence(prompt: str) -> Evidence:
    """The prompt's language as evidence: P of its language when that is not English, else 0.

    Example:
        >>> language_evidence("Come posso fare il pane in casa?").detail
        'langid: it (1.00)'
        >>> language_evidence("How do I bake bread?").value
        0.0
    """
    r = detect_language(prompt)
    return Evidence(
        source="language",
        name=OTHER_LANGUAGE,
        value=r.probability if r.is_other(0.0) else 0.0,
        detail=f"langid: {r.code} ({r.probability:.2f})",
    )


class DecisionEngine:
    """Computes the model-backed evidence the policy needs, and decides.

    Args:
        policy: the policy.
        noncompliance: a fitted `NoncomplianceClassifier`; default: the shipped one (loaded on
            first use); False turns noncompliance evidence off.
        encoder: where `About` similarities are measured: None for MiniLM embeddings, or
            `guard.features.encoders.host_encoder(host)` for the host's hidden states.

    Example:
        >>> eng = DecisionEngine(Policy(), noncompliance=False)
        >>> eng.evidence(["hi"])
        [[]]
    """

    def __init__(self, policy: Policy, noncompliance: Any = None, encoder: Encoder | None = None) -> None:
        self.policy = policy
        self.noncompliance = noncompliance
        self.encoder = encoder

    def _classifier(self) -> Any:
        if self.noncompliance is False:
            return None
        if self.noncompliance is None:
            self.noncompliance = NoncomplianceClassifier.default()
        return self.noncompliance

    def evidence(self, prompts: Sequence[str]) -> list[list[Evidence]]:
        """Noncompliance probabilities, `About` similarities and (when the policy pools other
        languages with weights of their own) the language reading of each prompt, as evidence."""
        prompts = list(prompts)
        out: list[list[Evidence]] = [[] for _ in prompts]
        if self.policy.other_language is not None:
            for row, prompt in zip(out, prompts):
                row.append(language_evidence(prompt))
        clf = self._classifier()
        if clf is not None and prompts:
            for row, probs in zip(out, clf.proba_dicts(prompts)):
                row.extend(Evidence(source="noncompliance", name=k, value=v) for k, v in probs.items())
        if self.policy.rules and prompts:
            abouts = {a.name: a for r in self.policy.rules for a in r.abouts()}
            for row, sims in zip(out, about_scores(self.policy.rules, prompts, self.encoder)):
                row.extend(
                    Evidence(
                        source="condition",
                        name=k,
                        value=v,
                        threshold=abouts[k].fitted_threshold,
                        detail="cosine similarity to the topic's examples",
                    )
                    for k, v in sims.items()
                )
        return out

    def decide(self, prompt: str, evidence: Sequence[Evidence], **kwargs: Any) -> Verdict:
        """`decide` under this engine's policy."""
        return decide(prompt, evidence, self.policy, **kwargs)


__all__ = ["DecisionEngine", "language_evidence"]
