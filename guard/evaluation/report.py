"""The `guard eval` report: one self-contained HTML file with the metrics and embedded PNG figures.

Figures (matplotlib on the Agg canvas, no pyplot state, no display needed): ROC curves of every
detector, score histograms per source, harmful and benign blocked rates against the threshold,
a reliability diagram, and per-category blocked rates with bootstrap intervals. Tables carry the
same numbers as `metrics.json`, with 95 % intervals; an optional robustness section shows
recall before and after each prompt transform.

The page is the jinja2 template `templates/report.html.j2` (a package resource): this module
prepares plain data (formatted strings, rows, base64 images), the template writes all markup and
escapes every value. matplotlib and jinja2 come with the `viz` extra.

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
import functools
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from guard._deps import require
from guard.io.data import Example

if TYPE_CHECKING:
    import jinja2

MAX_GROUPS = 24  # figures show the largest groups; the tables show all of them


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
# HTML: plain data here, all markup in templates/report.html.j2
# ----------------------------------------------------------------------------------------------

_TEMPLATE = "report.html.j2"  # in guard/evaluation/templates/


class _Cell(NamedTuple):
    """A table cell: its text and, for an estimate with one, its 95 % interval (all formatted).

    A tuple, so that the template unpacks it in its loop (`for text, low, high in row`), cheaper
    than attribute look-ups per cell.
    """

    text: str
    low: str | None = None
    high: str | None = None


@dataclass(frozen=True)
class _Table:
    """A table for the template's `table` macro: column headers and rows of cells."""

    header: list[str]
    rows: list[list[_Cell]]


@dataclass(frozen=True)
class _Image:
    """A PNG for the template's `img` macro: its alt text and its bytes in base64.

    The template writes `data` unescaped: build it with `_img` only (base64 has nothing to escape).
    """

    alt: str
    data: str


@functools.cache
def _environment() -> jinja2.Environment:
    """The Jinja environment of the report, built on first use (jinja2 comes with the `viz` extra).

    Every value the template writes is escaped by `html.escape` (the `finalize` hook), so quotes
    come out as `&#x27;` and `&quot;` as before the template, not as markupsafe's `&#39;` and
    `&#34;`; autoescape then keeps that output, and a macro's, as it is.
    """
    jinja = require("jinja2")
    from markupsafe import Markup  # a dependency of jinja2

    def escape(value: Any) -> Markup:
        return value if isinstance(value, Markup) else Markup(html.escape(str(value)))

    return jinja.Environment(
        loader=jinja.PackageLoader("guard.evaluation", "templates"),
        autoescape=jinja.select_autoescape(enabled_extensions=("html.j2",), default_for_string=True),
        undefined=jinja.StrictUndefined,
        keep_trailing_newline=True,
        finalize=escape,
    )


def _template() -> jinja2.Template:
    """`report.html.j2`; rendering it without a key it reads raises `jinja2.UndefinedError`."""
    return _environment().get_template(_TEMPLATE)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if np.isnan(v):
            return "–"
        return f"{v:.{digits}f}"
    return str(v)


def _with_ci(block: Mapping[str, Any], key: str) -> _Cell:
    v = block.get(key)
    ci = (block.get("ci") or {}).get(key)
    if v is None:
        return _Cell("–")
    return _Cell(f"{v:.3f}", f"{ci[0]:.3f}", f"{ci[1]:.3f}") if ci else _Cell(f"{v:.3f}")


def _img(png: bytes, alt: str) -> _Image:
    return _Image(alt, base64.b64encode(png).decode())


def _intro(first: Mapping[str, Any]) -> dict[str, str]:
    """The numbers of the opening note: the guard, the prompt counts, how intervals were drawn."""
    boot = first.get("bootstrap", {})
    return {
        "guard": str(first.get("guard")),
        "n": str(first["n"]),
        "n_harmful": str(first["n_harmful"]),
        "n_benign": str(first["n_benign"]),
        "level": str(round(100 * boot.get("level", 0.95))),
        "n_boot": str(boot.get("n_boot", 0)),
        "seed": str(boot.get("seed")),
    }


