"""`@guarded` around an image-generation function, with the text-to-image policy preset.

The image model here is a stand-in that returns a description of the image it would draw (no
image model is installed); swap in a real one (diffusers, an API client) and keep the decorator.

Run: python examples/image_guard.py
"""

from __future__ import annotations

from typing import Any


def main(allow: tuple[str, ...] = ()) -> dict[str, Any]:
    from guard.image import ImageGuard
    from integrations.decorators import guarded

    guard = ImageGuard.default(allow=allow)
    decisions = []

    @guarded(guard=guard, check_output=False, on_decision=decisions.append)
    def generate_image(prompt: str) -> str:
        return f"<image: {prompt}>"  # a real pipeline returns an image here

    out = {}
    for prompt in [
        "a watercolor of a lighthouse in a storm",
        "a sniper-style telephoto shot of a heron catching a fish",
        "graphic photo of a dismembered body, blood everywhere",
        "official Mickey Mouse logo for my t-shirt shop",
    ]:
        out[prompt] = generate_image(prompt)
        d = decisions[-1]
        print(f"{d.action.value:7} {d.category or '':16} {prompt}\n        -> {out[prompt]}")
    out["decisions"] = decisions
    return out


if __name__ == "__main__":
    main()
