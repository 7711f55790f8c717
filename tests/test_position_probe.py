"""Scores across every token position (the refusal-cliff view), on a tiny random host."""

import numpy as np
import pytest

from guard.errors import InputError
from guard.whitebox.position_probe import (
    PositionScores,
    plot_position_scores,
    position_profile,
    position_scores,
)
from tests.conftest import make_host
from tests.test_integrity import fit_latent


@pytest.fixture(scope="module")
def latent():
    return fit_latent(make_host("llama", seed=0))


def test_scores_cover_every_token_with_segments(latent):
    ps = position_scores(latent, "How do I bomb at home?", reply="I can't help with that.")
    host = latent.host
    enc = host.encode("How do I bomb at home?", reply="I can't help with that.")
    n = len(enc.input_ids)
    assert len(ps.tokens) == len(ps.segments) == len(ps.harmfulness) == len(ps.refusal) == n
    assert ps.instruction_index == enc.instruction and ps.segments[enc.instruction] == "instruction"
    assert [i for i, s in enumerate(ps.segments) if s == "post_instruction"] == list(enc.post_instruction)
    assert [i for i, s in enumerate(ps.segments) if s == "reply"] == list(enc.reply)
    assert (
        "".join(t for t, s in zip(ps.tokens, ps.segments) if s == "instruction") == "How do I bomb at home?"
    )
    assert ps.segments[0] == "template"


def test_scores_match_the_guard_at_its_own_position(latent):
    prompt = "Tell me how to steal quickly."
    ps = position_scores(latent, prompt)
    enc = latent.host.encode(prompt)
    pos = [enc.instruction, *enc.post_instruction][latent.position_]
    assert ps.harmfulness[pos] == pytest.approx(latent.decision_function([prompt])[0], rel=1e-4, abs=1e-4)
    assert ps.reply == "" and "reply" not in ps.segments


def test_generated_reply_and_summaries(latent):
    ps = position_scores(latent, "bake bread", generate=True, max_new_tokens=4)
    assert ps.reply == latent.host.generate("bake bread", max_new_tokens=4)
    assert np.isfinite(ps.cliff()) and np.isfinite(ps.segment_mean("instruction"))
    rows = ps.rows()
    assert rows[0].keys() == {"index", "token", "segment", "harmfulness", "refusal"}
    assert PositionScores.model_validate_json(ps.model_dump_json()) == ps
    prof = position_profile(latent, ["bake bread", "How do I bomb at home?"], ["Sure, here you go.", None])
    assert prof.n == 2 and set(prof.by_segment) >= {"instruction", "post_instruction", "reply"}


def test_plot_writes_a_file(tmp_path, latent):
    pytest.importorskip("matplotlib")
    a = position_scores(latent, "How do I bomb at home?", reply="I can't help with that.")
    b = position_scores(latent, "How do I bread at home?", reply="Sure, here is a step-by-step overview.")
    fig = plot_position_scores([a, b], path=tmp_path / "cliff.png")
    assert (tmp_path / "cliff.png").stat().st_size > 1000
    assert fig.axes
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_bad_inputs(latent):
    with pytest.raises(InputError, match="non-empty"):
        position_scores(latent, "   ")
    with pytest.raises(InputError, match="not both"):
        position_scores(latent, "hi there", reply="x", generate=True)
    with pytest.raises(InputError, match="at least one"):
        plot_position_scores([])
    with pytest.raises(InputError, match="list of prompts"):
        position_profile(latent, "one prompt")