def _summary(metrics: Mapping[str, dict]) -> _Table:
    rows: list[list[_Cell]] = []
    for name, m in metrics.items():
        lat = m.get("latency_ms") or {}
        rows.append(
            [
                _Cell(name),
                _Cell(str(m["n"])),
                _Cell(f"{m['n_harmful']} / {m['n_benign']}"),
                _with_ci(m, "auroc"),
                _with_ci(m, "harmful_blocked_rate"),
                _with_ci(m, "over_refusal_rate"),
                _Cell(_fmt(m.get("ece"))),
                _Cell(f"{_fmt(lat.get('p50'), 1)} / {_fmt(lat.get('p95'), 1)}"),
            ]
        )
    header = [
        "detector",
        "n",
        "harmful / benign",
        "AUROC",
        "harmful blocked",
        "over-refusal",
        "ECE",
        "latency p50 / p95 (ms)",
    ]
    return _Table(header, rows)


def _grouped(metrics: Mapping[str, dict], kind: str) -> _Table:
    names = list(metrics)
    groups = sorted({g for m in metrics.values() for g in m[kind]})
    header = [kind.removeprefix("by_"), "harmful / benign"]
    for n in names:
        header += [f"{n}: AUROC", f"{n}: harmful blocked", f"{n}: over-refusal"]
    rows: list[list[_Cell]] = []
    for g in groups:
        first = metrics[names[0]][kind].get(g, {})
        row = [_Cell(g), _Cell(f"{first.get('n_harmful', 0)} / {first.get('n_benign', 0)}")]
        for n in names:
            b = metrics[n][kind].get(g, {})
            row += [
                _with_ci(b, "auroc"),
                _with_ci(b, "harmful_blocked_rate"),
                _with_ci(b, "over_refusal_rate"),
            ]
        rows.append(row)
    return _Table(header, rows)


def _robustness(robustness: Mapping[str, Any]) -> list[tuple[str, _Table]]:
    """Either {transform: {metric: value}} or {detector: {transform: {metric: value}}}.

    Returns (detector, table) pairs; the detector is "" for the single table of the first form.
    """
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
        rows = [[_Cell(str(t)), *(_Cell(_fmt(row.get(c))) for c in cols)] for t, row in table.items()]
        out.append((str(det), _Table(["transform", *map(str, cols)], rows)))
    return out


def _run(run_info: Sequence[Mapping[str, Any]]) -> _Table:
    """One row per detector run, the columns those of the first run."""
    cols = [str(c) for c in run_info[0]]
    return _Table(cols, [[_Cell(_fmt(r.get(c))) for c in cols] for r in run_info])


def _figures(
    examples: Sequence[Example],
    scored: Mapping[str, Any],
    metrics: Mapping[str, dict],
    thresholds: Mapping[str, float | None],
) -> dict[str, Any]:
    """Every figure of the page, under the names the template reads."""
    return {
        "roc": _img(roc_figure(examples, scored, metrics), "ROC curves"),
        "threshold": _img(threshold_figure(examples, scored, thresholds), "refusal rate"),
        "reliability": _img(reliability_figure(examples, scored, metrics), "reliability diagram"),
        "category": _img(category_figure(metrics), "per-category bars"),
        "histograms": [
            _img(histogram_figure(examples, sc.scores, name, thresholds.get(name)), f"{name} histograms")
            for name, sc in scored.items()
        ],
    }


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

    The page is the template `templates/report.html.j2` (jinja2, from the `viz` extra); every
    name in it (detectors, sources, categories, the title) is HTML-escaped.

    Args:
        examples: the labelled rows, in the order of every detector's scores.
        scored: detector name -> `Scored` (scores, blocked, latency per row).
        metrics: detector name -> its `compute_metrics` object.
        thresholds: detector name -> the score threshold it blocks at (drawn on the figures).
        run_info: one `RunInfo.as_dict()` per detector (engine, workers, throughput).
        robustness: `{transform: {metric: value}}`, or the same per detector; rendered as tables.
        title: the page title.

    Raises:
        MissingDependencyError: matplotlib or jinja2 is not installed (the `viz` extra).
    """
    template = _template()  # before the figures: a missing jinja2 fails at once
    context = {
        "title": title,
        "intro": _intro(next(iter(metrics.values()))),
        "summary": _summary(metrics),
        **_figures(examples, scored, metrics, dict(thresholds or {})),
        "by_category": _grouped(metrics, "by_category"),
        "by_source": _grouped(metrics, "by_source"),
        "robustness": _robustness(robustness) if robustness else [],
        "run": _run(run_info) if run_info else None,
    }
    return template.render(context)


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
