"""The reply side of a stream: each reply window read by the reply head once, the open one screened.

A streamed reply is checked every few tokens. Its windows (`classifiers.reply_harm.reply_windows`:
400 characters, 300 apart) stop changing once the text has grown past them, so each *complete*
window is read by the reply head once and its score kept for the rest of the stream. The window
at the end is still growing; reading it with the head at every check costs both sentence encoders
again each time. So the open window is looked at only every `look_every` characters of growth,
and with a screen (`classifiers.ReplyScreenClassifier`, distilled to predict the head's verdict,
`guard fit-reply-screen`) it goes to the head only when the screen flags it, and then at most
once per `head_every` unread characters; otherwise it waits until it is complete. Every complete
window, and the whole reply at the end of the stream, is always read by the head: a window the
head blocks is read at the latest when it is complete (one window's growth, 300 characters, after
its harmful text began), within `look_every + head_every` characters (160 by default) when the
screen flags it, and no reply the head blocks gets through the end. A head reading the growing
window at every check may cut earlier, or cut where the whole reply passes (a fragment can score
above the window it grows into); `guard bench` measures both (``stream_cut_*``).

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

    @property
    def stride(self) -> int: ...

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

    @property
    def stride(self) -> int:
        return int(self.model.stride)

    def __call__(self, requests: list[str], replies: list[str]) -> Any:
        return self.model.score(list(zip(requests, replies)))

    def windows(self, reply: str) -> list[str]:
        """The windows the head reads in `reply`, in order."""
        return _windows(reply, self.chars, self.stride)


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
    is 0, so every look at a growing window goes to the head (slower, never laxer).

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
            "it is off (every look goes to the head) until `guard fit-reply-screen` refits it",
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
        waiting: the open window grew too little since it was last looked at (`look_every`) or
            read (`head_every`) to be looked at or read again in this check.
        unread_chars: characters at the end of the reply the head has not read yet.
    """

    model_config = ConfigDict(frozen=True)

    p: float
    head_windows: int
    screened: bool = False
    screen_score: float | None = None
    waiting: bool = False
    unread_chars: int = 0


