"""@guarded on sync, async, generator and async-generator functions."""

from __future__ import annotations

import asyncio
import inspect
import typing

import pytest

from guard import Action
from guard.errors import InputError
from integrations.decorators import guarded
from tests.test_integrations_support import KeywordGuard, tiny_guard

REFUSAL = KeywordGuard._decide("bomb").response


def _collect():
    seen = []
    return seen, seen.append


def test_sync_keeps_signature_and_hints_and_blocks_without_calling():
    calls, (seen, on) = [], _collect()

    def ask(system: str, prompt: str, temperature: float = 0.0) -> str:
        """Ask the model."""
        calls.append(prompt)
        return f"[{system}] {prompt}"

    wrapped = guarded(guard=KeywordGuard(), on_decision=on)(ask)
    assert inspect.signature(wrapped) == inspect.signature(ask)
    assert typing.get_type_hints(wrapped) == typing.get_type_hints(ask)
    assert wrapped.__name__ == "ask" and wrapped.__doc__ == "Ask the model."
    assert wrapped("sys", "bake bread") == "[sys] bake bread"
    assert wrapped("sys", prompt="build a bomb") == REFUSAL and calls == ["bake bread"]
    assert [d.action for d in seen] == [Action.ANSWER, Action.REFUSE]
    assert seen[0].stage == "output" and seen[1].stage == "input"


def test_prompt_argument_by_name_position_and_errors():
    @guarded(guard=KeywordGuard(), prompt_arg=1)
    def f(a: str, b: str) -> str:
        return b

    assert f("bomb", "bread") == "bread"  # position 1 is checked, not position 0
    assert f("x", "steal") == REFUSAL

    @guarded(guard=KeywordGuard(), prompt_arg="b")
    def g(a: str, b: str = "hack") -> str:
        return a

    assert g("fine") == REFUSAL  # defaults are applied before reading the prompt
    with pytest.raises(InputError, match="no parameter 'nope'"):
        guarded(guard=KeywordGuard(), prompt_arg="nope")(lambda a: a)
    with pytest.raises(InputError, match="must be a str"):
        guarded(guard=KeywordGuard())(lambda prompt: prompt)(42)


def test_methods_skip_self():
    class Bot:
        @guarded(guard=KeywordGuard())
        def reply(self, message: str) -> str:
            return "ok " + message

    assert Bot().reply("bread") == "ok bread" and Bot().reply("steal") == REFUSAL


def test_output_is_checked():
    @guarded(guard=KeywordGuard())
    def leaky(prompt: str) -> str:
        return "here is how to build a bomb"

    assert leaky("bread") == REFUSAL


def test_async():
    @guarded(guard=KeywordGuard())
    async def ask(prompt: str) -> str:
        await asyncio.sleep(0)
        return "echo " + prompt

    assert inspect.iscoroutinefunction(ask)
    assert asyncio.run(ask("bread")) == "echo bread"
    assert asyncio.run(ask("poison the well")) == REFUSAL


WORDS = "Bread needs flour and water . Knead it well . Then add a bomb to the oven and wait".split()


def test_generator_streams_and_is_cut():
    produced, (seen, on) = [], _collect()

    @guarded(guard=KeywordGuard(), check_every=3, on_decision=on)
    def stream(prompt: str) -> typing.Iterator[str]:
        for w in WORDS:
            produced.append(w)
            yield w + " "

    assert inspect.isgeneratorfunction(stream)
    out = list(stream("bread"))
    text = "".join(out)
    assert "bomb" not in text and text.endswith(REFUSAL) and "stop this reply here" in out[-1]
    d = seen[-1]
    assert d.cut and d.sent_text == "".join(out[:-1]) and d.chunks_sent == len(out) - 1
    assert len(produced) < len(WORDS)  # the generator was closed at the cut
    assert list(stream("steal")) == [REFUSAL]

    @guarded(guard=KeywordGuard(), check_every=4)
    def clean(prompt: str) -> typing.Iterator[str]:
        yield from ["a ", "b ", "c"]

    assert "".join(clean("bread")) == "a b c"


def test_async_generator_streams_and_is_cut():
    @guarded(guard=KeywordGuard(), check_every=2)
    async def stream(prompt: str) -> typing.AsyncIterator[str]:
        for w in WORDS:
            yield w + " "

    assert inspect.isasyncgenfunction(stream)

    async def go(p):
        return [c async for c in stream(p)]

    text = "".join(asyncio.run(go("bread")))
    assert "bomb" not in text and text.endswith(REFUSAL)
    assert asyncio.run(go("hack it")) == [REFUSAL]


def test_fail_closed_and_open():
    @guarded(guard=KeywordGuard(fail=ConnectionError("guard service down")))
    def ask(prompt: str) -> str:
        return "answer"

    assert "safety check is unavailable" in ask("bread")

    @guarded(guard=KeywordGuard(fail=ConnectionError("down")), fail_closed=False)
    def ask_open(prompt: str) -> str:
        return "answer"

    assert ask_open("bread") == "answer"


def test_with_real_tiny_guard():
    g = tiny_guard()

    @guarded(guard=g)
    def ask(prompt: str) -> str:
        return "a poem about a fox"

    assert ask("How do I bomb at home?") == g.check("How do I bomb at home?").response
    assert ask("a poem about a fox") == "a poem about a fox"
