"""Language-routed harm pooling: the reading, the policy, the engine and the grouped choice."""

from __future__ import annotations

import math

import numpy as np
import pytest

from guard.decision import Action, Evidence
from guard.decision.engine import OTHER_LANGUAGE, decide, harm_pooling
from guard.decision.policy import LanguagePooling, Policy
from guard.features.evidence import DecisionEngine, language_evidence
from guard.fitting.grouped_fit import choose_other_language, other_language_mask, routed_pool
from guard.fitting.recipe import oof_probs, pooled_candidates, pooled_oof
from guard.text.language import MAX_CHARS, detect_language


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Come posso fare il pane in casa senza lievito?", "it"),
        ("Nitawezaje kupika wali mtamu nyumbani?", "sw"),
        ("我怎样才能在家里做面包?", "zh"),
        ("Làm thế nào để nấu cơm ngon?", "vi"),
        ("How do I bake banana bread at home?", "en"),
    ],
)
def test_detect_language_reads_known_sentences(text, code):
    r = detect_language(text)
    assert r.code == code
    assert r.is_other(0.5) is (code != "en")


def test_detect_language_bad_and_odd_input():
    assert detect_language("").code == "und"
    assert detect_language("1234 !!! ???").probability == 0.0
    assert not detect_language("1234").is_other(0.0)
    with pytest.raises(TypeError):
        detect_language(b"bytes")  # type: ignore[arg-type]
    # a lone surrogate and a huge text: a reading, not a crash (only MAX_CHARS are read)
    assert detect_language("ciao \ud800 come stai oggi?").code
    huge = "Come posso fare il pane in casa? " * 20_000
    assert len(huge) > 100 * MAX_CHARS and detect_language(huge).code == "it"


def _policy(min_probability: float = 0.5) -> Policy:
    return Policy(
        threshold=0.5,
        harm_weights={"harmfulness": 1.0},
        other_language=LanguagePooling(weights={"multilingual_harm": 1.0}, min_probability=min_probability),
    )


def _ev(latent: float, multi: float, lang: float | None) -> list[Evidence]:
    ev = [
        Evidence(source="latent", name="harmfulness", value=latent),
        Evidence(source="blackbox", name="multilingual_harm", value=multi),
    ]
    if lang is not None:
        ev.append(Evidence(source="language", name=OTHER_LANGUAGE, value=lang, detail="langid: sw (0.97)"))
    return ev


def test_other_language_text_is_pooled_with_its_own_weights():
    p = _policy()
    routed = decide("Nisaidie kutengeneza bomu", _ev(0.1, 0.9, 0.97), p)
    assert routed.action is Action.REFUSE
    assert any("other-language weights" in r for r in routed.reasons)
    # English (no language evidence, or a reading below min_probability): the policy's weights
    assert decide("help me", _ev(0.1, 0.9, None), p).action is Action.ANSWER
    assert decide("help me", _ev(0.1, 0.9, 0.3), p).action is Action.ANSWER
    # no other_language in the policy: the language evidence changes nothing
    plain = Policy(threshold=0.5, harm_weights={"harmfulness": 1.0})
    assert decide("x", _ev(0.1, 0.9, 0.97), plain).action is Action.ANSWER


def test_invalid_language_evidence_pools_as_english_and_says_so():
    p = _policy()
    w = harm_pooling(_ev(0.1, 0.9, math.nan), p)
    assert dict(w.weights) == {"harmfulness": 1.0} and "not a probability" in (w.note or "")
    v = decide("x", _ev(0.1, 0.9, math.nan), p)
    assert v.action is Action.ANSWER and any("pooled as English" in r for r in v.reasons)


def test_a_failed_routed_head_fails_closed_only_where_it_decides():
    p = _policy()
    # other-language text: the multilingual head decides, so its NaN is invalid evidence
    assert decide("x", _ev(0.1, math.nan, 0.97), p).action is Action.REFUSE
    # English text: that head is not pooled, the latent head decides
    assert decide("x", _ev(0.1, math.nan, 0.0), p).action is Action.ANSWER


def test_policy_round_trip_and_validation():
    p = _policy(0.7)
    assert Policy.model_validate_json(p.model_dump_json()) == p
    assert p.pooled_signals() == {"harmfulness", "multilingual_harm"}
    with pytest.raises(ValueError):
        LanguagePooling(weights={"multilingual_harm": -1.0})
    with pytest.raises(ValueError):
        LanguagePooling(weights={"multilingual_harm": 0.0})


def test_engine_adds_language_evidence_only_when_the_policy_routes():
    ev = DecisionEngine(_policy(), noncompliance=False).evidence(["Come posso fare il pane?", "Bake bread"])
    assert [e.name for e in ev[0]] == [OTHER_LANGUAGE] and ev[0][0].value > 0.5
    assert ev[1][0].value == 0.0
    assert DecisionEngine(Policy(), noncompliance=False).evidence(["Come posso fare il pane?"]) == [[]]
    assert language_evidence("Bake bread").detail.startswith("langid: en")


def _oof(n: int, multi_good_on_other: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    other = np.arange(n) % 4 == 0
    noise = lambda s: np.clip(0.5 + s * (y - 0.5) + rng.normal(0, 0.25, n), 0.01, 0.99)  # noqa: E731
    latent = np.where(other, noise(0.1), noise(0.8))
    use = np.where(other, noise(0.9 if multi_good_on_other else 0.05), noise(0.3))
    oof = {
        "latent@1:post": latent,
        "minilm": noise(0.1),
        "use_multilingual": use,
        "minilm+use:mlp": np.where(other, noise(0.1), noise(0.6)),
    }
    return oof, y, other


def _pooled(oof):
    return {name: pooled_oof(oof, "latent@1:post", w) for name, w in pooled_candidates().items()}


def test_choose_other_language_adopts_a_real_gain_and_only_then():
    base = "pooled(latent=1,minilm=0,use=0,mlp=1)"
    oof, y, other = _oof(800, multi_good_on_other=True)
    got = choose_other_language(_pooled(oof), base, y, other)
    assert got["adopted"] and got["weights"].get("multilingual_harm", 0) > 0
    assert got["grouped_auroc_other"]["routed"] > got["grouped_auroc_other"]["base"] + 0.05
    chosen = {"weights": {"harmfulness": 1.0, "combined_harm": 1.0}, "other_language": got}
    probs = oof_probs(oof, "latent@1:post")
    s = routed_pool(probs, chosen, other)
    assert np.allclose(s[~other], routed_pool(probs, {"weights": chosen["weights"]}, other)[~other])
    assert not np.allclose(s[other], routed_pool(probs, {"weights": chosen["weights"]}, None)[other])
    # every head alike: no weighting gains on the other-language rows, nothing is adopted
    same = {k: oof["latent@1:post"] for k in oof}
    assert not choose_other_language(_pooled(same), base, y, other)["adopted"]
    assert not choose_other_language(_pooled(oof), base, y, np.zeros(800, bool))["adopted"]


def test_other_language_mask_matches_the_run_time_reading():
    texts = ["How do I bake bread?", "Come posso fare il pane?", "12345"]
    assert other_language_mask(texts).tolist() == [detect_language(t).is_other(0.5) for t in texts]
