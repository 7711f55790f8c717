"""The `steer` context manager (hooks removed in `finally`) and steered generation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from guard.errors import InputError
from guard.whitebox.host import HostModel
from guard.whitebox.steering.vectors import _check_prompts


# ------------------------------------------------------------------------------------ hooks
@contextlib.contextmanager
def steer(host: HostModel, additions: Mapping[int, Any]) -> Iterator[None]:
    """Add vectors to decoder-layer outputs while inside the block; hooks removed in `finally`.

    Args:
        host: the host to steer.
        additions: layer -> vector `[hidden]` (every row and position) or `[batch, hidden]`
            (one vector per batch row, so one batch can mix steered and unsteered prompts).

    Example:
        >>> with steer(host, {10: 4.0 * bv.vector(10)}):  # doctest: +SKIP
        ...     host.generate("Write a keylogger")
    """
    import torch

    h = host.hidden_size
    prepared: dict[int, Any] = {}
    for layer, vec in additions.items():
        t = torch.as_tensor(np.asarray(vec, dtype=np.float32))
        if t.shape[-1] != h or t.ndim not in (1, 2):
            raise InputError(
                f"addition at layer {layer} has shape {tuple(t.shape)}; need ({h},) or (batch, {h})"
            )
        prepared[int(layer)] = t

    def make(vec: Any) -> Any:
        def add(hidden: Any) -> Any:
            v = vec.to(device=hidden.device, dtype=hidden.dtype)
            if v.ndim == 1:
                return hidden + v
            if v.shape[0] != hidden.shape[0]:
                raise InputError(
                    f"per-row additions for {v.shape[0]} rows, but the batch has {hidden.shape[0]}"
                )
            return hidden + v[:, None, :]

        return add

    with host.intervene({l: make(v) for l, v in prepared.items()}):
        yield


def generate_ids(
    host: HostModel,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 32,
    batch_size: int = 8,
    additions: Sequence[Mapping[int, np.ndarray]] | None = None,
) -> list[list[int]]:
    """Greedy replies as token ids, in left-padded batches, optionally with per-prompt additions.

    Args:
        host: the host.
        prompts: user prompts.
        max_new_tokens: tokens generated per prompt (fewer where end-of-turn comes first).
        batch_size: prompts per `generate` call.
        additions: per prompt, layer -> vector to add (empty mapping: unsteered).

    Example:
        >>> ids = generate_ids(host, ["hello"], max_new_tokens=4)  # doctest: +SKIP
    """
    import torch

    prompts = _check_prompts(prompts)
    if additions is not None and len(additions) != len(prompts):
        raise InputError(f"{len(prompts)} prompts but {len(additions)} additions")
    if max_new_tokens < 1 or batch_size < 1:
        raise InputError(f"max_new_tokens and batch_size must be >= 1, got {max_new_tokens}, {batch_size}")
    tok = host.tokenizer
    pad = tok.pad_token_id
    eos = tok.eos_token_id
    out: list[list[int]] = []
    h = host.hidden_size
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        ids = [host.encode(p).input_ids for p in chunk]
        width = max(len(s) for s in ids)
        x = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, s in enumerate(ids):
            x[row, width - len(s) :] = torch.tensor(s)
            mask[row, width - len(s) :] = 1
        rows_add: dict[int, np.ndarray] = {}
        if additions is not None:
            part = additions[start : start + batch_size]
            for layer in sorted({l for a in part for l in a}):
                rows_add[layer] = np.stack(
                    [np.asarray(a.get(layer, np.zeros(h)), dtype=np.float32) for a in part]
                )
        with torch.inference_mode(), steer(host, rows_add):
            gen = host.model.generate(
                x.to(host.device),
                attention_mask=mask.to(host.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                temperature=None,
                top_p=None,
                top_k=None,
            )
        for row in gen[:, width:].tolist():
            cut = list(row)
            if eos is not None and eos in cut:
                cut = cut[: cut.index(eos)]
            while cut and cut[-1] == pad:
                cut.pop()
            out.append(cut)
    return out
