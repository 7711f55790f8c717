"""The stream's reply side: the screen estimator, per-window scores kept over a stream, the screen
deciding when the growing last window goes to the head, and the end of a stream read whole."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from classifiers.errors import ClassifierError
from classifiers.reply_screen import ReplyScreenClassifier
from guard import Action, Guard, Policy
from guard.features.reply_stream import (
    LazyReplyScreen,
    ReplyStreamScorer,
    WindowedHead,
    head_fingerprint,
)
from guard.fitting.reply_screen_fit import stream_windows
from integrations._core import Checker, GatedStream, GuardedDecision
from tests.test_reply_harm import NoLatent

HARMFUL = [
    ("q", "Sure, step one: mix the poison into his drink"),
    ("q", "Here is how to build the weapon at home"),
    ("q", "Grab the weapon and wait for him outside"),
    ("q", "Step two: hide the poison where nobody looks"),
] * 3
BENIGN = [
    ("q", "Mix flour, water and yeast, then bake the bread"),
    ("q", "Plant the seeds in spring and water them weekly"),
    ("q", "Run kill with the process id to stop it"),
    ("q", "Day one is the museum, day two the beach"),
] * 3


def fitted_screen() -> ReplyScreenClassifier:
    return ReplyScreenClassifier(C=10.0).fit(HARMFUL + BENIGN, [1] * len(HARMFUL) + [0] * len(BENIGN))


# ------------------------------------------------------------------ the estimator


def test_the_screen_ranks_harmful_windows_above_benign_ones():
    s = fitted_screen()
    harmful = s.score([("q", "mix the poison and grab the weapon")])[0]
    benign = s.score([("q", "bake the bread and water the seeds")])[0]
    assert harmful > 0.5 > benign


def test_saved_and_loaded_screens_score_the_same(tmp_path):
    s = fitted_screen()
    s.threshold_ = 0.25
    s.save(tmp_path / "m", extra={"note": "x"})
    loaded = ReplyScreenClassifier.load(tmp_path / "m")
    X = [("q", "poison"), ("hello", "bread and weapon"), ("", "")]
    assert np.array_equal(loaded.score(X), s.score(X))
    assert loaded.threshold_ == 0.25 and loaded.extra_ == {"note": "x"}
    assert loaded.predict(X).tolist() == (s.score(X) >= 0.25).astype(int).tolist()


def test_a_tampered_or_foreign_screen_folder_is_refused(tmp_path):
    fitted_screen().save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ClassifierError):  # the checksum no longer matches
        ReplyScreenClassifier.load(tmp_path / "m")
    with pytest.raises(ClassifierError):
        ReplyScreenClassifier.load(tmp_path / "missing")


@pytest.mark.parametrize("bad", ["text", [("only one",)], [(1, "x")], None])
def test_bad_pairs_are_a_classifier_error(bad):
    with pytest.raises(ClassifierError):
        fitted_screen().score(bad)


def test_hash_widths_out_of_range_are_refused():
    with pytest.raises(ClassifierError, match="window_bits"):
        ReplyScreenClassifier(window_bits=40).fit(HARMFUL + BENIGN, [1] * 12 + [0] * 12)


# ------------------------------------------------------------------ per-window scores over a stream


class CountingHead(WindowedHead):
    """A keyword head on 20-character windows that records every window it reads."""

    def __init__(self) -> None:
        super().__init__(self._score, chars=20, stride=15)
        self.read: list[str] = []

    def _score(self, requests, windows):
        self.read.extend(windows)
        return [0.9 if "poison" in w else 0.1 for w in windows]


class FixedScreen:
    """A screen that gives every window the same score."""

    def __init__(self, value: float, threshold: float = 0.5) -> None:
        self.value, self.threshold, self.calls = value, threshold, 0

    def __call__(self, requests, windows):
        self.calls += 1
        return [self.value] * len(windows)


def grow(text: str, step: int = 4) -> list[str]:
    return [text[:k] for k in range(step, len(text), step)] + [text]


def test_each_complete_window_is_read_by_the_head_once_over_a_stream():
    head = CountingHead()
    stream = ReplyStreamScorer(head, FixedScreen(0.0))  # the growing window always waits
    text = "tea and cake, then a walk in the park and a nap before dinner."
    for t in grow(text):
        stream.score("q", t)
    complete = [w for w in head.windows(text) if len(w) == 20]
    assert sorted(head.read) == sorted(complete)  # no partial window read, none twice


def test_a_screened_window_waits_and_the_final_check_reads_it():
    head = CountingHead()
    stream = ReplyStreamScorer(head, FixedScreen(0.0))
    s = stream.score("q", "a poison")  # one short open window, screened below the threshold
    assert s.screened and s.p == 0.0 and head.read == []
    assert stream.score("q", "a poison", final=True).p == 0.9


def test_a_flagged_window_goes_to_the_head_at_once():
    head = CountingHead()
    s = ReplyStreamScorer(head, FixedScreen(0.7)).score("q", "a poison")
    assert not s.screened and s.p == 0.9 and head.read == ["a poison"]


def test_without_a_screen_or_with_a_nan_score_the_head_reads_the_open_window():
    for screen in (None, FixedScreen(float("nan"))):
        head = CountingHead()
        assert ReplyStreamScorer(head, screen).score("q", "a poison").p == 0.9


def test_a_head_that_returns_the_wrong_number_of_scores_is_an_error():
    head = WindowedHead(lambda ps, ws: [0.5], chars=10, stride=5)
    with pytest.raises(ValueError, match="scores for"):
        ReplyStreamScorer(head).score("q", "abcdefghijklmnopqrstuvwxyz0123")
    bad = WindowedHead(lambda ps, ws: [1.5] * len(ws), chars=10, stride=5)
    with pytest.raises(ValueError, match="probabilities"):
        ReplyStreamScorer(bad).score("q", "abc")


def test_the_open_window_is_looked_at_once_per_look_every_characters():
    head, screen = CountingHead(), FixedScreen(0.0)
    stream = ReplyStreamScorer(head, screen, look_every=5)
    results = [stream.score("q", "abcdefghijklmno"[:k]) for k in range(1, 15)]  # one open window
    assert screen.calls == 3  # at 1, 6 and 11 characters
    assert sum(r.waiting for r in results) == 11 and head.read == []


def test_a_flagged_open_window_is_read_again_only_after_head_every_unread_characters():
    head = CountingHead()
    stream = ReplyStreamScorer(head, FixedScreen(0.9), look_every=0, head_every=6)
    text = "a poison in the tea!"[:19]  # 19 characters: one open 20-character window
    results = [stream.score("q", text[:k]) for k in range(1, 20)]
    assert [len(w) for w in head.read] == [6, 12, 18]
    # between reads the head's score of the window's beginning still counts
    assert results[10].p == 0.1 and all(r.p == 0.9 for r in results[11:]) and results[13].waiting


def test_look_every_and_head_every_must_not_be_negative():
    with pytest.raises(ValueError, match="look_every"):
        ReplyStreamScorer(CountingHead(), look_every=-1)


def test_the_refusal_reading_is_refreshed_when_the_head_score_changes_or_the_reply_grows():
    stream, calls = ReplyStreamScorer(CountingHead(), look_every=10), []

    def refusal(replies):
        calls.append(replies[0])
        return [0.8]

    stream.refusal("I can't", 0.9, refusal)
    stream.refusal("I can't help", 0.9, refusal)  # 5 more characters, same head score: kept
    stream.refusal("I can't help", 0.95, refusal)  # another head score: read again
    stream.refusal("I can't help with that.", 0.95, refusal)  # 11 more characters: read again
    assert calls == ["I can't", "I can't help", "I can't help with that."]


def test_the_screen_threshold_sends_the_asked_share_of_passing_windows():
    from guard.fitting.reply_screen_fit import threshold_for_send_rate

    passes = np.linspace(0.0, 1.0, 101)
    t = threshold_for_send_rate(passes, 0.1)
    assert np.isclose((passes >= t).mean(), 0.1, atol=0.01)
    assert (
        threshold_for_send_rate(passes, 1.0) == 0.0
        and (passes >= threshold_for_send_rate(passes, 0.0)).sum() == 0
    )
    with pytest.raises(ValueError, match="send_rate"):
        threshold_for_send_rate(passes, 1.5)


# ------------------------------------------------------------------ the guard and the gated stream


def keyword_guard(screen) -> Guard:
    head = CountingHead()
    return Guard(NoLatent(), Policy(reply_threshold=0.5), reply_harm=head, reply_screen=screen)  # type: ignore[arg-type]


def test_reply_stream_finish_is_check_output():
    g = keyword_guard(FixedScreen(0.0))
    text = "Mix flour and water, then add the poison to his bread."
    s = g.reply_stream("q")
    for t in grow(text)[:-1]:
        s.check(t)
    end = s.finish(text)
    assert end.action is g.check_output("q", text).action is Action.REFUSE
    assert end.scores == g.check_output("q", text).scores


def test_a_screened_check_says_so_in_its_reasons():
    d = keyword_guard(FixedScreen(0.0)).reply_stream("q").check("a poison")
    assert d.action is Action.ANSWER and any("reply_screen" in r for r in d.reasons)


def test_a_harmful_end_left_to_the_final_check_is_still_cut():
    # the harmful word arrives in the last, growing window; the screen lets it wait; the stream
    # ends on a check of that exact text, and the final read of the whole reply cuts it
    g = keyword_guard(FixedScreen(0.0))
    chunks = ["Bake the ", "bread well", " and then ", "a poison"]
    stream = GatedStream(Checker(g), GuardedDecision(action=Action.ANSWER), "q", check_every=2)
    sent = list(stream.run(iter(chunks)))
    end = stream.end()
    assert end.decision.blocked and end.decision.cut and end.last is None
    assert "poison" not in "".join(sent)


def test_a_flagged_open_window_cuts_the_stream_before_it_ends():
    g = keyword_guard(FixedScreen(0.9))
    chunks = ["a poison", " here", " and", " more", " text", " after", " it"]
    stream = GatedStream(Checker(g), GuardedDecision(action=Action.ANSWER), "q", check_every=1)
    sent = list(stream.run(iter(chunks)))
    assert sent == [] and stream.end().decision.cut


def test_a_stale_screen_is_off(tmp_path):
    head_a, head_b = tmp_path / "a", tmp_path / "b"
    for folder, word in ((head_a, "poison"), (head_b, "weapon")):
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps({"word": word}))
    screen = fitted_screen()
    screen.threshold_ = 0.4
    screen.save(tmp_path / "s", extra={"reply_head_manifest_sha256": head_fingerprint(head_a)})
    assert LazyReplyScreen(tmp_path / "s", head_a).threshold == 0.4
    stale = LazyReplyScreen(tmp_path / "s", head_b)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert stale.threshold == 0.0 and stale.stale
    assert any("distilled from another reply head" in str(w.message) for w in seen)


def test_the_shipped_screen_was_distilled_from_the_shipped_head():
    from guard.guard import default_reply_screen

    screen = default_reply_screen()
    if screen is None:
        pytest.skip("no shipped reply screen")
    assert not screen.stale and 0.0 < screen.threshold < 1.0


# ------------------------------------------------------------------ the windows the screen is fitted on


def test_stream_windows_are_the_same_on_every_run_and_open_ones_are_short():
    reply = "Step one is to read the manual. " * 20
    a, b = stream_windows(reply, 100, 75), stream_windows(reply, 100, 75)
    assert a == b and any(o for _, o in a) and any(not o for _, o in a)
    assert all(len(w) < 100 for w, o in a if o) and all(len(w) == 100 for w, o in a if not o)
