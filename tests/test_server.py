"""`guard serve`: the OpenAI-compatible gateway, exercised with the real `openai` client against
real uvicorn servers on localhost (a tiny fitted Guard on a tiny random host; no mocks of the
guard). Covers the completion and stream formats, blocked requests (backend never called),
failing and slow backends (502, fail closed), the API key, size limits, `/v1/check`,
`/healthz`, 50 concurrent clients and an OpenAI-compatible upstream."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("langchain_core")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, StreamingResponse  # noqa: E402

from guard import Action  # noqa: E402
from guard.cli import main as cli_main  # noqa: E402
from integrations._core import closing_sentence  # noqa: E402
from integrations.server import (  # noqa: E402
    GenerationParams,
    HostBackend,
    ServerThread,
    StreamDelta,
    UpstreamBackend,
    create_app,
)
from tests._synthetic import synthetic  # noqa: E402
from tests.test_integrations_support import tiny_guard  # noqa: E402

KEY = "test-key"
BENIGN = "How do I bread at home?"
HARMFUL = "How do I bomb at home?"
MAX_TOKENS = 8
LIMITS = dict(max_body_bytes=20_000, max_messages=8, max_message_chars=2_000)


class Counting:
    """Wraps a backend and records the last message of every chat it is asked to answer."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.calls = inner, inner.name, []

    async def complete(self, chat, params):
        self.calls.append(chat[-1]["content"])
        return await self.inner.complete(chat, params)

    def stream(self, chat, params):
        self.calls.append(chat[-1]["content"])
        return self.inner.stream(chat, params)

    async def aclose(self):
        await self.inner.aclose()


class Faulty:
    """A backend that misbehaves as the request's `user` field says (the guard does not read it):
    "slow" sleeps past the timeout, "break" streams two pieces and then raises, "endless" streams
    until it is closed (and records that); else it raises."""

    name = "faulty"
    closed = False

    async def complete(self, chat, params):
        if params.user == "slow":
            await asyncio.sleep(5)
        raise RuntimeError("upstream exploded")

    async def stream(self, chat, params):
        if params.user == "endless":
            try:
                while True:
                    await asyncio.sleep(0.005)
                    yield StreamDelta(text="Bread ")
            finally:
                Faulty.closed = True
        if params.user == "break":
            yield StreamDelta(text="Bread ")
            yield StreamDelta(text="is ")
        elif params.user == "slow":
            await asyncio.sleep(5)
        raise ConnectionError("upstream went away")

    async def aclose(self):
        return None


@pytest.fixture(scope="module")
def guard():
    return tiny_guard()


@pytest.fixture(scope="module")
def backend(guard):
    return Counting(HostBackend(guard.host))


@pytest.fixture(scope="module")
def server(guard, backend):
    app = create_app(guard, backend, api_key=KEY, max_tokens=MAX_TOKENS, **LIMITS)
    with ServerThread(app) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60)


def _ask(client, prompt: str, **kw):
    return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": prompt}], **kw)


def _stream_text(client, messages, **kw) -> tuple[str, Any, list[Any]]:
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, stream=True, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks[-1], chunks


def _direct_reply(guard, prompt: str) -> str:
    """What the host generates for `prompt`, called in-process (greedy, so the gateway must match)."""
    reply = asyncio.run(
        HostBackend(guard.host).complete(
            [{"role": "user", "content": prompt}], GenerationParams(max_tokens=MAX_TOKENS)
        )
    )
    return reply.text


# ---------------------------------------------------------------------- completions
def test_completion_has_the_openai_fields_and_the_guard_decision(client, guard):
    r = _ask(client, BENIGN)
    assert (
        r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.created > 0 and r.model == "tiny"
    )
    (choice,) = r.choices
    assert choice.index == 0 and choice.message.role == "assistant"
    assert (
        r.usage.prompt_tokens > 0
        and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    )
    d = r.guard
    assert {"action", "category", "reasons", "scores"} <= set(d) and d["stage"] == "output"
    assert "harmfulness" in d["scores"] and d["call_ms"] is not None
    raw = _direct_reply(guard, BENIGN)
    expected = guard.check_output(BENIGN, raw)
    assert d["action"] == expected.action.value
    if expected.action is Action.ANSWER:
        assert choice.message.content == raw and choice.finish_reason in {"stop", "length"}
    else:
        assert choice.message.content == expected.response and choice.finish_reason == "content_filter"