class ReplyStreamScorer:
    """Per-window reply-head scores kept over one stream; the open window screened (module doc).

    The growing last window is looked at (screened) once it holds `look_every` characters more
    than at the last look, and read by the head (when the screen flags it, or without a screen)
    once `head_every` characters at the end are unread. A harmful end is then read by the head
    within `head_every + look_every` characters when the screen flags it and within one window's
    growth (the windows' stride, 300 characters) when it does not; the final check reads it all.

    Args:
        head: the reply head with its windows (`WindowedHead`, `LazyReplyHarm`).
        screen: `f(requests, windows) -> P(head blocks)` with a `threshold` attribute, or None to
            read the open window with the head whenever `head_every` allows.
        look_every: characters of growth between two looks at the open window (0: every check;
            None: a fifth of the head's window stride, 60 characters for the shipped head).
        head_every: unread characters at the end before the head reads the open window (0: at
            every look; None: a third of the stride, 100 characters).

    Example:
        >>> head = WindowedHead(lambda ps, ws: [0.9 if "bomb" in w else 0.1 for w in ws], chars=10, stride=5)
        >>> class NoScreen:  # says the head would never block: the open window waits
        ...     threshold = 0.5
        ...     def __call__(self, ps, ws): return [0.0] * len(ws)
        >>> stream = ReplyStreamScorer(head, NoScreen())
        >>> stream.score("q", "a bomb").screened, stream.score("q", "a bomb", final=True).p
        (True, 0.9)
    """

    def __init__(
        self,
        head: ReplyHead,
        screen: Any = None,
        look_every: int | None = None,
        head_every: int | None = None,
    ) -> None:
        self.look_every = head.stride // 5 if look_every is None else look_every
        self.head_every = head.stride // 3 if head_every is None else head_every
        if self.look_every < 0 or self.head_every < 0:
            raise ValueError(f"look_every and head_every must be >= 0, got {look_every}, {head_every}")
        self.head = head
        self.screen = screen
        self._scores: dict[str, float] = {}
        self._looked_at = -1  # reply length at the last look at an open window
        self._read_to = 0  # the end of the text the head has read
        self._open_index = 0  # how many windows the reply had when the open one began
        self._open_reads: list[str] = []  # the beginnings of the open window the head has read
        self._refusal: tuple[int, float, float] | None = None  # (reply length, head p, refusal)

    def score(self, request: str, reply: str, *, final: bool = False) -> StreamScore:
        """Score `reply` (the text so far); `final`: the stream has ended, read every window.

        Raises:
            ValueError: the head returned another number of scores than windows, or a score
                outside [0, 1] (the caller decides what an unknown state means).
        """
        windows = self.head.windows(reply)
        open_window = None if final or len(windows[-1]) >= self.head.chars else windows[-1]
        complete = windows if open_window is None else windows[:-1]
        screen_score, waiting, earlier = None, False, []
        self._read_to = max(self._read_to, self._end_read(reply, windows, open_window is None))
        if open_window is not None:
            if len(windows) != self._open_index:  # another window is growing now
                self._open_index, self._open_reads = len(windows), []
            read_open, screen_score, waiting = self._look(request, reply, open_window)
            if read_open:
                complete = windows
            else:  # the head's reads of this window's beginning, at earlier checks, still count
                earlier = [w for w in self._open_reads if open_window.startswith(w)]
        todo = [w for w in dict.fromkeys(complete) if w not in self._scores]
        if todo:
            self._scores.update(zip(todo, self._head_scores(request, todo)))
        if open_window is not None and complete is windows:
            self._open_reads.append(open_window)
            self._read_to = len(reply)
        read = [self._scores[w] for w in dict.fromkeys([*complete, *earlier])]
        return StreamScore(
            p=max(read) if read else 0.0,
            head_windows=len(todo),
            screened=screen_score is not None,
            screen_score=screen_score,
            waiting=waiting,
            unread_chars=max(0, len(reply) - self._read_to),
        )

    def refusal(self, reply: str, p: float, fn: Callable[[list[str]], Any]) -> float:
        """`fn([reply])[0]` (P(the reply is a refusal), asked when the head blocks), kept while the
        head's score stays `p` and the reply grows by less than `look_every` characters.

        Example:
            >>> head = WindowedHead(lambda ps, ws: [0.9] * len(ws), chars=10, stride=5)
            >>> stream, calls = ReplyStreamScorer(head, look_every=8), []
            >>> fn = lambda rs: calls.append(rs) or [0.8]
            >>> stream.refusal("I can't", 0.9, fn), stream.refusal("I can't do", 0.9, fn), len(calls)
            (0.8, 0.8, 1)
        """
        kept = self._refusal
        if kept is not None and kept[1] == p and 0 <= len(reply) - kept[0] < self.look_every:
            return kept[2]
        value = float(np.asarray(fn([reply]), dtype=float).reshape(-1)[0])
        self._refusal = (len(reply), p, value)
        return value

    def _end_read(self, reply: str, windows: list[str], all_read: bool) -> int:
        """Where the text the head has read ends: the reply's end, or the last complete window's."""
        if all_read:
            return len(reply)
        if len(windows) < 2:
            return 0
        return len(reply) - len(windows[-1]) - self.head.stride + self.head.chars

    def _look(self, request: str, reply: str, open_window: str) -> tuple[bool, float | None, bool]:
        """(the head reads the open window now, its screen score when screened below the
        threshold, the open window waits without a look)."""
        if open_window in self._scores:
            return True, None, False
        if self._looked_at >= 0 and len(reply) - self._looked_at < self.look_every:
            return False, None, True
        self._looked_at = len(reply)
        if self.screen is not None:
            value = float(np.asarray(self.screen([request], [open_window]), dtype=float).reshape(-1)[0])
            if value < float(self.screen.threshold):  # NaN goes on to the head
                return False, value, False
        if len(reply) - self._read_to < self.head_every:
            return False, None, True
        return True, None, False

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
