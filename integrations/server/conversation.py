"""`Conversation`: what the guard reads from an OpenAI message list, and what the backend gets."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from guard.errors import InputError
from integrations.server.schemas import ChatMessage

#: OpenAI roles the host's chat template does not know, and the role each is read as.
_ROLE = {"developer": "system", "tool": "user"}


class Conversation(BaseModel):
    """A chat request split the way `Guard.check` reads it.

    Attributes:
        prompt: the last user message (what the guard decides on).
        history: the messages before it, read with it (each is also checked on its own).
        trailing: messages after the prompt (an assistant prefill, tool results), each checked
            on its own: ``(role, text)``.
        chat: every message, in order, as the backend gets it.

    Example:
        >>> c = Conversation.of([ChatMessage(role="system", content="Be brief."),
        ...                      ChatMessage(role="user", content="Hi")])
        >>> c.prompt, c.history
        ('Hi', [{'role': 'system', 'content': 'Be brief.'}])
    """

    model_config = ConfigDict(frozen=True)

    prompt: str
    history: list[dict[str, str]] | None
    trailing: list[tuple[str, str]]
    chat: list[dict[str, str]]

    @classmethod
    def of(cls, messages: Sequence[ChatMessage]) -> Conversation:
        """Split `messages` around the last user message that has text.

        Raises:
            InputError: no user message with text.
        """
        chat = []
        for m in messages:
            text = m.text
            if m.role == "tool":
                text = f"Tool result: {text}"
            chat.append({"role": _ROLE.get(m.role, m.role), "content": text})
        users = [i for i, m in enumerate(messages) if m.role == "user" and m.text.strip()]
        if not users:
            raise InputError(
                "the request has no user message with text; the guard decides on the last user "
                "message, so send one"
            )
        last = users[-1]
        return cls(
            prompt=chat[last]["content"],
            history=chat[:last] or None,
            trailing=[(m["role"], m["content"]) for m in chat[last + 1 :] if m["content"].strip()],
            chat=chat,
        )
