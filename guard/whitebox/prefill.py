"""Guarded generation that reuses the host's own prefill pass for the Latent Guard.

When the host model that the guard reads also writes the answer, the guard needs no forward pass
of its own: the host's prefill (the forward pass over the prompt that starts `generate`) computes
every activation the Latent Guard reads. `guarded_generate` records the guard's layers during that
pass, and before the first token is chosen (in a logits processor, which `generate` calls right
after the prefill) it hands those activations to the guard, lets the guard decide with all its
usual evidence (black-box detectors, rules, policy), and either lets generation go on or stops it
there, so a refused prompt generates nothing. The latent score then costs one projection instead
of a second pass over the prompt.

What makes the two scores equal: the guard scores the chat-templated prompt
(`HostModel.encode(prompt, history)`) at the instruction and post-instruction tokens, and the host
generates from exactly those token ids (the prompt after `guard.guard.prepare_prompt`, the text the
guard scores), so the prefill computes the same activations. The activations are handed over
keyed by those token ids (`LatentGuard.reuse_states`), so nothing else can pick them up.

Falls back to a separate scoring pass, then plain generation, when the prefill cannot be reused
(the reason is in `GuardedGeneration.fallback`):

* the prompt is longer than the Latent Guard's window (`LatentGuard.window_tokens`): the guard
  scores overlapping windows of it, which the single prefill pass over the whole chat does not
  compute;
* the prompt is empty or over the policy's length limit: the guard decides without scoring.

Example:
    >>> from guard import Guard
    >>> from guard.whitebox.prefill import guarded_generate
    >>> g = Guard.default()  # doctest: +SKIP
    >>> out = guarded_generate(g, "How do I bake bread?", max_new_tokens=64)  # doctest: +SKIP
    >>> out.decision.action.value, out.reused_prefill  # doctest: +SKIP
    ('answer', True)
    >>> decision, text = guarded_generate(g, "How do I build a pipe bomb?")  # doctest: +SKIP
    >>> decision.action.value, text  # doctest: +SKIP
    ('refuse', '')
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from guard.decision import Decision
from guard.errors import InputError

if TYPE_CHECKING:
    from guard.guard import Guard
    from guard.text.prepare import PreparedText


@dataclass(frozen=True)
class GuardedGeneration:
    """The outcome of `guarded_generate`.

    Unpacks as ``decision, text = guarded_generate(...)``.

    Attributes:
        decision: the guard's decision on the prompt.
        text: the host's reply; ``""`` when the decision blocks (refuse or abstain).
        reused_prefill: True when the latent score came from the host's prefill pass.
        new_tokens: tokens the host generated (0 when blocked).
        fallback: why the prefill was not reused (None when it was).
        latent_scores: the Latent Guard's ``harmfulness`` (calibrated), ``harmfulness_raw`` and
            ``refusal`` projections computed from the prefill activations (empty on fallback).
        guard_ms: wall time the guard added: reading the prefill activations and deciding (the
            whole `Guard.check`) when the prefill was reused; the separate `Guard.check` otherwise.
    """

    decision: Decision
    text: str
    reused_prefill: bool
    new_tokens: int = 0
    fallback: str | None = None
    latent_scores: dict[str, float] = field(default_factory=dict)
    guard_ms: float = 0.0

    def __iter__(self) -> Iterator[Any]:
        return iter((self.decision, self.text))


class _Halt(Exception):
    """Raised from the logits processor to end `generate` right after the prefill."""


def guarded_generate(
    guard: Guard,
    prompt: str,
    max_new_tokens: int = 64,
    *,
    history: Sequence[dict[str, str]] | None = None,
    temperature: float = 0.0,
    stop: Sequence[str] | None = None,
) -> GuardedGeneration:
    """Decide on a prompt and, unless blocked, generate the host's reply, in one prefill pass.

    Args:
        guard: a `Guard` whose Latent Guard reads `guard.whitebox.host` (the model that answers).
        prompt: the user's message.
        max_new_tokens: the most tokens to generate.
        history: earlier chat messages, read with the prompt by both the guard and the host.
        temperature: 0 for greedy decoding, else the sampling temperature.
        stop: cut the reply at the first of these strings.

    Returns:
        A `GuardedGeneration`; ``text`` is ``""`` when the decision is refuse or abstain, and the
        host then generated no token at all.

    Raises:
        InputError: the prompt is not a string, or bad generation arguments.

    Example:
        >>> decision, text = guarded_generate(guard, "Write a haiku about rain.")  # doctest: +SKIP
    """
    from guard.text.prepare import check_history as _check_history

    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    if not isinstance(temperature, (int, float)) or temperature < 0:
        raise InputError(f"temperature must be a number >= 0, got {temperature!r}")
    text, _ = _prepare(guard, prompt)
    hist = _check_history(history)
    latent = guard.latent
    if not text.strip():
        return _separate(guard, prompt, hist, max_new_tokens, temperature, stop, "the prompt is empty")
    if len(text) > guard.policy.max_prompt_chars:
        return _separate(
            guard,
            prompt,
            hist,
            max_new_tokens,
            temperature,
            stop,
            "the prompt is over the policy's length limit",
        )
    if len(latent._windows(text)) > 1:
        return _separate(
            guard,
            prompt,
            hist,
            max_new_tokens,
            temperature,
            stop,
            f"the prompt is longer than the latent guard's window ({latent.window_tokens} "
            "tokens): it is scored over windows, which the prefill does not compute",
        )
    latent._check_fitted()
    return _prefill_generate(guard, prompt, text, hist, max_new_tokens, temperature, stop)


def _separate(
    guard: Guard,
    prompt: str,
    history: list[dict[str, str]] | None,
    max_new_tokens: int,
    temperature: float,
    stop: Sequence[str] | None,
    reason: str,
) -> GuardedGeneration:
    """The plain path: the guard's own pass, then generation when allowed."""
    t0 = time.perf_counter()
    decision = guard.check(prompt, history=history)
    guard_ms = (time.perf_counter() - t0) * 1000
    if decision.blocked:
        return GuardedGeneration(decision, "", reused_prefill=False, fallback=reason, guard_ms=guard_ms)
    text, _ = _prepare(guard, prompt)
    reply, n = _generate(guard, text, history, max_new_tokens, temperature, stop, processor=None)
    return GuardedGeneration(
        decision, reply, reused_prefill=False, new_tokens=n, fallback=reason, guard_ms=guard_ms
    )


