"""Progress bars of `guard demo`, `bench`, `steer-eval` and `fit`: on stderr, off with --no-progress,
and stdout left as it was (JSON where the command prints JSON). Tiny random hosts stand in for
SmolLM2 (no download)."""

from __future__ import annotations

import json
import re

import pytest

from guard import Guard, Policy
from guard.cli import build_parser, main
from guard.evaluation import steer_eval
from guard.whitebox.host import HostModel
from guard.whitebox.latent import LatentGuard
from tests._synthetic import synthetic
from tests.conftest import make_host
from tests.test_steering import NEG, POS, fitted_parts

#: What every tqdm bar prints: its elapsed time in brackets, e.g. ``3/8 [00:01<00:02, 2.5it/s]``.
BAR = re.compile(r"\[\d{2}:\d{2}")


@pytest.fixture(scope="module")
def tiny_guard():
    host = make_host("llama")
    prompts, labels = synthetic()
    lg = LatentGuard(host, C=1.0, cv=3, cosmic_shortlist=0, window_tokens=160, window_stride=128)
    lg.fit(prompts, labels, refusal_replies=["I can't help."], compliance_replies=["Sure, here:"])
    return Guard(lg, Policy(threshold=0.5))


@pytest.mark.parametrize(
    "command", [["demo"], ["bench"], ["steer-eval", "--out", "x"], ["fit", "--out", "x"]]
)
def test_every_long_command_has_the_flag(command, capsys):
    parser = build_parser()
    assert parser.parse_args(command).no_progress is False
    assert parser.parse_args([*command, "--no-progress"]).no_progress is True
    with pytest.raises(SystemExit):
        parser.parse_args([command[0], "--help"])
    assert re.search(r"--no-progress\s+no progress bar", capsys.readouterr().out)


def _bench(monkeypatch, capsys, guard, *flags):
    """`guard bench` on the tiny guard: the host loads and the shipped guard are patched in."""
    import guard.whitebox.host as host_module

    monkeypatch.setattr(host_module, "default_gguf_path", lambda: "tiny.gguf")
    monkeypatch.setattr(HostModel, "from_pretrained", classmethod(lambda cls, *a, **k: guard.host))
    monkeypatch.setattr(Guard, "load", classmethod(lambda cls, *a, **k: guard))
    argv = ["bench", "--no-cold", "--no-prefill", "--no-blackbox", "--no-request-path", "--repeat", "1"]
    assert main([*argv, "--batch-sizes", "1", "2", "--lengths", "16", *flags]) == 0
    return capsys.readouterr()


def test_bench_bars_on_stderr_json_on_stdout(monkeypatch, capsys, tiny_guard):
    shown = _bench(monkeypatch, capsys, tiny_guard)
    hidden = _bench(monkeypatch, capsys, tiny_guard, "--no-progress")
    assert BAR.search(shown.err) and "bench: prompt lengths" in shown.err and "timed runs" in shown.err
    assert "4/4" in shown.err  # load, latent, batch sizes, prompt lengths: all done
    assert not BAR.search(hidden.err) and "bench" not in hidden.err
    with_bars, without = json.loads(shown.out), json.loads(hidden.out)  # stdout is the JSON alone
    assert set(with_bars) == set(without) and set(with_bars["batch_sizes"]) == {"batch_1", "batch_2"}
    assert with_bars["prompt_lengths"]["tokens_16"]["latent_windows"] == 1


def test_demo_bar_on_stderr_transcript_on_stdout(monkeypatch, capsys, tiny_guard):
    monkeypatch.setattr(Guard, "default", classmethod(lambda cls, *a, **k: tiny_guard))
    argv = ["demo", "--prompt", "How do I bomb at home?", "--prompt", "bake bread", "--max-new-tokens", "2"]
    assert main(argv) == 0
    shown = capsys.readouterr()
    assert main([*argv, "--no-progress"]) == 0
    hidden = capsys.readouterr()
    assert BAR.search(shown.err) and "5/5" in shown.err  # loading, then two prompts twice
    assert not BAR.search(hidden.err) and hidden.err == ""
    assert shown.out == hidden.out  # the transcript is the same, bar or not
    assert "=== 1. The bare host" in hidden.out and hidden.out.count("USER: How do I bomb at home?") == 2