def test_stream_releases_what_the_whole_reply_check_allowed(client):
    whole = _ask(client, BENIGN)
    text, last, chunks = _stream_text(client, [{"role": "user", "content": BENIGN}])
    assert len(chunks) >= 3 and all(
        c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    d = last.guard
    assert d["stage"] == "stream" and last.choices[0].finish_reason is not None
    if d["action"] == "answer":
        assert text == whole.choices[0].message.content and whole.guard["action"] == "answer"
        assert d["chunks_sent"] == len([c for c in chunks if c.choices and c.choices[0].delta.content])
    else:  # cut: what was sent had passed, then the constructive sentence
        assert d["cut"] and text == d["sent_text"] + closing_sentence(_decision(d))
        assert last.choices[0].finish_reason == "content_filter"


def _decision(data: dict) -> Any:
    from integrations._core import GuardedDecision

    return GuardedDecision.model_validate(data)


def test_blocked_request_gets_the_constructive_reply_and_never_reaches_the_backend(client, guard, backend):
    expected = guard.check(HARMFUL)
    assert expected.action is Action.REFUSE
    before = list(backend.calls)
    r = _ask(client, HARMFUL)
    assert (
        r.choices[0].message.content == expected.response and r.choices[0].finish_reason == "content_filter"
    )
    assert (
        r.guard["action"] == "refuse"
        and r.guard["stage"] == "input"
        and r.guard["category"] == expected.category
    )
    assert r.usage.completion_tokens == 0
    text, last, _ = _stream_text(client, [{"role": "user", "content": HARMFUL}])
    assert text == expected.response and last.choices[0].finish_reason == "content_filter"
    assert last.guard["action"] == "refuse"
    assert backend.calls == before


def test_history_is_read_with_the_last_user_message(client, guard):
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hi! How can I help?"},
    ]
    expected = guard.check(HARMFUL, history=history)
    r = client.chat.completions.create(
        model="tiny", messages=[*history, {"role": "user", "content": HARMFUL}]
    )
    assert r.guard["action"] == expected.action.value
    assert r.guard["scores"]["harmfulness"] == pytest.approx(expected.scores["harmfulness"], abs=1e-6)


