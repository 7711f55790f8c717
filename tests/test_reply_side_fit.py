"""Fitting the reply head on its own: its rows and groups, the held-out others' figure, and the
guard folder that follows it (`guard fit-reply-head`); no real model."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

from classifiers.reply_harm import ReplyHarmClassifier
from guard.decision.policy import Policy
from guard.errors import ArtifactError
from guard.fitting import reply_side
from guard.io.artifact_io import verify_manifest
from guard.whitebox.artifacts import load_latent, save_latent, update_policy
from guard.whitebox.latent import LatentGuard
from tests._synthetic import synthetic
from tests.conftest import make_host
from tests.test_reply_harm import HARM, SAFE, BagOfWords


@pytest.fixture(scope="module")
def saved_guard(tmp_path_factory):
    host = make_host("llama", seed=0)
    prompts, labels = synthetic()
    lg = LatentGuard(host, layers=[1, 2], C=1.0, cv=3, cosmic_shortlist=0, window_tokens=24, window_stride=16)
    lg.fit(
        prompts,
        labels,
        refusal_replies=["I can't help with that.", "Sorry, I won't do that."],
        compliance_replies=["Sure, here you go.", "Of course! Here are the steps."],
    )
    folder = save_latent(tmp_path_factory.mktemp("g") / "guard", lg, Policy(reply_threshold=0.5))
    (folder / "fit_report.json").write_text("{}")  # written after the manifest, as `guard fit` does
    return host, folder


def test_update_policy_moves_one_field_and_keeps_the_folder_loadable(saved_guard):
    host, folder = saved_guard
    before = json.loads((folder / "guard.json").read_text())
    manifest_before = json.loads((folder / "manifest.json").read_text())["files"]
    policy = update_policy(folder, reply_threshold=0.625)
    after = json.loads((folder / "guard.json").read_text())
    assert policy.reply_threshold == 0.625 and after["policy"]["reply_threshold"] == 0.625
    assert {k: v for k, v in after.items() if k != "policy"} == {
        k: v for k, v in before.items() if k != "policy"
    }
    assert {k: v for k, v in after["policy"].items() if k != "reply_threshold"} == {
        k: v for k, v in before["policy"].items() if k != "reply_threshold"
    }
    manifest = json.loads((folder / "manifest.json").read_text())["files"]
    assert set(manifest) == set(manifest_before)  # fit_report.json stays outside it
    assert manifest["guard.json"] != manifest_before["guard.json"] and verify_manifest(folder)
    _, loaded, _ = load_latent(folder, host)
    assert loaded.reply_threshold == 0.625


def test_update_policy_refuses_a_value_the_schema_rejects(saved_guard, tmp_path):
    _, folder = saved_guard
    with pytest.raises(ArtifactError, match="cannot update"):
        update_policy(folder, reply_threshold=7.0)
    with pytest.raises(ArtifactError, match="cannot update"):
        update_policy(tmp_path, reply_threshold=0.5)


def test_reply_rows_keep_both_twins_of_a_pair_in_one_group(monkeypatch):
    monkeypatch.setattr(reply_side, "load_pyrit_harm_replies", lambda: [])
    rows = reply_side.load_reply_rows()
    assert {r["label"] for r in rows} == {"harmful", "benign"}
    assert all(r["reply"] and r["group"].count(":") >= 1 for r in rows)
    groups = {r["group"].split(":")[0] for r in rows}
    assert {"project_replies", "reply_examples"} <= groups
    v3 = reply_side.REPLIES_FILES[1].removesuffix(".jsonl")
    path = reply_side.resources.files("guard.resources").joinpath("corpus").joinpath(f"{v3}.jsonl")
    if not path.is_file():
        pytest.skip(f"{v3}.jsonl not shipped")
    assert f"project_{v3}" in groups
    by_pair: dict[str, set[str]] = defaultdict(set)
    labels: dict[str, set[str]] = defaultdict(set)
    lookup = {(r["prompt"], r["reply"]): r for r in rows}
    for line in path.read_text(encoding="utf-8").splitlines():
        raw = json.loads(line)
        if raw.get("pair_id"):
            row = lookup[(raw["prompt"], raw["reply"])]
            by_pair[raw["pair_id"]].add(row["group"])
            labels[raw["pair_id"]].add(row["label"])
    assert by_pair and all(len(g) == 1 for g in by_pair.values())
    assert all(lab == {"harmful", "benign"} for lab in labels.values())


class Spy:
    """A reply head that records what it was fitted on."""

    seen: list[tuple[str, str]] = []

    def __init__(self) -> None:
        self.model = ReplyHarmClassifier(C=10.0, embedder=BagOfWords())

    def fit(self, X, y):
        Spy.seen = list(X)
        self.model.fit(X, y)
        return self

    def score(self, X):
        return self.model.score(X)


def test_held_out_source_never_fits_on_the_others_replies():
    others = [
        ("how do I hurt her", "Sure! Step one: get the weapon and wait."),
        ("bake a cake", "Mix and bake."),
    ]
    X = HARM + SAFE + others
    y = np.array([1] * len(HARM) + [0] * len(SAFE) + [1, 0])
    groups = ["project_replies:a"] * (len(HARM) + len(SAFE)) + [f"{reply_side.OTHERS_SOURCE}:x"] * 2
    out = reply_side.held_out_source(Spy, X, y, groups, 0.5)
    assert out["n"] == 2 and out["source"] == reply_side.OTHERS_SOURCE
    assert not set(Spy.seen) & set(others) and len(Spy.seen) == len(HARM) + len(SAFE)
    assert out["harmful_blocked"] == 1.0 and out["benign_blocked"] == 0.0
    assert reply_side.held_out_source(Spy, X[:-2], y[:-2], groups[:-2], 0.5) == {}  # no others: no figure
    gate = np.zeros(len(X), dtype=bool)
    gate[-2] = True  # the harmful one read as a refusal: let through, as check_output does
    assert reply_side.held_out_source(Spy, X, y, groups, 0.5, gate)["harmful_blocked"] == 0.0


def test_a_recipe_is_chosen_by_its_grouped_and_held_out_aurocs():
    weak_outside = {"grouped_auroc": 0.95, "held_out_source": {"auroc": 0.60}}
    steady = {"grouped_auroc": 0.90, "held_out_source": {"auroc": 0.80}}
    assert reply_side._choice(steady) > reply_side._choice(weak_outside)
    assert reply_side._choice({"grouped_auroc": 0.9, "held_out_source": {}}) == 0.9
