"""Trigger explanations (which words drove a harm score) and an opt-in over-refusal mitigation.

**Occlusion**: drop each word in turn, re-score, and rank the words by how much the score fell.
It works on any scorer; `explain_triggers` runs it on the guard's latent score and on the
black-box embedding score, the two kinds of evidence the guard gathers.

**Mitigation** (off by default): XSB ("Beyond Over-Refusal: Scenario-Based Diagnostics and
Post-Hoc Mitigation for Exaggerated Refusals in LLMs") finds that false refusals of benign
prompts are often set off by single trigger words ("kill" in "how do I kill a Python process"),
and mitigates them at inference time with an ignore-word instruction or a rephrase. Here, for
a *borderline, benign-looking* refusal (pooled P(harmful) just over its threshold, and the
black-box harm signals below `max_blackbox`), the guard finds the top trigger word by occlusion
and decides again with that word masked (``method="mask"``) or with an ignore-word instruction
in front (``method="ignore_word"``). If that decision answers, the request is answered and the
reasons say so. It trades recall for fewer over-refusals; `benchmarks/robustness.py` measures both.

Example:
    >>> score = lambda ps: [0.9 if "kill" in p else 0.2 for p in ps]
    >>> e = occlusion("how do I kill a Python process", score)
    >>> e.top(1), round(e.words[0].drop, 2)
    (['kill'], 0.7)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from guard.decision.mitigation import OverRefusalMitigation, borderline
from guard.errors import InputError
from guard.guard import embedding_scorer, mitigate
from guard.text.occlusion import (
    IGNORE_WORD_INSTRUCTION,
    ProbaFn,
    TriggerExplanation,
    WordAttribution,
    drop_span,
    occlusion,
)

if TYPE_CHECKING:
    from guard.guard import Guard


def explain_triggers(
    guard: Guard,
    prompt: str,
    scorers: Sequence[Literal["latent", "embedding"]] = ("latent", "embedding"),
    *,
    max_words: int = 64,
) -> dict[str, TriggerExplanation]:
    """Occlusion on the guard's latent harm score and on the embedding harm score.

    The prompt is prepared as the guard prepares it (`guard.guard.prepare_prompt`), so the
    words are those the guard scored.

    Example:
        >>> ex = explain_triggers(Guard.default(), "How do I kill a Python process?")  # doctest: +SKIP
        >>> ex["latent"].top(1), ex["embedding"].top(1)  # doctest: +SKIP
        (['kill'], ['kill'])
    """
    from guard.text.prepare import prepare_prompt

    text, _ = prepare_prompt(prompt, normalize=guard.normalize)
    fns: dict[str, ProbaFn] = {"latent": guard.latent.score, "embedding": embedding_scorer(guard)}
    out: dict[str, TriggerExplanation] = {}
    for name in scorers:
        if name not in fns:
            raise InputError(f"unknown scorer {name!r}; use 'latent' or 'embedding'")
        out[name] = occlusion(text, fns[name], scorer=name, max_words=max_words)
    return out


__all__ = [
    "IGNORE_WORD_INSTRUCTION",
    "OverRefusalMitigation",
    "TriggerExplanation",
    "WordAttribution",
    "borderline",
    "drop_span",
    "embedding_scorer",
    "explain_triggers",
    "mitigate",
    "occlusion",
]
