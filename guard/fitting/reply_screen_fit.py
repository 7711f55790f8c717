"""Fit the stream screen (`classifiers.ReplyScreenClassifier`) from the reply head it sits in front of.

The screen is distilled: its label for a reply window is the reply head's own verdict on that
window (score at or above the head's threshold), so its recall is measured against the head, the
thing it may delay. Windows are the ones a stream shows the screen: for each labelled reply
(`guard.fitting.reply_side.load_reply_rows`, both labels) the growing last window at a few cut
points, plus the complete windows. Validation is grouped by the rows' (source, harm topic)
groups. The threshold is set by cost: it sends `send_rate` of the out-of-fold open windows the
head passes on to the head; the figures say how many of the windows the head blocks it sends at
once (`recall_vs_head`; the others wait until their window is complete, a bounded delay, never a
miss), at that rate and along a curve of rates.

Example:
    >>> report = fit_reply_screen(Path("/tmp/reply_screen"), progress=False)  # doctest: +SKIP
    >>> report["open_windows"]["sent_to_head_head_passes"] <= 0.11  # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from guard.features.reply_stream import head_fingerprint
from guard.fitting.grouped import auroc, grouped_folds
from guard.fitting.reply_side import load_reply_rows
from guard.text.prepare import prepare_prompt

#: Cut points per reply where its growing last window is taken (drawn per reply, seeded by it).
CUTS_PER_REPLY = 4


def shipped_reply_head() -> Path:
    """The folder of the shipped reply head (``classifiers/resources/reply_harm``)."""
    with resources.as_file(resources.files("classifiers.resources").joinpath("reply_harm")) as p:
        return Path(p)


def stream_windows(reply: str, chars: int, stride: int, cuts: int = CUTS_PER_REPLY) -> list[tuple[str, bool]]:
    """``(window, is_open)`` for the windows a stream of `reply` shows: the growing last window
    at `cuts` cut points (drawn from the reply's own hash, so the set is the same on every run)
    and every complete window of the whole reply.

    Example:
        >>> [(w, o) for w, o in stream_windows("abcdefghij", 4, 2, cuts=0)]
        [('abcd', False), ('cdef', False), ('efgh', False), ('ghij', False)]
    """
    from classifiers.reply_harm import reply_windows

    seed = int(hashlib.sha256(reply.encode("utf-8")).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    out: list[tuple[str, bool]] = []
    if len(reply) > 1 and cuts:
        for cut in sorted(set(rng.integers(1, len(reply), size=cuts).tolist())):
            last = reply_windows(reply[:cut], chars, stride)[-1]
            if len(last) < chars:
                out.append((last, True))
    out.extend(
        (w, False) for w in reply_windows(reply, chars, stride) if len(w) >= chars or len(reply) <= chars
    )
    return out


def _window_rows(head: Any) -> tuple[list[tuple[str, str]], np.ndarray, list[str], np.ndarray]:
    """(request, window) pairs, open-window flags, their rows' groups, and their rows' labels."""
    pairs: list[tuple[str, str]] = []
    is_open: list[bool] = []
    groups: list[str] = []
    labels: list[int] = []
    for r in load_reply_rows():
        user = prepare_prompt(r["prompt"])[0] if r["prompt"] else ""
        reply = prepare_prompt(r["reply"])[0]
        if not reply.strip():
            continue
        for w, o in dict.fromkeys(stream_windows(reply, int(head.window_chars), int(head.stride))):
            pairs.append((user, w))
            is_open.append(o)
            groups.append(r["group"])
            labels.append(int(r["label"] == "harmful"))
    return pairs, np.asarray(is_open), groups, np.asarray(labels)


#: Send rates the trade-off curve in the figures is drawn at.
CURVE_SEND_RATES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)


def _mean(mask: np.ndarray) -> float | None:
    """The share of True in `mask`, None when it is empty (JSON has no NaN)."""
    return float(mask.mean()) if mask.size else None


def _rates(scores: np.ndarray, verdict: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    sent = scores >= threshold
    value = auroc(verdict, scores)
    return {
        "n": int(scores.size),
        "head_blocks": int(verdict.sum()),
        "recall_vs_head": _mean(sent[verdict == 1]),
        "sent_to_head": _mean(sent),
        "sent_to_head_head_passes": _mean(sent[verdict == 0]),
        "sent_to_head_benign_replies": _mean(sent[labels == 0]),
        "auroc_vs_head": None if value != value else value,
    }


def threshold_for_send_rate(passes: np.ndarray, send_rate: float) -> float:
    """The screen threshold that sends `send_rate` of the windows the head passes (their screen
    scores, `passes`) on to the head.

    Example:
        >>> threshold_for_send_rate(np.array([0.1, 0.2, 0.3, 0.4]), 0.25)
        0.4
    """
    if not 0.0 <= send_rate <= 1.0:
        raise ValueError(f"send_rate must be in [0, 1], got {send_rate}")
    passes = np.asarray(passes, dtype=float)
    if send_rate >= 1.0 or passes.size == 0:
        return 0.0
    if send_rate <= 0.0:
        return float(np.nextafter(passes.max(), np.inf))
    return float(np.quantile(passes, 1.0 - send_rate, method="higher"))


def fit_reply_screen(
    out_dir: Path | None,
    *,
    head_dir: Path | None = None,
    send_rate: float = 0.1,
    n_splits: int = 5,
    C: float = 4.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Distil the screen from the reply head in `head_dir` (default: the shipped one), validate
    it grouped, set its threshold to send `send_rate` of the open windows the head passes on to
    the head, save it to `out_dir`.

    Returns:
        The figures (also saved in the screen's ``model.json``): counts, the threshold, and for
        the open windows out of fold: recall against the head, the share sent to the head (all,
        where the head passes, on benign replies) and AUROC against the head's verdict.
    """
    from classifiers.embeddings import shared_embeddings
    from classifiers.reply_harm import ReplyHarmClassifier
    from classifiers.reply_screen import ReplyScreenClassifier

    head_dir = Path(head_dir) if head_dir is not None else shipped_reply_head()
    head = ReplyHarmClassifier.load(head_dir)
    pairs, is_open, groups, labels = _window_rows(head)
    if progress:
        print(f"reply screen: the head reads {len(pairs)} windows", file=sys.stderr, flush=True)
    with shared_embeddings():
        head_scores = np.asarray(head.score(pairs), dtype=float)
    verdict = (head_scores >= float(head.threshold_)).astype(int)
    oof = np.full(verdict.size, np.nan)
    for k, (tr, te) in enumerate(grouped_folds(groups, n_splits)):
        screen = ReplyScreenClassifier(C=C).fit([pairs[i] for i in tr], verdict[tr])
        oof[te] = screen.score([pairs[i] for i in te])
        if progress:
            print(f"reply screen: fold {k + 1} done", file=sys.stderr, flush=True)
    threshold = threshold_for_send_rate(oof[is_open & (verdict == 0)], send_rate)
    g = np.asarray([x.split(":")[0] for x in groups])
    figures = {
        "n_windows": int(verdict.size),
        "n_open_windows": int(is_open.sum()),
        "head_threshold": float(head.threshold_),
        "threshold": threshold,
        "send_rate_target": send_rate,
        "open_windows": _rates(oof[is_open], verdict[is_open], labels[is_open], threshold),
        "all_windows": _rates(oof, verdict, labels, threshold),
        "open_windows_by_source": {
            s: _rates(
                oof[is_open & (g == s)], verdict[is_open & (g == s)], labels[is_open & (g == s)], threshold
            )
            for s in sorted(set(g.tolist()))
        },
        "open_windows_curve": [
            {
                "send_rate": r,
                **_rates(
                    oof[is_open],
                    verdict[is_open],
                    labels[is_open],
                    threshold_for_send_rate(oof[is_open & (verdict == 0)], r),
                ),
            }
            for r in CURVE_SEND_RATES
        ],
        "note": "distilled from the reply head's verdicts; grouped "
        f"{n_splits}-fold CV by the reply rows' (source, harm topic); the threshold sends "
        f"{send_rate:.0%} of the out-of-fold open windows the head passes on to the head; "
        "the windows the head blocks that it does not send wait until their window is complete",
    }
    model = ReplyScreenClassifier(C=C).fit(pairs, verdict)
    model.threshold_ = threshold
    if out_dir is not None:
        model.save(
            out_dir, extra={"figures": figures, "reply_head_manifest_sha256": head_fingerprint(head_dir)}
        )
    return figures


__all__ = [
    "CURVE_SEND_RATES",
    "CUTS_PER_REPLY",
    "fit_reply_screen",
    "shipped_reply_head",
    "stream_windows",
    "threshold_for_send_rate",
]
