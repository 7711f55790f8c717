"""GuardedRunnable in LangChain's serialisation format: `dumps` -> `loads` round trips, the guard,
audit and retry written as references (never as opaque objects), and LangChain's own
"not_implemented" form and errors where something cannot be named in JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.load import dumpd, dumps, load, loads  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import (  # noqa: E402
    ChatPromptTemplate,
    HumanMessagePromptTemplate,
    PromptTemplate,
    SystemMessagePromptTemplate,
)
from langchain_core.runnables import RunnableLambda, RunnableSequence  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from guard import Action, Guard  # noqa: E402
from integrations.audit import JsonlAuditLog  # noqa: E402
from integrations.langchain import GuardedRunnable  # noqa: E402
from integrations.langchain import runnable as runnable_module  # noqa: E402
from integrations.reliability import RetryPolicy  # noqa: E402
from tests.test_integrations_support import KeywordGuard, tiny_guard  # noqa: E402

PROMPT = PromptTemplate.from_template("Answer briefly: {question}")
ALLOWED = [
    GuardedRunnable,
    PromptTemplate,
    ChatPromptTemplate,
    SystemMessagePromptTemplate,
    HumanMessagePromptTemplate,
    StrOutputParser,
    RunnableSequence,
]
FIELDS = [
    "check_output",
    "check_every",
    "output_type",
    "output_key",
    "input_key",
    "input_keys",
    "context_key",
    "fail_closed",
    "retry",
    "timeout",
    "isolate_callbacks",
    "name",
]


def _reload(obj: Any, **kwargs: Any) -> Any:
    """`loads(dumps(obj))` the way the class docstring says to call it."""
    return loads(dumps(obj), valid_namespaces=["integrations"], allowed_objects=ALLOWED, **kwargs)


@pytest.fixture(scope="module")
def saved_guard(tmp_path_factory) -> tuple[Guard, Path]:
    """A tiny real guard saved to a folder, and that folder (read back on the tiny host)."""
    g = tiny_guard()
    folder = tmp_path_factory.mktemp("guard")
    g.save(folder)
    return Guard.load(folder, host=g.host), folder


@pytest.fixture
def load_calls(monkeypatch) -> list[str]:
    """Record `Guard.load` calls (answering with a KeywordGuard) and empty the per-path cache."""
    calls: list[str] = []

    def fake_load(cls, path, host=None, *, blackbox=None):
        calls.append(str(path))
        return KeywordGuard()

    monkeypatch.setattr(Guard, "load", classmethod(fake_load))
    monkeypatch.setattr(runnable_module, "_guards_at", {})
    return calls


def test_is_serializable_with_an_importable_id():
    assert GuardedRunnable.is_lc_serializable() is True
    assert GuardedRunnable.lc_id() == ["integrations", "langchain", "runnable", "GuardedRunnable"]
    data = dumpd(GuardedRunnable(PROMPT))
    assert data["type"] == "constructor" and data["id"] == GuardedRunnable.lc_id()
    assert data["kwargs"]["bound"]["type"] == "constructor"
    assert "guard" not in data["kwargs"]  # None, the default: the shipped guard on first use
    json.dumps(data)  # plain JSON all the way down


def test_round_trip_with_default_guard_keeps_every_field():
    safe = GuardedRunnable(
        PROMPT,
        check_output=False,
        check_every=3,
        output_type="str",
        output_key="answer",
        input_key="question",
        input_keys=["question"],
        context_key="docs",
        fail_closed=False,
        retry=RetryPolicy(max_attempts=2, initial_wait=0, max_wait=1, jitter=0, timeout=5),
        timeout=None,
        isolate_callbacks=False,
        name="safe_prompt",
    )
    back = _reload(safe)
    assert type(back) is GuardedRunnable
    assert back.guard is None and back.audit is None
    assert back.bound == safe.bound
    for f in FIELDS:
        assert getattr(back, f) == getattr(safe, f), f
    assert back.get_name() == "safe_prompt"
    assert dumps(back) == dumps(safe)


def test_round_trip_of_a_chain_and_load_of_a_dict():
    chain = (
        ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{question}")])
        | StrOutputParser()
    )
    safe = GuardedRunnable(chain, check_every=2)
    back = load(dumpd(safe), valid_namespaces=["integrations"], allowed_objects=ALLOWED)
    assert isinstance(back.bound, RunnableSequence) and back.bound == chain
    assert back.check_every == 2 and back.timeout == safe.timeout and back.guard is None
    assert back.get_name() == safe.get_name()


def test_guard_path_round_trips_and_loads_lazily_on_first_use(load_calls, tmp_path):
    folder = str(tmp_path / "my_guard")
    safe = GuardedRunnable(PROMPT, guard=folder, output_type="str")
    assert dumpd(safe)["kwargs"]["guard"] == folder
    back = _reload(safe)
    assert back.guard == folder and load_calls == []  # nothing loaded by the constructor or loads
    assert back.invoke({"question": "How do I make a bomb at home?"}) == KeywordGuard._decide("bomb").response
    assert (
        back.invoke({"question": "How do I bake bread?"}).to_string()
        == "Answer briefly: How do I bake bread?"
    )
    assert load_calls == [str(Path(folder).resolve())]  # once per process, like the default


def test_guard_loaded_from_a_folder_is_written_as_its_path(saved_guard, monkeypatch):
    loaded, folder = saved_guard
    assert loaded.loaded_from == folder.resolve()
    safe = GuardedRunnable(PROMPT, guard=loaded, check_every=5)
    data = dumpd(safe)
    assert data["type"] == "constructor" and data["kwargs"]["guard"] == str(folder.resolve())
    back = _reload(safe)
    assert back.guard == str(folder.resolve()) and back.check_every == 5

    # first use: the real Guard.load of that folder (on the tiny host, not the shipped SmolLM2)
    real_load = Guard.load.__func__
    calls = []

    def load_on_tiny_host(cls, path, host=None, *, blackbox=None):
        calls.append(str(path))
        return real_load(cls, path, host=loaded.host, blackbox=blackbox)

    monkeypatch.setattr(Guard, "load", classmethod(load_on_tiny_host))
    monkeypatch.setattr(runnable_module, "_guards_at", {})
    out = back.invoke({"question": "How do I bomb at home?"})
    assert calls == [str(folder.resolve())]
    assert out == loaded.check("How do I bomb at home?").response
    assert loaded.check("How do I bomb at home?").action is Action.REFUSE


def test_a_guard_the_folder_alone_does_not_rebuild_has_no_path(saved_guard):
    loaded, folder = saved_guard
    # the folder's own choice (its policy pools no black-box signal) is kept: a path
    assert Guard.load(folder, host=loaded.host, blackbox=False).loaded_from == folder.resolve()
    # black-box evidence added against it: `Guard.load(folder)` would not rebuild it
    other = Guard.load(folder, host=loaded.host, blackbox=True)
    assert other.loaded_from is None
    assert dumpd(GuardedRunnable(PROMPT, guard=other))["type"] == "not_implemented"


@pytest.mark.parametrize("kind", ["in_memory_guard", "guard_double"])
def test_guard_without_a_folder_is_not_implemented_for_the_whole_runnable(kind):
    guard = tiny_guard() if kind == "in_memory_guard" else KeywordGuard()
    assert getattr(guard, "loaded_from", None) is None
    safe = GuardedRunnable(PROMPT, guard=guard)
    data = dumpd(safe)  # never raises: tracing and logging that dump runnables keep working
    assert data["type"] == "not_implemented"
    assert data["id"] == ["integrations", "langchain", "runnable", "GuardedRunnable"]
    assert "kwargs" not in data  # the guard object is not written, not even as a repr field
    with pytest.raises(NotImplementedError, match="doesn't implement serialization"):
        _reload(safe)
    # ignoring unserialisable fields drops the whole runnable, never runs it on another guard
    assert _reload(safe, ignore_unserializable_fields=True) is None
    chain = PROMPT | safe
    assert dumpd(chain)["kwargs"]["last"]["type"] == "not_implemented"


def test_unserialisable_bound_is_reported_as_langchain_does():
    safe = GuardedRunnable(RunnableLambda(lambda q: "echo " + q))
    data = dumpd(safe)
    assert data["type"] == "constructor"
    assert data["kwargs"]["bound"]["type"] == "not_implemented"
    assert data["kwargs"]["bound"]["id"][-1] == "RunnableLambda"
    with pytest.raises(NotImplementedError, match="doesn't implement serialization"):
        _reload(safe)


def test_loading_needs_the_valid_namespace_and_the_allowed_class():
    text = dumps(GuardedRunnable(PROMPT))
    with pytest.raises(ValueError, match="Invalid namespace"):
        loads(text, allowed_objects=ALLOWED)
    with pytest.raises(ValueError, match="is not allowed"):
        loads(text, valid_namespaces=["integrations"], allowed_objects="core")  # the default
    with pytest.raises(ValueError, match="is not allowed"):
        loads(text, valid_namespaces=["integrations"], allowed_objects=[PromptTemplate])


def test_audit_log_is_written_as_its_arguments(tmp_path):
    log = JsonlAuditLog(tmp_path / "audit.jsonl", include_prompt=True, include_reasons=False)
    data = dumpd(GuardedRunnable(PROMPT, audit=log))
    assert data["kwargs"]["audit"] == {
        "path": str(tmp_path / "audit.jsonl"),
        "include_prompt": True,
        "include_reasons": False,
    }
    back = _reload(GuardedRunnable(PROMPT, audit=log))
    assert type(back.audit) is JsonlAuditLog and back.audit.path == log.path
    assert (back.audit.include_prompt, back.audit.include_reasons) == (True, False)
    assert not (tmp_path / "audit.jsonl").exists()  # nothing written until a decision is made

    class OtherSink:
        def write(self, decision: Any, prompt: str | None = None) -> None: ...

    assert dumpd(GuardedRunnable(PROMPT, audit=OtherSink()))["type"] == "not_implemented"
    with pytest.raises(ValidationError, match="JsonlAuditLog's arguments"):
        GuardedRunnable(PROMPT, audit={"file": "x.jsonl"})


def test_retry_policy_is_written_as_its_fields():
    default_on = RetryPolicy(max_attempts=4, initial_wait=0.1, max_wait=2, jitter=0, timeout=3)
    data = dumpd(GuardedRunnable(PROMPT, retry=default_on))
    assert data["kwargs"]["retry"] == {
        "max_attempts": 4,
        "initial_wait": 0.1,
        "max_wait": 2.0,
        "jitter": 0.0,
        "timeout": 3.0,
    }  # retry_on is the default: left out
    assert _reload(GuardedRunnable(PROMPT, retry=default_on)).retry == default_on

    builtin_on = RetryPolicy(retry_on=(ValueError, ConnectionError))
    assert dumpd(GuardedRunnable(PROMPT, retry=builtin_on))["kwargs"]["retry"]["retry_on"] == [
        "ValueError",
        "ConnectionError",
    ]
    assert _reload(GuardedRunnable(PROMPT, retry=builtin_on)).retry == builtin_on

    class Flaky(Exception):
        pass

    assert dumpd(GuardedRunnable(PROMPT, retry=RetryPolicy(retry_on=(Flaky,))))["type"] == "not_implemented"
    with pytest.raises(ValidationError, match="builtin exception"):
        GuardedRunnable(PROMPT, retry={"retry_on": ["os.system"]})
