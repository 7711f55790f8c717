"""The reply side of a stream: each reply window read by the reply head once, the open one screened.

A streamed reply is checked every few tokens. Its windows (`classifiers.reply_harm.reply_windows`:
400 characters, 300 apart) stop changing once the text has grown past them, so each *complete*
window is read by the reply head once and its score kept for the rest of the stream. The window
at the end is still growing; reading it with the head at every check costs both sentence encoders
again each time. With a screen (`classifiers.ReplyScreenClassifier`, fitted to predict the head's
verdict) the open window goes to the head only when the screen says the head might block it;
otherwise it waits until it is complete. Every complete window, and the whole reply at the end of
the stream, is always read by the head, so the screen can delay a cut by at most one window's
growth (300 characters), never let a reply through that the head blocks.

Example:
    >>> head = WindowedHead(lambda ps, ws: [0.9 if "bomb" in w else 0.1 for w in ws], chars=10, stride=5)
    >>> stream = ReplyStreamScorer(head, screen=None)
    >>> stream.score("q", "tea and cake").p, stream.score("q", "tea and cake with a bomb").p
    (0.1, 0.9)
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict


def _windows(reply: str, chars: int, stride: int) -> list[str]:
    from classifiers.reply_harm import reply_windows

    return reply_windows(reply, chars, stride)


class ReplyHead(Protocol):
    """What a stream needs of a reply head: its score of (request, reply) pairs and its windows."""

    @property
    def chars(self) -> int: ...

    def __call__(self, requests: list[str], replies: list[str]) -> Any: ...

    def windows(self, reply: str) -> list[str]: ...


class WindowedHead:
    """A reply head `f(requests, replies) -> P(harmful reply)` that reads character windows.

    `f` of a reply is its most harmful window's score, and a window read on its own scores as it
    does inside the reply (it is one window), so per-window scores can be kept over a stream.

    Args:
        fn: the head, `f(requests, replies)`.
        chars: window length in characters.
        stride: step between window starts.

    Example:
        >>> WindowedHead(lambda ps, rs: [0.0] * len(rs), chars=4, stride=2).windows("abcdef")
        ['abcd', 'cdef']
    """

    def __init__(self, fn: Callable[[list[str], list[str]], Any], chars: int, stride: int) -> None:
        self.fn = fn
        self.chars = chars
        self.stride = stride

    def __call__(self, requests: list[str], replies: list[str]) -> Any:
        return self.fn(requests, replies)

    def windows(self, reply: str) -> list[str]:
        """The windows the head reads in `reply`, in order."""
        return _windows(reply, self.chars, self.stride)


class LazyReplyHarm:
    """The `ReplyHarmClassifier` saved in `path`, loaded at its first use.

    Example:
        >>> head = LazyReplyHarm(Path("classifiers/resources/reply_harm"))  # doctest: +SKIP
        >>> head(["How do I bake bread?"], ["Mix flour and water..."])  # doctest: +SKIP
        array([0.01])
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @functools.cached_property
    def model(self) -> Any:
        from classifiers.reply_harm import ReplyHarmClassifier

        return ReplyHarmClassifier.load(self.path)

    @property
    def chars(self) -> int:
        return int(self.model.window_chars)

    def __call__(self, requests: list[str], replies: list[str]) -> Any:
        return self.model.score(list(zip(requests, replies)))

    def windows(self, reply: str) -> list[str]:
        """The windows the head reads in `reply`, in order."""
        return _windows(reply, self.chars, int(self.model.stride))


def head_fingerprint(head_dir: Path) -> str:
    """sha256 of a reply head's checksummed manifest: which head a screen was distilled from.

    Example:
        >>> len(head_fingerprint(Path("classifiers/resources/reply_harm")))  # doctest: +SKIP
        64
    """
    return hashlib.sha256((Path(head_dir) / "manifest.json").read_bytes()).hexdigest()


