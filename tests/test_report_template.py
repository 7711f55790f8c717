"""The jinja2 template of the `guard eval` report: escaping, the package resource, strict keys."""

from __future__ import annotations

import importlib.resources
import sys

import numpy as np
import pytest

from guard.errors import MissingDependencyError
from guard.evaluation import report
from guard.evaluation.engine import Scored
from guard.evaluation.metrics import compute_metrics
from guard.io.data import Example

jinja2 = pytest.importorskip("jinja2")

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> str:
    """A report whose detector, sources and categories carry markup, written by `write_report`."""
    pytest.importorskip("matplotlib")
    rows = [
        Example(
            prompt=f"p{i}",
            label="harmful" if i % 2 else "benign",
            source=[EVIL, "R&D"][i % 3 == 0],
            category=[EVIL, 'it\'s "quoted"'][i % 4 == 0],
        )
        for i in range(24)
    ]
    s = np.linspace(0, 1, len(rows))
    sc = Scored(s, s >= 0.5, np.ones(len(rows)))
    m = compute_metrics(
        rows, sc.scores, sc.blocked, sc.latency_ms, detector="<b>d</b>", guard=EVIL, n_boot=20
    )
    path = report.write_report(
        tmp_path_factory.mktemp("report"),
        rows,
        {"<b>d</b>": sc},
        {"<b>d</b>": m},
        robustness={EVIL: {"original": {"n": 12, "recall_before": 0.5, "recall_after": 0.5}}},
        run_info=[{"detector": "<b>d</b>", "engine": "local"}],
        title=EVIL,
    )
    return path.read_text(encoding="utf-8")


def test_names_are_escaped(page):
    assert "<script" not in page and "<b>" not in page
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert f"<title>{escaped}</title>" in page and f"<h1>{escaped}</h1>" in page
    assert f"<td>{escaped}</td>" in page  # a source and a category row
    assert f"<h3>{escaped}</h3>" in page  # a robustness table per detector
    assert "<th>&lt;b&gt;d&lt;/b&gt;: AUROC</th>" in page
    assert "alt='&lt;b&gt;d&lt;/b&gt; histograms'" in page
    # the entities html.escape writes, as the report did before the template
    assert "<td>R&amp;D</td>" in page and "<td>it&#x27;s &quot;quoted&quot;</td>" in page


def test_page_is_one_document(page):
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</body></html>")
    assert ">\n<" not in page  # the template's own line breaks do not reach the page


def test_template_is_a_package_resource():
    resource = importlib.resources.files("guard.evaluation").joinpath("templates", "report.html.j2")
    assert resource.is_file()
    source = resource.read_text(encoding="utf-8")
    assert "{%- macro table(t) -%}" in source and "{%- macro img(i) -%}" in source
    loaded = report._environment().get_template("report.html.j2")
    assert loaded.filename is not None and loaded.filename.endswith("report.html.j2")


FIGURES = ("roc_figure", "threshold_figure", "reliability_figure", "category_figure", "histogram_figure")


def _small() -> tuple[list[Example], dict[str, Scored], dict[str, dict]]:
    """Ten rows scored by one detector `d`: the arguments of `render_html`."""
    rows = [Example(prompt=str(i), label="harmful" if i % 2 else "benign") for i in range(10)]
    s = np.linspace(0, 1, 10)
    sc = Scored(s, s >= 0.5, np.ones(10))
    m = compute_metrics(rows, sc.scores, sc.blocked, sc.latency_ms, detector="d", guard="g", n_boot=20)
    return rows, {"d": sc}, {"d": m}


def test_missing_key_raises(monkeypatch):
    """A key the template reads and the context lacks raises (StrictUndefined), not an empty string."""
    for name in FIGURES:
        monkeypatch.setattr(report, name, lambda *a, **k: b"\x89PNG")  # no figures needed here
    template = report._template()
    contexts = []

    class Spy:  # the template render_html fills, keeping what it was filled with
        def render(self, context):
            contexts.append(dict(context))
            return template.render(context)

    monkeypatch.setattr(report, "_template", Spy)
    assert "<h2>Summary</h2>" in report.render_html(*_small())
    for key in ("title", "run", "robustness"):  # read as plain names, not attributes
        context = {k: v for k, v in contexts[0].items() if k != key}
        with pytest.raises(jinja2.UndefinedError, match=f"'{key}' is undefined"):
            template.render(context)


def test_missing_jinja2_names_the_extra_before_any_figure(monkeypatch):
    def drawn(*a, **k):
        raise AssertionError("a figure was drawn before jinja2 was found missing")

    for name in FIGURES:
        monkeypatch.setattr(report, name, drawn)
    report._environment.cache_clear()
    monkeypatch.setitem(sys.modules, "jinja2", None)  # import jinja2 now raises ImportError
    try:
        with pytest.raises(MissingDependencyError, match=r"latent-guardrail\[viz\]"):
            report.render_html(*_small())
    finally:
        report._environment.cache_clear()
