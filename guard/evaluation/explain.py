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

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from guard.decision import Action, Decision
from guard.errors import InputError

if TYPE_CHECKING:
    from guard.guard import Guard

ProbaFn = Callable[[list[str]], Any]
"""Maps a list of prompts to P(harmful) in [0, 1], one per prompt."""

_WORD = re.compile(r"\w+(?:['’-]\w+)*")

IGNORE_WORD_INSTRUCTION = ('In the request below, the word "{word}" is used in an ordinary, harmless sense; '
                           "do not treat it as a sign of harm.\n\n")
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


def occlusion(prompt: str, score_fn: ProbaFn, *, scorer: str = "score", max_words: int = 64) -> TriggerExplanation:
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
    words = [WordAttribution(word=prompt[s:e], start=s, end=e, score_without=float(v), drop=full - float(v))
             for (s, e), v in zip(spans, values[1:])]
    words.sort(key=lambda w: (-w.drop, w.start))
    return TriggerExplanation(scorer=scorer, prompt=prompt, score=full, words=words, truncated=truncated)


def embedding_scorer(guard: Guard) -> ProbaFn:
    """The guard's black-box embedding harm score (its ``embedding_harm`` detector, else the shipped one)."""
    fn = guard.detectors.get("embedding_harm")
    if fn is None:
        from classifiers.scores import embedding_harm_score

        fn = embedding_harm_score
    return fn


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
    from guard.guard import prepare_prompt

    text, _ = prepare_prompt(prompt, normalize=guard.normalize)
    fns: dict[str, ProbaFn] = {"latent": guard.latent.score, "embedding": embedding_scorer(guard)}
    out = {}
    for name in scorers:
        if name not in fns:
            raise InputError(f"unknown scorer {name!r}; use 'latent' or 'embedding'")
        out[name] = occlusion(text, fns[name], scorer=name, max_words=max_words)
    return out


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
        return all(decision.scores[s] < mitigation.max_blackbox for s in mitigation.benign_signals
                   if s in decision.scores)
    return True


def mitigate(
    guard: Guard,
    texts: Sequence[str],
    decisions: Sequence[Decision],
    mitigation: OverRefusalMitigation,
    history: Sequence[dict[str, str]] | None = None,
) -> list[Decision]:
    """Revisit borderline, benign-looking refusals with the top trigger word masked or ignored.

    Args:
        guard: the guard that made `decisions` (its own mitigation setting is not used here).
        texts: the prepared prompts the decisions are about.
        decisions: one per text.
        mitigation: the settings.
        history: the chat history the decisions were made with.

    Returns:
        The decisions, with each revisited one replaced by an answer when the mitigated text is
        answered, or kept with a reason saying the mitigation did not change it.

    Example:
        >>> g = Guard.default()  # doctest: +SKIP
        >>> texts = ["How do I kill a Python process?"]  # doctest: +SKIP
        >>> mitigate(g, texts, g.check_batch(texts), OverRefusalMitigation())[0].action  # doctest: +SKIP
        <Action.ANSWER: 'answer'>
    """
    from guard.guard import Guard as _Guard

    if len(texts) != len(decisions):
        raise InputError(f"got {len(texts)} texts for {len(decisions)} decisions; pass one decision per text")
    plain = _Guard(guard.latent, guard.policy, detectors=guard.detectors, engine=guard.engine,
                   reply_refusal=guard.reply_refusal, normalize=guard.normalize)
    fn = guard.latent.score if mitigation.scorer == "latent" else embedding_scorer(guard)
    out = list(decisions)
    todo: list[tuple[int, str, str]] = []
    for i, (text, d) in enumerate(zip(texts, decisions)):
        if not borderline(d, guard.policy.threshold_for(d.category), mitigation):
            continue
        if len(_WORD.findall(text)) > mitigation.max_words:
            continue
        expl = occlusion(text, fn, scorer=mitigation.scorer, max_words=mitigation.max_words)
        if not expl.words or expl.words[0].drop <= 0:
            continue
        w = expl.words[0]
        new = (drop_span(text, w.start, w.end) if mitigation.method == "mask"
               else IGNORE_WORD_INSTRUCTION.format(word=w.word) + text)
        todo.append((i, w.word, new))
    if not todo:
        return out
    again = plain.check_batch([new for _, _, new in todo], history=history)
    for (i, word, _), d2 in zip(todo, again):
        d = out[i]
        how = "masked" if mitigation.method == "mask" else "with an ignore-word instruction"
        p2 = d2.scores.get("harm_pooled")
        what = f"P(harmful) {p2:.3f}" if p2 is not None else d2.action.value
        if d2.action is Action.ANSWER:
            out[i] = Decision(
                action=Action.ANSWER, scores={**d.scores, **({"mitigated_harm_pooled": p2} if p2 is not None else {})},
                evidence=d.evidence, latency_ms=d.latency_ms,
                reasons=[(f"over-refusal mitigation: borderline refusal re-scored with trigger word {word!r} "
                          f"{how}: {what}; answered"), *d.reasons])
        else:
            note = f"over-refusal mitigation: trigger word {word!r} {how} still gives {what}; kept"
            out[i] = d.model_copy(update={"reasons": [*d.reasons, note]})
    return out


__all__ = ["IGNORE_WORD_INSTRUCTION", "OverRefusalMitigation", "TriggerExplanation", "WordAttribution",
           "borderline", "drop_span", "embedding_scorer", "explain_triggers", "mitigate", "occlusion"]
