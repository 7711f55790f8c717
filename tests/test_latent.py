import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from guard.errors import InputError, NotFittedError
from guard.whitebox.latent import LatentGuard, LatentScores
from tests._synthetic import synthetic

REFUSALS = ["I can't help with that.", "Sorry, I won't do that."]
COMPLIANCES = ["Sure, here is a step-by-step overview.", "Absolutely, here you go:"]


@pytest.fixture(scope="module")
def fitted(tiny_host):
    prompts, labels = synthetic()
    lg = LatentGuard(
        tiny_host, C=1.0, cv=3, cosmic_shortlist=3, cosmic_samples=6, window_tokens=24, window_stride=16
    )
    return lg.fit(prompts, labels, refusal_replies=REFUSALS, compliance_replies=COMPLIANCES)


def test_init_only_stores_params(tiny_host):
    lg = LatentGuard(tiny_host, C=0.3)
    assert lg.get_params()["C"] == 0.3
    assert not hasattr(lg, "direction_")
    with pytest.raises(NotFittedError):
        lg.score(["hi"])


def test_fit_learns_separating_direction(fitted, tiny_host):
    assert fitted.direction_.shape == (tiny_host.hidden_size,)
    assert fitted.refusal_direction_.shape == (tiny_host.hidden_size,)
    assert fitted.layer_ in fitted.candidate_layers_
    prompts = ["could you bomb it", "could you bread it", "steal my fox", "a poem about a fox"]
    p = fitted.score(prompts)
    assert p.shape == (4,) and np.all((p >= 0) & (p <= 1))
    assert p[0] > p[1]
    assert fitted.cv_auroc_ > 0.9


def test_report_gives_both_criteria_and_cosine(fitted):
    rep = fitted.report()
    assert rep["cosmic_scores"] and all(np.isfinite(v) for v in rep["cosmic_scores"].values())
    assert -1.0 <= rep["harm_refusal_cosine"] <= 1.0
    assert rep["refusal_reply_auroc"] == 1.0  # the contrastive direction separates its own replies
    assert set(rep["best_auroc_by_layer"]) == {str(l) for l in fitted.candidate_layers_}


def test_decision_function_is_raw_projection_and_score_is_monotone(fitted):
    prompts, _ = synthetic(3)
    d = fitted.decision_function(prompts)
    p = fitted.score(prompts)
    order = np.argsort(d)
    assert np.all(np.diff(p[order]) >= -1e-12)


def test_long_prompt_scored_over_windows(fitted):
    padding = " ".join(["the quick brown fox jumps over the lazy dog"] * 12)
    long_prompt = padding + " How do I bomb at home?"
    windows = fitted._windows(long_prompt)
    assert len(windows) > 1
    whole = fitted.decision_function([long_prompt])[0]
    each = fitted.decision_function(windows)
    assert whole == pytest.approx(each.max(), abs=1e-5)
    # the harmful tail is not lost past the first window
    assert whole >= fitted.decision_function([windows[0]])[0]


def test_scores_is_a_typed_result_of_one_pass(fitted):
    prompts = ["could you bomb it", "a poem about a fox"]
    s = fitted.scores(prompts)
    assert isinstance(s, LatentScores) and s.states is None
    np.testing.assert_allclose(s.harmfulness, fitted.score(prompts), atol=1e-9)
    np.testing.assert_allclose(s.harmfulness_raw, fitted.decision_function(prompts), atol=1e-9)
    np.testing.assert_allclose(s.refusal, fitted.refusal_score(prompts), atol=1e-9)
    with pytest.raises(AttributeError):
        s.harmfulness = s.refusal  # type: ignore[misc]
    with_states = fitted.scores(prompts, with_states=True)
    assert with_states.states is not None and with_states.states.shape[0] == len(prompts)
    np.testing.assert_allclose(with_states.harmfulness, s.harmfulness, atol=1e-9)


def test_bad_fit_inputs(tiny_host):
    lg = LatentGuard(tiny_host, cv=2)
    with pytest.raises(InputError):
        lg.fit("just a string", [1])
    with pytest.raises(InputError):
        lg.fit(["a", "b", "c", "d"], [1, 0, "maybe", 0])
    with pytest.raises(InputError):
        lg.fit(["a", "b"], [1, 1])
    with pytest.raises(InputError):
        lg.fit(["a", ""], [1, 0])


def test_diffmean_method(tiny_host):
    prompts, labels = synthetic()
    lg = LatentGuard(tiny_host, method="diffmean", cv=3, cosmic_shortlist=0, selection="auroc")
    lg.fit(prompts, labels, with_refusal=False)
    assert roc_auc_score(labels, lg.decision_function(prompts)) > 0.9
