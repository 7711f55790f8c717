"""HostModel.generate_batch: padded greedy batches equal one chat at a time."""

from __future__ import annotations

import pytest
import torch
from conftest import load_benchmark, make_host

from guard.errors import InputError


def _one(host, prompt: str, prefix: str, n: int) -> str:
    ids = host.tokenizer(host.render(prompt) + prefix, return_tensors="pt", add_special_tokens=False)[
        "input_ids"
    ]
    with torch.inference_mode():
        out = host.model.generate(
            input_ids=ids, max_new_tokens=n, do_sample=False, pad_token_id=host.tokenizer.pad_token_id
        )
    return host.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def test_a_padded_batch_equals_each_chat_alone_and_continues_its_prefix():
    host = make_host("llama")
    prompts = ["bake bread", "How do I kill a Python process on a busy server today?", "hi"]
    prefixes = ["", "Sure, here's how", "Hello"]
    side = host.tokenizer.padding_side
    batched = host.generate_batch(prompts, prefixes, max_new_tokens=6, batch_size=2)
    assert batched == [_one(host, p, pre, 6) for p, pre in zip(prompts, prefixes)]
    assert host.tokenizer.padding_side == side  # the tokenizer is left as it was


def test_prefixes_must_match_the_prompts():
    with pytest.raises(InputError, match="2 prefixes for 1 prompts"):
        make_host("llama").generate_batch(["a"], ["x", "y"])


def test_the_real_replies_benchmark_spreads_a_small_run_over_every_subcategory():
    bench = load_benchmark("real_replies")
    rows = [{"prompt": f"p{i}", "subcategory": s} for i, s in enumerate("aaaaabbc")]
    picked = bench.spread(rows, 3)
    assert sorted(r["subcategory"] for r in picked) == ["a", "b", "c"]
    assert len(bench.spread(rows, 100)) == len(rows)
