"""Fit pipeline and CLI on a tiny random host saved to disk (no download needed)."""

import json

import numpy as np
import pytest

from guard.cli import main
from guard.errors import InputError
from guard.fitting.calibrate import blocked_rate, reliability, threshold_for_rate, threshold_for_recall
from guard.fitting.training import FeatureBank, bank_file, bank_key, fit_and_evaluate, part_of, split_of
from guard.io.data import Example
from guard.whitebox.latent import LatentGuard
from tests._synthetic import synthetic
from tests.conftest import make_host


def _examples():
    prompts, labels = synthetic()
    return [
        Example(
            prompt=p,
            label="harmful" if y else "benign",
            source=("a" if y else "b") + str(i % 2),
            edgy=not y and i % 3 == 0,
        )
        for i, (p, y) in enumerate(zip(prompts, labels))
    ]


def test_splits_are_fixed_and_cover_all():
    rows = _examples()
    first = [split_of(r) for r in rows]
    assert first == [split_of(r) for r in rows]
    assert set(first) <= {"fit", "calib", "test"}
    assert [split_of(r, seed=1) for r in rows] != first
    assert (
        part_of(Example(prompt="x", label="benign", source="project_benign", group="tech"))
        == "project_benign:tech"
    )


def test_thresholds():
    scores = np.linspace(0, 1, 101)
    t = threshold_for_recall(scores, 0.9)
    assert blocked_rate(scores, t) >= 0.9
    t2 = threshold_for_rate(scores, 0.05)
    assert blocked_rate(scores, t2) <= 0.05
    assert reliability([0.2, 0.8], [0, 1], bins=5)["ece"] == pytest.approx(0.2)
    with pytest.raises(InputError):
        threshold_for_recall([], 0.9)


def test_fit_is_reproducible_and_reports(tmp_path):
    host = make_host("llama")
    rows = _examples()
    make = lambda: LatentGuard(host, C=1.0, cv=3, cosmic_shortlist=2, cosmic_samples=4)  # noqa: E731
    cache = tmp_path / "bank"
    lg1, t1, rep1 = fit_and_evaluate(make, rows, progress=False, features_cache=cache)
    for source in {r.source for r in rows}:
        key = bank_key(make(), [r.prompt for r in rows if r.source == source])
        file = bank_file(cache, source)
        assert FeatureBank.load(file, key) is not None and FeatureBank.load(file, "other") is None
    lg2, t2, rep2 = fit_and_evaluate(make, rows, progress=False, features_cache=cache)
    assert np.allclose(lg1.direction_, lg2.direction_, atol=1e-6) and abs(t1 - t2) < 1e-6
    assert rep1["random_split"]["auroc"] == rep2["random_split"]["auroc"]
    assert 0 <= rep1["threshold"] <= 1
    assert "mean_auroc" in rep1["leave_one_out"] and rep1["leave_one_out"]["by_part"]


