"""Shared helpers for the integration tests (no tests here): a tiny fitted Guard, a keyword
guard double with the Guard interface, and a scripted chat model that streams word by word."""

from __future__ import annotations

import functools
from typing import Any

from guard import Action, Decision, Guard, Policy
from guard.decision.constructive import constructive_response

HARMFUL = ("bomb", "steal", "hack", "poison")


@functools.lru_cache(maxsize=1)
def tiny_guard() -> Guard:
    """A real Guard on a tiny random llama, fitted on the synthetic keyword set (~10 s, once)."""
    from guard.whitebox.latent import LatentGuard
    from tests._synthetic import synthetic
    from tests.conftest import make_host

    prompts, labels = synthetic()
    lg = LatentGuard(make_host("llama"), C=1.0, cv=3, cosmic_shortlist=2, cosmic_samples=4)
    lg.fit(prompts, labels, refusal_replies=["I can't help."], compliance_replies=["Sure, here:"])
    return Guard(lg, Policy(threshold=0.5))


class KeywordGuard:
    """A deterministic stand-in for `Guard`: refuses text containing a harmful keyword.

    `fail` (an exception) is raised by `check`; `fail_output` only by `check_output`.
    """

    def __init__(
        self,
        fail: Exception | None = None,
        fail_output: Exception | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.fail, self.fail_output = fail, fail_output
        self.policy = policy or Policy()
        self.seen: list[tuple[str, Any, Any]] = []

    def check(self, prompt: str, history: Any = None, context: Any = None) -> Decision:
        if self.fail is not None:
            raise self.fail
        self.seen.append((prompt, history, context))
        return self._decide(prompt)

    def check_output(self, prompt: str, reply: str) -> Decision:
        if self.fail_output is not None:
            raise self.fail_output
        return self._decide(reply)

    @staticmethod
    def _decide(text: str) -> Decision:
        hit = next((w for w in HARMFUL if w in text.lower()), None)
        if hit:
            return Decision(
                action=Action.REFUSE,
                category="violence_weapons",
                scores={"harmfulness": 0.99},
                reasons=[f"keyword {hit!r}"],
                response=constructive_response(Action.REFUSE, "violence_weapons"),
            )
        return Decision(action=Action.ANSWER, scores={"harmfulness": 0.01}, reasons=["no harmful keyword"])


def scripted_chat(reply: str) -> Any:
    """A chat model that answers `reply` and streams it word by word, counting what it produced."""
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from pydantic import Field

    class ScriptedChat(BaseChatModel):
        reply: str
        calls: list = Field(default_factory=list)
        produced: list = Field(default_factory=list)

        @property
        def _llm_type(self) -> str:
            return "scripted"

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            self.calls.append(messages)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(self.reply))])

        def _stream(self, messages, stop=None, run_manager=None, **kwargs):
            self.calls.append(messages)
            words = self.reply.split(" ")
            for i, w in enumerate(words):
                self.produced.append(w)
                yield ChatGenerationChunk(
                    message=AIMessageChunk(content=w + (" " if i < len(words) - 1 else ""))
                )

    return ScriptedChat(reply=reply)
