"""Occlusion: drop each word in turn, re-score, and rank the words by how much the score fell.

It works on any scorer (prompts -> P(harmful)); `guard.evaluation.explain.explain_triggers` runs it
on the guard's latent and embedding scores, and the guard's opt-in over-refusal mitigation uses
the top word.

Example:
    >>> score = lambda ps: [0.9 if "kill" in p else 0.2 for p in ps]
    >>> e = occlusion("how do I kill a Python process", score)
    >>> e.top(1), round(e.words[0].drop, 2)
    (['kill'], 0.7)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from guard.errors import InputError

ProbaFn = Callable[[list[str]], Any]
"""Maps a list of prompts to P(harmful) in [0, 1], one per prompt."""

_WORD = re.compile(r"\w+(?:['’-]\w+)*")

IGNORE_WORD_INSTRUCTION = (
    'In the request below, the word "{word}" is used in an ordinary, harmless sense; '
    "do not treat it as a sign of harm.\n\n"
)
"""The ignore-word prefix (after XSB's ignore-word instruction); ``{word}`` is the trigger word."""


class WordAttribution(BaseModel):
    """One word's effect on a score.

    Attributes:
        word: the word as written.
        start, end: its character span in the prompt.
        score_without: the score with the word dropped.
        drop: score - score_without (positive: the word pushed the score up).
    """

    model_config = ConfigDict(frozen=True)

    word: str
    start: int
    end: int
    score_without: float
    drop: float


class TriggerExplanation(BaseModel):
    """Occlusion attributions of one prompt under one scorer, the largest drop first.

    Attributes:
        scorer: which score ("latent", "embedding", ...).
        prompt: the text explained.
        score: its score with every word present.
        words: one attribution per word, sorted by `drop`, largest first.
        truncated: words after `max_words` were not occluded.
    """

    scorer: str
    prompt: str
    score: float
    words: list[WordAttribution] = Field(default_factory=list)
    truncated: bool = False

    def top(self, k: int = 3) -> list[str]:
        """The `k` words whose removal lowered the score most (only words with a positive drop)."""
        return [w.word for w in self.words[:k] if w.drop > 0]


def drop_span(text: str, start: int, end: int) -> str:
    """`text` without ``text[start:end]`` and one space next to it.

    Example:
        >>> drop_span("how do I kill it", 9, 13)
        'how do I it'
    """
    left, right = text[:start], text[end:]
    if left.endswith(" ") and (right.startswith(" ") or not right):
        left = left[:-1]
    elif not left and right.startswith(" "):
        right = right[1:]
    return left + right


def _probas(fn: ProbaFn, texts: list[str], name: str) -> np.ndarray:
    values = np.asarray(list(fn(texts)), dtype=float)
    if values.shape != (len(texts),):
        raise InputError(f"scorer {name!r} returned {values.size} values for {len(texts)} prompts")
    if np.isnan(values).any() or values.min() < 0 or values.max() > 1:
        raise InputError(f"scorer {name!r} must return probabilities in [0, 1]")
    return values


def occlusion(
    prompt: str, score_fn: ProbaFn, *, scorer: str = "score", max_words: int = 64
) -> TriggerExplanation:
    """Rank the words of `prompt` by how much dropping each one lowers `score_fn`.

    One batch of ``1 + min(words, max_words)`` prompts goes through `score_fn`.

    Args:
        prompt: the text to explain.
        score_fn: prompts -> P(harmful) in [0, 1].
        scorer: a name for the explanation.
        max_words: occlude only the first this many words (long prompts cost one score per word).

    Raises:
        InputError: `prompt` is not a str, or the scorer returns the wrong number or range of values.

    Example:
        >>> score = lambda ps: [0.1 + 0.4 * ("bomb" in p) + 0.3 * ("make" in p) for p in ps]
        >>> [(w.word, round(w.drop, 2)) for w in occlusion("make a bomb", score).words]
        [('bomb', 0.4), ('make', 0.3), ('a', 0.0)]
    """
    if not isinstance(prompt, str):
        raise InputError(f"prompt must be a str, got {type(prompt).__name__}")
    if not isinstance(max_words, int) or max_words < 1:
        raise InputError(f"max_words must be a positive int, got {max_words!r}")
    spans = [(m.start(), m.end()) for m in _WORD.finditer(prompt)]
    truncated = len(spans) > max_words
    spans = spans[:max_words]
    variants = [drop_span(prompt, s, e) for s, e in spans]
    values = _probas(score_fn, [prompt, *variants], scorer)
    full = float(values[0])
    words = [
        WordAttribution(word=prompt[s:e], start=s, end=e, score_without=float(v), drop=full - float(v))
        for (s, e), v in zip(spans, values[1:])
    ]
    words.sort(key=lambda w: (-w.drop, w.start))
    return TriggerExplanation(scorer=scorer, prompt=prompt, score=full, words=words, truncated=truncated)


__all__ = [
    "IGNORE_WORD_INSTRUCTION",
    "ProbaFn",
    "TriggerExplanation",
    "WordAttribution",
    "drop_span",
    "occlusion",
]
