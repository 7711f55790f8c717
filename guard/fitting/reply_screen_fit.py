"""Fit the stream screen (`classifiers.ReplyScreenClassifier`) from the reply head it sits in front of.

The screen is distilled: its label for a reply window is the reply head's own verdict on that
window (score at or above the head's threshold), so its recall is measured against the head, the
thing it may delay. Windows are the ones a stream shows the screen: for each labelled reply
(`guard.fitting.reply_side.load_reply_rows`, both labels) the growing last window at a few cut
points, plus the complete windows. Validation is grouped by the rows' (source, harm topic)
groups; the threshold is the highest that still passes `recall` of the out-of-fold windows the
head blocks on to the head, and the figures say how often the screen sends a window to the head
(the cost) and how often it would have let one wait that the head blocks (the delay).

Example:
    >>> report = fit_reply_screen(Path("/tmp/reply_screen"), progress=False)  # doctest: +SKIP
    >>> report["open_windows"]["recall_vs_head"] >= 0.98  # doctest: +SKIP
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
from guard.fitting.calibrate import threshold_for_recall
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


def _rates(scores: np.ndarray, verdict: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    sent = scores >= threshold
    return {
        "n": int(scores.size),
        "head_blocks": int(verdict.sum()),
        "recall_vs_head": float(sent[verdict == 1].mean()) if verdict.any() else float("nan"),
        "sent_to_head": float(sent.mean()) if sent.size else float("nan"),
        "sent_to_head_head_passes": float(sent[verdict == 0].mean())
        if (verdict == 0).any()
        else float("nan"),
        "sent_to_head_benign_replies": float(sent[labels == 0].mean())
        if (labels == 0).any()
        else float("nan"),
        "auroc_vs_head": auroc(verdict, scores),
    }


def fit_reply_screen(
    out_dir: Path | None,
    *,
    head_dir: Path | None = None,
    recall: float = 0.98,
    n_splits: int = 5,
    C: float = 4.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Distil the screen from the reply head in `head_dir` (default: the shipped one), validate
    it grouped, set its threshold for `recall` of the head's blocks, save it to `out_dir`.

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
    threshold = threshold_for_recall(oof[is_open & (verdict == 1)], recall)
    g = np.asarray([x.split(":")[0] for x in groups])
    figures = {
        "n_windows": int(verdict.size),
        "n_open_windows": int(is_open.sum()),
        "head_threshold": float(head.threshold_),
        "threshold": threshold,
        "recall_target": recall,
        "open_windows": _rates(oof[is_open], verdict[is_open], labels[is_open], threshold),
        "all_windows": _rates(oof, verdict, labels, threshold),
        "open_windows_by_source": {
            s: _rates(
                oof[is_open & (g == s)], verdict[is_open & (g == s)], labels[is_open & (g == s)], threshold
            )
            for s in sorted(set(g.tolist()))
        },
        "note": "distilled from the reply head's verdicts; grouped "
        f"{n_splits}-fold CV by the reply rows' (source, harm topic); the threshold passes "
        f"{recall:.0%} of the out-of-fold open windows the head blocks on to the head",
    }
    model = ReplyScreenClassifier(C=C).fit(pairs, verdict)
    model.threshold_ = threshold
    if out_dir is not None:
        model.save(
            out_dir, extra={"figures": figures, "reply_head_manifest_sha256": head_fingerprint(head_dir)}
        )
    return figures


__all__ = ["CUTS_PER_REPLY", "fit_reply_screen", "shipped_reply_head", "stream_windows"]
