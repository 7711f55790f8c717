"""Fit the knowledge-boundary probe (`guard fit-knowledge`): the host answers project-written
factual questions, its answers are checked against their aliases, and a probe on its hidden
states learns to predict which answers are right. Validation is grouped by topic (no topic in
fitting and test at once); the report gives selective accuracy against coverage.

Example:
    >>> answer_is_correct("The capital is Canberra.", ["Canberra"])
    True
    >>> answer_is_correct("It has 80 legs.", ["8", "eight"])
    False
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guard.decision.stats import auroc
from guard.errors import DataFormatError


def answer_is_correct(answer: str, aliases: Sequence[str]) -> bool:
    """Any alias appears in the answer as whole words (case-insensitive)."""
    text = answer.casefold()
    return any(
        re.search(rf"(?<!\w){re.escape(a.casefold().strip())}(?!\w)", text) for a in aliases if a.strip()
    )


def load_factual_qa() -> list[dict[str, Any]]:
    """The project's factual questions (``corpus/factual_qa.jsonl``): question, answers, topic, difficulty."""
    from guard.io.data import corpus_rows

    rows = []
    for where, number, row in corpus_rows("factual_qa"):
        if not (
            isinstance(row.get("question"), str) and isinstance(row.get("answers"), list) and row["answers"]
        ):
            raise DataFormatError(f"{where}, line {number}: needs a question and answers")
        rows.append(row)
    return rows


def selective_table(
    p_correct: np.ndarray,
    correct: np.ndarray,
    coverages: Sequence[float] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3),
) -> list[dict[str, float]]:
    """Accuracy of the answered questions when only the `coverage` most confident are answered."""
    order = np.argsort(-p_correct, kind="stable")
    out = []
    for c in coverages:
        k = max(1, int(round(c * len(order))))
        out.append(
            {
                "coverage": c,
                "accuracy": float(correct[order[:k]].mean()),
                "threshold": float(p_correct[order[k - 1]]),
            }
        )
    return out


def fit_knowledge(
    latent: Any,
    out: str | Path,
    *,
    cache: str | Path | None = None,
    max_new_tokens: int = 16,
    max_questions: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Generate, check, fit the probe at the latent's layer (best position by grouped AUROC), save it.

    Args:
        latent: the fitted `LatentGuard` whose host answers and whose layer the probe reads.
        out: folder for the probe.
        cache: a JSON file keeping the host's answers between runs (generation is the slow part).
        max_new_tokens: answer length.
        max_questions: answer at most this many questions (a seeded sample; generation on a CPU
            takes about a second a question); None: all.
        seed: seed of that sample.
        progress: called with a short message now and then.
    """
    from sklearn.model_selection import GroupKFold

    from guard.whitebox.knowledge import KnowledgeProbe

    say = progress or (lambda _m: None)
    host = latent._host()
    rows = load_factual_qa()
    if max_questions is not None and max_questions < len(rows):
        keep = sorted(np.random.default_rng(seed).choice(len(rows), max_questions, replace=False).tolist())
        rows = [rows[i] for i in keep]
    questions = [r["question"] for r in rows]
    answers: dict[str, str] = {}
    cache_path = Path(cache) if cache else None
    if cache_path is not None and cache_path.is_file():
        answers = json.loads(cache_path.read_text(encoding="utf-8"))
    for i, q in enumerate(questions):
        if q not in answers:
            answers[q] = host.generate(q, max_new_tokens=max_new_tokens)
            if cache_path is not None and i % 50 == 0:
                cache_path.write_text(json.dumps(answers), encoding="utf-8")
                say(f"answered {i + 1}/{len(questions)}")
    if cache_path is not None:
        cache_path.write_text(json.dumps(answers), encoding="utf-8")
    correct = np.array([answer_is_correct(answers[r["question"]], r["answers"]) for r in rows], dtype=int)
    X, owner = latent.features(questions, [latent.layer_], align=True)
    last = np.array([np.flatnonzero(owner == i)[-1] for i in range(len(questions))])
    S = X[last, 0]  # [n, n_positions, hidden]
    groups = np.array([r.get("topic", "?") for r in rows])
    folds = list(GroupKFold(n_splits=min(5, len(set(groups)))).split(S, correct, groups))

    def oof_for(pos: int) -> np.ndarray:
        p = np.zeros(len(rows))
        for tr, te in folds:
            probe = KnowledgeProbe(latent.layer_, pos).fit_states(S[tr, pos], correct[tr])
            p[te] = probe.proba_correct(S[te, pos])
        return p

    by_pos = {pos: oof_for(pos) for pos in range(S.shape[1])}
    grid = {int(pos): auroc(correct, p) for pos, p in by_pos.items()}
    best = max(grid, key=lambda k: grid[k])
    oof = by_pos[best]
    threshold = (
        0.5  # Chow's rule with equal costs: abstain when a wrong answer is more likely than a right one
    )
    answered = oof >= threshold
    easy = np.array([r.get("kind") == "safety_irrelevant_easy" for r in rows])
    report = {
        "n": len(rows),
        "host_accuracy": float(correct.mean()),
        "max_new_tokens": max_new_tokens,
        "sample": f"{len(rows)} questions" + (f" (seeded sample, seed {seed})" if max_questions else ""),
        "groups": "topic (GroupKFold)",
        "layer": int(latent.layer_),
        "position": int(best),
        "grouped_auroc_by_position": grid,
        "grouped_auroc": grid[best],
        "threshold": threshold,
        "at_threshold": {
            "coverage": float(answered.mean()),
            "selective_accuracy": float(correct[answered].mean()) if answered.any() else None,
            "accuracy_all": float(correct.mean()),
        },
        "selective_accuracy_vs_coverage": selective_table(oof, correct),
        "by_difficulty": {
            d: {
                "n": int(m.sum()),
                "host_accuracy": float(correct[m].mean()),
                "abstained": float((~answered[m]).mean()),
            }
            for d in ("easy", "medium", "hard")
            if (m := np.array([r.get("difficulty") == d for r in rows])).any()
        },
        "safety_irrelevant_easy": {
            "n": int(easy.sum()),
            "host_accuracy": float(correct[easy].mean()),
            "abstained_when_host_right": float((~answered[easy & (correct == 1)]).mean())
            if (easy & (correct == 1)).any()
            else None,
        },
    }
    final = KnowledgeProbe(latent.layer_, best).fit_states(S[:, best], correct)
    final.threshold_ = threshold
    final.save(out, report)
    return report


__all__ = ["answer_is_correct", "fit_knowledge", "load_factual_qa", "selective_table"]
