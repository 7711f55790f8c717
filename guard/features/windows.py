"""Windows of long texts for detectors that read a bounded number of tokens.

The sentence encoders behind the black-box heads read the first 256 tokens of a text and drop
the rest, so a long prompt with its harmful request at the end would be scored on its harmless
start. Each text longer than one window is cut into overlapping windows, every window is
scored, and the most harmful window decides, as the Latent Guard does with its own windows.

Lengths are counted in *units*, a cheap stand-in for sub-word tokens that needs no tokenizer: a
word, a punctuation mark, or one character of a script written without spaces (CJK, kana,
Hangul, Thai). English word-piece tokenizers give about 1.3 tokens per word, so the default
window of 180 units stays inside a 256-token encoder for most text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from guard.errors import InputError

#: One unit: a character of a script written without spaces, a word, or a punctuation mark.
_UNIT = re.compile(
    r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]|\w+|[^\w\s]"
)


class WindowSpec(BaseModel):
    """How long texts are cut for a bounded-length detector.

    Attributes:
        size: units per window (words, punctuation marks, or characters of unspaced scripts).
        stride: units between window starts (`size - stride` units overlap, so a request cut by a
            window edge is read whole by the next window).
        max_windows: at most this many windows per text; beyond it the windows are spread evenly
            over the text, the first and the last always kept (the cost stays bounded).

    Example:
        >>> WindowSpec().size, WindowSpec().stride
        (180, 135)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(180, ge=8)
    stride: int = Field(135, ge=1)
    max_windows: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _stride_within_size(self) -> WindowSpec:
        if self.stride > self.size:
            raise ValueError(f"stride {self.stride} > size {self.size} would skip text between windows")
        return self


def text_windows(text: str, spec: WindowSpec | None = None) -> list[str]:
    """The text itself when it fits one window, else its overlapping windows, in order.

    Windows are slices of the original text (its spacing kept), cut at unit boundaries.

    Example:
        >>> text_windows("How do I bake bread?")
        ['How do I bake bread?']
        >>> parts = text_windows(" ".join(f"w{i}" for i in range(300)), WindowSpec(size=100, stride=75))
        >>> len(parts), parts[0].split()[0], parts[-1].split()[-1]
        (4, 'w0', 'w299')
    """
    spec = spec or WindowSpec()
    spans = [(m.start(), m.end()) for m in _UNIT.finditer(text)]
    if len(spans) <= spec.size:
        return [text]
    starts = list(range(0, len(spans) - spec.size + spec.stride, spec.stride))
    starts = [s for s in starts if s < len(spans)]
    if starts[-1] + spec.size < len(spans):
        starts.append(len(spans) - spec.size)
    if len(starts) > spec.max_windows:
        pick = np.linspace(0, len(starts) - 1, spec.max_windows).round().astype(int)
        starts = [starts[k] for k in sorted(set(pick.tolist()))]
    out = []
    for s in starts:
        end = min(len(spans), s + spec.size) - 1
        out.append(text[spans[s][0] : spans[end][1]])
    return out


class Windows(NamedTuple):
    """The windows of several texts, in order, and the text each came from."""

    texts: list[str]
    owner: list[int]
    n: int


def split_windows(texts: Sequence[str], spec: WindowSpec | None = None) -> Windows:
    """Every text's windows (`text_windows`), cut once for all the detectors that read them.

    Example:
        >>> split_windows(["tea", "coffee"]).owner
        [0, 1]
    """
    windows: list[str] = []
    owner: list[int] = []
    for i, t in enumerate(texts):
        parts = text_windows(t, spec)
        windows.extend(parts)
        owner.extend([i] * len(parts))
    return Windows(windows, owner, len(texts))


def windowed_max(
    fn: Callable[[list[str]], Any], texts: Sequence[str] | Windows, spec: WindowSpec | None = None
) -> list[float]:
    """`fn` applied to every window of every text in one call; each text gets its highest window score.

    A text that fits one window is scored as it is, so short prompts get exactly `fn`'s score.
    NaN in any window of a text makes that text's score NaN (an invalid state is never hidden by
    a valid window). Pass `split_windows` output instead of texts to cut them only once.

    Raises:
        InputError: `fn` returned a different number of scores than windows it was given.

    Example:
        >>> windowed_max(lambda ts: [t.count("bomb") / 3 for t in ts], ["a bomb", "tea"])
        [0.3333333333333333, 0.0]
    """
    split = texts if isinstance(texts, Windows) else split_windows(texts, spec)
    windows, owner = split.texts, split.owner
    if not windows:
        return []
    values = np.asarray([float(v) for v in fn(windows)], dtype=float)
    if values.shape != (len(windows),):
        raise InputError(f"returned {values.size} scores for {len(windows)} windows")
    out = np.full(split.n, -np.inf)
    with np.errstate(invalid="ignore"):
        np.maximum.at(out, np.asarray(owner), values)
    bad = np.zeros(split.n, dtype=bool)
    np.logical_or.at(bad, np.asarray(owner), np.isnan(values))
    out[bad] = np.nan
    return out.tolist()
