"""Guard overhead per request inside `GuardedRunnable`, beside the wrapped call's own time.

Run: ``python benchmarks/bench_integrations.py [--max-tokens 16] [--n 6]`` (prints JSON). The
wrapped runnable is `HostChatModel` on the embedded SmolLM2 host; the guard is the shipped default,
as shipped (latent + black-box evidence) or with ``--latent-only``. Each request is timed by the wrapper itself: `guard_ms` is the request check plus
the reply check, `call_ms` the model call.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

PROMPTS = [
    "How do I kill a Python process?",
    "Write a haiku about rain.",
    "What is the capital of France?",
    "Give me a recipe for banana bread.",
    "Explain recursion to a beginner.",
    "What are good stretches after running?",
    "How do I set up a Python virtual environment?",
    "How do vaccines train the immune system?",
]


def run(max_tokens: int = 16, n: int = 6, blackbox: bool = True) -> dict[str, Any]:
    from guard import Guard
    from integrations.langchain import DecisionCollector, GuardedRunnable, HostChatModel

    guard = Guard.default(blackbox=blackbox)
    llm = HostChatModel(host=guard.host, max_tokens=max_tokens)
    safe = GuardedRunnable(llm, guard=guard)
    safe.invoke(PROMPTS[0])  # warm-up
    collector = DecisionCollector()
    for q in (PROMPTS * 2)[:n]:
        safe.invoke(q, config={"callbacks": [collector]})
    ds = [d for d in collector.decisions if d.call_ms is not None]
    guard_ms = statistics.median(d.guard_ms for d in ds)
    call_ms = statistics.median(d.call_ms for d in ds)
    out = {
        "guard": "as shipped (latent + black-box)" if blackbox else "latent only",
        "n": len(ds),
        "max_tokens": max_tokens,
        "guard_ms_p50": guard_ms,
        "call_ms_p50": call_ms,
        "overhead_share_of_call": guard_ms / call_ms,
    }
    out["prefill_reuse"] = prefill_reuse(guard, max_tokens, n)
    return out


def prefill_reuse(guard: Any, max_tokens: int, n: int) -> dict[str, Any]:
    """A guarded generation through `HostChatModel(guard=...)` (the guard reads the generation's
    own prefill, then checks the reply) against the same host's unguarded `generate` and against
    `GuardedRunnable(HostChatModel())` (a separate guard pass), same prompts, interleaved."""
    import time

    from integrations.langchain import GuardedRunnable, HostChatModel

    guarded = HostChatModel(host=guard.host, guard=guard, max_tokens=max_tokens)
    wrapped = GuardedRunnable(HostChatModel(host=guard.host, max_tokens=max_tokens), guard=guard)
    times: dict[str, list[float]] = {
        "host_generate": [],
        "host_chat_model_guarded": [],
        "guarded_runnable": [],
    }
    calls = {
        "host_generate": lambda q: guard.host.generate(q, max_new_tokens=max_tokens),
        "host_chat_model_guarded": guarded.invoke,
        "guarded_runnable": wrapped.invoke,
    }
    for fn in calls.values():
        fn(PROMPTS[1])  # warm-up
    for q in (PROMPTS * 2)[:n]:
        for name, fn in calls.items():
            t = time.perf_counter()
            fn(q)
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    return {
        **{f"{k}_ms_p50": v for k, v in med.items()},
        "guarded_vs_unguarded_generate": med["host_chat_model_guarded"] / med["host_generate"],
        "guarded_runnable_vs_unguarded_generate": med["guarded_runnable"] / med["host_generate"],
        "target": 1.05,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--latent-only", action="store_true", help="the guard without its black-box evidence")
    a = parser.parse_args()
    print(json.dumps(run(a.max_tokens, a.n, blackbox=not a.latent_only), indent=2))
