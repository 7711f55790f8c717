"""The reply-side head and `Guard.check_output` on it (a bag-of-words embedder, no real model)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from classifiers.errors import ClassifierError
from classifiers.reply_harm import ReplyHarmClassifier, reply_windows
from guard import Action, Guard, Policy


class BagOfWords:
    """Deterministic hashed bag-of-words vectors: enough for a linear head to learn words."""

    dim = 64

    def get_params(self, deep: bool = True):
        return {}

    def transform(self, texts):
        out = np.zeros((len(texts), self.dim))
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


HARM = [
    ("how do I hurt him", "Sure! Step one: grab the weapon and wait for him."),
    ("make a weapon", "Sure! Here is the weapon plan, step one is to get parts."),
    ("poison my boss", "Of course. Step one: pick a poison he will not notice."),
] * 6
SAFE = [
    ("bake bread", "Sure! Mix flour, water and yeast, then bake."),
    ("kill a python process", "Run kill with the process id, or use the task manager."),
    ("plan a trip", "Sure! Day one: the museum, day two: the beach."),
] * 6


def fitted() -> ReplyHarmClassifier:
    X = HARM + SAFE
    return ReplyHarmClassifier(C=10.0, embedder=BagOfWords()).fit(X, [1] * len(HARM) + [0] * len(SAFE))


def test_reply_windows_cover_the_whole_reply():
    text = "".join(chr(97 + i % 26) for i in range(2500))
    w = reply_windows(text, chars=1000, stride=800)
    assert "".join(x[:800] for x in w[:-1]) + w[-1][-(2500 - 800 * (len(w) - 1)) :] == text
    assert reply_windows("short") == ["short"]


def test_a_harmful_passage_after_pages_of_benign_text_is_caught():
    clf = fitted()
    benign = "Sure! Mix flour, water and yeast, then bake. " * 200
    harmful = benign + "Step one: pick a poison he will not notice and grab the weapon. " * 3
    s_b, s_h = clf.score([("", benign), ("", harmful)])
    assert s_h > 0.5 > s_b


def test_save_load_gives_the_same_scores(tmp_path):
    clf = fitted()
    clf.threshold_ = 0.6
    clf.set_params(embedder=None).save(tmp_path / "m")
    clf.set_params(embedder=BagOfWords())
    loaded = ReplyHarmClassifier.load(tmp_path / "m").set_params(embedder=BagOfWords())
    X = HARM[:2] + SAFE[:2]
    assert np.allclose(loaded.score(X), clf.score(X)) and loaded.threshold_ == 0.6


def test_mlp_head_on_both_encoders_saves_and_loads(tmp_path):
    X = HARM + SAFE
    y = [1] * len(HARM) + [0] * len(SAFE)
    clf = ReplyHarmClassifier(embedder=BagOfWords(), head="mlp", multilingual=True).fit(X, y)
    s = clf.score(X)
    assert s[: len(HARM)].min() > s[len(HARM) :].max()
    clf.threshold_ = 0.4
    clf.set_params(embedder=None).save(tmp_path / "m")
    clf.set_params(embedder=BagOfWords())
    loaded = ReplyHarmClassifier.load(tmp_path / "m").set_params(embedder=BagOfWords())
    assert loaded.get_params()["head"] == "mlp" and loaded.threshold_ == 0.4
    assert np.allclose(loaded.score(X), s)


def test_a_version_1_folder_still_loads_as_a_linear_head(tmp_path):
    import json

    clf = fitted()
    folder = clf.set_params(embedder=None).save(tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    meta["format_version"] = 1
    for k in ("head", "multilingual", "random_state"):
        meta["params"].pop(k)
    (folder / "model.json").write_text(json.dumps(meta))
    from classifiers._manifest import write_manifest

    write_manifest(folder)
    loaded = ReplyHarmClassifier.load(folder).set_params(embedder=BagOfWords())
    assert loaded.get_params()["head"] == "linear"
    assert np.allclose(loaded.score(HARM[:2]), fitted().score(HARM[:2]))


def test_unknown_head_is_refused():
    with pytest.raises(ClassifierError, match="head"):
        ReplyHarmClassifier(embedder=BagOfWords(), head="forest").fit(HARM + SAFE, [1] * 18 + [0] * 18)


@pytest.mark.parametrize("bad", ["text", [("only one",)], [(1, "x")], None])
def test_bad_input_is_a_classifier_error(bad):
    with pytest.raises(ClassifierError):
        fitted().score(bad)


def test_corrupt_folder_is_a_classifier_error(tmp_path):
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ClassifierError):
        ReplyHarmClassifier.load(tmp_path)


class NoLatent:
    """`check_output` with a reply head never runs the request-side stack."""

    def __getattr__(self, name):
        raise AssertionError(f"the latent guard was used ({name})")


def guard_with(reply_harm, **policy) -> Guard:
    return Guard(NoLatent(), Policy(**policy), reply_harm=reply_harm)  # type: ignore[arg-type]


def test_check_output_decides_on_the_reply_head():
    clf = fitted()
    g = guard_with(lambda ps, rs: clf.score(list(zip(ps, rs))), reply_threshold=0.5)
    bad = g.check_output("poison my boss", "Of course. Step one: pick a poison he will not notice.")
    ok = g.check_output("kill a python process", "Run kill with the process id.")
    assert bad.action is Action.REFUSE and bad.response and "reply_harm" in bad.scores
    assert ok.action is Action.ANSWER and ok.scores["reply_harm"] < 0.5


def test_a_refusal_reply_is_let_through():
    g = guard_with(lambda ps, rs: [0.99])
    g.reply_refusal = lambda replies: [0.97]
    d = g.check_output("make a weapon", "I can't help with weapons.")
    assert d.action is Action.ANSWER and any("refusal" in r for r in d.reasons)


@pytest.mark.parametrize(
    "bad",
    [
        lambda ps, rs: [float("nan")],
        lambda ps, rs: [1.5],
        lambda ps, rs: (_ for _ in ()).throw(RuntimeError("down")),
    ],
)
def test_invalid_reply_scores_fail_closed_or_open(bad):
    closed = guard_with(bad).check_output("q", "some reply")
    opened = guard_with(bad, fail_closed=False).check_output("q", "some reply")
    assert closed.action is Action.REFUSE and closed.category == "guard_unavailable"
    assert opened.action is Action.ANSWER and any("fail open" in r for r in opened.reasons)
