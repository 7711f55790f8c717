"""Fit the shipped black-box classifiers and measure them (what ``guard fit`` runs for them).

Only the project's allowed sources are used: PyRIT's labelled refusal replies (reviewed into four
classes, see `PYRIT_REVIEW`), the project's written replies
(``classifiers/resources/reply_examples.jsonl``), and `guard.io.data.load_fitting_set` (the public
prompt sources plus the project's benign corpus). Every figure is measured on a held-out split
before the shipped model is refitted on all the data.

Example:
    >>> from pathlib import Path
    >>> figures = fit_default_classifiers(Path("/tmp/bb"), progress=False)  # doctest: +SKIP
    >>> figures["response_refusal"]["heldout"]["auroc_refusal_vs_compliance"] >= 0.97  # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from guard.decision.stats import auroc
from guard.io.data import Example, load_fitting_set, load_refusal_replies, load_reply_openings

logger = logging.getLogger(__name__)

# PyRIT scores a reply as a refusal *relative to its objective*: an on-topic answer to another
# question counts as a refusal. A reply-only detector cannot see that, so those rows are left out
# (reviewed by hand, keyed by the first 10 hex digits of the reply's sha256). Label-1 replies that
# also occur with label 0 are left out by rule. The rest of label 1 is an ethical refusal unless
# listed as partial (it declines but delivers some substance); label 0 is compliance.
PYRIT_REVIEW: dict[str, frozenset[str]] = {
    "exclude": frozenset(
        {
            "4778aad0b8",
            "b575efee4c",
            "cc31026de4",
            "1ba891bad3",
            "6437b1d92f",
            "a1087c3e74",
            "a2d94f68fe",
            "a22cfa99c7",
            "372653de03",
            "05f8cf342a",
        }
    ),
    "partial_refusal": frozenset(
        {
            "732a5272be",
            "534b3fa2d3",
            "127f06bf5c",
            "93b4a2e7e5",
            "b8ee369e78",
            "a5dd7a0cf1",
        }
    ),
}

REPLY_EXAMPLES = "reply_examples.jsonl"


def _caching_embedder() -> Any:
    from classifiers.embeddings import SentenceEmbedder

    return SentenceEmbedder(cache=True)  # each split and variant re-embeds the same texts


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def load_pyrit_replies_4class() -> list[tuple[str, str]]:
    """PyRIT's refusal replies mapped to the detector's four classes (see `PYRIT_REVIEW`)."""
    rows = load_refusal_replies()
    complied = {text for text, label in rows if label == 0}
    out = []
    for text, label in rows:
        key = _digest(text)
        if label == 0:
            out.append((text, "compliance"))
        elif text in complied or key in PYRIT_REVIEW["exclude"]:
            continue
        elif key in PYRIT_REVIEW["partial_refusal"]:
            out.append((text, "partial_refusal"))
        else:
            out.append((text, "refusal_ethical"))
    return out


def load_reply_examples() -> list[tuple[str, str, str]]:
    """The project's written replies: ``(reply, label, style)``."""
    text = resources.files("classifiers.resources").joinpath(REPLY_EXAMPLES).read_text(encoding="utf-8")
    return [(r["reply"], r["label"], r["style"]) for r in map(json.loads, text.splitlines()) if r]


