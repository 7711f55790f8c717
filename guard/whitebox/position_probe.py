"""Refusal and harmfulness scores at every token position of a chat (the "refusal cliff" view).

"Refusal Falls off a Cliff" probes refusal intent along the whole sequence and finds models
that recognise a harmful prompt and keep a strong refusal signal through the prompt, then lose
it in the last tokens before they answer. `position_scores` gives the same view for a
`LatentGuard`: at its layer, each token's state is projected on the harmfulness direction (raw
decision value, bias included) and on the refusal direction, for the chat template, the user
instruction, the post-instruction tokens and, when given or generated, the reply.

Example:
    >>> ps = position_scores(latent, "How do I pick a lock?", reply="I can't help with that.")  # doctest: +SKIP
    >>> ps.segments[ps.instruction_index]  # doctest: +SKIP
    'instruction'
    >>> fig = plot_position_scores(ps, path="cliff.png")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from guard._deps import require
from guard.errors import InputError
from guard.whitebox.latent import LatentGuard

Segment = Literal["template", "instruction", "post_instruction", "reply"]


class PositionScores(BaseModel):
    """Per-token scores for one chat.

    Attributes:
        prompt: the user prompt.
        reply: the reply scored after it ("" when none).
        layer: the decoder layer read.
        tokens: each token's text.
        segments: each token's part of the chat.
        harmfulness: raw harmfulness decision value per token (> 0 leans harmful at the
            guard's own position; elsewhere compare shapes, not the sign).
        refusal: projection on the refusal direction per token.
        instruction_index: index of the last instruction token (where the guard reads harm).
    """

    prompt: str
    reply: str = ""
    layer: int
    tokens: list[str]
    segments: list[Segment]
    harmfulness: list[float]
    refusal: list[float]
    instruction_index: int

    def segment_mean(self, segment: Segment, score: Literal["harmfulness", "refusal"] = "refusal") -> float:
        """Mean score over one segment (NaN when the segment is empty)."""
        vals = [v for v, s in zip(getattr(self, score), self.segments) if s == segment]
        return float(np.mean(vals)) if vals else float("nan")

    def cliff(self, score: Literal["harmfulness", "refusal"] = "refusal", tail: int = 3) -> float:
        """Peak over the instruction and post-instruction tokens minus the mean of the last `tail`
        prompt tokens: large values are the paper's "cliff" (a signal that fades before answering).
        """
        vals = np.asarray(getattr(self, score))
        prompt_idx = [i for i, s in enumerate(self.segments) if s in ("instruction", "post_instruction")]
        if not prompt_idx:
            return float("nan")
        return float(vals[prompt_idx].max() - vals[prompt_idx[-tail:]].mean())

    def rows(self) -> list[dict[str, Any]]:
        """One dict per token (for a CSV or a DataFrame)."""
        return [
            {"index": i, "token": t, "segment": s, "harmfulness": h, "refusal": r}
            for i, (t, s, h, r) in enumerate(zip(self.tokens, self.segments, self.harmfulness, self.refusal))
        ]


def position_scores(
    latent: LatentGuard,
    prompt: str,
    reply: str | None = None,
    *,
    history: Sequence[dict[str, str]] | None = None,
    generate: bool = False,
    max_new_tokens: int = 32,
) -> PositionScores:
    """Harmfulness and refusal scores at every token of the chat, at the guard's layer.

    Args:
        latent: a fitted `LatentGuard` (it carries the host).
        prompt: the user prompt.
        reply: a reply to score after the prompt (teacher-forced).
        history: earlier chat messages.
        generate: with no `reply`, let the host answer greedily and score that.
        max_new_tokens: length of a generated reply.

    Raises:
        InputError: a bad prompt, or both `reply` and `generate`.
        NotFittedError: the guard is not fitted.
    """
    latent._check_fitted()
    host = latent._host()
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(f"prompt must be a non-empty string, got {prompt!r:.60}")
    if reply is not None and not isinstance(reply, str):
        raise InputError(f"reply must be a string or None, got {type(reply).__name__}")
    if reply is not None and generate:
        raise InputError("give a reply or generate=True, not both")
    if generate:
        reply = host.generate(prompt, history, max_new_tokens=max_new_tokens)
    reply = reply or None
    enc = host.encode(prompt, history, reply=reply)
    # where the instruction starts: the same character-offset logic as HostModel.encode
    head = host.render(prompt, history)
    start = head.rfind(prompt)
    offsets = host.tokenizer(head + (reply or ""), add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"
    ]
    post, rep = set(enc.post_instruction), set(enc.reply)
    segments: list[Segment] = []
    for i, (s, e) in enumerate(offsets):
        if i in rep:
            segments.append("reply")
        elif i in post:
            segments.append("post_instruction")
        elif i <= enc.instruction and e > start:
            segments.append("instruction")
        else:
            segments.append("template")
    states = host.capture([enc], [latent.layer_])[0][0].numpy().astype(np.float64)  # [T, H]
    harm = states @ latent.direction_.astype(np.float64) + latent.bias_
    ref = states @ latent.refusal_direction_.astype(np.float64)
    tokens = [host.decode_token(t) for t in enc.input_ids]
    return PositionScores(
        prompt=prompt,
        reply=reply or "",
        layer=latent.layer_,
        tokens=tokens,
        segments=segments,
        harmfulness=harm.tolist(),
        refusal=ref.tolist(),
        instruction_index=enc.instruction,
    )


_COLOURS = {
    "template": "#dddddd",
    "instruction": "#c6dbef",
    "post_instruction": "#fdd0a2",
    "reply": "#c7e9c0",
}


def plot_position_scores(
    scores: PositionScores | Sequence[PositionScores],
    path: str | Path | None = None,
    *,
    ax: Any = None,
    skip_template: bool = True,
) -> Any:
    """Plot harmfulness and refusal along the tokens (segments shaded); returns the figure.

    Several `PositionScores` are drawn on one axis aligned at the instruction's last token, so
    harmful and benign chats can be compared.

    Args:
        scores: one or several results of `position_scores`.
        path: save the figure here (PNG, PDF, ... by extension).
        ax: a matplotlib axis to draw on; default: a new figure.
        skip_template: leave out the leading template tokens (system prompt).

    Raises:
        MissingDependencyError: matplotlib is not installed (extra ``viz``).
    """
    require("matplotlib")
    import matplotlib

    if ax is None and path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    items = [scores] if isinstance(scores, PositionScores) else list(scores)
    if not items:
        raise InputError("nothing to plot: pass at least one PositionScores")
    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 4))
    else:
        fig = ax.figure
    ax2 = ax.twinx()
    for k, ps in enumerate(items):
        first = 0
        if skip_template:
            first = next((i for i, s in enumerate(ps.segments) if s != "template"), 0)
        x = np.arange(first, len(ps.tokens)) - ps.instruction_index
        label = ps.prompt if len(ps.prompt) <= 40 else ps.prompt[:37] + "..."
        ax.plot(x, ps.harmfulness[first:], color=f"C{k}", lw=1.5, label=f"harmfulness: {label}")
        ax2.plot(x, ps.refusal[first:], color=f"C{k}", lw=1.2, ls="--", label=f"refusal: {label}")
        if k == 0:
            for i in range(first, len(ps.tokens)):
                ax.axvspan(
                    i - ps.instruction_index - 0.5,
                    i - ps.instruction_index + 0.5,
                    color=_COLOURS[ps.segments[i]],
                    alpha=0.35,
                    lw=0,
                )
            if len(items) == 1 and len(ps.tokens) - first <= 60:
                ax.set_xticks(x)
                ax.set_xticklabels(
                    [t.replace("\n", "\\n") for t in ps.tokens[first:]], rotation=90, fontsize=6
                )
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("token position relative to the last instruction token")
    ax.set_ylabel("harmfulness (solid)")
    ax2.set_ylabel("refusal projection (dashed)")
    ax.set_title(f"Scores across positions, layer {items[0].layer}")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=6, loc="upper left")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


class PositionProfile(BaseModel):
    """Mean scores per segment over a set of chats (harmful vs benign, say)."""

    n: int
    by_segment: dict[str, dict[str, float]] = Field(default_factory=dict)
    mean_cliff: float


def position_profile(
    latent: LatentGuard, prompts: Sequence[str], replies: Sequence[str | None] | None = None
) -> PositionProfile:
    """Mean harmfulness and refusal per segment, and the mean refusal cliff, over many chats.

    Example:
        >>> position_profile(latent, harmful_prompts).by_segment["post_instruction"]["refusal"]  # doctest: +SKIP
    """
    if isinstance(prompts, str):
        raise InputError("position_profile expects a list of prompts")
    replies = list(replies) if replies is not None else [None] * len(prompts)
    if len(replies) != len(prompts):
        raise InputError(f"{len(prompts)} prompts but {len(replies)} replies")
    items = [position_scores(latent, p, r) for p, r in zip(prompts, replies)]
    out: dict[str, dict[str, float]] = {}
    for seg in ("instruction", "post_instruction", "reply"):
        h = [ps.segment_mean(seg, "harmfulness") for ps in items]
        r = [ps.segment_mean(seg, "refusal") for ps in items]
        h = [v for v in h if np.isfinite(v)]
        r = [v for v in r if np.isfinite(v)]
        if h:
            out[seg] = {"harmfulness": float(np.mean(h)), "refusal": float(np.mean(r))}
    cliffs = [ps.cliff() for ps in items]
    return PositionProfile(
        n=len(items), by_segment=out, mean_cliff=float(np.nanmean(cliffs)) if items else float("nan")
    )


__all__ = ["PositionProfile", "PositionScores", "plot_position_scores", "position_profile", "position_scores"]
