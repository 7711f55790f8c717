"""Settings of the opt-in over-refusal mitigation, and which decisions it may revisit.

XSB ("Beyond Over-Refusal: Scenario-Based Diagnostics and Post-Hoc Mitigation for Exaggerated
Refusals in LLMs") finds that false refusals of benign prompts are often set off by single
trigger words and mitigates them at inference time with an ignore-word instruction or a
rephrase. `Guard(mitigation=...)` does so for borderline, benign-looking refusals only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from guard.decision.decision import Action, Decision


class OverRefusalMitigation(BaseModel):
    """Settings of the opt-in over-refusal mitigation (`Guard(mitigation=...)`).

    Attributes:
        method: ``"mask"`` drops the top trigger word; ``"ignore_word"`` puts
            `IGNORE_WORD_INSTRUCTION` in front of the prompt.
        scorer: which occlusion finds the trigger word ("latent" or "embedding").
        band: borderline means pooled P(harmful) below the category threshold + `band`.
        max_blackbox: benign-looking means every black-box harm signal in `benign_signals` that is
            present is below this; None skips the check.
        benign_signals: the black-box scores read for `max_blackbox`.
        max_words: prompts with more words are not mitigated (occlusion costs a score per word).

    Example:
        >>> OverRefusalMitigation(method="ignore_word").band
        0.1
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["mask", "ignore_word"] = "mask"
    scorer: Literal["latent", "embedding"] = "latent"
    band: float = Field(0.1, ge=0.0, le=1.0)
    max_blackbox: float | None = Field(0.5, ge=0.0, le=1.0)
    benign_signals: tuple[str, ...] = ("embedding_harm",)
    max_words: int = Field(40, ge=1)


def borderline(decision: Decision, threshold: float, mitigation: OverRefusalMitigation) -> bool:
    """Whether a decision is a borderline, benign-looking refusal the mitigation may revisit.

    Example:
        >>> d = Decision(action=Action.REFUSE, scores={"harm_pooled": 0.85, "embedding_harm": 0.2})
        >>> borderline(d, 0.8, OverRefusalMitigation()), borderline(d, 0.7, OverRefusalMitigation())
        (True, False)
    """
    p = decision.scores.get("harm_pooled")
    if decision.action is not Action.REFUSE or p is None or not threshold <= p < threshold + mitigation.band:
        return False
    if mitigation.max_blackbox is not None:
        return all(
            decision.scores[s] < mitigation.max_blackbox
            for s in mitigation.benign_signals
            if s in decision.scores
        )
    return True


__all__ = ["OverRefusalMitigation", "borderline"]