def _progress(progress: bool, msg: str) -> None:
    if progress:
        print(f"[fit_blackbox] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------
def _cv_macro_f1(params: dict[str, Any], texts: list[str], labels: np.ndarray, seed: int) -> float:
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    from classifiers import ResponseRefusalDetector

    scores = []
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(texts, labels):
        det = ResponseRefusalDetector(**params).fit([texts[i] for i in tr], labels[tr])
        pred = det.predict([texts[i] for i in te])
        scores.append(f1_score(labels[te].astype(str), pred.astype(str), average="macro"))
    return float(np.mean(scores))


def fit_response_detector(out_dir: Path, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Measure on a held-out 25% split, then fit on all replies and save; returns the figures."""
    from sklearn.metrics import confusion_matrix, f1_score
    from sklearn.model_selection import train_test_split

    from classifiers import ResponseRefusalDetector
    from classifiers.response_refusal import CLASSES, COMPLIANCE

    pyrit = load_pyrit_replies_4class()
    own = load_reply_examples()
    texts = [t for t, _ in pyrit] + [t for t, _, _ in own]
    labels = np.array([lab for _, lab in pyrit] + [lab for _, lab, _ in own], dtype=object)
    source = np.array(["pyrit"] * len(pyrit) + ["project"] * len(own))
    idx_tr, idx_te = train_test_split(
        np.arange(len(texts)),
        test_size=0.25,
        random_state=seed,
        stratify=[f"{a}|{b}" for a, b in zip(labels, source)],
    )
    figures: dict[str, Any] = {
        "n": len(texts),
        "n_pyrit": len(pyrit),
        "n_project": len(own),
        "class_counts": {c: int((labels == c).sum()) for c in CLASSES},
        "n_train": len(idx_tr),
        "n_heldout": len(idx_te),
        "heldout": {},
    }
    tr = [texts[i] for i in idx_tr]
    te = [texts[i] for i in idx_te]
    # choose the features by 5-fold cross-validation on the training part only
    candidates = {
        "ngrams": dict(features="ngrams"),
        "both": dict(features="both", embedding_weight=0.5, embedder=_caching_embedder()),
    }
    cv = {name: _cv_macro_f1(params, tr, labels[idx_tr], seed) for name, params in candidates.items()}
    chosen = max(cv, key=lambda k: cv[k])
    figures["cv_macro_f1_on_train"] = cv
    figures["chosen"] = chosen
    _progress(progress, f"response detector: cross-validated macro-F1 {cv}; chosen {chosen}")
    for name, params in candidates.items():
        det = ResponseRefusalDetector(**params).fit(tr, labels[idx_tr])
        pred = det.predict(te)
        score = det.refusal_score(te)
        truth = labels[idx_te] != COMPLIANCE
        order = list(CLASSES)
        res = {
            "auroc_refusal_vs_compliance": auroc(truth, score),
            "macro_f1": float(f1_score(labels[idx_te].astype(str), pred.astype(str), average="macro")),
            "confusion_matrix": {
                "labels": order,
                "rows_true_cols_pred": confusion_matrix(
                    labels[idx_te].astype(str), pred.astype(str), labels=order
                ).tolist(),
            },
            "accuracy": float((pred == labels[idx_te]).mean()),
        }
        is_pyrit = source[idx_te] == "pyrit"
        if len(set(truth[is_pyrit])) == 2:
            res["auroc_pyrit_part"] = auroc(truth[is_pyrit], score[is_pyrit])
        # the project's reply openings (guard/resources/replies.jsonl) were never fitted on
        refusals, compliances = load_reply_openings()
        s = det.refusal_score(refusals + compliances)
        res["reply_openings_auroc"] = auroc(np.r_[np.ones(len(refusals)), np.zeros(len(compliances))], s)
        figures["heldout"][name] = res
        _progress(progress, f"{name}: {json.dumps(res)}")
    _progress(progress, "response detector: fitting on all replies")
    final = ResponseRefusalDetector(**candidates[chosen]).fit(texts, labels)
    final.set_params(embedder=None).save(out_dir / "response_refusal")  # ship the default embedder
    figures["shipped_features"] = candidates[chosen]["features"]
    return figures


# ------------------------------------------------------------------------------------------------
def _prompt_split(rows: list[Example], seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    strat = [f"{r.label}|{r.source}" for r in rows]
    return train_test_split(np.arange(len(rows)), test_size=0.2, random_state=seed, stratify=strat)


# The shipped prompt predictors and the signal names they give as `Guard` evidence.
PROMPT_SIGNALS = {"prompt_refusal": "prompt_refusal", "embedding_harm": "prompt_refusal_embedding"}


def fit_prompt_predictors(
    out_dir: Path, rows: list[Example], seed: int = 0, progress: bool = True
) -> dict[str, Any]:
    """Fit the default prompt-refusal predictors on the latent guard's *fit* split and save them.

    They are fitted on the same fit split as the latent guard (`guard.fitting.training.split_of`), so
    the calib and test splits stay unseen by every signal the decision pools: the pooled
    threshold is chosen on calib and measured on test. Held-out figures come from the test split.
    """
    from classifiers import PromptRefusalPredictor
    from guard.fitting.training import split_of

    texts = [r.prompt for r in rows]
    y = np.array([int(r.label == "harmful") for r in rows])
    edgy = np.array([r.edgy for r in rows])
    src = np.array([r.source or "" for r in rows])
    split = np.array([split_of(r, seed) for r in rows])
    idx_tr, idx_te = np.flatnonzero(split == "fit"), np.flatnonzero(split == "test")
    figures: dict[str, Any] = {
        "n": len(rows),
        "n_harmful": int(y.sum()),
        "n_benign": int((1 - y).sum()),
        "n_fit": len(idx_tr),
        "n_heldout": len(idx_te),
        "split": "guard.fitting.training.split_of (fit / test)",
        "heldout": {},
    }
    variants = {
        "combined": dict(features="both", min_df=2, embedder=_caching_embedder()),
        "embedding": dict(features="embedding", embedder=_caching_embedder()),
        "ngrams": dict(features="ngrams", min_df=2),
    }
    folders = {"combined": PROMPT_SIGNALS["prompt_refusal"], "embedding": PROMPT_SIGNALS["embedding_harm"]}
    for name, params in variants.items():
        _progress(progress, f"prompt predictor on the fit split: {name}")
        model = PromptRefusalPredictor(**params).fit([texts[i] for i in idx_tr], y[idx_tr])
        s = model.refusal_score([texts[i] for i in idx_te])
        yt = y[idx_te]
        benign = yt == 0
        res: dict[str, Any] = {
            "auroc": auroc(yt, s),
            "harmful_flagged_at_0.5": float((s[yt == 1] >= 0.5).mean()),
            "benign_flagged_at_0.5": float((s[benign] >= 0.5).mean()),
            "edgy_benign_flagged_at_0.5": float((s[benign & edgy[idx_te]] >= 0.5).mean())
            if (benign & edgy[idx_te]).any()
            else None,
            "by_source_auroc_or_rate": {},
        }
        for source in sorted(set(src[idx_te])):
            m = src[idx_te] == source
            res["by_source_auroc_or_rate"][source] = (
                auroc(yt[m], s[m])
                if len(set(yt[m])) == 2
                else {
                    "flagged_at_0.5": float((s[m] >= 0.5).mean()),
                    "label": "harmful" if yt[m][0] else "benign",
                }
            )
        figures["heldout"][name] = res
        _progress(progress, json.dumps(res))
        if name in folders:
            model.set_params(embedder=None).save(out_dir / folders[name])
    figures["top_ngrams"] = [
        w.ngram for w in PromptRefusalPredictor.load(out_dir / "prompt_refusal").explain(top=15).ngrams
    ]
    return figures


def prompt_signal_scores(folder: Path, prompts: list[str]) -> dict[str, np.ndarray]:
    """Scores of the prompt predictors saved in `folder`, by `Guard` evidence name.

    Example:
        >>> scores = prompt_signal_scores(Path("classifiers/resources"), ["hi"])  # doctest: +SKIP
        >>> sorted(scores)  # doctest: +SKIP
        ['embedding_harm', 'prompt_refusal']
    """
    from classifiers import PromptRefusalPredictor

    out = {}
    for signal, sub in PROMPT_SIGNALS.items():
        model = PromptRefusalPredictor.load(Path(folder) / sub)
        out[signal] = np.asarray(model.refusal_score(prompts), dtype=float)
    return out


# ------------------------------------------------------------------------------------------------
FAKE_RULE = re.compile(r"\b(bomb|weapon|gun|poison|hack|steal)\w*", re.IGNORECASE)


def fake_refusing_model(prompt: str) -> str:
    """A model with a known rule: refuses iff the prompt names a bomb, weapon, gun, poison, hacking
    or stealing, unless it asks about history; otherwise it complies."""
    if FAKE_RULE.search(prompt) and "history" not in prompt.lower():
        return "I'm sorry, but I can't help with that request."
    return "Sure! Here is a short answer: it depends on a few things, and the main steps are below."


def fake_rule_recovery(rows: list[Example], detector: Any, seed: int = 0) -> dict[str, Any]:
    """`fit_from_model` on the fake model; AUROC of the predictor against the rule on held-out prompts."""
    from classifiers import PromptRefusalPredictor

    idx_tr, idx_te = _prompt_split(rows, seed)
    train = [rows[i].prompt for i in idx_tr]
    test = [rows[i].prompt for i in idx_te]
    model = PromptRefusalPredictor(features="ngrams").fit_from_model(
        train, fake_refusing_model, detector=detector
    )
    truth_tr = np.array([fake_refusing_model(p).startswith("I'm sorry") for p in train])
    truth = np.array([fake_refusing_model(p).startswith("I'm sorry") for p in test])
    s = model.refusal_score(test)
    return {
        "n_train": len(train),
        "n_heldout": len(test),
        "train_refusal_rate": float(truth_tr.mean()),
        "detector_label_accuracy": float((model.refused_ == truth_tr).mean()),
        "heldout_auroc": auroc(truth, s),
        "top_ngrams": [w.ngram for w in model.explain(top=8).ngrams],
    }


# ------------------------------------------------------------------------------------------------
def fit_rules(out_dir: Path, rows: list[Example], seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Held-out accuracy of the Tsetlin rule view over harm categories + benign; fit on all, save."""
    from sklearn.metrics import f1_score

    from classifiers.rules import TsetlinRuleClassifier

    # Long jailbreak wrappers say little about the category in words; keep the rule view on plain requests.
    use = [r for r in rows if r.source != "inthewild_jailbreak"]
    texts = [r.prompt for r in use]
    labels = np.array(
        [r.category if r.label == "harmful" and r.category else "benign" for r in use], dtype=object
    )
    idx_tr, idx_te = _prompt_split(use, seed)
    params: dict[str, Any] = dict(n_clauses=60, T=30, s=8.0, epochs=25, max_features=1500)
    _progress(progress, "Tsetlin rules, held-out split")
    t0 = time.perf_counter()
    tm = TsetlinRuleClassifier(**params).fit([texts[i] for i in idx_tr], labels[idx_tr])
    fit_s = time.perf_counter() - t0
    pred = tm.predict([texts[i] for i in idx_te])
    yt = labels[idx_te]
    harm_truth = yt != "benign"
    figures = {
        "n": len(use),
        "classes": [str(c) for c in tm.classes_],
        "fit_seconds": round(fit_s, 1),
        "heldout_accuracy": float((pred == yt).mean()),
        "heldout_macro_f1": float(f1_score(yt.astype(str), pred.astype(str), average="macro")),
        "heldout_harmful_vs_benign_accuracy": float(((pred != "benign") == harm_truth).mean()),
        "native_agreement": tm.native_agreement_,
    }
    _progress(progress, "Tsetlin rules: fitting on all")
    final = TsetlinRuleClassifier(**params).fit(texts, labels)
    final.save(out_dir / "harm_rules.json")
    figures["top_rules"] = [str(r) for r in final.rules(top=12)]
    return figures


# ------------------------------------------------------------------------------------------------
REFUSAL_SYSTEM_PROMPT = (
    "You are a strictly safe assistant. If the user's request could be used to harm anyone, "
    "such as weapons, hacking, drugs, violence, theft or fraud, reply exactly: "
    "\"I'm sorry, but I can't help with that.\" Otherwise, answer helpfully."
)


def demo_fit_from_host(
    n_prompts: int = 40, max_new_tokens: int = 24, seed: int = 0, host: Any = None, progress: bool = True
) -> dict[str, Any]:
    """`fit_from_model` end to end on the real SmolLM2 host with a refusal-inducing system prompt.

    Half harmful, half benign prompts from the fitting set; the host's replies are labelled by the
    shipped `ResponseRefusalDetector`. Returns counts, a few labelled replies, and the top n-grams.
    """
    from classifiers import PromptRefusalPredictor, ResponseRefusalDetector
    from guard.whitebox.host import HostModel

    rows = load_fitting_set()
    rng = np.random.default_rng(seed)
    harmful = [r.prompt for r in rows if r.label == "harmful" and r.source in ("advbench", "redharness")]
    benign = [r.prompt for r in rows if r.label == "benign" and r.source == "project_benign"]
    prompts = list(rng.choice(harmful, n_prompts // 2, replace=False)) + list(
        rng.choice(benign, n_prompts - n_prompts // 2, replace=False)
    )
    t0 = time.perf_counter()
    host = host or HostModel.default()
    load_s = time.perf_counter() - t0
    history = [{"role": "system", "content": REFUSAL_SYSTEM_PROMPT}]

    def ask(prompt: str) -> str:
        return host.generate(prompt, history=history, max_new_tokens=max_new_tokens)

    t0 = time.perf_counter()
    model = PromptRefusalPredictor(features="ngrams").fit_from_model(
        prompts, ask, detector=ResponseRefusalDetector.default(), progress=progress
    )
    gen_s = time.perf_counter() - t0
    is_harmful = np.r_[np.ones(n_prompts // 2), np.zeros(n_prompts - n_prompts // 2)].astype(bool)
    refused = model.refused_.astype(bool)
    return {
        "n_prompts": n_prompts,
        "max_new_tokens": max_new_tokens,
        "host_load_s": round(load_s, 1),
        "generate_and_fit_s": round(gen_s, 1),
        "refused_harmful": int(refused[is_harmful].sum()),
        "refused_benign": int(refused[~is_harmful].sum()),
        "examples": [
            {"prompt": p[:70], "reply": r[:90], "refused": bool(f)}
            for p, r, f in list(zip(prompts, model.replies_, refused))[:: max(1, n_prompts // 8)]
        ],
        "top_ngrams": [w.ngram for w in model.explain(top=8).ngrams],
    }


def fit_default_classifiers(
    out_dir: Path, seed: int = 0, progress: bool = True, rows: list[Example] | None = None
) -> dict[str, Any]:
    """Fit the shipped classifiers into `out_dir` and return (and write) the measured figures.

    Writes ``response_refusal/``, ``prompt_refusal/``, ``prompt_refusal_embedding/`` (each
    ``model.json`` + ``weights.safetensors``), ``harm_rules.json`` and ``fit_report.json``. Copy
    them into ``classifiers/resources`` to ship them.

    Args:
        out_dir: the output folder (created).
        seed: the split seed.
        progress: print what is being fitted.
        rows: the labelled prompts (default: `guard.io.data.load_fitting_set()`).

    Returns:
        The figures: held-out metrics for each model and the fake-model rule recovery.
    """
    from classifiers import ResponseRefusalDetector

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    figures: dict[str, Any] = {"seed": seed}
    figures["response_refusal"] = fit_response_detector(out_dir, seed, progress)
    rows = load_fitting_set() if rows is None else rows
    figures["prompt_refusal"] = fit_prompt_predictors(out_dir, rows, seed, progress)
    _progress(progress, "fake-model rule recovery")
    figures["fake_rule_recovery"] = fake_rule_recovery(
        rows, ResponseRefusalDetector.load(out_dir / "response_refusal"), seed
    )
    try:
        figures["rules"] = fit_rules(out_dir, rows, seed, progress)
    except ImportError as exc:  # pyTsetlinMachine is optional
        figures["rules"] = {"skipped": str(exc)}
    figures["seconds"] = round(time.perf_counter() - t0, 1)
    (out_dir / "fit_report.json").write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return figures


Main = Callable[[], None]

if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("classifiers/resources")
    print(json.dumps(fit_default_classifiers(target), indent=1))
