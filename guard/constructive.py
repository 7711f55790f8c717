"""Constructive replies: what the guard says instead of a bare "no".

One short strategy per category: self-harm gets support resources, dangerous how-tos get a safe
alternative, unclear requests get a clarifying question. Later policies may override them.
"""

from __future__ import annotations

from guard.decision import Action

_REFUSE: dict[str, str] = {
    "self_harm": (
        "It sounds like you might be going through something really hard, and I'm not able to help "
        "with anything that could hurt you. You don't have to face this alone: if you are in danger, "
        "please call your local emergency number, or reach a crisis line (in the US, call or text 988; "
        "in the UK and Ireland, Samaritans at 116 123; elsewhere, findahelpline.com). "
        "If you'd like, tell me what's been happening and I can help you think through next steps."
    ),
    "violence_weapons": (
        "I can't help with making weapons or hurting anyone. If you're interested in the topic, I can "
        "explain the history, the law, or how safety professionals prevent such harm. If someone is "
        "in danger right now, please contact local emergency services."
    ),
    "cybercrime_malware": (
        "I can't help break into systems or write malicious code. I can help with defence instead: "
        "how this kind of attack works in general, how to detect it, and how to secure your own systems."
    ),
    "fraud_deception": (
        "I can't help deceive or defraud people. I can explain how these scams work so you can spot "
        "and report them, or help with an honest version of what you're trying to do."
    ),
    "hate_harassment": (
        "I won't write content that demeans or targets people. I'm glad to help discuss the topic "
        "respectfully, or to write something persuasive that doesn't attack anyone."
    ),
    "sexual_content": (
        "I can't help with that sexual content. I can help with questions about relationships, "
        "consent or sexual health in a general, respectful way."
    ),
    "drugs": (
        "I can't help make or obtain illegal drugs. If you or someone else is using, I can share "
        "harm-reduction and treatment resources, or explain the health effects and the law."
    ),
    "privacy_surveillance": (
        "I can't help find, track or expose a private person. I can help you protect your own privacy "
        "or explain the legal ways to get information you're entitled to."
    ),
    "misinformation": (
        "I can't help create misleading or false content. I can help you find reliable sources or write "
        "an accurate, well-argued piece on the topic."
    ),
    "jailbreak_injection": (
        "I can't follow instructions that try to switch off my safety rules. Tell me what you actually "
        "need and I'll help with it directly where I can."
    ),
}
_DEFAULT_REFUSE = (
    "I can't help with that request because it could cause harm. If there's a safe goal behind it, "
    "tell me more and I'll help with that, or point you to the right kind of expert."
)
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
}
_DEFAULT_ABSTAIN = "I'm not sure I understood the request. Could you say a bit more about what you need?"


def constructive_response(action: Action, category: str | None) -> str | None:
    """The reply to send instead of an answer; `None` when the action is answer.

    Example:
        >>> constructive_response(Action.REFUSE, "self_harm").startswith("It sounds like")
        True
        >>> constructive_response(Action.ANSWER, None) is None
        True
    """
    if action is Action.ANSWER:
        return None
    if action is Action.REFUSE:
        return _REFUSE.get(category or "", _DEFAULT_REFUSE)
    return _ABSTAIN.get(category or "", _DEFAULT_ABSTAIN)