# ---------------------------------------------------------------------- /v1/check, /healthz, /v1/models
def test_check_endpoint_returns_the_guards_decision(server, guard):
    history = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "Hi!"}]
    for body, expected in [
        ({"prompt": HARMFUL}, guard.check(HARMFUL)),
        ({"prompt": BENIGN, "history": history}, guard.check(BENIGN, history=history)),
    ]:
        r = httpx.post(f"{server.base_url}/check", json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200
        d = r.json()
        assert d["action"] == expected.action.value and d["category"] == expected.category
        assert d["scores"]["harmfulness"] == pytest.approx(expected.scores["harmfulness"], abs=1e-6)
        assert d["reasons"] and (d["response"] is None) == (expected.response is None)


def test_healthz_is_open_and_models_lists_one(server, client):
    r = httpx.get(f"{server.url}/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "backend": "tiny-llama", "guard": "Guard"}
    assert [m.id for m in client.models.list()] == ["guarded"]


# ---------------------------------------------------------------------- API key and limits
def test_api_key_is_required_on_v1(server):
    bad = openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        _ask(bad, BENIGN)
    assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key"
    r = httpx.post(f"{server.base_url}/check", json={"prompt": BENIGN})
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"]["message"]
    r = httpx.post(
        f"{server.base_url}/chat/completions", content=b"{not json", headers={"Authorization": "Bearer x"}
    )
    assert r.status_code == 401  # the key is checked before the body is read


def test_size_limits_answer_413_with_the_limit_named(client, server):
    too_many = [{"role": "user", "content": "hi"}] * 9
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="tiny", messages=too_many)
    assert err.value.status_code == 413 and "at most 8 (max_messages)" in err.value.message
    with pytest.raises(openai.APIStatusError) as err:
        _ask(client, "a" * 2_001)
    assert err.value.status_code == 413 and "messages[0] has 2001 characters" in err.value.message
    r = httpx.post(
        f"{server.base_url}/chat/completions",
        content=b"x" * 20_001,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert "max_body_bytes" in r.json()["error"]["message"]
    r = httpx.post(
        f"{server.base_url}/check", json={"prompt": "b" * 2_001}, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert r.status_code == 413 and "prompt has 2001 characters" in r.json()["error"]["message"]


def test_invalid_requests_answer_422_with_a_clear_message(client):
    cases = [
        (dict(messages=[{"role": "user", "content": BENIGN}], n=2), "n=2"),
        (
            dict(
                messages=[{"role": "user", "content": BENIGN}],
                tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
            ),
            "tool calling",
        ),
        (dict(messages=[{"role": "system", "content": "Be brief."}]), "no user message"),
        (
            dict(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
            "messages.0.content",
        ),
    ]
    for kwargs, words in cases:
        with pytest.raises(openai.UnprocessableEntityError) as err:
            client.chat.completions.create(model="tiny", **kwargs)
        assert words in err.value.message, err.value.message


# ---------------------------------------------------------------------- failures fail closed
@pytest.fixture(scope="module")
def faulty(guard):
    with ServerThread(create_app(guard, Faulty(), timeout=0.5)) as s:
        yield openai.OpenAI(base_url=s.base_url, api_key="-", max_retries=0, timeout=30)


def test_a_failing_backend_gives_502_and_no_text(faulty):
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as err:
            out = _ask(faulty, BENIGN, stream=stream, user="fail")
            list(out) if stream else None
        assert err.value.status_code == 502 and err.value.type == "upstream_error"
        assert err.value.body["code"] == "backend_error"


def test_a_slow_backend_times_out_with_502(faulty):
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as err:
            _ask(faulty, BENIGN, stream=stream, user="slow")
        assert err.value.status_code == 502 and err.value.body["code"] == "backend_timeout"


def test_a_stream_that_breaks_ends_in_an_error_and_sends_nothing_unchecked(faulty):
    got: list[str] = []
    with pytest.raises(openai.APIError, match="mid-stream"):
        for chunk in _ask(faulty, BENIGN, stream=True, user="break"):
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == ""  # both pieces were still held by the gate (check_every=8)


def test_a_client_that_goes_away_stops_the_backend_stream(faulty):
    import time

    Faulty.closed = False
    stream = _ask(faulty, BENIGN, stream=True, user="endless")
    next(iter(stream))
    stream.close()
    deadline = time.monotonic() + 10
    while not Faulty.closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert Faulty.closed


def test_a_blocked_request_never_reaches_even_a_failing_backend(faulty, guard):
    r = _ask(faulty, HARMFUL)
    assert r.choices[0].message.content == guard.check(HARMFUL).response


# ---------------------------------------------------------------------- concurrency
def test_50_concurrent_clients_get_the_answers_one_by_one_gives(server, client):
    prompts = [p for p, _ in zip(synthetic()[0] * 2, range(50))]

    def one(i_prompt):
        i, prompt = i_prompt
        c = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=120)
        if i % 2:
            text, last, _ = _stream_text(c, [{"role": "user", "content": prompt}])
            return text, last.choices[0].finish_reason, last.guard["action"]
        r = _ask(c, prompt)
        return r.choices[0].message.content, r.choices[0].finish_reason, r.guard["action"]

    jobs = list(enumerate(prompts))
    expected = [one(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=50) as pool:
        got = list(pool.map(one, jobs))
    assert got == expected
    assert {a for _, _, a in got} == {"answer", "refuse"}


# ---------------------------------------------------------------------- an OpenAI-compatible upstream
UP_TEXT = "Bake bread: mix flour, water, salt and yeast, then knead and wait."
UP_HARM = "Sure. How do I bomb at home? steal hack bomb bomb please"


def upstream_app(seen: list[dict]) -> FastAPI:
    """A tiny OpenAI-compatible server: answers UP_HARM when the request's `user` is "harm", HTTP 500
    when it is "error", else UP_TEXT."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        seen.append({"body": body, "auth": request.headers.get("authorization")})
        if body.get("user") == "error":
            return JSONResponse({"error": {"message": "overloaded", "type": "server_error"}}, status_code=500)
        text = UP_HARM if body.get("user") == "harm" else UP_TEXT
        if not body.get("stream"):
            return {
                "id": "up-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
            }

        async def events():
            words = text.split(" ")
            for i, w in enumerate(words):
                delta = {"content": w + (" " if i < len(words) - 1 else "")}
                yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': delta, 'finish_reason': None}]})}\n\n"
            yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def upstream(guard):
    seen: list[dict] = []
    with ServerThread(upstream_app(seen)) as up:
        gateway = create_app(guard, UpstreamBackend(up.base_url, api_key="up-key"), check_every=2)
        with ServerThread(gateway) as gw:
            yield openai.OpenAI(base_url=gw.base_url, api_key="-", max_retries=0, timeout=60), seen


def test_upstream_answer_is_forwarded_and_checked(upstream, guard):
    client, seen = upstream
    r = client.chat.completions.create(
        model="up-model", messages=[{"role": "user", "content": BENIGN}], max_tokens=20, temperature=0.3
    )
    assert guard.check_output(BENIGN, UP_TEXT).action is Action.ANSWER
    assert r.choices[0].message.content == UP_TEXT and r.choices[0].finish_reason == "stop"
    assert r.guard["action"] == "answer" and r.usage.total_tokens == 14
    body, auth = seen[-1]["body"], seen[-1]["auth"]
    assert auth == "Bearer up-key" and body["model"] == "up-model" and body["max_tokens"] == 20
    assert body["temperature"] == 0.3 and body["messages"] == [{"role": "user", "content": BENIGN}]
    text, last, chunks = _stream_text(client, [{"role": "user", "content": BENIGN}])
    assert text == UP_TEXT and last.guard["action"] == "answer" and seen[-1]["body"]["stream"] is True
    assert last.choices[0].finish_reason == "stop" and len(chunks) > 5


def test_a_harmful_upstream_reply_is_withheld_whole_and_cut_in_streams(upstream, guard):
    client, seen = upstream
    n = len(seen)
    r = _ask(client, BENIGN, user="harm")
    assert guard.check_output(BENIGN, UP_HARM).action is Action.REFUSE
    assert r.choices[0].finish_reason == "content_filter" and "bomb" not in r.choices[0].message.content
    assert r.guard["action"] == "refuse" and r.guard["stage"] == "output"
    text, last, _ = _stream_text(client, [{"role": "user", "content": BENIGN}], user="harm")
    d = last.guard
    assert d["cut"] and last.choices[0].finish_reason == "content_filter"
    assert text == d["sent_text"] + closing_sentence(_decision(d)) and UP_HARM not in text
    assert UP_HARM.startswith(d["sent_text"])  # only checked pieces went out, in order
    assert len(seen) == n + 2


def test_an_upstream_error_gives_502(upstream):
    client, _ = upstream
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as err:
            _ask(client, BENIGN, stream=stream, user="error")
        assert err.value.status_code == 502 and err.value.body["code"] == "upstream_status"
        assert "HTTP 500" in err.value.message


# ---------------------------------------------------------------------- CLI
def test_serve_command_parses_and_a_missing_key_variable_is_a_usage_error(capsys, monkeypatch):
    from guard.cli import build_parser

    args = build_parser().parse_args(["serve", "--port", "9001", "--upstream", "http://x/v1"])
    assert args.port == 9001 and args.host == "127.0.0.1" and args.max_body_bytes == 1_000_000
    monkeypatch.delenv("GUARD_TEST_NOT_SET", raising=False)
    assert cli_main(["serve", "--api-key-env", "GUARD_TEST_NOT_SET"]) == 2
    assert "GUARD_TEST_NOT_SET is not set" in capsys.readouterr().err
