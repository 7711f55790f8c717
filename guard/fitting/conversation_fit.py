"""Fit and measure the conversation head (`guard fit-conversation`), grouped by form.

Every conversation of ``corpus/conversations.jsonl`` gives one example per user turn: the
conversation up to that turn, harmful from its `harmful_from` turn on (earlier turns of a
harmful conversation are harmless so far). Validation holds out whole forms (crescendo,
decomposition, role-play escalation, benign edgy chats, ...), so a form is never in fitting and
test at once. The report says how many harmful conversations are caught by their last turn, how
many turns after the harm begins, and how many benign conversations are ever flagged.

Example:
    >>> report = fit_conversation_head("/tmp/conv")  # doctest: +SKIP
    >>> report["grouped"]["harmful_conversations_caught"] > 0.8  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from guard.decision.stats import auroc
from guard.fitting.calibrate import threshold_for_rate, threshold_for_recall
from guard.fitting.grouped import grouped_folds
from guard.io.data import load_conversations


def _prefixes(convs: list[Any]) -> tuple[list[list[str]], np.ndarray, np.ndarray, np.ndarray]:
    """(user turns so far, label, conversation index, turn index) for every user turn."""
    X, y, owner, turn = [], [], [], []
    for c_i, c in enumerate(convs):
        for t, m in enumerate(c.turns):
            if m["role"] != "user":
                continue
            X.append(c.user_turns(t))
            y.append(int(c.label == "harmful" and t >= (c.harmful_from or 0)))
            owner.append(c_i)
            turn.append(t)
    return X, np.array(y), np.array(owner), np.array(turn)


def conversation_figures(
    scores: np.ndarray, threshold: float, convs: list[Any], owner: np.ndarray, turn: np.ndarray
) -> dict[str, Any]:
    """Conversation-level figures of prefix scores at `threshold`."""
    flagged = scores >= threshold
    harmful = [i for i, c in enumerate(convs) if c.label == "harmful"]
    benign = [i for i, c in enumerate(convs) if c.label == "benign"]
    caught, delays, early = 0, [], 0
    for i in harmful:
        rows = np.flatnonzero(owner == i)
        start = convs[i].harmful_from
        if flagged[rows[turn[rows] < start]].any():
            early += 1
        late = rows[(turn[rows] >= start) & flagged[rows]]
        if late.size:
            caught += 1
            delays.append(int((turn[late[0]] - start) // 2))
    ever = sum(bool(flagged[owner == i].any()) for i in benign)
    last = {i: np.flatnonzero(owner == i)[-1] for i in range(len(convs))}
    return {
        "harmful_conversations_caught": caught / max(1, len(harmful)),
        "caught_by_last_turn": float(np.mean([flagged[last[i]] for i in harmful])),
        "mean_user_turns_after_harm_begins": float(np.mean(delays)) if delays else None,
        "harmful_flagged_before_harm_begins": early / max(1, len(harmful)),
        "benign_conversations_ever_flagged": ever / max(1, len(benign)),
        "benign_last_turn_flagged": float(np.mean([flagged[last[i]] for i in benign])),
    }


def fit_conversation_head(
    out: str | Path | None = None, *, target_recall: float = 0.9, max_benign_rate: float = 0.10
) -> dict[str, Any]:
    """Grouped figures, then the head refitted on everything and saved (default: the shipped folder).

    Two operating points are reported: the threshold that flags `target_recall` of the harmful
    conversations at their last turn, and the one that flags at most `max_benign_rate` of the
    benign conversations' last turns; the head ships with the second (long benign chats with
    edgy words must not be refused), the first is in the report.
    """
    from importlib import resources

    from classifiers.conversation import DEFAULT_RESOURCE, ConversationHarmClassifier
    from classifiers.embeddings import SentenceEmbedder

    convs = load_conversations()
    X, y, owner, turn = _prefixes(convs)
    clf = ConversationHarmClassifier(embedder=SentenceEmbedder(cache=True))
    F = clf.features(X)
    forms = np.array([convs[i].form for i in owner])
    oof = np.zeros(len(X))
    for tr, te in grouped_folds(forms.tolist()):
        oof[te] = (
            ConversationHarmClassifier(embedder=clf.embedder).fit_features(F[tr], y[tr]).score_features(F[te])
        )
    last_harm = np.array(
        [owner[k] != owner[k + 1] if k + 1 < len(owner) else True for k in range(len(owner))]
    )
    t_recall = float(threshold_for_recall(oof[last_harm & (y == 1)], target_recall))
    benign_last = last_harm & np.array([convs[i].label == "benign" for i in owner])
    t = float(threshold_for_rate(oof[benign_last], max_benign_rate))
    # each turn alone (no conversation): what a last-message-only guard with this head would see
    alone = ConversationHarmClassifier(embedder=clf.embedder).fit_features(F, y)
    single = alone.harm_score([[x[-1]] for x in X])
    report = {
        "n_conversations": len(convs),
        "n_prefixes": len(X),
        "groups": "form (grouped_folds)",
        "threshold": t,
        "max_benign_last_turn_rate": max_benign_rate,
        "grouped": {"prefix_auroc": auroc(y, oof), **conversation_figures(oof, t, convs, owner, turn)},
        "grouped_at_recall_target": {
            "target_recall_last_turn": target_recall,
            "threshold": t_recall,
            **conversation_figures(oof, t_recall, convs, owner, turn),
        },
        "last_turn_alone_in_fitted_head": {
            "note": "the refitted head reading only the latest user turn (fitting data: optimistic)",
            **conversation_figures(single, t, convs, owner, turn),
        },
    }
    final = ConversationHarmClassifier().fit_features(F, y)
    final.threshold_ = t
    if out is None:
        with resources.as_file(resources.files("classifiers.resources")) as root:
            out = Path(root) / DEFAULT_RESOURCE
    final.save(out, report)
    (Path(out) / "fit_report.json").write_text(json.dumps(report, indent=2, default=float))
    from classifiers._manifest import write_manifest

    write_manifest(out)
    return report


__all__ = ["conversation_figures", "fit_conversation_head"]
