"""The `guard eval` report: one self-contained HTML file with the metrics and embedded PNG figures.

Figures (matplotlib on the Agg canvas, no pyplot state, no display needed): ROC curves of every
detector, score histograms per source, harmful and benign blocked rates against the threshold,
a reliability diagram, and per-category blocked rates with bootstrap intervals. Tables carry the
same numbers as `metrics.json`, with 95 % intervals; an optional robustness section shows
recall before and after each prompt transform.

Example:
    >>> from guard.io.data import Example
    >>> from guard.evaluation.engine import Scored
    >>> from guard.evaluation.metrics import compute_metrics
    >>> rows = [Example(prompt=str(i), label="harmful" if i % 2 else "benign", source="s") for i in range(20)]
    >>> s = np.linspace(0, 1, 20)
    >>> sc = Scored(s, s >= 0.5, np.ones(20))
    >>> m = compute_metrics(rows, sc.scores, sc.blocked, sc.latency_ms, detector="d", guard="g", n_boot=50)
    >>> html = render_html(rows, {"d": sc}, {"d": m})
    >>> html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html
    True
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guard._deps import require
from guard.io.data import Example

MAX_GROUPS = 24  # figures show the largest groups; the tables show all of them

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1150px;
color:#222}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.scroll{overflow-x:auto;max-width:100%;margin:.5rem 0 1rem}
table{border-collapse:collapse;font-size:.85rem}
td:first-child,th:first-child{position:sticky;left:0;background:#fff}th:first-child{background:#f4f4f4}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee;margin:.5rem 0}
.note{color:#555;font-size:.85rem}
"""


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def _figure(w: float, h: float) -> Any:
    require("matplotlib")
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # a bare Figure renders on the Agg canvas
    return buf.getvalue()


def _labels(examples: Sequence[Example]) -> np.ndarray:
    return np.array([1 if e.label == "harmful" else 0 for e in examples])


def roc_figure(examples: Sequence[Example], scored: Mapping[str, Any], metrics: Mapping[str, dict]) -> bytes:
    """ROC curves of every detector on one axes (AUROC in the legend)."""
    from sklearn.metrics import roc_curve

    y = _labels(examples)
    fig = _figure(6, 5)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="#bbb", lw=1, ls="--")
    if len(np.unique(y)) == 2:
        for name, sc in scored.items():
            fpr, tpr, _ = roc_curve(y, sc.scores)
            au = metrics[name].get("auroc")
            ax.plot(fpr, tpr, lw=1.8, label=f"{name} (AUROC {au:.3f})" if au is not None else name)
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "one label only: no ROC curve", ha="center")
    ax.set(
        xlabel="benign blocked (false positive rate)",
        ylabel="harmful blocked (true positive rate)",
        title="ROC",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    return _png(fig)


def _top_groups(values: Sequence[str | None]) -> list[str]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v or "unknown"] = counts.get(v or "unknown", 0) + 1
    return sorted(counts, key=lambda g: (-counts[g], g))[:MAX_GROUPS]


