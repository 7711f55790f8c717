"""`guard bench`: options, and every section run for real on a tiny host (the full run is slow)."""

from __future__ import annotations

import argparse
import json

import pytest

from guard import Guard, Policy
from guard.evaluation.bench import (
    _batch_section,
    _length_section,
    _prefill_section,
    add_bench_arguments,
    prompt_of_length,
    run_bench,
)
from guard.whitebox.latent import LatentGuard
from tests._synthetic import synthetic
from tests.conftest import make_host, tiny_tokenizer


@pytest.fixture(scope="module")
def guard():
    host = make_host("llama")
    prompts, labels = synthetic()
    lg = LatentGuard(host, C=1.0, cv=3, cosmic_shortlist=0, window_tokens=160, window_stride=128)
    lg.fit(prompts, labels, refusal_replies=["I can't help."], compliance_replies=["Sure, here:"])
    return Guard(lg, Policy(threshold=0.5))


def test_arguments():
    p = add_bench_arguments(argparse.ArgumentParser())
    a = p.parse_args([])
    assert (
        not a.quick and not a.no_cold and a.repeat == 3 and a.max_new_tokens == 64 and a.batch_sizes is None
    )
    a = p.parse_args(
        ["--quick", "--skip-cold", "--batch-sizes", "1", "8", "--lengths", "16", "4096", "--no-blackbox"]
    )
    assert a.quick and a.no_cold and a.batch_sizes == [1, 8] and a.lengths == [16, 4096] and a.no_blackbox
    for bad in ("0", "a", "1,8"):
        with pytest.raises(SystemExit):
            p.parse_args(["--batch-sizes", bad])


@pytest.mark.parametrize("n", [16, 64, 300])
def test_prompt_of_length(n):
    tok = tiny_tokenizer()
    got = len(tok(prompt_of_length(tok, n), add_special_tokens=False)["input_ids"])
    assert abs(got - n) <= max(2, n // 20)  # decoding and re-encoding may merge a token or two


def test_prefill_section_reports_shares_and_a_refusal(guard):
    res = _prefill_section(guard, max_new_tokens=4, repeat=1)
    json.dumps(res)
    assert res["generate_ms"] > 0 and res["separate_latent_pass_ms"] > 0
    assert 0 <= res["overhead_share_reused_prefill"] and 0 < res["overhead_share_separate_pass"]
    assert all(r["reused"] for r in res["per_prompt"])
    assert res["refused_prompt"]["new_tokens"] == 0 or res["refused_prompt"]["action"] == "answer"
    assert isinstance(res["target_met"], bool)


def test_batch_and_length_sections(guard):
    b = _batch_section(guard.latent, [1, 4], repeat=1)
    assert set(b) == {"batch_1", "batch_4"} and b["batch_1"]["speedup_vs_batch_1"] == 1.0
    assert guard.latent.batch_size == LatentGuard(None).batch_size  # restored
    ln = _length_section(guard.latent, {}, [16, 400], repeat=1)
    assert ln["tokens_16"]["latent_windows"] == 1 and ln["tokens_400"]["latent_windows"] > 1
    assert ln["tokens_16"]["latent_growth_vs_shortest"] == 1.0 and ln["tokens_400"]["latent_ms"] > 0


@pytest.mark.slow
def test_run_bench_quick_on_smollm2():
    res = run_bench(
        cold=False,
        quick=True,
        blackbox_backends=("torch", "onnx"),
        prompt_lengths=(16, 512),
        max_new_tokens=16,
    )
    json.dumps(res)
    for key in (
        "load_s_cached",
        "latent_ms_per_prompt",
        "peak_rss_mb",
        "prefill",
        "batch_sizes",
        "blackbox",
        "prompt_lengths",
        "guard_check_ms_batch_1",
    ):
        assert key in res
    assert res["prefill"]["refused_prompt"]["new_tokens"] == 0
    assert res["blackbox"]["ratios"]["torch_over_onnx_batch_1"] > 0