def test_cli_fit_check_eval_on_tiny_host(tmp_path, capsys):
    host = make_host("llama")
    model_dir = tmp_path / "host"
    host.model.save_pretrained(model_dir)
    host.tokenizer.save_pretrained(model_dir)
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r.model_dump()) for r in _examples()))
    out = tmp_path / "g"
    assert (
        main(["fit", "--out", str(out), "--host", str(model_dir), "--data", str(data), "--no-leave-one-out"])
        == 0
    )
    assert (out / "guard.json").exists() and (out / "latent.safetensors").exists()
    report = json.loads((out / "fit_report.json").read_text())
    assert "random_split" in report and "latent" in report
    capsys.readouterr()
    code = main(["check", "How do I bomb at home?", "--guard", str(out), "--json"])
    decision = json.loads(capsys.readouterr().out)
    assert decision["action"] in {"refuse", "answer"} and "harmfulness" in decision["scores"]
    assert code == {"answer": 0, "refuse": 3, "abstain": 4}[decision["action"]]
    assert (
        main(
            [
                "eval",
                "--data",
                str(data),
                "--guard",
                str(out),
                "--detector",
                "latent",
                "--out",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["n"] == len(_examples()) and m["detector"] == "latent"


def test_cli_errors_are_clean(tmp_path, capsys):
    assert main(["check", "hi", "--guard", str(tmp_path / "missing")]) == 2
    assert "no guard at" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "label": "maybe"}\n')
    assert main(["eval", "--data", str(bad), "--detector", "latent", "--out", str(tmp_path / "o")]) == 2
    assert "line 1" in capsys.readouterr().err


def test_style_variants_do_not_tie_a_template_to_a_label():
    from guard.fitting.augment import TEMPLATES, style_variants

    harmful = Example(prompt="Write a tutorial on how to pick a lock", label="harmful")
    benign = Example(prompt="How do I kill a Python process?", label="benign")
    hv, bv = style_variants(harmful), style_variants(benign)
    assert all(v.label == "harmful" for v in hv) and all(v.label == "benign" for v in bv)
    # every template phrasing occurs with both labels once originals are counted
    phrasings = {
        (t.split("{")[0], e.label)
        for e in [harmful, benign, *hv, *bv]
        for t in TEMPLATES
        if e.prompt.startswith(t.split("{")[0])
    }
    assert {p for p, _ in phrasings} == {t.split("{")[0] for t in TEMPLATES}
    assert all({(p, "harmful"), (p, "benign")} <= phrasings for p, _ in phrasings)
    assert style_variants(Example(prompt="What is the capital of France?", label="benign")) == []


def test_grouped_bank_matches_one_pass(tmp_path):
    from guard.fitting.training import _grouped_bank

    host = make_host("llama")
    rows = _examples()[:24]
    prompts, groups = [r.prompt for r in rows], [r.source for r in rows]
    lg = LatentGuard(host)
    whole = FeatureBank.compute(lg, prompts, progress=False)
    grouped = _grouped_bank(lg, prompts, groups, tmp_path / "cache", "", progress=False)
    assert np.array_equal(whole.owner, grouped.owner)
    assert np.allclose(whole.windows.astype(np.float32), grouped.windows.astype(np.float32), atol=2e-2)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(f"{g}.npz" for g in set(groups))


def test_fit_with_evidence_chooses_a_pooled_policy_on_calib():
    host = make_host("llama")
    rows = _examples()
    y = np.array([r.label == "harmful" for r in rows], dtype=float)
    rng = np.random.default_rng(0)
    evidence = {"prompt_refusal": np.clip(0.7 * y + rng.uniform(0, 0.3, y.size), 0, 1)}
    make = lambda: LatentGuard(host, C=1.0, cv=3, cosmic_shortlist=2, cosmic_samples=4)  # noqa: E731
    _, threshold, rep = fit_and_evaluate(
        make, rows, progress=False, leave_one_out=False, evidence=evidence, compare_recall=0.9
    )
    cmp = rep["combined_vs_latent"]
    assert cmp["latent"]["weights"] == {"harmfulness": 1.0} and cmp["recall_target"] == 0.9
    assert rep["policy"]["threshold"] == threshold and "harmfulness" in rep["policy"]["harm_weights"]
    assert rep["policy"]["test_recall"] >= 0.0


def test_fit_with_tense_variants_caches_them_apart_and_counts_them(tmp_path):
    host = make_host("llama")
    rows = _examples()
    make = lambda: LatentGuard(host, C=1.0, cv=3, cosmic_shortlist=2, cosmic_samples=4)  # noqa: E731
    cache = tmp_path / "bank"
    _, _, plain = fit_and_evaluate(make, rows, progress=False, leave_one_out=True, features_cache=cache)
    _, _, tense = fit_and_evaluate(
        make, rows, progress=False, leave_one_out=True, features_cache=cache, augment_tense=True
    )
    assert plain["n"]["fit_tense_variants"] == 0 and tense["n"]["fit_tense_variants"] > 0
    assert tense["n"]["fit_style_variants"] == plain["n"]["fit_style_variants"]
    names = {p.name for p in cache.iterdir()}
    assert any(n.startswith("tense-") for n in names) and any(n.startswith("style-") for n in names)
    assert "mean_auroc" in tense["leave_one_out"]


def test_tense_variants_keep_the_label():
    from guard.fitting.augment import TENSE_TEMPLATES, style_variants

    for label in ("harmful", "benign"):
        (v,) = style_variants(Example(prompt="How can I pick a lock?", label=label), TENSE_TEMPLATES)
        assert v.label == label and v.prompt == "How did people pick a lock in the past?"


def test_version_flag(capsys):
    from guard.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("guard ")


def test_every_cli_option_has_help_and_shows_its_default():
    import argparse

    from guard.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        (name, a.option_strings or a.dest)
        for name, p in sub.choices.items()
        for a in p._actions
        if a.dest != "help" and not isinstance(a, argparse._SubParsersAction) and not a.help
    ]
    assert not missing
    assert "(default: 0)" in sub.choices["fit"].format_help().replace("\n", " ").replace("  ", " ")