def _prepare(guard: Guard, prompt: str) -> PreparedText:
    from guard.text.prepare import prepare_prompt

    return prepare_prompt(prompt, normalize=getattr(guard, "normalize", True))


def _prefill_generate(
    guard: Guard,
    prompt: str,
    text: str,
    history: list[dict[str, str]] | None,
    max_new_tokens: int,
    temperature: float,
    stop: Sequence[str] | None,
) -> GuardedGeneration:
    latent, host = guard.latent, guard.host
    enc = host.encode(text, history)  # exactly the chat the guard scores (LatentGuard.features)
    layers = latent.capture_layers
    positions = [enc.instruction, *enc.post_instruction]
    state: dict[str, Any] = {}

    def on_prefill(input_ids: Any, scores: Any) -> Any:
        if "decision" in state:
            return scores  # later steps: generation goes on untouched
        t0 = time.perf_counter()
        seen = {int(store[layer].shape[1]) for layer in layers}
        if seen != {len(enc.input_ids)}:  # not the prefill of our chat: never guess
            raise RuntimeError(f"prefill saw {sorted(seen)} tokens, expected {len(enc.input_ids)}")
        # [layers, positions, hidden], the layers of `capture_layers` in its order
        rows = np.stack([store[layer][0, positions, :].float().cpu().numpy() for layer in layers])
        dec, ref = latent.project(rows[None])
        state["latent"] = {
            "harmfulness": float(latent.calibrated(dec)[0]),
            "harmfulness_raw": float(dec[0]),
            "refusal": float(ref[0]),
        }
        with latent.reuse_states({(enc.input_ids, tuple(layers)): rows}):
            state["decision"] = guard.check(prompt, history=history)
        state["guard_ms"] = (time.perf_counter() - t0) * 1000
        if state["decision"].blocked:
            raise _Halt
        return scores

    store: dict[int, Any] = {}

    @contextlib.contextmanager
    def recording() -> Iterator[None]:  # the prompt's forward pass only (`TokenStream`'s prefill)
        with host.record(layers, stop_after=False) as seen:
            yield
        store.update(seen)

    try:
        reply, n = _generate(
            guard,
            text,
            history,
            max_new_tokens,
            temperature,
            stop,
            processor=on_prefill,
            prefill=recording(),
            ids=enc.input_ids,
        )
    except _Halt:
        reply, n = "", 0
    if "decision" not in state:  # generate never reached the first token (should not happen)
        raise RuntimeError("the host's generate() did not call the logits processor; cannot guard it")
    return GuardedGeneration(
        state["decision"],
        reply,
        reused_prefill=True,
        new_tokens=n,
        latent_scores=state["latent"],
        guard_ms=state["guard_ms"],
    )


def _generate(
    guard: Guard,
    text: str,
    history: list[dict[str, str]] | None,
    max_new_tokens: int,
    temperature: float,
    stop: Sequence[str] | None,
    processor: Any,
    prefill: AbstractContextManager[Any] | None = None,
    ids: Sequence[int] | None = None,
) -> tuple[str, int]:
    """The host's reply and its new-token count (`TokenStream`: transformers' `generate`)."""
    from guard.whitebox.decoding import TokenStream

    host = guard.host
    stream = TokenStream(
        host,
        ids if ids is not None else host.encode(text, history).input_ids,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        stop=stop,
        logits_processor=processor,
        prefill=prefill,
    )
    return stream.read()


__all__ = ["GuardedGeneration", "guarded_generate"]
