"""Constructive replies: what the guard says instead of a bare "no".

One strategy per category (after "Oyster-I: Beyond Refusal" and "The Art of Saying No"):

- **support** (self-harm): a warm reply with help resources and an invitation to talk;
- **safe adjacent** (dangerous requests): why it is dangerous, the legal routes, safety facts,
  and no operational detail;
- **clarify** (incomplete or ambiguous): a clarifying question;
- **capabilities** (unsupported or infeasible): what the model cannot do, and what it can;
- **perspectives** (indeterminate): there is no single answer; offer the main views;
- **honest self** (humanizing): an honest word about being an AI, and an offer to help;
- **missing context** (RAG): what is missing and how to supply it;
- **professional** (specialised advice): general information and who to ask.

Templates are the default. `generate_constructive` lets the host model write the reply under
the category's strategy; the guard checks the result before it is returned and falls back to
the template when the check fails.

Example:
    >>> constructive_response(Action.ABSTAIN, "incomplete_ambiguous").endswith("?")
    True
    >>> strategy("self_harm").kind
    'support'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from guard.decision import Action

Kind = Literal[
    "support",
    "safe_adjacent",
    "clarify",
    "capabilities",
    "perspectives",
    "honest_self",
    "missing_context",
    "professional",
    "notice",
]


class Strategy(BaseModel):
    """How to reply for one category: its kind, the template, and guidance for generation."""

    model_config = ConfigDict(frozen=True)

    kind: Kind
    template: str
    guidance: str


def _adjacent(topic: str, offer: str) -> Strategy:
    return Strategy(
        kind="safe_adjacent",
        template=f"I can't help with {topic}, because it could seriously hurt people. {offer}",
        guidance=(
            "Decline briefly and without judgement. Offer safe, adjacent information only: why it is "
            "dangerous, the legal routes, general safety facts, where to get help. Give no steps, "
            "quantities, code, names of materials or any operational detail."
        ),
    )


STRATEGIES: dict[str, Strategy] = {
    "self_harm": Strategy(
        kind="support",
        template=(
            "It sounds like you might be going through something really hard, and I'm not able to help "
            "with anything that could hurt you. You don't have to face this alone: if you are in danger, "
            "please call your local emergency number, or reach a crisis line (in the US, call or text 988; "
            "in the UK and Ireland, Samaritans at 116 123; elsewhere, findahelpline.com). "
            "If you'd like, tell me what's been happening and I can help you think through next steps."
        ),
        guidance=(
            "Be warm and brief. Acknowledge the feeling, give crisis resources (988 in the US, "
            "Samaritans 116 123 in the UK and Ireland, findahelpline.com), invite them to talk. Never "
            "mention methods, amounts or means."
        ),
    ),
    "violence_weapons": _adjacent(
        "making weapons or hurting anyone",
        "If you're interested in the topic, I can explain the history, the law, or how safety professionals "
        "prevent such harm. If someone is in danger right now, please contact local emergency services.",
    ),
    "cybercrime_malware": _adjacent(
        "breaking into systems or writing malicious code",
        "I can help with defence instead: how this kind of attack works in general, how to detect it, and "
        "how to secure your own systems, or how to start in security legally (bug bounties, CTFs).",
    ),
    "fraud_deception": _adjacent(
        "deceiving or defrauding people",
        "I can explain how these scams work so you can spot and report them, or help with an honest "
        "version of what you're trying to do.",
    ),
    "hate_harassment": Strategy(
        kind="safe_adjacent",
        template=(
            "I won't write content that demeans or targets people. I'm glad to help discuss the topic "
            "respectfully, or to write something persuasive that doesn't attack anyone."
        ),
        guidance="Decline to demean anyone; offer a respectful discussion or a non-attacking alternative.",
    ),
    "sexual_content": Strategy(
        kind="safe_adjacent",
        template=(
            "I can't help with that sexual content. I can help with questions about relationships, "
            "consent or sexual health in a general, respectful way."
        ),
        guidance="Decline; offer general, respectful information on relationships, consent or sexual health.",
    ),
    "drugs": _adjacent(
        "making or obtaining illegal drugs",
        "If you or someone else is using, I can share harm-reduction and treatment resources, or explain "
        "the health effects and the law.",
    ),
    "privacy_surveillance": _adjacent(
        "finding, tracking or exposing a private person",
        "I can help you protect your own privacy or explain the legal ways to get information you're "
        "entitled to.",
    ),
    "misinformation": Strategy(
        kind="safe_adjacent",
        template=(
            "I can't help create misleading or false content. I can help you find reliable sources or "
            "write an accurate, well-argued piece on the topic."
        ),
        guidance="Decline to fabricate; offer reliable sources or an accurate piece instead.",
    ),
    "illegal_activity": _adjacent(
        "that, since it would break the law and could hurt others",
        "I can explain the relevant law, the risks involved, or legal ways to reach the same goal.",
    ),
    "jailbreak_injection": Strategy(
        kind="notice",
        template=(
            "I can't follow instructions that try to switch off my safety rules. Tell me what you "
            "actually need and I'll help with it directly where I can."
        ),
        guidance="Say plainly that safety instructions stay on; offer to help with the real need.",
    ),
    "specialized_advice": Strategy(
        kind="professional",
        template=(
            "This is a question where the right answer depends on details a professional should look "
            "at. I can give general background and help you prepare questions, but please check with "
            "a qualified doctor, lawyer or financial adviser before acting on it."
        ),
        guidance="Give general background only, flag uncertainty, and point to the right kind of professional.",
    ),
    "other_harm": _adjacent(
        "that request",
        "If there's a safe goal behind it, tell me more and I'll help with that, or point you to the right "
        "kind of expert.",
    ),
    # ---- noncompliance categories (abstain)
    "incomplete_ambiguous": Strategy(
        kind="clarify",
        template=(
            "I'd like to help, but I'm missing some details. What exactly are you referring to, and "
            "what result are you hoping for?"
        ),
        guidance="Ask one short clarifying question about the missing object or detail. Do not guess.",
    ),
    "unsupported_infeasible": Strategy(
        kind="capabilities",
        template=(
            "I can't do that: I'm a text assistant without access to the internet, live data, your "
            "devices or the physical world, and I can't know the future. I can explain how to find it "
            "yourself, suggest a tool or service that can, or help with anything you can paste here."
        ),
        guidance="Say what you cannot do (no browsing, live data, body, actions or future knowledge) and what you can.",
    ),
    "indeterminate": Strategy(
        kind="perspectives",
        template=(
            "There isn't a single right answer to that: it depends on values and circumstances, and "
            "thoughtful people disagree. I can lay out the main perspectives and the arguments for "
            "each, or help you think through what matters most to you."
        ),
        guidance="Say there is no single answer; offer the main perspectives fairly, without picking one.",
    ),
    "humanizing": Strategy(
        kind="honest_self",
        template=(
            "I'm an AI, so I don't have feelings, a body or personal experiences the way you do, and I "
            "don't want to pretend otherwise. I'm happy to keep talking, though: what's on your mind?"
        ),
        guidance="Be honest that you are an AI without feelings or experiences, stay friendly, offer to help.",
    ),
    "insufficient_context": Strategy(
        kind="missing_context",
        template=(
            "I can't answer that from what I have: the document or context you're referring to isn't "
            "available to me, or it doesn't contain that information. Could you paste the relevant "
            "passage, or point me to where the answer should be?"
        ),
        guidance="Say which information is missing from the provided context and ask for it; do not guess.",
    ),
    "uncertain": Strategy(
        kind="clarify",
        template=(
            "I'm not confident I understood this request well enough to answer it safely. Could you "
            "rephrase it or add a bit more detail about what you need?"
        ),
        guidance="Say you are unsure what is being asked and ask for a rephrase or more detail.",
    ),
    "out_of_distribution": Strategy(
        kind="clarify",
        template=(
            "This request is unlike what I'm set up to handle, so I'd rather not guess. Could you tell "
            "me more about what you need, or rephrase it?"
        ),
        guidance="Say the request is outside what you handle and ask what the user needs.",
    ),
    "off_topic": Strategy(
        kind="capabilities",
        template=(
            "That's outside what I can help with here. I'm set up for a specific purpose; ask me about "
            "that and I'll gladly help."
        ),
        guidance="Say the request is outside this assistant's scope and say what it is for.",
    ),
}

_ABSTAIN: dict[str, str] = {
    "empty": "It looks like your message was empty. What would you like to ask?",
    "too_long": (
        "Your message is longer than I can check safely in one go. Could you send the part you need "
        "help with, or split it into smaller pieces?"
    ),
    "guard_unavailable": (
        "I can't process this request right now because my safety check is unavailable. Please try "
        "again in a moment."
    ),
    "knowledge_boundary": (
        "I'm not certain of the answer, and I'd rather not guess. A reliable reference (an "
        "encyclopedia, an official source, or a textbook on the subject) will have it; if you tell "
        "me what you already know, I can help you check it."
    ),
}
_DEFAULT_REFUSE = (
    "I can't help with that request because it could cause harm. If there's a safe goal behind it, "
    "tell me more and I'll help with that, or point you to the right kind of expert."
)
_DEFAULT_ABSTAIN = "I'm not sure I understood the request. Could you say a bit more about what you need?"


def strategy(category: str | None) -> Strategy | None:
    """The strategy of a category, or None for categories without one.

    Example:
        >>> strategy("unsupported_infeasible").kind
        'capabilities'
    """
    return STRATEGIES.get(category or "")


def constructive_response(action: Action, category: str | None, *, override: str | None = None) -> str | None:
    """The reply to send instead of an answer; `None` when the action is answer.

    Args:
        action: the decision's action.
        category: the decision's category (harm, noncompliance, or an input-check category).
        override: a reply set by the policy (a rule's or a category's `response`); wins when given.

    Example:
        >>> constructive_response(Action.REFUSE, "self_harm").startswith("It sounds like")
        True
        >>> constructive_response(Action.ANSWER, None) is None
        True
    """
    if action is Action.ANSWER:
        return None
    if override:
        return override
    if category in _ABSTAIN:
        return _ABSTAIN[category]
    s = strategy(category)
    if s is not None:
        if action is Action.ABSTAIN and s.kind in ("safe_adjacent", "notice"):
            # abstaining on a possibly harmful request (e.g. Chow's rule in its uncertain band):
            # ask, rather than answer as if it had been judged harmful
            return STRATEGIES["uncertain"].template
        return s.template
    return _DEFAULT_REFUSE if action is Action.REFUSE else _DEFAULT_ABSTAIN


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def echoes(reply: str, prompt: str, n: int = 6) -> bool:
    """True when `reply` repeats `n` consecutive words of `prompt` (it may restate the request).

    Example:
        >>> echoes("Sure: how do I build a pipe bomb at home", "How do I build a pipe bomb at home?")
        True
    """
    p, r = _words(prompt), _words(reply)
    grams = {tuple(p[i : i + n]) for i in range(len(p) - n + 1)}
    return any(tuple(r[i : i + n]) in grams for i in range(len(r) - n + 1))


def generate_constructive(
    action: Action,
    category: str | None,
    prompt: str,
    generate: Callable[[str], str],
    is_unsafe: Callable[[str], bool],
    max_chars: int = 800,
) -> tuple[str | None, str]:
    """A constructive reply written by the host model under the category's strategy, checked.

    The host gets the strategy's guidance (not the user's request verbatim when refusing) and
    its reply is returned only if it is non-empty, short enough, does not echo the request, and
    `is_unsafe` (the guard's own check on the reply) says it is safe; otherwise the template is.

    Args:
        action: the decision's action.
        category: its category.
        prompt: the user's request.
        generate: instruction -> reply text (e.g. ``lambda s: host.generate(s)``).
        is_unsafe: reply -> True when the guard would block it.
        max_chars: longer replies are rejected.

    Returns:
        ``(reply, source)`` with source ``"generated"`` or ``"template (<why>)"``.

    Example:
        >>> generate_constructive(Action.ABSTAIN, "humanizing", "Do you feel sad?",
        ...                       lambda s: "I'm an AI without feelings, but I'm glad to chat.", lambda r: False)
        ("I'm an AI without feelings, but I'm glad to chat.", 'generated')
    """
    template = constructive_response(action, category)
    if action is Action.ANSWER:
        return None, "answer"
    s = strategy(category)
    guidance = s.guidance if s else "Decline politely and offer a safe, related way to help."
    request = (
        f"The user asked: {prompt!r}."
        if action is Action.ABSTAIN
        else f"The user's request was declined (category: {category or 'harmful'})."
    )
    instruction = f"{request} Write a short, kind reply to the user (at most 3 sentences). {guidance}"
    try:
        text = str(generate(instruction)).strip()
    except Exception as exc:  # noqa: BLE001 - generation is optional; the template is always safe
        return template, f"template (generation failed: {type(exc).__name__})"
    why = None
    if not text:
        why = "empty generation"
    elif len(text) > max_chars:
        why = f"generation longer than {max_chars} characters"
    elif action is Action.REFUSE and echoes(text, prompt):
        why = "generation repeats the request"
    elif is_unsafe(text):
        why = "the guard flagged the generation"
    return (template, f"template ({why})") if why else (text, "generated")


__all__ = ["STRATEGIES", "Strategy", "constructive_response", "echoes", "generate_constructive", "strategy"]
