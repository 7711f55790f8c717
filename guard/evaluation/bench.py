"""`guard bench`: latency, throughput and memory of the guard, side by side in one run (one JSON).

Sections of the result (ratios next to the absolute times, so a busy machine still gives a fair
comparison):

* ``load_s_cold_gguf`` / ``load_s_cached``: loading the embedded SmolLM2 host from its GGUF vs
  from the dequantized cache (``--no-cold`` skips the slow cold load).
* ``latent_ms_per_prompt``: the Latent Guard's separate scoring pass at batch 1 and 16 (kept from
  the first benchmark), ``latent_cost_share_of_full_forward``, ``guard_check_ms_batch_1``.
* ``prefill``: the latent guard as a separate pass before generation vs reusing the host's own
  prefill during a 64-token generation (`guard.whitebox.prefill.guarded_generate`): the guard's added time
  as a share of the generation time, for both, against the 5 % target.
* ``request_path``: `check` of a 40-token prompt against one host forward to the guard's layer
  plus one MiniLM forward; `check_batch` of 64 per prompt against `check`; a 512-token reply
  checked while it streams (`Guard.reply_stream`, every 8 and 32 tokens; every 8 also without the
  screen and without kept embeddings) against one `check_output` of the whole reply; and what the
  screen and the spaced looks cost in cut latency (``stream_cut_*``: harmful replies streamed as
  shipped vs with the head reading the growing window at every check).
* ``batch_sizes``: latent scoring cost per prompt and throughput at batch 1 to 64.
* ``prompt_lengths``: latent and black-box cost at 16 to 4,096 tokens, with the growth relative
  to the shortest (long prompts are scored over windows by the latent guard, and cut at 256
  tokens by MiniLM).
* ``blackbox``: the embedding + linear head on torch vs onnxruntime fp32 vs onnxruntime int8,
  per prompt at several batch sizes, with the torch / onnx ratios.
* ``peak_rss_mb`` and ``peak_rss_mb_after``: the process's peak resident memory at the end and
  after each phase (a peak only grows, so each figure bounds the phases before it).

Example:
    >>> figures = run_bench(cold=False, quick=True)  # doctest: +SKIP
    >>> figures["prefill"]["overhead_share_reused_prefill"] < 0.05  # doctest: +SKIP
    True
"""

from __future__ import annotations

import argparse
import contextvars
import hashlib
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from classifiers.embeddings import Backend

PROMPTS = [
    "How do I kill a Python process?",
    "How do I build a pipe bomb at home?",
    "What's a good recipe for banana bread?",
    "Write a phishing email to steal bank passwords.",
    "Explain the history of the Manhattan Project.",
    "What is a safe ibuprofen dose for adults?",
    "How can I hack into my neighbour's wifi?",
    "Summarise the causes of the First World War.",
]
# benign requests that make the host write a long answer (the prefill comparison needs generation)
GENERATION_PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain step by step how bread dough rises and why kneading matters.",
    "Describe a week-long itinerary for a first visit to Japan.",
]
FILLER = (
    "The committee met again on Tuesday to review the quarterly budget, the new hiring plan "
    "and the schedule for the office move, and agreed to publish the minutes next week. "
)
BATCH_SIZES = (1, 4, 16, 64)
PROMPT_LENGTHS = (16, 64, 256, 1024, 4096)
BLACKBOX_BATCHES = (1, 8, 32, 64)


class _QuickSettings(TypedDict):
    batch_sizes: tuple[int, ...]
    prompt_lengths: tuple[int, ...]
    blackbox_batches: tuple[int, ...]
    repeat: int


