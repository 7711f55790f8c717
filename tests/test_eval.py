"""`guard eval`: metrics with bootstrap intervals, the local engine, the HTML report and the CLI.

Deterministic scorers keep these fast; the one test on shipped models is marked slow.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import zlib

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from guard.cli import main
from guard.errors import GuardError, InputError
from guard.evaluation.engine import (
    DETECTORS,
    DetectorScorer,
    RunInfo,
    parse_detectors,
    score_local,
    synthetic_eval_set,
)
from guard.evaluation.metrics import bootstrap_ci, compute_metrics, strip_timings, weighted_auroc
from guard.io.data import Example

DESIGN_KEYS = {
    "n",
    "n_harmful",
    "n_benign",
    "auroc",
    "harmful_blocked_rate",
    "over_refusal_rate",
    "benign_answered_rate",
    "latency_ms",
    "by_source",
    "by_category",
    "detector",
    "guard",
}
BLOCK_KEYS = DESIGN_KEYS - {"by_source", "by_category", "detector", "guard"}


def lexical(prompts, contexts):
    """A deterministic scorer: harmful words push the score up, a hash adds spread."""
    words = ("bomb", "hack", "steal", "poison", "ransomware", "launder", "stalk", "meth")
    s = np.array(
        [
            0.55 * any(w in p.lower() for w in words) + 0.45 * (zlib.crc32(p.encode()) % 997) / 997
            for p in prompts
        ]
    )
    return s, s >= 0.5


@pytest.fixture(scope="module")
def rows():
    return synthetic_eval_set(240, seed=3)


# ------------------------------------------------------------------ metrics


@pytest.mark.parametrize("decimals", [None, 1])
def test_weighted_auroc_matches_sklearn_on_resamples(decimals):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = rng.random(300) + 0.3 * y
    s = np.round(s, decimals) if decimals else s  # with and without ties
    assert weighted_auroc(y, s, np.ones((1, 300)))[0] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    w = rng.integers(0, 3, (5, 300))
    for k in range(5):
        idx = np.repeat(np.arange(300), w[k])
        assert weighted_auroc(y, s, w)[k] == pytest.approx(roc_auc_score(y[idx], s[idx]), abs=1e-12)
    assert np.isnan(weighted_auroc(np.ones(4, int), np.arange(4.0), np.ones((1, 4)))[0])


def test_bootstrap_is_seeded_and_covers_the_estimate():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    b = s >= 0.5
    a = bootstrap_ci(y, s, b, n_boot=300, seed=0)
    assert a == bootstrap_ci(y, s, b, n_boot=300, seed=0)
    assert a != bootstrap_ci(y, s, b, n_boot=300, seed=1)
    assert a != bootstrap_ci(y, s, b, n_boot=300, seed=0, key="other group")
    lo, hi = a["auroc"]
    assert lo < roc_auc_score(y, s) < hi and hi - lo < 0.2
    recall = b[y == 1].mean()
    assert a["harmful_blocked_rate"][0] < recall < a["harmful_blocked_rate"][1]
    assert a["benign_answered_rate"] == pytest.approx(
        [1 - a["over_refusal_rate"][1], 1 - a["over_refusal_rate"][0]]
    )
    # wider intervals at a higher level
    wide = bootstrap_ci(y, s, b, n_boot=300, seed=0, level=0.99)["auroc"]
    assert wide[0] <= lo and wide[1] >= hi
    one_class = bootstrap_ci(np.ones(10), s[:10], b[:10], n_boot=50)
    assert one_class["auroc"] is None and one_class["over_refusal_rate"] is None
    assert bootstrap_ci(y, s, b, n_boot=0) == {k: None for k in a}


def test_compute_metrics_blocks_and_groups(rows):
    s, b = lexical([r.prompt for r in rows], None)
    m = compute_metrics(rows, s, b, np.full(len(rows), 2.0), detector="lexical", guard="g", n_boot=100)
    assert DESIGN_KEYS <= set(m)
    y = np.array([r.label == "harmful" for r in rows])
    assert m["auroc"] == pytest.approx(roc_auc_score(y, s))
    assert m["harmful_blocked_rate"] == pytest.approx(b[y].mean())
    assert m["over_refusal_rate"] + m["benign_answered_rate"] == pytest.approx(1.0)
    assert set(m["by_source"]) == {"synthetic_a", "synthetic_b"}
    assert sum(v["n"] for v in m["by_category"].values()) == len(rows)
    for block in [m, *m["by_source"].values(), *m["by_category"].values()]:
        assert BLOCK_KEYS <= set(block) and {"ci", "ece"} <= set(block)
    harm_cat = next(v for k, v in m["by_category"].items() if k.startswith("harm:"))
    assert (
        harm_cat["auroc"] is None
        and harm_cat["ci"]["auroc"] is None
        and harm_cat["over_refusal_rate"] is None
    )
    assert m["bootstrap"]["n_boot"] == 100
    assert json.loads(json.dumps(m)) == m  # plain JSON: no numpy scalars
    with pytest.raises(InputError, match="one score"):
        compute_metrics(rows, s[:-1], b, np.ones(len(rows)), detector="x", guard="g")


def test_strip_timings_keeps_everything_else(rows):
    s, b = lexical([r.prompt for r in rows], None)
    m1 = compute_metrics(rows, s, b, np.ones(len(rows)), detector="x", guard="g", n_boot=20)
    m2 = compute_metrics(rows, s, b, np.full(len(rows), 9.0), detector="x", guard="g", n_boot=20)
    assert m1 != m2 and strip_timings(m1) == strip_timings(m2)
    assert "latency_ms" not in json.dumps(strip_timings(m1))


# ------------------------------------------------------------------ engine


def test_parse_detectors():
    assert parse_detectors("all") == list(DETECTORS)
    assert parse_detectors("embedding,latent,embedding") == ["embedding", "latent"]
    for bad in ("lateNT", "", "latent,foo"):
        with pytest.raises(InputError, match="unknown"):
            parse_detectors(bad)


def test_score_local_keeps_order_across_batches(rows):
    calls = []

    def fn(prompts, contexts):
        calls.append(len(prompts))
        return lexical(prompts, contexts)

    scored = score_local(rows, DetectorScorer("lexical", fn), batch_size=7, progress=False)
    s, b = lexical([r.prompt for r in rows], None)
    assert np.array_equal(scored.scores, s) and np.array_equal(scored.blocked, b)
    assert calls == [7] * (len(rows) // 7) + [len(rows) % 7]
    assert scored.latency_ms.shape == (len(rows),) and (scored.latency_ms >= 0).all()
    with pytest.raises(GuardError, match="returned 1 scores"):
        score_local(rows[:3], DetectorScorer("bad", lambda p, c: ([0.1], [False])), progress=False)
    with pytest.raises(InputError, match="batch_size"):
        score_local(rows, DetectorScorer("lexical", lexical), batch_size=0, progress=False)


def test_contexts_reach_the_scorer():
    seen = []

    def fn(prompts, contexts):
        seen.extend(contexts)
        return [0.0] * len(prompts), [False] * len(prompts)

    data = [Example(prompt="q1", label="benign", context="doc"), Example(prompt="q2", label="benign")]
    score_local(data, DetectorScorer("ctx", fn), progress=False)
    assert seen == ["doc", None]


def test_run_info():
    r = RunInfo(detector="x", engine="ray", workers=2, batch_size=64, n=1000, wall_s=4.0)
    assert r.as_dict()["prompts_per_s"] == 250.0
    with pytest.raises(ValueError):
        RunInfo(detector="x", engine="spark", workers=1, batch_size=1, n=1, wall_s=1)


# ------------------------------------------------------------------ report


def _pngs(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)]


def test_report_is_self_contained(rows):
    pytest.importorskip("matplotlib")
    from guard.evaluation.report import render_html

    def inverse(prompts, contexts):
        s = 1 - lexical(prompts, contexts)[0]
        return s, s >= 0.5

    scored = {
        "lexical": score_local(rows, DetectorScorer("lexical", lexical), progress=False),
        "<inverse>": score_local(rows, DetectorScorer("inv", inverse), progress=False),
    }
    metrics = {
        k: compute_metrics(rows, v.scores, v.blocked, v.latency_ms, detector=k, guard="g", n_boot=50)
        for k, v in scored.items()
    }
    robustness = {
        "lexical": {
            "original": {"n": 120, "recall_before": 0.9, "recall_after": 0.9},
            "leetspeak": {"n": 120, "recall_before": 0.9, "recall_after": 0.41},
        }
    }
    html = render_html(
        rows,
        scored,
        metrics,
        thresholds={"lexical": 0.5},
        robustness=robustness,
        run_info=[{"detector": "lexical", "engine": "local", "prompts_per_s": 10.0}],
    )
    pngs = _pngs(html)
    # ROC, threshold, reliability, categories, one histogram grid per detector
    assert len(pngs) == 4 + len(scored) and all(p.startswith(b"\x89PNG") for p in pngs)
    assert not re.search(r"(src|href)=['\"](?!data:)", html)  # nothing to fetch
    assert "&lt;inverse&gt;" in html and "<inverse>" not in html  # names are escaped
    assert "leetspeak" in html and "0.410" in html and "Robustness" in html
    assert f"{metrics['lexical']['auroc']:.3f}" in html
    assert "synthetic_a" in html and "harm:build" in html
    assert "Robustness" not in render_html(rows, scored, metrics)
    # every table scrolls inside the page instead of running past its width and cutting columns
    assert html.count("<table>") == html.count('<div class="scroll"><table>') > 0
    assert ".scroll{overflow-x:auto" in html


# ------------------------------------------------------------------ CLI


@pytest.fixture()
def eval_file(tmp_path, rows):
    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join(json.dumps(r.model_dump(exclude_none=True)) for r in rows[:120]))
    return path


@pytest.fixture()
def lexical_detectors(monkeypatch):
    """Every detector name maps to a deterministic scorer (distinct per name): the CLI's plumbing
    runs for real without loading models."""
    import guard.evaluation.engine as ee

    def build(detectors, guard_path=None):
        out = {}
        for k, name in enumerate(detectors):

            def fn(prompts, contexts, k=k):
                s, _ = lexical(prompts, contexts)
                s = (s + 0.1 * k) % 1.0
                return s, s >= 0.5

            out[name] = DetectorScorer(name, fn, 0.5)
        return out

    monkeypatch.setattr(ee, "build_scorers", build)


def test_cli_eval_all_detectors(tmp_path, eval_file, lexical_detectors, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    assert (
        main(
            [
                "eval",
                "--data",
                str(eval_file),
                "--detector",
                "all",
                "--out",
                str(out),
                "--n-boot",
                "50",
                "--batch-size",
                "32",
                "--quiet",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == list(DETECTORS)
    for name, m in metrics.items():
        assert DESIGN_KEYS <= set(m) and m["detector"] == name and m["n"] == 120 and m["guard"] == "default"
        assert m["ci"]["auroc"][0] <= m["auroc"] <= m["ci"]["auroc"][1]
    assert len({m["auroc"] for m in metrics.values()}) == len(DETECTORS)  # really different scorers
    runs = json.loads((out / "run.json").read_text())
    assert [r["detector"] for r in runs] == list(DETECTORS) and all(r["engine"] == "local" for r in runs)
    scores = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == 120 and {"latent.score", "combined.blocked"} <= set(scores[0])
    html = (out / "report.html").read_text()
    assert len(_pngs(html)) == 4 + len(DETECTORS)
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == set(DETECTORS)


def test_cli_eval_single_detector_writes_one_object(tmp_path, eval_file, lexical_detectors):
    out = tmp_path / "out"
    assert (
        main(
            [
                "eval",
                "--data",
                str(eval_file),
                "--detector",
                "embedding",
                "--out",
                str(out),
                "--n-boot",
                "0",
                "--no-report",
                "--quiet",
            ]
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["detector"] == "embedding" and m["ci"]["auroc"] is None
    assert not (out / "report.html").exists()


def test_cli_eval_errors_are_clean(tmp_path, eval_file, monkeypatch, capsys):
    out = str(tmp_path / "o")
    assert main(["eval", "--data", str(eval_file), "--detector", "latnet", "--out", out]) == 2
    assert "'latnet' is unknown" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok", "label": "benign"}\n{"prompt": "x", "label": "maybe"}\n')
    assert main(["eval", "--data", str(bad), "--detector", "embedding", "--out", out]) == 2
    assert "line 2" in capsys.readouterr().err
    assert main(["eval", "--data", str(tmp_path / "missing.jsonl"), "--out", out]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["eval", "--data", str(eval_file), "--batch-size", "0", "--out", out]) == 2
    assert (
        main(["eval", "--data", str(eval_file), "--engine", "ray", "--cpus-per-worker", "0", "--out", out])
        == 2
    )
    assert "--batch-size" in capsys.readouterr().err
    if importlib.util.find_spec("ray") is not None:  # checked before a local Ray is started
        assert (
            main(
                [
                    "eval",
                    "--data",
                    str(eval_file),
                    "--engine",
                    "ray",
                    "--ray-cpus",
                    "2",
                    "--workers",
                    "3",
                    "--out",
                    out,
                ]
            )
            == 2
        )
        assert "needs 3 CPUs but the local Ray has 2" in capsys.readouterr().err


def test_cli_robustness_missing_module_is_a_clear_error(
    tmp_path, eval_file, lexical_detectors, monkeypatch, capsys
):
    import sys

    monkeypatch.setitem(sys.modules, "guard.evaluation.robustness", None)  # import now raises ImportError
    assert (
        main(
            [
                "eval",
                "--data",
                str(eval_file),
                "--detector",
                "embedding",
                "--out",
                str(tmp_path / "o"),
                "--robustness",
                "--no-report",
                "--quiet",
                "--n-boot",
                "0",
            ]
        )
        == 2
    )
    assert "--robustness needs guard.evaluation.robustness" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_eval_all_on_a_tiny_fitted_guard(tmp_path, eval_file):
    """Every shipped detector for real: latent/combined on a guard fitted on a tiny random host."""
    pytest.importorskip("matplotlib")
    from guard.decision.policy import Policy
    from guard.guard import Guard
    from guard.whitebox.latent import LatentGuard
    from tests.conftest import make_host

    host = make_host("llama")
    model_dir = tmp_path / "host"
    host.model.save_pretrained(model_dir)
    host.tokenizer.save_pretrained(model_dir)
    from guard.whitebox.host import HostModel

    host = HostModel.from_pretrained(model_dir)
    rows = synthetic_eval_set(80, seed=5)
    lg = LatentGuard(host, C=1.0, cv=3, cosmic_shortlist=2, cosmic_samples=4).fit(
        [r.prompt for r in rows], [int(r.label == "harmful") for r in rows]
    )
    Guard(lg, Policy(threshold=0.5)).save(tmp_path / "g")
    out = tmp_path / "out"
    assert (
        main(
            [
                "eval",
                "--data",
                str(eval_file),
                "--guard",
                str(tmp_path / "g"),
                "--detector",
                "all",
                "--out",
                str(out),
                "--n-boot",
                "100",
                "--quiet",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == list(DETECTORS)
    for m in metrics.values():
        assert m["n"] == 120 and 0.0 <= m["auroc"] <= 1.0
    assert (out / "report.html").stat().st_size > 10_000
