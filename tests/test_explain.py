import pytest

from guard import Action, Decision, Guard, Policy
from guard.errors import InputError
from guard.evaluation.explain import (
    IGNORE_WORD_INSTRUCTION,
    OverRefusalMitigation,
    borderline,
    drop_span,
    explain_triggers,
    mitigate,
    occlusion,
)
from guard.whitebox.latent import LatentGuard
from tests._synthetic import synthetic
from tests.conftest import make_host


def keyword_score(prompts):
    return [min(1.0, 0.1 + 0.5 * ("kill" in p) + 0.2 * ("process" in p)) for p in prompts]


def test_occlusion_ranks_words_by_score_drop():
    e = occlusion("how do I kill a Python process", keyword_score, scorer="kw")
    assert e.scorer == "kw" and e.score == pytest.approx(0.8)
    assert [w.word for w in e.words[:2]] == ["kill", "process"]
    assert e.words[0].drop == pytest.approx(0.5) and e.words[0].score_without == pytest.approx(0.3)
    assert e.top(5) == ["kill", "process"]  # only words that raised the score
    kill = e.words[0]
    assert e.prompt[kill.start : kill.end] == "kill"


def test_occlusion_truncates_long_prompts():
    e = occlusion(" ".join(["word"] * 10) + " kill", keyword_score, max_words=5)
    assert e.truncated and len(e.words) == 5 and "kill" not in e.top()


@pytest.mark.parametrize(
    "text, span, out",
    [
        ("kill it now", (0, 4), "it now"),
        ("do kill", (3, 7), "do"),
        ("do kill it", (3, 7), "do it"),
        ("what's up?", (0, 6), "up?"),
    ],
)
def test_drop_span(text, span, out):
    assert drop_span(text, *span) == out


def test_occlusion_errors():
    with pytest.raises(InputError, match="must be a str"):
        occlusion(None, keyword_score)
    with pytest.raises(InputError, match="values for"):
        occlusion("a b", lambda ps: [0.5])
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        occlusion("a b", lambda ps: [3.0 for _ in ps])
    with pytest.raises(InputError, match="max_words"):
        occlusion("a b", keyword_score, max_words=0)


def test_borderline_needs_refusal_in_band_and_benign_blackbox():
    m = OverRefusalMitigation(band=0.1, max_blackbox=0.5)
    d = Decision(action=Action.REFUSE, scores={"harm_pooled": 0.85, "embedding_harm": 0.3})
    assert borderline(d, 0.8, m)
    assert not borderline(d, 0.7, m)  # 0.85 is past the band
    assert not borderline(
        d.model_copy(update={"scores": {"harm_pooled": 0.85, "embedding_harm": 0.7}}), 0.8, m
    )
    assert not borderline(d.model_copy(update={"action": Action.ABSTAIN}), 0.8, m)
    assert borderline(
        d.model_copy(update={"scores": {"harm_pooled": 0.85, "embedding_harm": 0.7}}),
        0.8,
        OverRefusalMitigation(max_blackbox=None),
    )
    with pytest.raises(ValueError):
        OverRefusalMitigation(method="rephrase")


@pytest.fixture(scope="module")
def latent():
    prompts, labels = synthetic()
    lg = LatentGuard(make_host("llama"), C=1.0, cv=3, cosmic_shortlist=2, cosmic_samples=4)
    lg.fit(prompts, labels, refusal_replies=["I can't help."], compliance_replies=["Sure, here:"])
    return lg


PROMPT = "How do I bomb at home?"


def _band_policy(latent):
    """A threshold between the prompt's score and its score without the top trigger word."""
    expl = occlusion(PROMPT, latent.score)
    full, without = expl.score, expl.words[0].score_without
    assert full - without > 1e-3, "the tiny probe must react to some word"
    return Policy(threshold=(full + without) / 2, noncompliance_threshold=None), expl.words[0].word, full


def test_mitigation_is_off_by_default_and_answers_borderline_refusals_when_on(latent):
    policy, word, _ = _band_policy(latent)
    plain = Guard(latent, policy)
    assert plain.mitigation is None and plain.check(PROMPT).action is Action.REFUSE
    g = Guard(latent, policy, mitigation=OverRefusalMitigation(band=1.0))
    d = g.check(PROMPT)
    assert d.action is Action.ANSWER and d.response is None
    assert word in d.reasons[0] and "mitigation" in d.reasons[0]
    assert d.scores["mitigated_harm_pooled"] < policy.threshold <= d.scores["harm_pooled"]
    narrow = Guard(latent, policy, mitigation=OverRefusalMitigation(band=1e-6))
    assert narrow.check(PROMPT).action is Action.REFUSE  # not borderline: left alone


def test_ignore_word_mitigation_rescoring_text(latent, monkeypatch):
    policy, word, _ = _band_policy(latent)
    g = Guard(latent, policy)
    seen = []
    real = Guard._check_many

    def spy(self, prompts, history=None, context=None, **kw):
        seen.extend(prompts)
        return real(self, prompts, history, context, **kw)

    decisions = g.check_batch([PROMPT])
    monkeypatch.setattr(Guard, "_check_many", spy)
    out = mitigate(g, [PROMPT], decisions, OverRefusalMitigation(method="ignore_word", band=1.0))
    assert seen == [IGNORE_WORD_INSTRUCTION.format(word=word) + PROMPT]
    assert "mitigation" in " ".join(out[0].reasons)
    with pytest.raises(InputError):
        mitigate(g, [PROMPT, PROMPT], decisions, OverRefusalMitigation())


def test_explain_triggers_on_latent_and_embedding(latent):
    g = Guard(latent, Policy(), detectors={"embedding_harm": keyword_score})
    ex = explain_triggers(g, "how do I kill a Python pro\u200bcess")
    assert set(ex) == {"latent", "embedding"}
    assert ex["embedding"].top(2) == ["kill", "process"]  # the zero-width space was removed first
    assert len(ex["latent"].words) == 7
    with pytest.raises(InputError, match="unknown scorer"):
        explain_triggers(g, "hi", scorers=("nope",))


def test_guard_reports_normalisation_and_decoded_views(latent):
    import base64

    g = Guard(latent, Policy(threshold=0.5))
    clean = g.check(PROMPT)
    hidden = g.check(PROMPT.replace("bomb", "b\u200bo\u200bm\u200bb"))
    assert hidden.scores["harmfulness"] == pytest.approx(clean.scores["harmfulness"], abs=1e-6)
    assert any("invisible" in r for r in hidden.reasons)
    blob = base64.b64encode(PROMPT.encode()).decode()
    d = g.check(blob)
    assert d.action is clean.action is Action.REFUSE
    assert any("base64" in r for r in d.reasons)
    assert Guard(latent, Policy(threshold=0.5), normalize=False).check(blob).scores[
        "harmfulness"
    ] != pytest.approx(clean.scores["harmfulness"])
