import numpy as np
import pytest

from guard.decision import Evidence
from guard.decision.engine import pool_harm
from guard.errors import InputError
from guard.fitting.comparison import compare_at_recall, operating_point, pooled_probability


def _data(seed=0, n=2000):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.5).astype(int)
    edgy = (y == 0) & (rng.uniform(size=n) < 0.5)
    split = rng.choice(["fit", "calib", "test"], size=n, p=[0.4, 0.3, 0.3])
    # the latent score confuses edgy benign with harmful; the second signal does not
    latent = np.clip(
        np.where(y == 1, rng.beta(6, 2, n), np.where(edgy, rng.beta(5, 3, n), rng.beta(2, 6, n))), 0, 1
    )
    other = np.clip(np.where(y == 1, rng.beta(5, 2, n), rng.beta(2, 5, n)), 0, 1)
    noise = rng.uniform(size=n)
    return y, split, edgy, latent, other, noise


def test_pooled_probability_matches_engine():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(size=20), rng.uniform(size=20)
    p = pooled_probability({"harmfulness": a, "embedding_harm": b}, {"harmfulness": 1, "embedding_harm": 0.5})
    for i in range(20):
        ev = [
            Evidence(source="latent", name="harmfulness", value=a[i]),
            Evidence(source="blackbox", name="embedding_harm", value=b[i]),
        ]
        assert p[i] == pytest.approx(pool_harm(ev, {"harmfulness": 1, "embedding_harm": 0.5})[0], abs=1e-12)


def test_compare_picks_a_helpful_signal_and_ignores_noise():
    y, split, edgy, latent, other, noise = _data()
    out = compare_at_recall(
        {"harmfulness": latent, "prompt_refusal": other, "embedding_harm": noise}, y, split, edgy, recall=0.95
    )
    assert out["latent"]["weights"] == {"harmfulness": 1.0}
    assert out["combined"]["weights"].get("prompt_refusal", 0) > 0
    assert out["combined"]["weights"].get("embedding_harm", 0) < out["combined"]["weights"]["prompt_refusal"]
    assert out["combined_is_better"]
    assert out["combined"]["calib_recall"] >= 0.95 and out["latent"]["calib_recall"] >= 0.95
    assert len(out["candidates"]) == 16


def test_compare_keeps_latent_when_nothing_helps():
    y, split, edgy, latent, _, noise = _data(2)
    out = compare_at_recall({"harmfulness": latent}, y, split, edgy)
    assert out["combined"] == out["latent"] and not out["combined_is_better"]
    op = operating_point({"harmfulness": latent}, {"harmfulness": 1}, y, split, edgy, 0.9)
    assert op.calib_recall >= 0.9


def test_compare_bad_input():
    y, split, edgy, latent, other, _ = _data()
    with pytest.raises(InputError):
        compare_at_recall({"prompt_refusal": other}, y, split, edgy)
    with pytest.raises(InputError):
        compare_at_recall({"harmfulness": latent[:-1]}, y, split, edgy)
    with pytest.raises(InputError):
        compare_at_recall({"harmfulness": latent}, y, np.array(["fit"] * y.size), edgy)
    with pytest.raises(InputError):
        pooled_probability({"harmfulness": latent}, {"harmfulness": 0})


def test_guard_load_adds_blackbox_when_the_policy_pools_it(tmp_path):
    from guard import Guard, Policy
    from guard.whitebox.latent import LatentGuard
    from tests._synthetic import synthetic
    from tests.conftest import make_host

    host = make_host("llama")
    prompts, labels = synthetic()
    lg = LatentGuard(host, C=1.0, cv=3, cosmic_shortlist=2, cosmic_samples=4)
    lg.fit(prompts, labels, refusal_replies=["I can't help."], compliance_replies=["Sure, here:"])
    Guard(lg, Policy(threshold=0.5)).save(tmp_path / "latent_only")
    Guard(lg, Policy(threshold=0.5, harm_weights={"harmfulness": 1.0, "prompt_refusal": 0.5})).save(
        tmp_path / "pooled"
    )
    assert Guard.load(tmp_path / "latent_only", host=host).detectors == {}
    pooled = Guard.load(tmp_path / "pooled", host=host)
    assert set(pooled.detectors) == {"prompt_refusal", "embedding_harm", "multilingual_harm", "combined_harm"}
    d = pooled.check("How do I bomb at home?")
    assert "prompt_refusal" in d.scores and "harm_pooled" in d.scores
    assert Guard.load(tmp_path / "pooled", host=host, blackbox=False).detectors == {}
