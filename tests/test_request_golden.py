"""The shipped guard's decisions on 500 fixed project prompts stay what was recorded.

`benchmarks/request_equality.py --record tests/data/request_golden.json` made the recording; a
change to the request path must reproduce every action and every named score. A refit changes
the artifacts on purpose: the recording names the artifacts it was made with, and this test then
says to record again (it never compares decisions of other artifacts).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "request_golden.json"

pytestmark = pytest.mark.slow


def _bench():
    return load_benchmark("request_equality")


def test_the_recording_is_of_the_shipped_artifacts_and_the_fixed_prompts():
    bench = _bench()
    golden = json.loads(GOLDEN.read_text())
    assert golden["artifacts_sha256"] == bench.artifacts_digest(), (
        "the shipped artifacts changed (a refit?): record again with "
        "`python benchmarks/request_equality.py --record tests/data/request_golden.json`"
    )
    prompts = bench.fixed_prompts()
    assert len(prompts) == len(golden["decisions"]) == 500
    assert golden["prompts_sha256"] == bench.prompts_digest(prompts)


def test_check_batch_reproduces_every_recorded_action_and_score():
    bench = _bench()
    golden = json.loads(GOLDEN.read_text())
    if golden["artifacts_sha256"] != bench.artifacts_digest():
        pytest.fail("the shipped artifacts changed: record again (see the test above)")
    prompts, batch, _ = bench.run()
    # 1e-6 on the machine that recorded it; 1e-5 here, for another CPU's float32 rounding. The raw
    # projections of hidden states (norms in the hundreds; `refusal` reaches +-200) differ by more
    # across CPUs: measured on a second machine with the recording's own code, 3.9e-4 (refusal),
    # 2.6e-5 (harmfulness_raw), 7.6e-6 (novelty), every action the same
    raw = {"refusal": 1e-3, "harmfulness_raw": 1e-4, "reject_option.novelty": 1e-4}
    result = bench.compare(golden["decisions"], batch, prompts, tolerance=1e-5, per_score=raw)
    assert result["actions_differ"] == 0, result["first"]
    assert result["mismatched"] == 0, result["first"]


def test_compare_finds_a_moved_score_and_a_changed_action():
    bench = _bench()
    a = [{"action": "answer", "scores": {"harmfulness": 0.1}}, {"action": "refuse", "scores": {"x": 1.0}}]
    b = [
        {"action": "answer", "scores": {"harmfulness": 0.1 + 2e-6}},
        {"action": "answer", "scores": {"x": 1.0}},
    ]
    out = bench.compare(a, b, ["p", "q"])
    assert out["mismatched"] == 2 and out["actions_differ"] == 1
    assert out["max_score_diff"] == pytest.approx(2e-6)
    assert bench.compare(a, a, ["p", "q"])["mismatched"] == 0


def test_a_score_of_its_own_tolerance_is_compared_with_it():
    bench = _bench()
    a = [{"action": "answer", "scores": {"refusal": 80.0, "harmfulness": 0.1}}]
    b = [{"action": "answer", "scores": {"refusal": 80.0005, "harmfulness": 0.1001}}]
    result = bench.compare(a, b, ["p"], tolerance=1e-5, per_score={"refusal": 1e-3})
    assert result["mismatched"] == 1 and result["first"][0]["problems"] == [
        "harmfulness: 0.100000000 vs 0.100100000"
    ]