def test_steer_eval_generation_ticks_and_keeps_the_batches(tiny_host, capsys):
    """The chunked generation behind the bar gives exactly the replies and decisions of one call."""
    _, _, cast = fitted_parts(tiny_host)
    prompts = [f"{p} ({i})" for i, p in enumerate((POS + NEG) * 4)][:40]  # chunks of 16, 16, 8
    kw = {"max_new_tokens": 3, "batch_size": 8}
    one_call = cast.generate(prompts, **kw)
    with steer_eval._bar(2 * len(prompts), "steer-eval: generating", True) as bar:
        chunked = steer_eval._generate(cast, prompts, bar, **kw)
        plain = steer_eval._generate(cast, prompts, bar, steer_enabled=False, **kw)
        assert bar.n == 80  # every reply ticked (intermediate redraws depend on tqdm's timing)
    err = capsys.readouterr().err
    assert "steer-eval: generating" in err and "80/80" in err
    assert [r.token_ids for r in chunked] == [r.token_ids for r in one_call]
    assert [(r.steered, r.rules, r.similarities) for r in chunked] == [
        (r.steered, r.rules, r.similarities) for r in one_call
    ]
    assert [r.token_ids for r in plain] == [
        r.token_ids for r in cast.generate(prompts, steer_enabled=False, **kw)
    ]
    with steer_eval._bar(len(prompts), "steer-eval: generating", False) as bar:
        steer_eval._generate(cast, prompts[:4], bar, **kw)
    assert capsys.readouterr().err == ""


def test_steer_eval_cli_passes_the_flag(monkeypatch, tmp_path):
    seen: list[tuple[steer_eval.SteerEvalSettings, dict]] = []
    monkeypatch.setattr(
        steer_eval, "run_steer_eval", lambda settings, out, **kw: seen.append((settings, kw)) or {}
    )
    assert main(["steer-eval", "--out", str(tmp_path), "--n", "8"]) == 0
    assert main(["steer-eval", "--out", str(tmp_path), "--n", "8", "--no-progress"]) == 0
    assert [kw["progress"] for _, kw in seen] == [True, False]
    # the flag is no setting: steering.json's "settings" keeps its keys
    assert all(s.model_dump().keys() == steer_eval.SteerEvalSettings().model_dump().keys() for s, _ in seen)


def _tiny_fit_inputs(tmp_path):
    from tests.test_training_cli import _examples

    host = make_host("llama")
    model_dir = tmp_path / "host"
    host.model.save_pretrained(model_dir)
    host.tokenizer.save_pretrained(model_dir)
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r.model_dump()) for r in _examples()))
    return model_dir, data


def test_fit_without_progress_prints_only_json(tmp_path, capsys):
    from transformers.utils import logging as hf_logging

    model_dir, data = _tiny_fit_inputs(tmp_path)
    before = hf_logging.is_progress_bar_enabled()
    capsys.readouterr()
    argv = ["fit", "--out", str(tmp_path / "g"), "--host", str(model_dir), "--data", str(data)]
    assert main([*argv, "--no-leave-one-out", "--no-progress"]) == 0
    got = capsys.readouterr()
    assert not BAR.search(got.err) and "hidden states" not in got.err
    assert "fitting on" in got.err  # the phase line stays
    assert hf_logging.is_progress_bar_enabled() == before  # transformers' bars: silenced for the command only
    summary = json.loads(got.out)
    assert {"threshold", "random_split", "policy", "layer"} <= set(summary)


def test_fit_grouped_passes_the_flag(monkeypatch, tmp_path, capsys):
    import guard.fitting.grouped_fit as grouped_fit

    seen: list[bool] = []

    def fake_run(out, host, **kw):
        seen.append(kw["progress"])
        return {"chosen": "x", "grouped": {}, "random_split": {}}

    monkeypatch.setattr(grouped_fit, "run", fake_run)
    model_dir, _ = _tiny_fit_inputs(tmp_path)
    argv = ["fit", "--grouped", "--out", str(tmp_path / "g"), "--host", str(model_dir)]
    argv += ["--features-cache", str(tmp_path / "cache")]
    for flags in ([], ["--no-progress"]):
        assert main([*argv, *flags]) == 0
        assert json.loads(capsys.readouterr().out)["chosen"] == "x"
    assert seen == [True, False]
