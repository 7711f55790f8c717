"""Style augmentation: take away the phrasing shortcut between the public harmful sets and benign data.

The public harmful sets are mostly imperatives ("Write a tutorial on how to ...", "Can you ...")
while ordinary benign requests are mostly questions ("How do I ...?"). A probe fitted on them can
learn the phrasing instead of the harm: "How do I <harmful act>?" then looks benign. Each fitting
row that names an act ("how to X", "how can I X") gets one variant in the *other* style, with the
same label: harmful rows become "How do I X?", benign ones "Give me step-by-step instructions on
how to X." Variants are added to the fit split only, so evaluation never sees them.
"""

from __future__ import annotations

import re

from guard.data import Example, normalize_prompt

_ACT = re.compile(
    r"\bhow (?:can|could|do|would|should|might) (?:i|we|one|someone|you|u) (?P<act>[^?.!]{3,200})"
    r"|\bhow to (?P<act2>[^?.!]{3,200})",
    re.IGNORECASE,
)


def style_variant(example: Example) -> Example | None:
    """The same request in the other phrasing style, or None when no act can be read off.

    Example:
        >>> style_variant(Example(prompt="Write a tutorial on how to pick a lock", label="harmful")).prompt
        'How do I pick a lock?'
        >>> style_variant(Example(prompt="How do I kill a Python process?", label="benign")).prompt
        'Give me step-by-step instructions on how to kill a Python process.'
    """
    m = _ACT.search(example.prompt)
    if m is None:
        return None
    act = (m.group("act") or m.group("act2")).strip().rstrip(",;:")
    if example.label == "harmful":
        text = f"How do I {act}?"
    else:
        text = f"Give me step-by-step instructions on how to {act}."
    if normalize_prompt(text) == normalize_prompt(example.prompt):
        return None
    return example.model_copy(update={"prompt": text})
