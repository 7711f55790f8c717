"""Validation that predicts the world: grouped cross-validation and a stress report by form.

A random split of one corpus shares its style between fitting and test, so it says little about
text written by someone else. Here a *group* is a (source, form) pair (``project_benign_forms:
venting``, ``advbench``...), and `GroupKFold` keeps every group on one side of each fold: no
form is seen in fitting and test at once. The stress report then reads the out-of-fold scores by
form, so a weak form (statements, long texts, another language) shows as a row of its own.

Example:
    >>> from guard.io.data import Example
    >>> group_of(Example(prompt="x", label="benign", source="project_benign_forms", form="venting"))
    'project_benign_forms:venting'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from guard.decision.stats import auroc  # noqa: F401 - re-exported for the fitting modules
from guard.errors import InputError
from guard.fitting.calibrate import blocked_rate
from guard.io.data import Example


def group_of(example: Example) -> str:
    """The grouped-validation group: ``source:form`` when the row has a form, else its source
    (and, for the first benign corpus, its topic group)."""
    source = example.source or "unknown"
    if example.form == "translated" and example.lang:
        return f"{source}:lang:{example.lang}"  # an unseen language is a form of its own
    if example.form:
        return f"{source}:{example.form}"
    if source == "project_benign" and example.group:
        return f"{source}:{example.group}"
    return source


def form_of(example: Example) -> str:
    """The form a stress report reads: the row's own form, else its source's kind."""
    if example.lang and (example.lang != "en" or example.form == "translated"):
        return f"lang:{example.lang}"
    if example.form:
        return example.form
    return {
        "advbench": "imperative",
        "donotanswer": "question",
        "inthewild_jailbreak": "roleplay_wrapper",
        "bastion_injections": "prompt_injection",
        "project_harmful": "question",
    }.get(example.source or "", "question")


def per_group_sample(examples: Sequence[Example], per_group: int, seed: int = 0) -> np.ndarray:
    """Row indices keeping at most `per_group` rows of each group (by a fixed hash of the text):
    the host pass is the costly step, and a few dozen rows of a form teach it as well as all.

    Example:
        >>> rows = [Example(prompt=f"p{i}", label="benign", source="s", form="f") for i in range(5)]
        >>> per_group_sample(rows, 2).size
        2
    """
    import hashlib

    by_group: dict[str, list[tuple[str, int]]] = {}
    for i, e in enumerate(examples):
        h = hashlib.sha256(f"{seed}:{e.prompt}".encode("utf-8", "surrogatepass")).hexdigest()
        by_group.setdefault(group_of(e), []).append((h, i))
    keep = [i for rows in by_group.values() for _, i in sorted(rows)[:per_group]]
    return np.array(sorted(keep), dtype=int)


def grouped_folds(groups: Sequence[str], n_splits: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """`(train_rows, test_rows)` pairs of `GroupKFold`: each group lies in one test fold only."""
    from sklearn.model_selection import GroupKFold

    g = np.asarray(groups)
    k = min(n_splits, len(set(g.tolist())))
    if k < 2:
        raise InputError(f"grouped validation needs at least 2 groups, got {k}")
    return [(tr, te) for tr, te in GroupKFold(n_splits=k).split(np.zeros(g.size), groups=g)]


def oof_scores(
    fit_score: Callable[[np.ndarray, np.ndarray], np.ndarray],
    y: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Out-of-fold P(harmful) per row: `fit_score(train_rows, test_rows)` fits on the first and
    scores the second."""
    out = np.full(y.size, np.nan)
    for tr, te in folds:
        out[te] = fit_score(tr, te)
    return out


def stress_report(
    scores: np.ndarray, y: np.ndarray, forms: Sequence[str], threshold: float, min_rows: int = 10
) -> dict[str, dict[str, float]]:
    """By form: rows, AUROC (both labels), harmful blocked, benign blocked at `threshold`.

    Example:
        >>> r = stress_report(np.array([0.9, 0.1, 0.8, 0.7]), np.array([1, 0, 1, 0]),
        ...                   ["q", "q", "s", "s"], 0.5, min_rows=1)
        >>> r["s"]["benign_blocked"], r["q"]["auroc"]
        (1.0, 1.0)
    """
    f = np.asarray(forms)
    out: dict[str, dict[str, float]] = {}
    for form in sorted(set(f.tolist())):
        m = f == form
        if m.sum() < min_rows:
            continue
        row: dict[str, float] = {"n": int(m.sum()), "n_harmful": int(y[m].sum())}
        if y[m].any():
            row["harmful_blocked"] = blocked_rate(scores[m & (y == 1)], threshold)
        if (~y[m].astype(bool)).any():
            row["benign_blocked"] = blocked_rate(scores[m & (y == 0)], threshold)
        a = auroc(y[m], scores[m])
        if a == a:
            row["auroc"] = a
        out[form] = row
    return out


def summary(scores: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, Any]:
    """AUROC, harmful and benign blocked rates, F1 of "blocked" at `threshold`."""
    blocked = scores >= threshold
    tp = int((blocked & (y == 1)).sum())
    fp = int((blocked & (y == 0)).sum())
    fn = int((~blocked & (y == 1)).sum())
    return {
        "n": int(y.size),
        "auroc": auroc(y, scores),
        "harmful_blocked": blocked_rate(scores[y == 1], threshold),
        "benign_blocked": blocked_rate(scores[y == 0], threshold),
        "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
    }


__all__ = [
    "auroc",
    "form_of",
    "group_of",
    "grouped_folds",
    "oof_scores",
    "per_group_sample",
    "stress_report",
    "summary",
]
