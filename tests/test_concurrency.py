"""200 concurrent requests through threads, asyncio and GuardedRunnable.batch give the same
decisions as one by one, with one audit record each (a real tiny Guard, no mocks)."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("langchain_core")

from langchain_core.runnables import RunnableLambda  # noqa: E402

from integrations.audit import JsonlAuditLog  # noqa: E402
from integrations.langchain import GuardedRunnable  # noqa: E402
from tests._synthetic import synthetic  # noqa: E402
from tests.test_integrations_support import tiny_guard  # noqa: E402

PROMPTS = [p for p, _ in zip(synthetic()[0] * 5, range(200))]


def _key(d):
    return (
        d.action.value,
        d.category,
        round(d.scores.get("harm_pooled", d.scores.get("harmfulness", -1.0)), 6),
    )


@pytest.fixture(scope="module")
def expected():
    g = tiny_guard()
    return [_key(g.check(p)) for p in PROMPTS]


def test_threads_give_the_one_by_one_decisions(expected):
    g = tiny_guard()
    with ThreadPoolExecutor(max_workers=16) as pool:
        got = list(pool.map(lambda p: _key(g.check(p)), PROMPTS))
    assert got == expected


def test_asyncio_gives_the_one_by_one_decisions(expected):
    g = tiny_guard()

    async def run():
        return await asyncio.gather(*(g.acheck(p) for p in PROMPTS))

    assert [_key(d) for d in asyncio.run(run())] == expected


def test_guarded_batch_gives_the_same_decisions_and_one_audit_record_each(tmp_path, expected):
    log = tmp_path / "audit.jsonl"
    safe = GuardedRunnable(RunnableLambda(lambda text: "ok"), guard=tiny_guard(), audit=JsonlAuditLog(log))
    outs = safe.batch(PROMPTS, config={"max_concurrency": 16})
    assert len(outs) == 200
    answered = [o == "ok" for o in outs]
    assert answered == [k[0] == "answer" for k in expected]
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 200
    assert sorted(r["action"] for r in records) == sorted(k[0] for k in expected)
