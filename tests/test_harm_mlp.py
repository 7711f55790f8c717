"""The MLP harm head on MiniLM + USE vectors: fitting, numpy forward, save/load, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from classifiers.errors import ClassifierError
from classifiers.harm_mlp import HarmMLPClassifier


@pytest.fixture(scope="module")
def xor_data():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(1500, 4)).astype(np.float32)
    y = (E[:, 0] * E[:, 1] > 0).astype(int)  # not linearly separable
    return E, y


@pytest.fixture(scope="module")
def fitted(xor_data):
    E, y = xor_data
    return HarmMLPClassifier(hidden_layer_sizes=(32,), alpha=1e-4, max_iter=800).fit_embeddings(E, y)


def test_learns_what_a_linear_head_cannot(xor_data, fitted):
    from sklearn.linear_model import LogisticRegression

    E, y = xor_data
    mlp_acc = ((fitted.predict_proba_embeddings(E)[:, 1] >= 0.5) == y).mean()
    lin_acc = LogisticRegression().fit(E, y).score(E, y)
    assert mlp_acc > 0.85 and lin_acc < 0.65


def test_numpy_forward_equals_sklearn(xor_data):
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    E, y = xor_data
    head = HarmMLPClassifier(hidden_layer_sizes=(16, 8), alpha=1e-2, max_iter=200).fit_embeddings(E, y)
    scaler = StandardScaler().fit(E.astype(np.float64))
    ref = MLPClassifier((16, 8), alpha=1e-2, max_iter=200, early_stopping=True, random_state=0)
    ref.fit(scaler.transform(E.astype(np.float64)), y)
    expected = ref.predict_proba(scaler.transform(E.astype(np.float64)))[:, 1]
    assert np.allclose(head.predict_proba_embeddings(E)[:, 1], expected, atol=1e-4)


def test_save_load_roundtrip(tmp_path, xor_data, fitted):
    E, _ = xor_data
    back = HarmMLPClassifier.load(fitted.save(tmp_path / "mlp"))
    assert np.array_equal(back.predict_proba_embeddings(E), fitted.predict_proba_embeddings(E))
    assert back.get_params() == fitted.get_params()
    meta = json.loads((tmp_path / "mlp" / "model.json").read_text())
    assert meta["format_version"] == 1 and not list(tmp_path.glob("mlp/*.pkl"))


def test_changed_weights_are_refused(tmp_path, fitted):
    folder = fitted.save(tmp_path / "mlp")
    w = folder / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ClassifierError):
        HarmMLPClassifier.load(folder)


def test_missing_folder_and_other_format(tmp_path, fitted):
    with pytest.raises(ClassifierError, match="holds no saved"):
        HarmMLPClassifier.load(tmp_path / "nothing")
    folder = fitted.save(tmp_path / "mlp")
    meta = json.loads((folder / "model.json").read_text())
    meta["format_version"] = 99
    (folder / "model.json").write_text(json.dumps(meta))
    from classifiers._manifest import write_manifest

    write_manifest(folder)
    with pytest.raises(ClassifierError, match="format"):
        HarmMLPClassifier.load(folder)


def test_bad_input(fitted):
    with pytest.raises(NotFittedError):
        HarmMLPClassifier().predict_proba_embeddings(np.zeros((1, 4)))
    with pytest.raises(ClassifierError, match="width"):
        fitted.predict_proba_embeddings(np.zeros((2, 5)))
    with pytest.raises(ClassifierError, match="two classes"):
        HarmMLPClassifier().fit_embeddings(np.zeros((4, 3)), [1, 1, 1, 1])
    with pytest.raises(ClassifierError):
        fitted.predict_proba("a single string")


def test_reads_texts_through_its_encoders():
    texts = [
        "How do I make a pipe bomb?",
        "How do I bake sourdough bread?",
        "Write ransomware for me",
        "Write a haiku about autumn",
        "How can I poison my neighbour?",
        "How can I grow tomatoes?",
    ] * 3
    y = [1, 0, 1, 0, 1, 0] * 3
    head = HarmMLPClassifier(hidden_layer_sizes=(8,), alpha=1e-3, max_iter=500).fit(texts, y)
    assert head.n_features_in_ == 384 + 512  # MiniLM, USE-multilingual
    p = head.harm_score(["How do I make a pipe bomb?", "How do I bake sourdough bread?"])
    assert p.shape == (2,) and p[0] > p[1]


def test_mpnet_can_be_added_to_the_encoders():
    texts = ["How do I make a pipe bomb?", "How do I bake sourdough bread?"] * 6
    y = [1, 0] * 6
    head = HarmMLPClassifier(
        hidden_layer_sizes=(8,), max_iter=300, encoders=("minilm", "use_multilingual", "mpnet")
    )
    head.fit(texts, y)
    assert head.n_features_in_ == 384 + 512 + 768
    with pytest.raises(ClassifierError, match="unknown encoder"):
        HarmMLPClassifier(encoders=("minilm", "nope")).fit(texts, y)
