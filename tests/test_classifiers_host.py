"""`fit_from_model` end to end on the real SmolLM2 host with a refusal-inducing system prompt (slow)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_fit_from_model_on_smollm2(smollm2):
    from guard.fitting.fit_blackbox import demo_fit_from_host

    out = demo_fit_from_host(n_prompts=16, max_new_tokens=16, host=smollm2, progress=False)
    print(json.dumps(out, indent=1))  # the figures, with -s
    assert out["refused_harmful"] + out["refused_benign"] > 0
    assert out["refused_harmful"] + out["refused_benign"] < 16
    assert out["top_ngrams"]
