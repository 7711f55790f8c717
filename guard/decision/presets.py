"""Policy presets: ready-made policies for other kinds of traffic than chat requests.

`image_generation_policy` is for prompts sent to a text-to-image model: one category per kind of
disallowed image, each with its constructive reply; the categories a deployment permits
(copyrighted characters for a licensed fan-art site, say) are switched off by name.

Example:
    >>> p = image_generation_policy(threshold=0.5, allow=["copyright"])
    >>> p.category("copyright").enabled, p.category("gore").enabled
    (False, True)
"""

from __future__ import annotations

from collections.abc import Sequence

from guard.decision.policy import CategoryPolicy, Policy
from guard.errors import InputError

#: A constructive reply per disallowed image category: what can be made instead.
IMAGE_RESPONSES: dict[str, str] = {
    "sexual_explicit": "I can't create sexually explicit images. I can make a tasteful, clothed portrait, a "
    "romantic scene without nudity, or a classical-art-style figure study.",
    "sexual_minors": "I can't create that. Any sexual content involving minors is prohibited. If you know of "
    "a child at risk, contact local authorities or a child-protection hotline.",
    "gore": "I can't create graphic gore. I can make a tense, atmospheric scene that suggests danger without "
    "showing injuries, or a stylised horror poster.",
    "hate_symbols": "I can't create images that promote hatred of a group. I can make a historical or "
    "educational illustration, or a poster for tolerance and remembrance.",
    "real_person": "I can't create images that sexualise, humiliate or misrepresent a real person, or fakes "
    "meant to deceive. I can make a fictional character, or a clearly labelled caricature "
    "of a public figure's public role.",
    "copyright": "I can't reproduce that copyrighted character or logo for use as if it were official. I "
    "can design an original character or logo in a similar spirit.",
    "violence_weapons": "I can't create instructional images for making weapons or explosives. I can make a "
    "museum-style illustration or a scene from fiction without working details.",
    "self_harm": "I can't create images that depict or encourage self-harm. If you are struggling, you "
    "deserve support: a local crisis line or someone you trust can help right now.",
    "non_consensual": "I can't create voyeuristic or non-consensual images. I can make a portrait or scene "
    "where everyone is clearly taking part by choice.",
}


def image_generation_policy(
    threshold: float = 0.5, *, allow: Sequence[str] = (), category_thresholds: dict[str, float] | None = None
) -> Policy:
    """A policy for text-to-image prompts.

    Args:
        threshold: block when P(disallowed) is at or above it (the fitted one by default in
            `guard.image.ImageGuard.default`).
        allow: categories this deployment permits (their prompts are answered, with a reason).
        category_thresholds: per-category thresholds that replace `threshold`.

    Raises:
        InputError: an unknown category name.
    """
    unknown = sorted((set(allow) | set(category_thresholds or {})) - set(IMAGE_RESPONSES))
    if unknown:
        raise InputError(f"unknown image categories {unknown}; known: {sorted(IMAGE_RESPONSES)}")
    cats = {
        name: CategoryPolicy(
            response=reply, enabled=name not in set(allow), threshold=(category_thresholds or {}).get(name)
        )
        for name, reply in IMAGE_RESPONSES.items()
    }
    return Policy(threshold=threshold, categories=cats, harm_weights={"image_harm": 1.0}, reject_option=False)


__all__ = ["IMAGE_RESPONSES", "image_generation_policy"]
