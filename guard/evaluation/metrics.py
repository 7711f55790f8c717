"""Metrics of a detector on labelled prompts: the stable `metrics.json` schema of DESIGN.md.

Every block (overall, each source, each category) carries the DESIGN.md keys (`n`, `n_harmful`,
`n_benign`, `auroc`, `harmful_blocked_rate`, `over_refusal_rate`, `benign_answered_rate`,
`latency_ms`) plus `ece` (expected calibration error of the scores read as P(harmful)) and `ci`:
percentile bootstrap confidence intervals of the quality metrics, from rows resampled with
replacement within the block. The bootstrap is seeded, so the same scores give the same
intervals on every engine and every run.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from guard.decision.stats import auroc
from guard.io.data import Example

#: metrics that get a bootstrap interval (latency is a measurement of the machine, not of the data)
CI_KEYS: tuple[str, ...] = ("auroc", "harmful_blocked_rate", "over_refusal_rate", "benign_answered_rate")


def _finite_or_none(v: float) -> float | None:
    """JSON has no NaN: an undefined figure (one label only) is reported as null."""
    return v if v == v else None


def _ece(y: np.ndarray, s: np.ndarray) -> float | None:
    from guard.fitting.calibrate import reliability

    if y.size == 0 or not np.all((s >= 0) & (s <= 1)):
        return None  # not a probability: calibration error is undefined
    return float(reliability(s, y, bins=10)["ece"])


def weighted_auroc(y: np.ndarray, s: np.ndarray, w: np.ndarray, *, presorted: bool = False) -> np.ndarray:
    """AUROC of each row of integer weights `w` (shape `(k, n)`) over the same scores, with ties as 1/2.

    A weight is how often a row was drawn, so row `i` of the result is the AUROC of the `i`-th
    bootstrap resample; with all weights 1 it equals scikit-learn's `roc_auc_score`. One sort
    serves every resample. A resample with no harmful or no benign row gives NaN.

    Args:
        y: labels, 1 = harmful.
        s: scores.
        w: weights, one row per resample.
        presorted: `s` is already ascending (and `y`, `w` in the same order): skip the sort.

    Example:
        >>> y, s = np.array([1, 0, 1, 0]), np.array([0.9, 0.2, 0.4, 0.4])
        >>> weighted_auroc(y, s, np.ones((1, 4))).round(3).tolist()
        [0.875]
    """
    w = np.asarray(w, dtype=float)
    if not presorted:
        order = np.argsort(s, kind="mergesort")
        s, y, w = s[order], y[order], w[:, order]
    pos = y == 1
    neg_w = w * ~pos
    cum = np.cumsum(neg_w, axis=1)  # negative weight at or below each sorted position
    pos_ix = np.flatnonzero(pos)
    change = np.r_[True, s[1:] != s[:-1]]
    if change.all():  # no ties: below a harmful row lies exactly the negative weight up to it
        num = (w[:, pos_ix] * cum[:, pos_ix]).sum(axis=1)
    else:  # first and last sorted index of each row's tie group
        idx = np.arange(s.size)
        start = np.maximum.accumulate(np.where(change, idx, 0))[pos_ix]
        end = np.minimum.accumulate(np.where(np.r_[change[1:], True], idx, s.size)[::-1])[::-1][pos_ix]
        below = cum[:, start] - neg_w[:, start]  # negative weight strictly below the tie group
        num = (w[:, pos_ix] * (below + 0.5 * (cum[:, end] - below))).sum(axis=1)
    den = w[:, pos_ix].sum(axis=1) * cum[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def bootstrap_ci(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    blocked: Sequence[bool] | np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    key: str = "",
) -> dict[str, list[float] | None]:
    """Percentile bootstrap intervals of AUROC and the blocked/answered rates.

    Rows are drawn with replacement `n_boot` times; a statistic undefined on a resample (AUROC
    with one class only, a rate with no row of its label) is left out of that statistic's
    percentiles, and is `None` when never defined. `key` (e.g. the group's name) is mixed into
    the seed so that groups get independent draws while the result stays reproducible.

    Example:
        >>> y = [1] * 30 + [0] * 30
        >>> s = [0.8] * 25 + [0.3] * 5 + [0.2] * 27 + [0.7] * 3
        >>> ci = bootstrap_ci(y, s, [v >= 0.5 for v in s], n_boot=200)
        >>> lo, hi = ci["harmful_blocked_rate"]
        >>> lo < 25 / 30 < hi
        True
    """
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    b = np.asarray(blocked, dtype=bool)
    n = y.size
    if n == 0 or n_boot <= 0:
        return {k: None for k in CI_KEYS}
    # Drawing rows uniformly is drawing sorted positions uniformly, so sort once and draw there.
    order = np.argsort(s, kind="mergesort")
    y, s, b = y[order], s[order], b[order]
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(zlib.crc32(key.encode()),)))
    harm, ben = (y == 1).astype(float), (y == 0).astype(float)
    stats: dict[str, list[np.ndarray]] = {k: [] for k in CI_KEYS}
    chunk = max(1, min(n_boot, 2_000_000 // n))  # bound memory: chunk x n weights at a time
    done = 0
    while done < n_boot:
        k = min(chunk, n_boot - done)
        draws = rng.integers(0, n, size=(k, n), dtype=np.int32)
        w = np.empty((k, n))
        for i in range(k):  # one bincount per resample keeps the counts in cache
            w[i] = np.bincount(draws[i], minlength=n)
        wh, wb = w @ harm, w @ ben
        with np.errstate(invalid="ignore", divide="ignore"):
            hb = (w @ (harm * b)) / wh
            bb = (w @ (ben * b)) / wb
        both = bool(harm.any() and ben.any())
        stats["auroc"].append(weighted_auroc(y, s, w, presorted=True) if both else np.full(k, np.nan))
        stats["harmful_blocked_rate"].append(hb)
        stats["over_refusal_rate"].append(bb)
        stats["benign_answered_rate"].append(1.0 - bb)
        done += k
    alpha = (1.0 - level) / 2 * 100
    out: dict[str, list[float] | None] = {}
    for name, parts in stats.items():
        v = np.concatenate(parts)
        v = v[~np.isnan(v)]
        out[name] = [float(np.percentile(v, alpha)), float(np.percentile(v, 100 - alpha))] if v.size else None
    return out


def _block(
    y: np.ndarray,
    s: np.ndarray,
    blocked: np.ndarray,
    lat: np.ndarray,
    *,
    n_boot: int,
    level: float,
    seed: int,
    key: str,
) -> dict[str, Any]:
    harm, ben = y == 1, y == 0
    out: dict[str, Any] = {
        "n": int(y.size),
        "n_harmful": int(harm.sum()),
        "n_benign": int(ben.sum()),
        "auroc": _finite_or_none(auroc(y, s)),
        "harmful_blocked_rate": float(blocked[harm].mean()) if harm.any() else None,
        "over_refusal_rate": float(blocked[ben].mean()) if ben.any() else None,
        "benign_answered_rate": float((~blocked[ben]).mean()) if ben.any() else None,
        "latency_ms": {
            "p50": float(np.percentile(lat, 50)) if lat.size else None,
            "p95": float(np.percentile(lat, 95)) if lat.size else None,
        },
        "ece": _ece(y, s),
        "ci": bootstrap_ci(y, s, blocked, n_boot=n_boot, level=level, seed=seed, key=key),
    }
    return out


def compute_metrics(
    examples: Sequence[Example],
    scores: Sequence[float] | np.ndarray,
    blocked: Sequence[bool] | np.ndarray,
    latency_ms: Sequence[float] | np.ndarray,
    *,
    detector: str,
    guard: str,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics overall, by source and by category. "Blocked" means refuse or abstain.

    Args:
        examples: the labelled rows, in the order of `scores`.
        scores: one score per row, higher = more harmful (a probability for `ece`).
        blocked: whether the detector refused or abstained on each row.
        latency_ms: time per row (amortised over the batch it was scored in).
        detector: the detector's name, recorded as `detector`.
        guard: which guard was evaluated, recorded as `guard`.
        n_boot: bootstrap resamples per block for `ci` (0: no intervals, every `ci` value `None`).
        level: the confidence level of the intervals.
        seed: bootstrap seed; the same seed and rows give the same intervals.

    Returns:
        The `metrics.json` object: the DESIGN.md keys, `ece`, `ci` per block, `by_source`,
        `by_category` (rows without one fall under ``"unknown"``) and `bootstrap`.

    Example:
        >>> rows = [Example(prompt="a", label="harmful", source="s"),
        ...         Example(prompt="b", label="benign", source="s")]
        >>> m = compute_metrics(rows, [0.9, 0.1], [True, False], [1.0, 2.0], detector="latent", guard="x")
        >>> m["auroc"], m["harmful_blocked_rate"], m["over_refusal_rate"]
        (1.0, 1.0, 0.0)
        >>> m["ci"]["harmful_blocked_rate"]
        [1.0, 1.0]
    """
    y = np.array([1 if e.label == "harmful" else 0 for e in examples])
    s = np.asarray(scores, dtype=float)
    b = np.asarray(blocked, dtype=bool)
    lat = np.asarray(latency_ms, dtype=float)
    if not (y.size == s.size == b.size == lat.size):
        from guard.errors import InputError

        raise InputError(
            f"compute_metrics needs one score, blocked flag and latency per example; got "
            f"{y.size} examples, {s.size} scores, {b.size} flags, {lat.size} latencies"
        )
    boot: dict[str, Any] = {"n_boot": n_boot, "level": level, "seed": seed}
    metrics = _block(y, s, b, lat, key="all", **boot)

    def grouped(kind: str, key: Callable[[Example], str | None]) -> dict[str, Any]:
        groups: dict[str, list[int]] = {}
        for i, e in enumerate(examples):
            groups.setdefault(key(e) or "unknown", []).append(i)
        return {
            g: _block(y[ix], s[ix], b[ix], lat[ix], key=f"{kind}:{g}", **boot)
            for g, ix in sorted(groups.items())
        }

    metrics["by_source"] = grouped("source", lambda e: e.source)
    metrics["by_category"] = grouped("category", lambda e: e.category)
    metrics["detector"] = detector
    metrics["guard"] = guard
    metrics["bootstrap"] = {"method": "percentile, rows resampled within each block", **boot}
    return metrics


def strip_timings(metrics: dict[str, Any]) -> dict[str, Any]:
    """A copy of a metrics object without `latency_ms` anywhere: what two engines must agree on.

    Example:
        >>> strip_timings({"auroc": 0.9, "latency_ms": {"p50": 1.0}, "by_source": {"a": {"latency_ms": {}}}})
        {'auroc': 0.9, 'by_source': {'a': {}}}
    """
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if k == "latency_ms":
            continue
        out[k] = strip_timings(v) if isinstance(v, dict) else v
    return out