def histogram_figure(
    examples: Sequence[Example], scores: np.ndarray, detector: str, threshold: float | None = None
) -> bytes:
    """Score histograms per source for one detector, harmful and benign overlaid."""
    y = _labels(examples)
    sources = np.array([e.source or "unknown" for e in examples])
    groups = _top_groups([e.source for e in examples])
    cols = min(4, len(groups))
    rows = -(-len(groups) // cols)
    fig = _figure(3.2 * cols, 2.4 * rows + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    lo, hi = (
        (0.0, 1.0)
        if scores.size and scores.min() >= 0 and scores.max() <= 1
        else (float(scores.min(initial=0)), float(scores.max(initial=1)))
    )
    bins = np.linspace(lo, hi, 26)
    for ax, g in zip(axes, groups):
        m = sources == g
        for lab, color, name in ((1, "#c0392b", "harmful"), (0, "#2471a3", "benign")):
            v = scores[m & (y == lab)]
            if v.size:
                ax.hist(v, bins=bins, alpha=0.55, color=color, label=f"{name} ({v.size})")
        if threshold is not None:
            ax.axvline(threshold, color="#333", lw=1, ls=":")
        ax.set_title(g, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in axes[len(groups) :]:
        ax.set_visible(False)
    fig.suptitle(
        f"{detector}: score per source"
        + (f" (dotted: threshold {threshold:.3f})" if threshold is not None else ""),
        fontsize=10,
    )
    return _png(fig)


def threshold_figure(
    examples: Sequence[Example], scored: Mapping[str, Any], thresholds: Mapping[str, float | None]
) -> bytes:
    """Share of harmful (solid) and benign (dashed) prompts blocked at each score threshold."""
    y = _labels(examples)
    fig = _figure(6.5, 4.5)
    ax = fig.subplots()
    cmap = _colors(len(scored))
    for (name, sc), color in zip(scored.items(), cmap):
        s = sc.scores
        lo, hi = (0.0, 1.0) if s.min() >= 0 and s.max() <= 1 else (float(s.min()), float(s.max()))
        t = np.linspace(lo, hi, 201)
        for lab, ls, what in ((1, "-", "harmful"), (0, "--", "benign")):
            v = np.sort(s[y == lab])
            if v.size:
                rate = 1.0 - np.searchsorted(v, t, side="left") / v.size
                ax.plot(t, rate, ls=ls, color=color, lw=1.5, label=f"{name}: {what} blocked")
                if thresholds.get(name) is not None:
                    ax.plot([thresholds[name]], [float(sc.blocked[y == lab].mean())], marker="o", color=color)
    ax.set(
        xlabel="score threshold",
        ylabel="share blocked (refused or abstained)",
        ylim=(-0.02, 1.02),
        title="Refusal rate vs threshold (dots: the detector's actual decisions)",
    )
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def reliability_figure(
    examples: Sequence[Example], scored: Mapping[str, Any], metrics: Mapping[str, dict]
) -> bytes:
    """Reliability diagram: observed share of harmful prompts per predicted-probability bin."""
    from guard.fitting.calibrate import reliability

    y = _labels(examples)
    fig = _figure(5.5, 5)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="#bbb", ls="--", lw=1)
    for (name, sc), color in zip(scored.items(), _colors(len(scored))):
        s = sc.scores
        if not (s.min() >= 0 and s.max() <= 1):
            continue  # a raw score is no probability: no reliability curve
        r = reliability(s, y, bins=10)
        xs = [b["confidence"] for b in r["bins"]]
        ys = [b["accuracy"] for b in r["bins"]]
        size = [10 + 60 * b["count"] / y.size for b in r["bins"]]
        ax.plot(xs, ys, color=color, lw=1.2, label=f"{name} (ECE {r['ece']:.3f})")
        ax.scatter(xs, ys, s=size, color=color)
    ax.set(
        xlabel="mean predicted P(harmful) in bin",
        ylabel="share harmful in bin",
        xlim=(0, 1),
        ylim=(0, 1),
        title="Reliability (marker size: share of prompts)",
    )
    ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


def category_figure(metrics: Mapping[str, dict]) -> bytes:
    """Per-category bars: harmful blocked rate (top) and benign over-refusal (bottom), 95 % CIs."""
    names = list(metrics)
    cats: dict[str, int] = {}
    for m in metrics.values():
        for c, b in m["by_category"].items():
            cats[c] = max(cats.get(c, 0), b["n"])
    fig = _figure(11, 8)
    axes = fig.subplots(2, 1)
    for ax, key, n_key, title in (
        (axes[0], "harmful_blocked_rate", "n_harmful", "harmful blocked (higher is better)"),
        (axes[1], "over_refusal_rate", "n_benign", "benign over-refused (lower is better)"),
    ):
        shown = [
            c
            for c in sorted(cats, key=lambda c: (-cats[c], c))
            if any(m["by_category"].get(c, {}).get(n_key, 0) for m in metrics.values())
        ][:MAX_GROUPS]
        if not shown:
            ax.text(0.5, 0.5, "no category with such rows", ha="center", transform=ax.transAxes)
            ax.set_title(title, fontsize=10)
            continue
        width = 0.8 / max(1, len(names))
        x = np.arange(len(shown))
        for k, (name, color) in enumerate(zip(names, _colors(len(names)))):
            vals: list[float] = []
            err: list[list[float]] = [[], []]
            for c in shown:
                b = metrics[name]["by_category"].get(c, {})
                v = b.get(key)
                ci = (b.get("ci") or {}).get(key)
                vals.append(np.nan if v is None else v)
                err[0].append(0 if v is None or ci is None else max(0.0, v - ci[0]))
                err[1].append(0 if v is None or ci is None else max(0.0, ci[1] - v))
            ax.bar(
                x + (k - (len(names) - 1) / 2) * width,
                vals,
                width,
                yerr=err,
                color=color,
                label=name,
                capsize=2,
                error_kw={"lw": 0.8},
            )
        ax.set_xticks(
            x,
            [f"{c} ({metrics[names[0]]['by_category'].get(c, {}).get(n_key, 0)})" for c in shown],
            rotation=40,
            ha="right",
            fontsize=7,
        )
        ax.set(ylim=(0, 1.05), title=title)
        ax.legend(fontsize=7, ncol=len(names))
    return _png(fig)


def _colors(n: int) -> list[Any]:
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    return [palette[i % len(palette)] for i in range(n)]


# ----------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if np.isnan(v):
            return "–"
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _with_ci(block: Mapping[str, Any], key: str) -> str:
    v = block.get(key)
    ci = (block.get("ci") or {}).get(key)
    if v is None:
        return "–"
    return f"{v:.3f}" + (f" <span class='note'>[{ci[0]:.3f}, {ci[1]:.3f}]</span>" if ci else "")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    # wide tables (one column per source or category) scroll inside the page, their first column kept
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _img(png: bytes, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _summary(metrics: Mapping[str, dict]) -> str:
    rows = []
    for name, m in metrics.items():
        lat = m.get("latency_ms") or {}
        rows.append(
            [
                html.escape(name),
                str(m["n"]),
                f"{m['n_harmful']} / {m['n_benign']}",
                _with_ci(m, "auroc"),
                _with_ci(m, "harmful_blocked_rate"),
                _with_ci(m, "over_refusal_rate"),
                _fmt(m.get("ece")),
                f"{_fmt(lat.get('p50'), 1)} / {_fmt(lat.get('p95'), 1)}",
            ]
        )
    return _table(
        [
            "detector",
            "n",
            "harmful / benign",
            "AUROC",
            "harmful blocked",
            "over-refusal",
            "ECE",
            "latency p50 / p95 (ms)",
        ],
        rows,
    )


def _grouped(metrics: Mapping[str, dict], kind: str) -> str:
    names = list(metrics)
    groups = sorted({g for m in metrics.values() for g in m[kind]})
    header = [kind.removeprefix("by_"), "harmful / benign"]
    for n in names:
        header += [
            f"{html.escape(n)}: AUROC",
            f"{html.escape(n)}: harmful blocked",
            f"{html.escape(n)}: over-refusal",
        ]
    rows = []
    for g in groups:
        first = metrics[names[0]][kind].get(g, {})
        row = [html.escape(g), f"{first.get('n_harmful', 0)} / {first.get('n_benign', 0)}"]
        for n in names:
            b = metrics[n][kind].get(g, {})
            row += [
                _with_ci(b, "auroc"),
                _with_ci(b, "harmful_blocked_rate"),
                _with_ci(b, "over_refusal_rate"),
            ]
        rows.append(row)
    return _table(header, rows)


def _robustness(robustness: Mapping[str, Any]) -> str:
    """Either {transform: {metric: value}} or {detector: {transform: {metric: value}}}."""
    nested = robustness and all(
        isinstance(v, Mapping) and v and all(isinstance(x, Mapping) for x in v.values())
        for v in robustness.values()
    )
    tables = robustness.items() if nested else [("", robustness)]
    out = []
    for det, table in tables:
        cols: list[str] = []
        for row in table.values():
            cols += [k for k in row if k not in cols]
        rows = [[html.escape(str(t))] + [_fmt(row.get(c)) for c in cols] for t, row in table.items()]
        if det:
            out.append(f"<h3>{html.escape(str(det))}</h3>")
        out.append(_table(["transform", *map(html.escape, cols)], rows))
    return "".join(out)


def render_html(
    examples: Sequence[Example],
    scored: Mapping[str, Any],
    metrics: Mapping[str, dict],
    *,
    thresholds: Mapping[str, float | None] | None = None,
    run_info: Sequence[Mapping[str, Any]] | None = None,
    robustness: Mapping[str, Any] | None = None,
    title: str = "guard eval",
) -> str:
    """The report as one HTML string: tables plus base64-embedded PNG figures, no external files.

    Args:
        examples: the labelled rows, in the order of every detector's scores.
        scored: detector name -> `Scored` (scores, blocked, latency per row).
        metrics: detector name -> its `compute_metrics` object.
        thresholds: detector name -> the score threshold it blocks at (drawn on the figures).
        run_info: one `RunInfo.as_dict()` per detector (engine, workers, throughput).
        robustness: `{transform: {metric: value}}`, or the same per detector; rendered as tables.
        title: the page title.
    """
    thresholds = dict(thresholds or {})
    first = next(iter(metrics.values()))
    boot = first.get("bootstrap", {})
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        (
            f"<p class='note'>guard: {html.escape(str(first.get('guard')))}; {first['n']} prompts "
            f'({first["n_harmful"]} harmful, {first["n_benign"]} benign). "Blocked" means refused or abstained. '
            f"Brackets: {round(100 * boot.get('level', 0.95))} % bootstrap intervals "
            f"({boot.get('n_boot', 0)} resamples, seed {boot.get('seed')}).</p>"
        ),
        "<h2>Summary</h2>",
        _summary(metrics),
        "<h2>ROC curves</h2>",
        _img(roc_figure(examples, scored, metrics), "ROC curves"),
        "<h2>Refusal rate vs threshold</h2>",
        _img(threshold_figure(examples, scored, thresholds), "refusal rate"),
        "<h2>Reliability</h2>",
        _img(reliability_figure(examples, scored, metrics), "reliability diagram"),
        "<h2>Per category</h2>",
        _img(category_figure(metrics), "per-category bars"),
        _grouped(metrics, "by_category"),
        "<h2>Per source</h2>",
    ]
    for name, sc in scored.items():
        parts.append(
            _img(histogram_figure(examples, sc.scores, name, thresholds.get(name)), f"{name} histograms")
        )
    parts.append(_grouped(metrics, "by_source"))
    if robustness:
        parts += ["<h2>Robustness: recall before and after each transform</h2>", _robustness(robustness)]
    if run_info:
        cols = list(run_info[0])
        parts += ["<h2>Run</h2>", _table(cols, [[_fmt(r.get(c)) for c in cols] for r in run_info])]
    parts.append("</body></html>")
    return "".join(parts)


def write_report(
    out_dir: str | Path,
    examples: Sequence[Example],
    scored: Mapping[str, Any],
    metrics: Mapping[str, dict],
    **kwargs: Any,
) -> Path:
    """Write `report.html` into `out_dir` (created if needed) and return its path.

    Keyword arguments are those of `render_html`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    path.write_text(render_html(examples, scored, metrics, **kwargs), encoding="utf-8")
    return path


__all__ = [
    "category_figure",
    "histogram_figure",
    "reliability_figure",
    "render_html",
    "roc_figure",
    "threshold_figure",
    "write_report",
]
