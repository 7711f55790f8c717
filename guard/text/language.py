"""Which language a text is written in, so the harm pooling can weigh its heads by language.

The harm heads do not carry across languages equally: the multilingual sentence encoder's
linear head catches more of the harmful requests written in other languages than the host's
latent head does (README, "Measured quality"), so a policy may pool other languages with
weights of their own (`guard.decision.policy.LanguagePooling`). The language is read by
langid.py (Lui and Baldwin, 2012: a naive Bayes model over byte n-grams for 97 languages,
deterministic, no model download) on the first `MAX_CHARS` characters, so the time is bounded.

Example:
    >>> detect_language("Come posso fare il pane in casa?").code
    'it'
    >>> detect_language("How do I bake banana bread?").is_other(0.5)
    False
    >>> detect_language("12345 !!!")
    LanguageReading(code='und', probability=0.0)
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: The language the default pooling is fitted for; every other reading is "other".
HOME_LANGUAGE = "en"
#: At most this many characters are read (langid's time grows with the text).
MAX_CHARS = 2000
#: The code of a text with no letters (numbers, symbols, empty).
UNDETERMINED = "und"


class LanguageReading(BaseModel):
    """A text's most likely language and langid's probability for it.

    Attributes:
        code: ISO 639-1 code (``"en"``, ``"it"``, ``"zh"``...), or ``"und"`` for a text with
            no letters.
        probability: langid's normalised probability of `code`, in [0, 1] (0 for ``"und"``).
    """

    model_config = ConfigDict(frozen=True)

    code: str
    probability: float = Field(ge=0.0, le=1.0)

    def is_other(self, min_probability: float) -> bool:
        """Whether the text reads as a language other than English with at least that probability.

        Example:
            >>> LanguageReading(code="sw", probability=0.8).is_other(0.5)
            True
            >>> LanguageReading(code="sw", probability=0.3).is_other(0.5)
            False
        """
        return self.code not in (HOME_LANGUAGE, UNDETERMINED) and self.probability >= min_probability


@functools.cache
def _identifier() -> Any:
    # langid's bundled model; loaded once, on first use (about a second)
    from langid.langid import LanguageIdentifier, model

    return LanguageIdentifier.from_modelstring(model, norm_probs=True)


def detect_language(text: str) -> LanguageReading:
    """The most likely language of `text` (its first `MAX_CHARS` characters).

    Raises:
        TypeError: `text` is not a string.

    Example:
        >>> r = detect_language("Nitawezaje kupika wali mtamu?")
        >>> r.code, r.probability > 0.5
        ('sw', True)
    """
    if not isinstance(text, str):
        raise TypeError(f"detect_language needs a str, got {type(text).__name__}")
    head = text[:MAX_CHARS]
    if not any(c.isalpha() for c in head):
        return LanguageReading(code=UNDETERMINED, probability=0.0)
    # bytes: langid would encode a lone surrogate itself and fail on it
    code, p = _identifier().classify(head.encode("utf-8", errors="replace"))
    return LanguageReading(code=str(code), probability=min(1.0, max(0.0, float(p))))


__all__ = ["HOME_LANGUAGE", "MAX_CHARS", "UNDETERMINED", "LanguageReading", "detect_language"]