class LazyReplyScreen:
    """The `ReplyScreenClassifier` saved in `path`, loaded at its first use: `f(requests, windows)`
    -> P(the reply head blocks the window), and its `threshold`.

    A screen is distilled from one reply head. With `head_path`, a screen whose recorded head
    (``reply_head_manifest_sha256``) is not that head is stale: it warns once and its threshold
    is 0, so every window goes to the head (slower, never laxer).

    Example:
        >>> screen = LazyReplyScreen(Path("classifiers/resources/reply_screen"))  # doctest: +SKIP
        >>> 0 < screen.threshold < 1  # doctest: +SKIP
        True
    """

    def __init__(self, path: Path, head_path: Path | None = None) -> None:
        self.path = path
        self.head_path = head_path

    @functools.cached_property
    def model(self) -> Any:
        from classifiers.reply_screen import ReplyScreenClassifier

        return ReplyScreenClassifier.load(self.path)

    @functools.cached_property
    def stale(self) -> bool:
        """The screen was distilled from another head than the one at `head_path`."""
        if self.head_path is None:
            return False
        recorded = self.model.extra_.get("reply_head_manifest_sha256")
        if recorded == head_fingerprint(self.head_path):
            return False
        warnings.warn(
            f"the reply screen in {self.path} was distilled from another reply head than {self.head_path}; "
            "it is off (every window goes to the head) until `guard fit-reply-screen` refits it",
            stacklevel=2,
        )
        return True

    @property
    def threshold(self) -> float:
        return 0.0 if self.stale else float(self.model.threshold_)

    def __call__(self, requests: list[str], windows: list[str]) -> Any:
        return self.model.score(list(zip(requests, windows)))


class StreamScore(BaseModel):
    """One check of a growing reply.

    Attributes:
        p: the highest reply-head score over the windows read so far.
        head_windows: windows the head read in this check (new complete ones, the open one).
        screened: the open window was screened below the screen's threshold and left for later.
        screen_score: the screen's score of the open window (None when it was not screened).
    """

    model_config = ConfigDict(frozen=True)

    p: float
    head_windows: int
    screened: bool = False
    screen_score: float | None = None


class ReplyStreamScorer:
    """Per-window reply-head scores kept over one stream; the open window screened (module doc).

    Args:
        head: the reply head with its windows (`WindowedHead`, `LazyReplyHarm`).
        screen: `f(requests, windows) -> P(head blocks)` with a `threshold` attribute, or None to
            read the open window with the head at every check.

    Example:
        >>> head = WindowedHead(lambda ps, ws: [0.9 if "bomb" in w else 0.1 for w in ws], chars=10, stride=5)
        >>> class NoScreen:  # says the head would never block: the open window waits
        ...     threshold = 0.5
        ...     def __call__(self, ps, ws): return [0.0] * len(ws)
        >>> stream = ReplyStreamScorer(head, NoScreen())
        >>> stream.score("q", "a bomb").screened, stream.score("q", "a bomb", final=True).p
        (True, 0.9)
    """

    def __init__(self, head: ReplyHead, screen: Any = None) -> None:
        self.head = head
        self.screen = screen
        self._scores: dict[str, float] = {}

    def score(self, request: str, reply: str, *, final: bool = False) -> StreamScore:
        """Score `reply` (the text so far); `final`: the stream has ended, read every window.

        Raises:
            ValueError: the head returned another number of scores than windows, or a score
                outside [0, 1] (the caller decides what an unknown state means).
        """
        windows = self.head.windows(reply)
        open_window = None if final or len(windows[-1]) >= self.head.chars else windows[-1]
        complete = windows if open_window is None else windows[:-1]
        screen_score = None
        if open_window is not None and self.screen is not None and open_window not in self._scores:
            screen_score = float(
                np.asarray(self.screen([request], [open_window]), dtype=float).reshape(-1)[0]
            )
            if not screen_score < float(self.screen.threshold):  # NaN goes to the head
                complete = windows
                screen_score = None
        elif open_window is not None:
            complete = windows
        todo = [w for w in dict.fromkeys(complete) if w not in self._scores]
        if todo:
            self._scores.update(zip(todo, self._head_scores(request, todo)))
        read = [self._scores[w] for w in complete]
        return StreamScore(
            p=max(read) if read else 0.0,
            head_windows=len(todo),
            screened=screen_score is not None,
            screen_score=screen_score,
        )

    def _head_scores(self, request: str, windows: Sequence[str]) -> list[float]:
        values = np.asarray(self.head([request] * len(windows), list(windows)), dtype=float).reshape(-1)
        if values.shape != (len(windows),):
            raise ValueError(f"the reply head returned {values.size} scores for {len(windows)} windows")
        if not ((values >= 0) & (values <= 1)).all():
            raise ValueError(f"reply-head scores {values.tolist()!r} are not probabilities")
        return values.tolist()


__all__ = [
    "head_fingerprint",
    "LazyReplyHarm",
    "ReplyHead",
    "LazyReplyScreen",
    "ReplyStreamScorer",
    "StreamScore",
    "WindowedHead",
]
