"""Input checks shared by the text estimators: a clear error, or a sound, documented repair."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from classifiers.errors import ClassifierError

#: Texts longer than this are cut (the head is kept: refusals and intents show up early).
DEFAULT_MAX_CHARS = 20_000

_SURROGATES = re.compile("[\ud800-\udfff]")


def check_texts(texts: Any, name: str = "X", max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Validate a batch of texts and return them as a list of clean ``str``.

    A bare string is refused (it would be read as a list of characters). Lone surrogates
    (invalid unicode) become U+FFFD; texts over `max_chars` are cut; empty strings are kept
    (they get the model's prior).

    Args:
        texts: a list, tuple, numpy array or pandas Series of strings.
        name: the argument's name, for messages.
        max_chars: the cut length.

    Raises:
        ClassifierError: not a sequence, empty, or an item that is not text.

    Example:
        >>> check_texts(["hi", "\\ud800x"])
        ['hi', '\\ufffdx']
    """
    if isinstance(texts, (str, bytes)):
        raise ClassifierError(
            f"{name} must be a list of strings, got a single {type(texts).__name__} "
            f"{texts[:40]!r}; wrap it: [{name.lower()}]"
        )
    if isinstance(texts, np.ndarray):
        if texts.ndim != 1:
            raise ClassifierError(f"{name} must be 1-d (one text per row), got shape {texts.shape}")
        texts = texts.tolist()
    elif hasattr(texts, "tolist") and not isinstance(texts, list):  # pandas Series
        texts = texts.tolist()
    if not isinstance(texts, Iterable):
        raise ClassifierError(f"{name} must be a list of strings, got {type(texts).__name__}")
    out: list[str] = []
    for i, item in enumerate(texts):
        if isinstance(item, np.str_):
            item = str(item)
        if not isinstance(item, str):
            hint = "; decode it first: b.decode('utf-8', 'replace')" if isinstance(item, bytes) else ""
            raise ClassifierError(f"{name}[{i}] must be a str, got {type(item).__name__} {item!r:.40}{hint}")
        if len(item) > max_chars:
            item = item[:max_chars]
        out.append(_SURROGATES.sub("\ufffd", item))
    if not out:
        raise ClassifierError(f"{name} is empty; pass at least one text")
    return out


def check_y_given(y: Any, estimator: Any) -> Any:
    """Refuse a missing target before any text is read (a clear error, not a ``TypeError`` later).

    The message is scikit-learn's own (``validate_data``'s), which its checks look for.

    Example:
        >>> check_y_given([0, 1], object())
        [0, 1]
    """
    if y is None:
        raise ClassifierError(
            f"This {type(estimator).__name__} estimator requires y to be passed, but the "
            "target y is None; pass one label per sample"
        )
    return y


def check_max_chars(value: Any) -> int:
    """Check the `max_chars` parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ClassifierError(f"max_chars must be a positive int, got {value!r}")
    return int(value)


def check_pairs(X: Any) -> list[tuple[str, str]]:
    """Validate (request, reply) pairs of text: each side checked like `check_texts`.

    Raises:
        ClassifierError: not a sequence of 2-item pairs, or a side that is not text.

    Example:
        >>> check_pairs([("q", "a")])
        [('q', 'a')]
    """
    if isinstance(X, (str, bytes)) or not isinstance(X, Sequence):
        raise ClassifierError("X must be a list of (request, reply) pairs of str")
    out = []
    for i, pair in enumerate(X):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ClassifierError(f"X[{i}] must be a (request, reply) pair, got {type(pair).__name__}")
        prompt, reply = check_texts(list(pair), name=f"X[{i}]")
        out.append((prompt, reply))
    return out