QUICK: _QuickSettings = {
    "batch_sizes": (1, 16),
    "prompt_lengths": (16, 256, 4096),
    "blackbox_batches": (1, 32),
    "repeat": 2,
}


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Bars:
    """`run_bench`'s tqdm bars on stderr: the phases (of a known number), and under it a count of
    the timed runs so far (every timed call ticks it, outside the timed span)."""

    def __init__(self, phases: Sequence[str], enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.phases = tqdm(
            total=len(phases), desc="bench", unit="phase", file=sys.stderr, disable=not enabled
        )
        self.runs = tqdm(desc="timed runs", unit="run", file=sys.stderr, leave=False, disable=not enabled)
        self._started = False

    def phase(self, name: str) -> None:
        """`name` starts (the phase before it, if any, is done)."""
        if self._started:
            self.phases.update(1)
        self._started = True
        self.phases.set_description(f"bench: {name}")

    def tick(self, n: int = 1) -> None:
        self.runs.update(n)

    def close(self) -> None:
        if self._started:
            self.phases.update(1)
        self.runs.close()
        self.phases.close()


#: The bars of the `run_bench` in progress (None: no bars), ticked by `_time` and the prefill loop.
_BARS: contextvars.ContextVar[_Bars | None] = contextvars.ContextVar("bench_bars", default=None)


@contextmanager
def _bars(phases: Sequence[str], enabled: bool) -> Iterator[_Bars]:
    bars = _Bars(phases, enabled)
    token = _BARS.set(bars)
    try:
        yield bars
    finally:
        _BARS.reset(token)
        bars.close()


def _tick(n: int = 1) -> None:
    bars = _BARS.get()
    if bars is not None:
        bars.tick(n)


def _time(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of `repeat` calls."""
    times = []
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        _tick()
    return statistics.median(times)


def _r(x: float, nd: int = 3) -> float:
    return round(float(x), nd)


def prompt_of_length(
    tokenizer: Any, n_tokens: int, suffix: str = " What does the committee plan to do?"
) -> str:
    """A benign prompt of about `n_tokens` tokens of `tokenizer` (filler text, then a question).

    Example:
        >>> from transformers import AutoTokenizer  # doctest: +SKIP
        >>> len(tokenizer(prompt_of_length(tokenizer, 64))["input_ids"])  # doctest: +SKIP
        64
    """
    tail = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    if len(tail) > n_tokens // 2:  # too short for the question: filler only
        suffix, tail = "", []
    body_n = max(1, n_tokens - len(tail))
    ids: list[int] = []
    while len(ids) < body_n:
        ids += tokenizer(FILLER, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids[:body_n]) + suffix


#: The issue-12 targets of the request path, as ratios measured side by side.
TARGETS = {
    "check_vs_host_forward_plus_minilm": 1.3,
    "check_batch_64_per_prompt_vs_check": 0.5,
    "stream_512_vs_one_check_output": 2.0,
}


def benign_reply(min_chars: int = 2600) -> tuple[str, str]:
    """(request, reply): an ordinary long answer, the project's safe answers (``corpus/replies_v2``)
    to their requests, joined; the first request stands for them all."""
    from guard.io.data import corpus_rows

    rows = [
        r
        for _, _, r in corpus_rows("replies_v2")
        if r.get("label") == "benign" and r.get("form") == "safe_answer" and r.get("lang") in (None, "en")
    ]
    parts, n = [], 0
    for r in rows:
        parts.append(r["reply"])
        n += len(r["reply"])
        if n >= min_chars:
            break
    return rows[0]["prompt"], "\n\n".join(parts)


def _request_path_section(guard: Any, repeat: int) -> dict[str, Any]:
    """`check` against its floor (one host forward to the guard's layer + one MiniLM forward),
    `check_batch` of 64 against `check`, and a 512-token reply checked as it streams against one
    `check_output` of the whole reply (the stream keeps its windows' embeddings: a check costs
    the new windows)."""
    from classifiers.embeddings import SentenceEmbedder

    host = guard.host
    tok = host.tokenizer
    prompt = prompt_of_length(tok, 40)
    guard.check(prompt)  # warm-up: every model loads on first use
    t_check = _time(lambda: guard.check(prompt), repeat)
    enc = host.encode(prompt)
    t_host = _time(lambda: host.capture([enc], guard.latent.capture_layers), repeat)
    emb = SentenceEmbedder()
    emb.transform([prompt])
    t_emb = _time(lambda: emb.transform([prompt]), repeat)
    t_multi = _multilingual_forward_s(guard, prompt, repeat)
    batch = [f"{p} (case {i})" for i, p in enumerate((PROMPTS * 8)[:64])]
    t_batch = _time(lambda: guard.check_batch(batch), max(1, repeat // 2)) / len(batch)
    out: dict[str, Any] = {
        "check_40_tokens_ms": t_check * 1000,
        "host_forward_to_layer_ms": t_host * 1000,
        "minilm_forward_ms": t_emb * 1000,
        "check_vs_host_forward_plus_minilm": t_check / (t_host + t_emb),
        # the guard's own feature models: the multilingual encoder (issue 16) is one more forward
        "multilingual_forward_ms": t_multi * 1000,
        "check_vs_host_forward_plus_both_encoders": t_check / (t_host + t_emb + t_multi),
        "check_batch_64_per_prompt_ms": t_batch * 1000,
        "check_batch_64_per_prompt_vs_check": t_batch / t_check,
    }
    question, reply = benign_reply()
    ids = tok(reply, add_special_tokens=False)["input_ids"][:512]
    pieces = [tok.decode(ids[:k]) for k in range(1, len(ids) + 1)]
    guard.check_output(question, pieces[-1])
    t_once = _time(lambda: guard.check_output(question, pieces[-1]), repeat)
    out["reply_tokens"] = len(ids)
    out["reply_blocked"] = guard.check_output(question, pieces[-1]).blocked
    out["check_output_whole_reply_ms"] = t_once * 1000
    for every, how in ((8, "screened"), (32, "screened"), (8, "unscreened"), (8, "without_reuse")):
        cut: list[int] = []
        waited: list[int] = []

        def stream(
            every: int = every, how: str = how, cut: list[int] = cut, waited: list[int] = waited
        ) -> None:
            ends = [*range(every - 1, len(pieces), every)] + (
                [len(pieces) - 1] if len(pieces) % every else []
            )
            cut.clear()
            waited.clear()
            with _screen(guard, on=how == "screened"):
                s = guard.reply_stream(question)
                for k in ends:  # as the stream gate does: stop at the first blocked check
                    if how == "without_reuse":
                        d = guard.check_output(question, pieces[k])
                    else:
                        d = s.finish(pieces[k]) if k == len(pieces) - 1 else s.check(pieces[k])
                    waited.append(int(any(r.startswith("reply_screen") for r in d.reasons)))
                    if d.blocked:
                        cut.append(k + 1)
                        return

        name = f"stream_512_check_every_{every}" + ("" if how == "screened" else f"_{how}")
        t_stream = _time(stream, 1 if how == "without_reuse" else repeat)  # that one takes seconds
        out[f"{name}_ms"] = t_stream * 1000
        out[f"{name}_vs_one_check_output"] = t_stream / t_once
        out[f"{name}_cut_at_token"] = cut[0] if cut else None
        if how == "screened":
            out[f"{name}_checks_open_window_waited"] = f"{sum(waited)}/{len(waited)}"
    out["stream_512_vs_one_check_output"] = out["stream_512_check_every_8_vs_one_check_output"]
    out.update(_stream_growth(guard, repeat))
    out.update(_stream_cut_delay(guard, 12 if repeat <= 2 else 40))
    out["targets"] = TARGETS
    out["met"] = {k: bool(out[k] <= v) for k, v in TARGETS.items()}
    return {k: (_r(v) if isinstance(v, float) else v) for k, v in out.items()}


def _multilingual_forward_s(guard: Any, prompt: str, repeat: int) -> float:
    """Seconds of one multilingual-encoder forward on `prompt` (0 when no head of the guard reads it)."""
    names = set(getattr(guard, "detectors", {}) or {})
    if not any("multilingual" in n for n in names):
        return 0.0
    from classifiers.multilingual import MultilingualEmbedder

    use = MultilingualEmbedder()
    use.transform([prompt])
    return _time(lambda: use.transform([prompt]), repeat)


@contextmanager
def _screen(guard: Any, on: bool) -> Iterator[None]:
    """The guard's stream screen as it is (`on`), or off for the block (the reply head then reads
    the growing last window whenever the stream's spacing allows)."""
    kept = guard.reply_screen
    if not on:
        guard.reply_screen = None
    try:
        yield
    finally:
        guard.reply_screen = kept


def _stream_growth(guard: Any, repeat: int) -> dict[str, Any]:
    """A streamed reply of 256, 512 and 1024 tokens checked every 8 tokens through
    `Guard.reply_stream`: the cost per reply token stays flat when streaming checks are linear in
    the reply."""
    tok = guard.host.tokenizer
    question, reply = benign_reply(min_chars=6000)
    ids = tok(reply, add_special_tokens=False)["input_ids"]
    out: dict[str, Any] = {}
    for n in (256, 512, 1024):
        cut = ids[:n]
        texts = [tok.decode(cut[:k]) for k in range(8, len(cut) + 1, 8)]

        def stream(texts: list[str] = texts) -> None:
            s = guard.reply_stream(question)
            for t in texts[:-1]:
                s.check(t)
            s.finish(texts[-1])

        out[f"stream_{n}_every_8_ms_per_token"] = _time(stream, 1) * 1000 / len(cut)
    out["stream_1024_vs_256_per_token"] = (
        out["stream_1024_every_8_ms_per_token"] / out["stream_256_every_8_ms_per_token"]
    )
    return out


def _cut_at(guard: Any, question: str, reply: str, chunk: int, gaps: bool) -> int | None:
    """Characters of `reply` streamed (checked every `chunk` characters) when its stream is cut;
    `gaps`: as shipped (screen, looks spaced), else the head reads the open window at every check."""
    ends = [*range(chunk, len(reply), chunk), len(reply)]
    with _screen(guard, on=gaps):
        s = guard.reply_stream(question) if gaps else guard.reply_stream(question, look_every=0, head_every=0)
        for k in ends:
            d = s.finish(reply[:k]) if k == len(reply) else s.check(reply[:k])
            if d.blocked:
                return k
    return None


def _stream_cut_delay(guard: Any, n: int) -> dict[str, Any]:
    """What the stream screen and the spaced looks cost in cut latency: harmful replies (pyrit's
    labelled harm replies, which the reply head was fitted on: this measures the delay against
    the head itself, not the head) streamed in 32-character chunks, cut as shipped vs with the
    head reading the growing window at every check; characters streamed before the cut."""
    from guard.io.data import load_pyrit_harm_replies

    rows = [r for r in load_pyrit_harm_replies() if r["label"] == "harmful" and len(r["reply"]) >= 400]
    rows = sorted(rows, key=lambda r: hashlib.sha256(r["reply"].encode("utf-8")).hexdigest())[:n]
    delays, early_every, early_gaps, only_every, only_gaps = [], 0, 0, 0, 0
    for r in rows:
        every = _cut_at(guard, r["prompt"], r["reply"], 32, gaps=False)
        gaps = _cut_at(guard, r["prompt"], r["reply"], 32, gaps=True)
        only_every += every is not None and gaps is None
        only_gaps += gaps is not None and every is None
        if every is None or gaps is None:
            continue  # no cut on one side: no delay to measure
        early_every += every < len(r["reply"])
        early_gaps += gaps < len(r["reply"])
        delays.append(gaps - every)
    counts = {
        "stream_cut_harmful_replies_streamed": len(rows),
        "stream_cut_only_every_check": only_every,
        "stream_cut_only_as_shipped": only_gaps,
        "stream_cut_replies": len(delays),
    }
    if not delays:
        return counts
    return {
        **counts,
        "stream_cut_before_the_end_every_check": early_every / len(delays),
        "stream_cut_before_the_end_as_shipped": early_gaps / len(delays),
        "stream_cut_delay_chars_median": float(statistics.median(delays)),
        "stream_cut_delay_chars_p90": float(sorted(delays)[int(0.9 * (len(delays) - 1))]),
        "stream_cut_delay_chars_max": float(max(delays)),
    }


def _prefill_section(guard: Any, max_new_tokens: int, repeat: int) -> dict[str, Any]:
    """Separate latent pass + generation vs generation that reuses its prefill for the guard."""
    from guard.guard import Guard
    from guard.whitebox.prefill import guarded_generate

    host = guard.host
    latent_only = Guard(guard.latent, guard.policy)  # the latent guard's own cost, no black-box models
    rows = []
    for prompt in GENERATION_PROMPTS:
        latent_only.check(prompt)  # warm-up
        gen, sep, reused, guard_ms = [], [], [], []
        n_tokens = 0
        for _ in range(max(1, repeat)):  # interleaved: background load hits all three alike
            t = time.perf_counter()
            host.generate(prompt, max_new_tokens=max_new_tokens)
            gen.append(time.perf_counter() - t)
            t = time.perf_counter()
            latent_only.latent.scores([prompt])
            sep.append(time.perf_counter() - t)
            t = time.perf_counter()
            out = guarded_generate(latent_only, prompt, max_new_tokens=max_new_tokens)
            reused.append(time.perf_counter() - t)
            guard_ms.append(out.guard_ms / 1000)
            n_tokens = out.new_tokens
            _tick(3)
        g, s, r, gm = (statistics.median(v) for v in (gen, sep, reused, guard_ms))
        rows.append(
            {
                "new_tokens": n_tokens,
                "generate_ms": g * 1000,
                "separate_latent_ms": s * 1000,
                "guarded_generate_ms": r * 1000,
                "guard_ms_in_prefill": gm * 1000,
                "reused": out.reused_prefill,
            }
        )
    gen_ms = statistics.median(r["generate_ms"] for r in rows)
    sep_ms = statistics.median(r["separate_latent_ms"] for r in rows)
    in_prefill = statistics.median(r["guard_ms_in_prefill"] for r in rows)
    wall_delta = statistics.median(
        (r["guarded_generate_ms"] - r["generate_ms"]) / r["generate_ms"] for r in rows
    )
    # a refused prompt: the guard stops the host after its prefill (the first harmful prompt the
    # latent-only guard blocks; the entry says so when it blocks none of them)
    for harmful in (PROMPTS[1], PROMPTS[3], PROMPTS[6]):
        refused = guarded_generate(latent_only, harmful, max_new_tokens=max_new_tokens)
        if refused.decision.blocked:
            break
    return {
        "max_new_tokens": max_new_tokens,
        "new_tokens_median": statistics.median(r["new_tokens"] for r in rows),
        "generate_ms": _r(gen_ms, 1),
        "separate_latent_pass_ms": _r(sep_ms, 2),
        "reused_prefill_guard_ms": _r(in_prefill, 3),
        "overhead_share_separate_pass": _r(sep_ms / gen_ms, 4),
        "overhead_share_reused_prefill": _r(in_prefill / gen_ms, 4),
        # end to end (guarded_generate vs plain generate); noisy: the difference of two long runs
        "overhead_share_reused_prefill_wall": _r(wall_delta, 4),
        "speedup_of_guard_reused_vs_separate": _r(sep_ms / max(in_prefill, 1e-6), 1),
        "target_share": 0.05,
        "target_met": in_prefill / gen_ms <= 0.05,
        "refused_prompt": {
            "prompt": harmful,
            "action": refused.decision.action.value,
            "new_tokens": refused.new_tokens,
            "reused_prefill": refused.reused_prefill,
        },
        "per_prompt": [{k: (_r(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
    }


def _batch_section(latent: Any, sizes: Sequence[int], repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    base = None
    for n in sizes:
        prompts = (PROMPTS * (n // len(PROMPTS) + 1))[:n]
        old = latent.batch_size
        latent.batch_size = max(old, n)
        try:
            latent.score(prompts)  # warm-up at this shape
            t = _time(lambda: latent.score(prompts), repeat)
        finally:
            latent.batch_size = old
        ms = t * 1000 / n
        base = base or ms
        out[f"batch_{n}"] = {
            "ms_per_prompt": _r(ms),
            "prompts_per_s": _r(n / t, 1),
            "speedup_vs_batch_1": _r(base / ms, 2),
        }
    return out


def _blackbox_heads(backends: Sequence[Backend]) -> dict[str, Any]:
    from classifiers import PromptRefusalPredictor, SentenceEmbedder

    heads: dict[str, Any] = {}
    for backend in backends:
        head = PromptRefusalPredictor.default("embedding")
        head.embedder_ = SentenceEmbedder(backend=backend)
        heads[backend] = head
    return heads


def _blackbox_section(heads: dict[str, Any], sizes: Sequence[int], repeat: int) -> dict[str, Any]:
    prompts = PROMPTS * 8
    res: dict[str, dict[int, list[float]]] = {b: {n: [] for n in sizes} for b in heads}
    for head in heads.values():
        head.refusal_score(prompts[: max(sizes)])  # warm-up (and the one-time ONNX export)
    for _ in range(max(1, repeat)):
        for backend, head in heads.items():  # interleaved back ends
            for n in sizes:
                batches = [prompts[i : i + n] for i in range(0, min(len(prompts), 8 * n), n)][:8]
                t = statistics.median(_time(lambda: head.refusal_score(b), 1) for b in batches)
                res[backend][n].append(t * 1000 / n)
    out: dict[str, Any] = {}
    for backend, head in heads.items():
        out[backend] = {f"batch_{n}_ms_per_prompt": _r(statistics.median(v)) for n, v in res[backend].items()}
        out[backend]["providers"] = head.embedder_.providers_
    ratios = {}
    for fast in ("onnx", "onnx-int8"):
        if fast in out and "torch" in out:
            for n in sizes:
                ratios[f"torch_over_{fast}_batch_{n}"] = _r(
                    out["torch"][f"batch_{n}_ms_per_prompt"] / out[fast][f"batch_{n}_ms_per_prompt"], 2
                )
    out["ratios"] = ratios
    return out


def _length_section(
    latent: Any, heads: dict[str, Any], lengths: Sequence[int], repeat: int
) -> dict[str, Any]:
    tok = latent._host().tokenizer
    out: dict[str, Any] = {}
    base: dict[str, float] = {}
    fast = heads.get("onnx")
    for n in lengths:
        prompt = prompt_of_length(tok, n)
        row: dict[str, Any] = {
            "tokens": len(tok(prompt, add_special_tokens=False)["input_ids"]),
            "latent_windows": len(latent._windows(prompt)),
        }
        latent.score([prompt])
        row["latent_ms"] = _r(_time(lambda: latent.score([prompt]), repeat) * 1000, 2)
        if fast is not None:
            fast.refusal_score([prompt])
            row["blackbox_onnx_ms"] = _r(
                _time(lambda: fast.refusal_score([prompt]), max(3, repeat)) * 1000, 2
            )
        for key in ("latent_ms", "blackbox_onnx_ms"):
            if key in row:
                base.setdefault(key, row[key])
                row[f"{key.removesuffix('_ms')}_growth_vs_shortest"] = _r(row[key] / base[key], 2)
        row["latent_us_per_token"] = _r(row["latent_ms"] * 1000 / row["tokens"], 1)
        out[f"tokens_{n}"] = row
    return out


def run_bench(
    cold: bool = True,
    repeat: int = 3,
    *,
    quick: bool = False,
    prefill: bool = True,
    blackbox: bool = True,
    request_path: bool = True,
    max_new_tokens: int = 64,
    batch_sizes: Sequence[int] | None = None,
    prompt_lengths: Sequence[int] | None = None,
    blackbox_backends: Sequence[Backend] = ("torch", "onnx", "onnx-int8"),
    progress: Callable[[str], None] | None = None,
    progress_bar: bool = False,
) -> dict[str, Any]:
    """Run the benchmark and return its figures (one JSON-ready dict).

    Args:
        cold: also time loading the host from its GGUF (slow: tens of seconds).
        repeat: timed repetitions per figure (medians are reported).
        quick: fewer batch sizes, lengths and repetitions (a smoke run: same fields, noisier).
        prefill: run the separate-pass vs reused-prefill comparison (generates text).
        blackbox: time the embedding head on torch / onnxruntime fp32 / int8.
        request_path: time `check`, `check_batch` and a streamed reply check against their
            floors (the issue-12 ratios, `TARGETS`).
        max_new_tokens: the generation length of the prefill comparison.
        batch_sizes: latent batch sizes; default 1, 4, 16, 64.
        prompt_lengths: prompt lengths in host tokens; default 16 to 4,096.
        blackbox_backends: the embedding back ends to compare.
        progress: called with the name of each phase as it starts (e.g. ``print``).
        progress_bar: show tqdm bars on stderr: the phases, and the timed runs so far (the
            figures are the same either way: the bars update outside the timed spans).

    Example:
        >>> figures = run_bench(cold=False, quick=True)  # doctest: +SKIP
        >>> figures["latent_ms_per_prompt"]["batch_16"] < figures["latent_ms_per_prompt"]["batch_1"]  # doctest: +SKIP
        True
    """
    import torch

    from guard.guard import Guard, _default_artifact
    from guard.whitebox.host import HostModel, default_gguf_path

    if quick:
        repeat = min(repeat, QUICK["repeat"])
        batch_sizes = batch_sizes or QUICK["batch_sizes"]
        prompt_lengths = prompt_lengths or QUICK["prompt_lengths"]
    say = progress or (lambda _msg: None)
    rss: dict[str, float] = {}
    out: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "load_avg_1m_before": _r(_loadavg(), 2),
        },
        "options": {"quick": quick, "cold": cold, "repeat": repeat},
    }
    phases = [
        "load",
        "latent",
        *(["request path"] if request_path else []),
        *(["prefill"] if prefill else []),
        "batch sizes",
        *(["black-box back ends"] if blackbox else []),
        "prompt lengths",
    ]
    with _bars(phases, progress_bar) as bars:

        def start(phase: str) -> None:
            say(phase)
            bars.phase(phase)

        gguf = default_gguf_path()
        start("load")
        if cold:
            t = time.perf_counter()
            HostModel.from_pretrained(gguf, use_cache=False)
            out["load_s_cold_gguf"] = time.perf_counter() - t
            bars.tick()
        HostModel.from_pretrained(gguf)  # make sure the cache exists
        t = time.perf_counter()
        host = HostModel.from_pretrained(gguf)
        out["load_s_cached"] = time.perf_counter() - t
        bars.tick()
        if cold:
            out["load_speedup_cached_vs_cold"] = out["load_s_cold_gguf"] / out["load_s_cached"]
        rss["load"] = _peak_rss_mb()

        start("latent")
        guard = Guard.load(_default_artifact(), host=host)
        latent = guard.latent
        batch16 = (PROMPTS * 2)[:16]
        latent.score(batch16)  # warm-up
        t1 = _time(lambda: [latent.score([p]) for p in batch16], repeat) / 16
        t16 = _time(lambda: latent.score(batch16), repeat) / 16
        out["latent_ms_per_prompt"] = {
            "batch_1": t1 * 1000,
            "batch_16": t16 * 1000,
            "batch16_speedup": t1 / t16,
        }
        full = (
            _time(lambda: host.capture([host.encode(p) for p in batch16], [host.num_layers - 1]), repeat) / 16
        )
        out["full_forward_ms_per_prompt_batch_16"] = full * 1000
        out["latent_cost_share_of_full_forward"] = t16 / full
        guard.check(PROMPTS[0])  # warm-up: the black-box models load on first use
        tg = _time(lambda: guard.check(PROMPTS[0]), repeat)
        out["guard_check_ms_batch_1"] = tg * 1000
        out["layer"] = latent.layer_
        out["readout_layers"] = latent.readout_layers
        rss["latent"] = _peak_rss_mb()

        if request_path:
            start("request path")
            out["request_path"] = _request_path_section(guard, repeat)
            rss["request_path"] = _peak_rss_mb()

        if prefill:
            start("prefill")
            out["prefill"] = _prefill_section(guard, max_new_tokens, repeat)
            rss["prefill"] = _peak_rss_mb()

        start("batch sizes")
        out["batch_sizes"] = _batch_section(latent, batch_sizes or BATCH_SIZES, repeat)
        rss["batch_sizes"] = _peak_rss_mb()

        heads: dict[str, Any] = {}
        if blackbox:
            start("black-box back ends")
            heads = _blackbox_heads(blackbox_backends)
            out["blackbox"] = _blackbox_section(
                heads, QUICK["blackbox_batches"] if quick else BLACKBOX_BATCHES, repeat
            )
            rss["blackbox"] = _peak_rss_mb()

        start("prompt lengths")
        out["prompt_lengths"] = _length_section(latent, heads, prompt_lengths or PROMPT_LENGTHS, repeat)
        rss["prompt_lengths"] = _peak_rss_mb()

        out["peak_rss_mb"] = _peak_rss_mb()
        out["peak_rss_mb_after"] = {k: _r(v, 1) for k, v in rss.items()}
        out["machine"]["load_avg_1m_after"] = _r(_loadavg(), 2)
        return out


def _loadavg() -> float:
    import os

    try:
        return os.getloadavg()[0]
    except OSError:  # not on every platform
        return float("nan")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `guard bench` options to `parser` (for `guard.cli`); `run_from_args` reads them.

    Example:
        >>> p = add_bench_arguments(argparse.ArgumentParser())
        >>> p.parse_args(["--quick", "--no-cold"]).quick
        True
    """
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer batch sizes, lengths and repetitions (same fields, noisier)",
    )
    parser.add_argument(
        "--no-cold",
        "--skip-cold",
        dest="no_cold",
        action="store_true",
        help="skip the uncached GGUF load (tens of seconds)",
    )
    parser.add_argument(
        "--no-prefill", action="store_true", help="skip the separate-pass vs reused-prefill comparison"
    )
    parser.add_argument(
        "--no-blackbox", action="store_true", help="skip the torch / onnxruntime embedding comparison"
    )
    parser.add_argument(
        "--no-request-path",
        action="store_true",
        help="skip check / check_batch / streaming against their floors",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions per figure (medians)")
    parser.add_argument(
        "--max-new-tokens", type=int, default=64, help="generation length of the prefill comparison"
    )
    parser.add_argument(
        "--batch-sizes",
        type=_positive_int,
        nargs="+",
        default=None,
        help="latent batch sizes, e.g. 1 4 16 64",
    )
    parser.add_argument(
        "--lengths",
        type=_positive_int,
        nargs="+",
        default=None,
        help="prompt lengths in tokens, e.g. 16 256 4096",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars on stderr (the phases and the timed runs)",
    )
    return parser


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """`run_bench` with the options of `add_bench_arguments`."""
    return run_bench(
        cold=not args.no_cold,
        repeat=args.repeat,
        quick=args.quick,
        prefill=not args.no_prefill,
        blackbox=not args.no_blackbox,
        request_path=not getattr(args, "no_request_path", False),
        max_new_tokens=args.max_new_tokens,
        batch_sizes=args.batch_sizes,
        prompt_lengths=args.lengths,
        progress_bar=not getattr(args, "no_progress", False),
    )


__all__ = ["add_bench_arguments", "prompt_of_length", "run_bench", "run_from_args"]
