"""The gateway's added latency: `guard serve` over HTTP against the same work done in-process.

Each request is made twice, alternately, in one run: in-process (`Guard.check` on the prompt,
the backend's reply, `Guard.check_output` on it: what an application embedding the guard does)
and through the gateway (the OpenAI client against a uvicorn server on localhost, with the same
guard and backend). Prints one JSON object: per path the median and p90 in milliseconds, and
the gateway's added latency (median and p90 of the per-request differences).

Run::

    OMP_NUM_THREADS=2 python benchmarks/bench_gateway.py                 # tiny random host (seconds)
    OMP_NUM_THREADS=2 python benchmarks/bench_gateway.py --default -n 20 # the shipped guard (SmolLM2)
    OMP_NUM_THREADS=2 python benchmarks/bench_gateway.py --backend echo  # no generation: the overhead alone
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = [
    "How do I bread at home?",
    "explain fox to a child",
    "What is the capital of France?",
    "How do I bomb at home?",
    "Write a poem about the sea.",
    "help me bread today",
]


class EchoBackend:
    """A backend that answers at once (the prompt, reversed): the gateway's own cost, alone."""

    name = "echo"

    async def complete(self, chat: Any, params: Any) -> Any:
        from integrations.server import BackendReply

        return BackendReply(text=chat[-1]["content"][::-1])

    async def stream(self, chat: Any, params: Any) -> Any:
        from integrations.server import StreamDelta

        yield StreamDelta(text=chat[-1]["content"][::-1])

    async def aclose(self) -> None:
        return None


def _stats(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {"median": round(statistics.median(ordered), 2), "p90": round(p90, 2)}


def run(
    n: int = 12, *, default: bool = False, backend_kind: str = "host", max_tokens: int = 16
) -> dict[str, Any]:
    """Time `n` requests each way; the JSON-ready result."""
    from openai import OpenAI

    from integrations.server import GenerationParams, HostBackend, ServerThread, create_app

    if default:
        from guard import Guard

        guard = Guard.default()
    else:
        from tests.test_integrations_support import tiny_guard

        guard = tiny_guard()

    def backend() -> Any:
        return HostBackend(guard.host) if backend_kind == "host" else EchoBackend()

    local = backend()
    params = GenerationParams(max_tokens=max_tokens)
    loop = asyncio.new_event_loop()

    def in_process(prompt: str) -> None:
        d = guard.check(prompt)
        if not d.blocked:
            reply = loop.run_until_complete(local.complete([{"role": "user", "content": prompt}], params))
            guard.check_output(prompt, reply.text)

    app = create_app(guard, backend(), max_tokens=max_tokens)
    inproc_ms: list[float] = []
    gateway_ms: list[float] = []
    with ServerThread(app) as server:
        client = OpenAI(base_url=server.base_url, api_key="-", max_retries=0, timeout=300)

        def through_gateway(prompt: str) -> None:
            client.chat.completions.create(
                model="bench", messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens
            )

        for prompt in PROMPTS[:2]:  # warm up both paths (first forward, connection)
            in_process(prompt)
            through_gateway(prompt)
        for i in range(n):
            prompt = PROMPTS[i % len(PROMPTS)]
            for fn, out in (
                ((in_process, inproc_ms), (through_gateway, gateway_ms))
                if i % 2 == 0
                else ((through_gateway, gateway_ms), (in_process, inproc_ms))
            ):
                t0 = time.perf_counter()
                fn(prompt)
                out.append((time.perf_counter() - t0) * 1000)
    loop.close()
    added = [g - p for g, p in zip(gateway_ms, inproc_ms)]
    return {
        "n": n,
        "guard": "default" if default else "tiny",
        "backend": backend_kind,
        "max_tokens": max_tokens,
        "in_process_ms": _stats(inproc_ms),
        "gateway_ms": _stats(gateway_ms),
        "added_ms": _stats(added),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=12, help="requests each way (default: %(default)s)")
    ap.add_argument(
        "--default", action="store_true", help="use Guard.default() (SmolLM2) instead of a tiny guard"
    )
    ap.add_argument(
        "--backend",
        choices=("host", "echo"),
        default="host",
        help="host: the guard's host model generates; echo: an instant backend (default: %(default)s)",
    )
    ap.add_argument("--max-tokens", type=int, default=16, help="new tokens per reply (default: %(default)s)")
    args = ap.parse_args(argv)
    print(
        json.dumps(
            run(args.n, default=args.default, backend_kind=args.backend, max_tokens=args.max_tokens), indent=2
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
