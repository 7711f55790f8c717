"""TokenStream: the one decoding loop (transformers' `generate` with a streamer and stop strings)."""

from __future__ import annotations

import contextlib
import threading

import pytest
import torch
from conftest import make_host

from guard.whitebox.decoding import GenerationEnd, TokenStream

pytestmark = pytest.mark.timeout(120)  # a lock left held would hang: fail instead


@pytest.fixture(scope="module")
def host():
    return make_host("llama", seed=3)


def _ids(host, prompt="Write a poem about the sea."):
    return list(host.encode(prompt).input_ids)


def _greedy(host, ids, n):
    """The reference: transformers' greedy `generate`, decoded without special tokens."""
    x = torch.tensor([ids])
    with torch.inference_mode():
        out = host.model.generate(
            x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False, pad_token_id=0
        )
    new = out[0, len(ids) :].tolist()
    eos = host.tokenizer.eos_token_id
    if eos in new:
        new = new[: new.index(eos)]
    return host.tokenizer.decode(new, skip_special_tokens=True), len(new)


def _lock_is_free(host) -> bool:
    """Whether another thread can take the host's lock (and gives it back)."""
    got: list[bool] = []

    def take() -> None:
        ok = host.lock.acquire(timeout=2)
        got.append(ok)
        if ok:
            host.lock.release()

    t = threading.Thread(target=take)
    t.start()
    t.join()
    return got[0]


def test_the_stream_is_greedy_generate_piece_by_piece(host):
    ids = _ids(host)
    want, n = _greedy(host, ids, 24)
    stream = TokenStream(host, ids, max_new_tokens=24)
    pieces = list(stream)
    assert "".join(pieces) == want
    assert len(pieces) >= 1
    assert stream.end == GenerationEnd(
        input_tokens=len(ids), output_tokens=n, finish_reason="length" if n == 24 else "stop"
    )
    assert _lock_is_free(host)


def test_a_stop_string_ends_the_reply_before_it(host):
    ids = _ids(host)
    full, _ = _greedy(host, ids, 40)
    clean = [i for i in range(4, len(full) - 2) if "\ufffd" not in full[i : i + 2]]
    assert clean, f"the tiny model's reply has no plain two characters: {full!r}"
    stop = full[clean[len(clean) // 2] : clean[len(clean) // 2] + 2]
    stream = TokenStream(host, ids, max_new_tokens=40, stop=[stop])
    text = "".join(stream)
    assert text == full[: full.index(stop)]
    assert stop not in text
    assert stream.end is not None and stream.end.finish_reason == "stop"
    assert stream.end.output_tokens < 40  # generation stopped at the stop string, not at the limit


def test_decoding_goes_through_transformers_generate(host, monkeypatch):
    calls = []
    real = host.model.generate

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(host.model, "generate", spy)
    list(TokenStream(host, _ids(host), max_new_tokens=4, stop=["zz"]))
    assert len(calls) == 1
    assert calls[0]["stop_strings"] == ["zz"] and calls[0]["streamer"] is not None


def test_a_timeout_raises_and_frees_the_lock(host):
    stream = TokenStream(host, _ids(host), max_new_tokens=50, timeout=1e-9)
    with pytest.raises(TimeoutError, match="timeout"):
        list(stream)
    assert _lock_is_free(host)


def test_closing_the_stream_stops_generation(host):
    forwards = []
    handle = host.model.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        stream = TokenStream(host, _ids(host), max_new_tokens=400)
        it = iter(stream)
        next(it)
        stream.close()
        seen = len(forwards)
    finally:
        handle.remove()
    assert seen < 400  # stopped long before the token limit
    assert stream.end is None
    assert _lock_is_free(host)


def test_what_the_prefill_context_raises_ends_generation_before_any_token(host):
    class Blocked(BaseException):
        pass

    forwards = []

    @contextlib.contextmanager
    def prefill():
        yield
        forwards.append(len(seen))
        raise Blocked

    seen: list[int] = []
    handle = host.model.register_forward_pre_hook(lambda *_: seen.append(1))
    try:
        with pytest.raises(Blocked):
            list(TokenStream(host, _ids(host), max_new_tokens=20, prefill=prefill()))
    finally:
        handle.remove()
    assert forwards == [1] and len(seen) == 1  # left right after the prompt's pass, no second pass
    assert _lock_is_free(host)


def test_a_prefill_context_failing_on_entry_frees_the_lock(host):
    @contextlib.contextmanager
    def prefill():
        raise RuntimeError("decided at once")
        yield  # pragma: no cover

    with pytest.raises(RuntimeError, match="decided at once"):
        list(TokenStream(host, _ids(host), max_new_tokens=5, prefill=prefill()))
    assert _lock_is_free(host)


def test_generation_inside_an_intervention_runs_under_the_callers_hold(host):
    ids = _ids(host)
    plain = "".join(TokenStream(host, ids, max_new_tokens=8))
    with host.intervene({1: lambda h: h * 0}):  # holds the host's lock in this thread
        steered = "".join(TokenStream(host, ids, max_new_tokens=8))
    assert steered != plain  # the worker ran with the caller's hooks, and did not wait for the lock
    assert _lock_is_free(host)


def test_a_check_from_another_thread_runs_between_decoding_steps(host):
    enc = host.encode("bake bread")
    done = threading.Event()
    order: list[str] = []

    def logits(input_ids, scores):
        if len(order) == 0:  # first step: start a capture in another thread and let it finish
            order.append("step")
            t = threading.Thread(target=lambda: (host.capture([enc], [1]), order.append("capture")))
            t.start()
            t.join(timeout=30)
            done.set()
        return scores

    list(TokenStream(host, _ids(host), max_new_tokens=6, logits_processor=logits))
    assert done.is_set() and order == ["step", "capture"]  # not blocked until generation ended


def test_a_guarded_generation_inside_an_intervention_does_not_hang(host):
    @contextlib.contextmanager
    def prefill():  # reads the prompt's pass as `guarded_generate` does: it takes the lock itself
        with host.record([1], stop_after=False) as store:
            yield
        assert store[1].shape[1] == len(_ids(host))

    with host.intervene({1: lambda h: h}):
        text, n = TokenStream(host, _ids(host), max_new_tokens=5, prefill=prefill()).read()
    assert n == 5 and isinstance(text, str)
    assert _lock_is_free(host)
