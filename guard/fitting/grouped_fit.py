"""``guard fit --grouped``: compare the representations under grouped validation, ship the best.

Steps, each its own function:

1. `load_rows`: every allowed fitting row (public sources, the project's corpora).
2. `guard.fitting.recipe.build_features`: host states per window and both embeddings, cached.
3. `choose`: grouped out-of-fold scores of every head and of every pooling of heads; the
   latent head and the pooling with the best grouped AUROC win.
4. `fit_shipped`: the winners refitted on the *fit* split; the pooled threshold chosen on
   *calib* for the recall target; the random-split figures on *test*, beside the grouped ones.
5. `external_report`: the shipped heads on data written by someone else (never fitted on).
6. `save_guard`: the latent guard + policy, the black-box heads and the reply head, with the
   whole report in ``fit_report.json``.

Example:
    >>> report = run(Path("/tmp/g"), host, cache_dir=Path("/tmp/cache"))  # doctest: +SKIP
    >>> report["chosen"]["pooled"]  # doctest: +SKIP
    'pooled(latent=1,minilm=1,use=1)'
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guard.errors import InputError
from guard.fitting.grouped import auroc, form_of, summary
from guard.fitting.recipe import (
    EMBEDDERS,
    MLP_CANDIDATE,
    SIGNAL_OF,
    Candidate,
    Features,
    build_features,
    candidate_layers,
    compare,
    concat_embeddings,
    default_candidates,
    external_figures,
    figures,
    fit_embedding_head,
    fit_latent_head,
    fit_mlp_head,
    oof_probs,
    pool,
    pooled_candidates,
    pooled_oof,
    rows_key,
    signal_embeddings,
    threshold_at_recall,
)
from guard.fitting.training import split_of
from guard.io.data import Example, load_fitting_set, read_examples


def load_rows() -> list[Example]:
    """The fitting rows: every allowed public source and the project's corpora, de-duplicated."""
    return load_fitting_set()


def load_external(folder: str | Path | None, id_stride: int = 1) -> dict[str, list[Example]]:
    """The external validation sets in `folder` (``*.jsonl`` in the eval row format); MultiJail's
    ``language`` becomes `Example.lang`. Empty when `folder` is None or missing.

    Rows with a numeric ``id`` (the same request in every language) are kept when ``id %
    id_stride == 0``: every language keeps the same requests, at 1/`id_stride` of the host cost.
    """
    if folder is None or not Path(folder).is_dir():
        return {}
    out = {}
    for path in sorted(Path(folder).glob("*.jsonl")):
        rows = read_examples(path)
        raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if raw and "language" in raw[0]:
            rows = [
                r.model_copy(update={"lang": x.get("language")})
                for r, x in zip(rows, raw)
                if not str(x.get("id", "0")).isdigit() or int(x["id"]) % id_stride == 0
            ]
        out[path.stem] = rows
    return out


#: Grouped AUROC on the other-language rows an other-language weighting must gain over the
#: shipped pooling to be adopted (else every text is pooled alike).
MIN_LANGUAGE_GAIN = 0.005


def other_language_mask(prompts: Sequence[str], min_probability: float = 0.5) -> np.ndarray:
    """Which prompts `guard.text.language.detect_language` reads as another language than English
    (what routes a text to `Policy.other_language` at run time).

    Example:
        >>> other_language_mask(["How do I bake bread?", "Come posso fare il pane?"]).tolist()
        [False, True]
    """
    from guard.text.language import detect_language

    return np.array([detect_language(p).is_other(min_probability) for p in prompts], dtype=bool)


def routed_pool(
    probs: Mapping[str, np.ndarray], chosen: Mapping[str, Any], other: np.ndarray | None
) -> np.ndarray:
    """The pooled score as the shipped policy computes it: the chosen weights, and the
    other-language weights (``chosen["other_language"]``, when adopted) on the `other` rows."""
    s = pool(probs, chosen["weights"])
    lang = chosen.get("other_language")
    if lang and lang.get("adopted") and other is not None:
        s = np.where(other, pool(probs, lang["weights"]), s)
    return s


def choose_other_language(
    scores: Mapping[str, np.ndarray],
    base: str,
    y: np.ndarray,
    other: np.ndarray,
    min_gain: float = MIN_LANGUAGE_GAIN,
) -> dict[str, Any]:
    """The weighting (of `pooled_candidates`, whose out-of-fold pooled `scores` `choose` computed)
    with the best grouped out-of-fold AUROC on the rows read as another language (languages are
    groups of their own, so each is scored by heads that never saw it); adopted when it gains
    `min_gain` there over the `base` pooling and does not lower the AUROC of all rows.
    """
    weightings = pooled_candidates()
    if other.sum() < 20 or len(set(y[other].tolist())) < 2:
        return {"adopted": False, "why": "too few other-language rows of both labels", "n": int(other.sum())}
    on_other = {name: auroc(y[other], s[other]) for name, s in scores.items()}
    best = max(on_other, key=lambda k: on_other[k])
    routed = np.where(other, scores[best], scores[base])
    gain = on_other[best] - on_other[base]
    overall_base, overall_routed = auroc(y, scores[base]), auroc(y, routed)
    return {
        "adopted": bool(gain >= min_gain and overall_routed >= overall_base),
        "pooled": best,
        "weights": {k: float(v) for k, v in weightings[best] if v > 0},
        "n": int(other.sum()),
        "n_harmful": int(y[other].sum()),
        "grouped_auroc_other": {"base": on_other[base], "routed": on_other[best]},
        "grouped_auroc_all": {"base": overall_base, "routed": overall_routed},
        "min_gain": min_gain,
    }


def choose(
    oof: Mapping[str, np.ndarray], y: np.ndarray, forms: Sequence[str], other: np.ndarray | None = None
) -> dict[str, Any]:
    """The latent head and the pooling with the best grouped out-of-fold AUROC, and the table;
    with `other` (the rows read as another language), the other-language weighting too
    (`choose_other_language`)."""
    grouped = {k: figures(oof[k], y, forms)["grouped_auroc"] for k in oof if k.startswith("latent@")}
    latent = max(grouped, key=lambda k: grouped[k])
    # the one-layer direction that steering, ablation and the integrity check read: the best one
    # at the chosen position (the chosen head itself when it reads one layer)
    position = latent.rsplit(":", 1)[1]
    single = max(
        (k for k in grouped if "+" not in k and k.endswith(f":{position}")), key=lambda k: grouped[k]
    )
    weightings = pooled_candidates()
    pooled = {name: pooled_oof(oof, latent, w) for name, w in weightings.items()}
    table = {name: figures(s, y, forms) for name, s in {**oof, **pooled}.items()}
    best = max(pooled, key=lambda k: (table[k]["grouped_auroc"], -table[k]["overall"]["benign_blocked"]))
    out = {
        "latent": latent,
        "latent_single": single,
        "pooled": best,
        "weights": dict(weightings[best]),
        "table": table,
    }
    if other is not None:
        out["other_language"] = choose_other_language(pooled, best, y, other)
    return out


def embedding_predictor(signal: str, seed: int = 0) -> Any:
    """The unfitted head a black-box signal ships as: a `PromptRefusalPredictor` on MiniLM or
    USE, or the `HarmMLPClassifier` on both (``combined_harm``)."""
    from classifiers import PromptRefusalPredictor
    from classifiers.harm_mlp import HarmMLPClassifier
    from classifiers.multilingual import MultilingualEmbedder

    if signal == "combined_harm":
        return HarmMLPClassifier(random_state=seed)
    embedder = MultilingualEmbedder() if signal == "multilingual_harm" else None
    return PromptRefusalPredictor(features="embedding", embedder=embedder)


def embedding_proba(model: Any, E: np.ndarray) -> np.ndarray:
    """P(harmful) of a `fit_embeddings`-fitted head on precomputed embeddings."""
    if hasattr(model, "predict_proba_embeddings"):
        return model.predict_proba_embeddings(E)[:, 1]
    z = np.asarray(E, dtype=np.float64) * model.embedding_weight @ model.coef_[0] + model.intercept_[0]
    return 1.0 / (1.0 + np.exp(-z))


def _candidate(name: str, layers: Sequence[int]) -> Candidate:
    return next(c for c in default_candidates(layers) if c.name == name)


def fit_shipped(
    feats: Features,
    rows: Sequence[Example],
    chosen: Mapping[str, Any],
    *,
    emb_all: Mapping[str, np.ndarray],
    rows_all: Sequence[Example],
    seed: int = 0,
    target_recall: float = 0.9,
    other: np.ndarray | None = None,
) -> dict[str, Any]:
    """Refit the chosen heads on the fit split (the latent head on the host-sampled `rows`, the
    embedding heads on every row of `rows_all`); pooled threshold on calib; figures on test.
    `other` marks the `rows` read as another language (pooled with the other-language weights
    when ``chosen`` adopted them)."""
    y = np.array([int(r.label == "harmful") for r in rows])
    split = np.array([split_of(r, seed) for r in rows])
    calib, test = (np.flatnonzero(split == s) for s in ("calib", "test"))
    fit_rows = np.flatnonzero(split == "fit")
    c = _candidate(chosen["latent"], feats.layers)
    head = fit_latent_head(feats, y, fit_rows, c.latent_layers, c.position)
    one = _candidate(chosen.get("latent_single", chosen["latent"]), feats.layers)
    single = head if one == c else fit_latent_head(feats, y, fit_rows, one.layer_index, one.position)
    y_all = np.array([int(r.label == "harmful") for r in rows_all])
    fit_all = np.flatnonzero(np.array([split_of(r, seed) for r in rows_all]) == "fit")
    embed_heads = {
        sig: embedding_predictor(sig, seed).fit_embeddings(
            signal_embeddings(emb_all, sig)[fit_all], y_all[fit_all]
        )
        for sig in SIGNAL_OF
    }
    shipped = {"head": head, "single_head": single, "embed_heads": embed_heads}
    s_all = shipped_scores(shipped, feats, len(rows))
    pooled = routed_pool(s_all, chosen, other)
    threshold = threshold_at_recall(pooled[calib], y[calib], target_recall)
    forms = np.array([form_of(r) for r in rows])
    return {
        **shipped,
        "threshold": threshold,
        "random_split": {
            "test": summary(pooled[test], y[test], threshold),
            "calib": summary(pooled[calib], y[calib], threshold),
            "test_by_form": _by_form(pooled[test], y[test], forms[test], threshold),
            "n": {s: int((split == s).sum()) for s in ("fit", "calib", "test")},
        },
    }


def _by_form(s: np.ndarray, y: np.ndarray, forms: np.ndarray, t: float) -> dict[str, Any]:
    from guard.fitting.grouped import stress_report

    return stress_report(s, y, list(forms), t)


def shipped_scores(shipped: Mapping[str, Any], feats: Features, n: int) -> dict[str, np.ndarray]:
    """The shipped heads' scores on rows whose features are in `feats`."""
    idx = np.arange(n)
    out = {"harmfulness": shipped["head"].row_scores(feats, idx)}
    out.update(
        {
            sig: embedding_proba(m, signal_embeddings(feats.embeddings, sig)[idx])
            for sig, m in shipped["embed_heads"].items()
        }
    )
    return out


def external_report(
    latent: Any,
    shipped: Mapping[str, Any],
    chosen: Mapping[str, Any],
    sets: Mapping[str, Sequence[Example]],
    cache_dir: Path,
    progress: bool,
) -> dict[str, Any]:
    """The shipped pooled score on the external sets (routed by language as the policy does), at
    the shipped threshold, and per head."""
    pooled, per_head = {}, {}
    for name, rows in sets.items():
        prompts = [r.prompt for r in rows]
        feats = build_features(latent, prompts, cache_dir, progress=progress)
        s = shipped_scores(shipped, feats, len(rows))
        pooled[name] = routed_pool(s, chosen, other_language_mask(prompts))
        per_head[name] = s
    t = shipped["threshold"]
    report = external_figures(pooled, sets, t)
    for name in sets:
        report[name]["by_head_blocked_at_0.5"] = {
            k: float((v >= 0.5).mean()) for k, v in per_head[name].items()
        }
    return report


def fit_reject(
    rows_all: Sequence[Example], E: np.ndarray | None = None, seed: int = 0
) -> tuple[Any, dict[str, Any]]:
    """The reject option (ambiguity + novelty on MiniLM embeddings) fitted on every row, with its
    coverage-risk figures on held-out (source, form) groups (`guard.features.reject`)."""
    from guard.features.reject import fit_reject_option
    from guard.fitting.grouped import group_of

    return fit_reject_option(
        [r.prompt for r in rows_all],
        [int(r.label == "harmful") for r in rows_all],
        [group_of(r) for r in rows_all],
        X=E,
        seed=seed,
    )


def add_reject_option(out: Path, rows: Sequence[Example] | None = None, seed: int = 0) -> dict[str, Any]:
    """Fit the reject option for the guard folder `out` (``guard fit --reject-only``): written to
    ``out/reject_option``, its figures merged into ``out/fit_report.json``; returns them."""
    from guard.guard import REJECT_OPTION_FOLDER

    reject, figures_ = fit_reject(list(rows) if rows is not None else load_rows(), seed=seed)
    reject.save(Path(out) / REJECT_OPTION_FOLDER)
    path = Path(out) / "fit_report.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    report["reject_option"] = figures_
    path.write_text(json.dumps(report, indent=2, sort_keys=True, default=float))
    return figures_


#: The held-out selective-accuracy gain the reject option must bring for the policy to abstain on it.
MIN_REJECT_GAIN = 0.01


def abstain_on_reject(figures_: Mapping[str, Any] | None, min_gain: float = MIN_REJECT_GAIN) -> bool:
    """Whether the shipped policy abstains on reject-option flags: only when, on held-out
    (source, form) groups, the accuracy on what it keeps beats the accuracy on everything by
    `min_gain` (else the flags are evidence only, and abstaining would be over-refusal by
    another name).

    Example:
        >>> abstain_on_reject({"held_out": {"accuracy": 0.730, "selective_accuracy": 0.733}})
        False
        >>> abstain_on_reject({"held_out": {"accuracy": 0.70, "selective_accuracy": 0.75}})
        True
    """
    held = (figures_ or {}).get("held_out") or {}
    if "accuracy" not in held or "selective_accuracy" not in held:
        return False
    return float(held["selective_accuracy"]) - float(held["accuracy"]) >= min_gain


def save_guard(
    out: Path,
    latent: Any,
    shipped: Mapping[str, Any],
    chosen: Mapping[str, Any],
    report: Mapping[str, Any],
    reply: Mapping[str, Any] | None,
    reject: Any = None,
) -> Path:
    """Write the latent guard + policy (``out``), the black-box heads (``out/classifiers``), the
    reject option (``out/reject_option``) and the report (``out/fit_report.json``)."""
    from guard.decision.policy import LanguagePooling, Policy
    from guard.whitebox.artifacts import save_latent

    lang = chosen.get("other_language") or {}
    policy = Policy(
        threshold=float(shipped["threshold"]),
        harm_weights={k: float(v) for k, v in chosen["weights"].items() if v > 0},
        other_language=LanguagePooling(weights=lang["weights"]) if lang.get("adopted") else None,
        reply_threshold=float(reply["threshold"]) if reply else 0.5,
        reject_option=abstain_on_reject(report.get("reject_option")),
    )
    save_latent(out, latent, policy)
    from guard.guard import DETECTOR_FOLDERS

    folders = {sig: DETECTOR_FOLDERS[sig] for sig in SIGNAL_OF}
    for sig, sub in folders.items():
        shipped["embed_heads"][sig].save(out / "classifiers" / sub)
    if reject is not None:
        from guard.guard import REJECT_OPTION_FOLDER

        reject.save(out / REJECT_OPTION_FOLDER)
    (out / "fit_report.json").write_text(json.dumps(report, indent=2, sort_keys=True, default=float))
    return out


def latent_from_head(
    host: Any,
    head: Any,
    feats: Features,
    rows: Sequence[Example],
    oof_auroc: float,
    grid: Mapping[str, float],
    seed: int = 0,
    single: Any = None,
) -> Any:
    """A fitted `LatentGuard` carrying the chosen head (Platt (1, 0): the head's own probability).

    A several-layer head is its harmfulness readout (`harm_layers_`); `single`, a one-layer head at
    the same position, gives `layer_` and `direction_` (what steering and the integrity check
    read). A one-layer head is both."""
    from guard.whitebox.latent import LatentGuard

    single = single or head
    if single.position != head.position or len(single.layer_indices) != 1:
        raise InputError("the one-layer head must read one layer at the readout's position")
    layers = feats.layers
    latent = LatentGuard(host, layers=list(layers), random_state=seed)
    n_pos = feats.states.shape[2]
    latent.direction_ = single.w[0].astype(np.float32)
    latent.bias_ = float(single.b)
    latent.platt_ = (1.0, 0.0)
    latent.layer_ = int(layers[single.layer_index])
    latent.position_ = int(head.position % n_pos)
    if len(head.layer_indices) > 1:
        latent.set_readout([int(layers[i]) for i in head.layer_indices], head.w, float(head.b))
    latent.n_positions_ = int(n_pos)
    latent.candidate_layers_ = list(layers)
    latent.auroc_grid_ = np.array(
        [[grid.get(f"latent@{layer}:{p}", np.nan) for p in ("instr", "post")] for layer in layers],
        dtype=np.float32,
    )
    latent.cosmic_scores_ = {}
    latent.cv_auroc_ = float(oof_auroc)
    latent.selection_auroc_ = float(oof_auroc)
    latent._fit_refusal(
        [r.prompt for r in rows if r.label == "harmful"][:400]
        + [r.prompt for r in rows if r.label == "benign"][:400],
        None,
        None,
    )
    latent.harm_refusal_cosine_ = float(
        latent.direction_
        @ latent.refusal_direction_
        / (np.linalg.norm(latent.direction_) * np.linalg.norm(latent.refusal_direction_) + 1e-12)
    )
    return latent


def embedding_report(emb_all: Mapping[str, np.ndarray], rows_all: Sequence[Example]) -> dict[str, Any]:
    """Grouped out-of-fold figures of the embedding heads on every row (they are cheap to fit)."""
    from guard.fitting.grouped import group_of, grouped_folds, oof_scores

    y = np.array([int(r.label == "harmful") for r in rows_all])
    folds = grouped_folds([group_of(r) for r in rows_all])
    forms = [form_of(r) for r in rows_all]
    out = {}
    for name, E in emb_all.items():
        s = oof_scores(lambda tr, te: fit_embedding_head(E, y, tr).predict_proba(E[te])[:, 1], y, folds)
        out[name] = figures(s, y, forms)
    if all(name in emb_all for name in EMBEDDERS):
        E = concat_embeddings(emb_all)
        s = oof_scores(lambda tr, te: fit_mlp_head(E, y, tr).predict_proba_embeddings(E[te])[:, 1], y, folds)
        out[MLP_CANDIDATE] = figures(s, y, forms)
    return out


def run(
    out: Path,
    host: Any,
    *,
    cache_dir: Path,
    external: str | Path | None = None,
    seed: int = 0,
    target_recall: float = 0.9,
    latent_per_group: int = 60,
    with_reply: bool = True,
    progress: bool = True,
    rows: Sequence[Example] | None = None,
) -> dict[str, Any]:
    """The whole ``guard fit --grouped``: rows, features, comparison, refit, report, save.

    The host pass reads at most `latent_per_group` rows of each (source, form) group
    (`guard.fitting.grouped.per_group_sample`); the embedding heads read every row.
    """
    from guard.fitting.grouped import per_group_sample
    from guard.fitting.recipe import _embedder
    from guard.fitting.reply_side import fit_reply_head
    from guard.fitting.state_cache import EmbeddingCache
    from guard.whitebox.latent import LatentGuard

    rows_all = list(rows) if rows is not None else load_rows()
    sample = [rows_all[i] for i in per_group_sample(rows_all, latent_per_group, seed)]
    probe = LatentGuard(host, layers=list(candidate_layers(host.num_layers)))
    feats = build_features(probe, [r.prompt for r in sample], cache_dir, progress=progress)
    emb_all = {
        name: EmbeddingCache(Path(cache_dir) / "emb", name, _embedder(name)).transform(
            [r.prompt for r in rows_all]
        )
        for name in EMBEDDERS
    }
    y = np.array([int(r.label == "harmful") for r in sample])
    forms = [form_of(r) for r in sample]
    oof = compare(default_candidates(feats.layers), feats, sample, progress=progress)
    other = other_language_mask([r.prompt for r in sample])
    chosen = choose(oof, y, forms, other)
    shipped = fit_shipped(
        feats,
        sample,
        chosen,
        emb_all=emb_all,
        rows_all=rows_all,
        seed=seed,
        target_recall=target_recall,
        other=other,
    )
    grid = {k: v["grouped_auroc"] for k, v in chosen["table"].items() if k.startswith("latent@")}
    latent = latent_from_head(
        host,
        shipped["head"],
        feats,
        sample,
        chosen["table"][chosen["latent"]]["grouped_auroc"],
        grid,
        seed,
        single=shipped["single_head"],
    )
    pooled_best = routed_pool(oof_probs(oof, chosen["latent"]), chosen, other)
    t = shipped["threshold"]
    report: dict[str, Any] = {
        "recipe": "grouped",
        "seed": seed,
        "target_recall": target_recall,
        "rows_sha256": rows_key(rows_all),
        "n": int(len(rows_all)),
        "n_harmful": int(sum(r.label == "harmful" for r in rows_all)),
        "n_host_sample": len(sample),
        "latent_per_group": latent_per_group,
        "groups": "(source, form); languages of the multilingual corpus are groups of their own",
        "chosen": {
            "latent": chosen["latent"],
            "latent_single": chosen["latent_single"],
            "pooled": chosen["pooled"],
            "weights": chosen["weights"],
            "other_language": chosen["other_language"],
            "threshold": t,
        },
        "candidates": {
            k: {
                "grouped_auroc": v["grouped_auroc"],
                **{f"at_90_recall_{m}": v["overall"][m] for m in ("benign_blocked", "f1")},
            }
            for k, v in chosen["table"].items()
        },
        "grouped": {
            "auroc": auroc(y, pooled_best),
            "at_shipped_threshold": summary(pooled_best, y, t),
            "stress_by_form": _by_form(pooled_best, y, np.array(forms), t),
        },
        "grouped_embedding_heads_all_rows": {
            k: {"grouped_auroc": v["grouped_auroc"], "by_form": v["by_form"]}
            for k, v in embedding_report(emb_all, rows_all).items()
        },
        "random_split": shipped["random_split"],
        "latent": latent.report(),
    }
    sets = load_external(external, id_stride=2)
    if sets:
        report["external"] = external_report(probe, shipped, chosen, sets, cache_dir, progress)
    reply = None
    if with_reply:
        reply = fit_reply_head(out / "classifiers" / "reply_harm", progress=progress)
        report["reply_side"] = reply
    reject, report["reject_option"] = fit_reject(rows_all, emb_all.get("minilm"), seed)
    report["reject_option"]["policy_abstains_on_flags"] = abstain_on_reject(report["reject_option"])
    save_guard(out, latent, shipped, chosen, report, reply, reject)
    return report


__all__ = [
    "MIN_LANGUAGE_GAIN",
    "MIN_REJECT_GAIN",
    "abstain_on_reject",
    "add_reject_option",
    "choose",
    "choose_other_language",
    "embedding_report",
    "fit_reject",
    "external_report",
    "fit_shipped",
    "latent_from_head",
    "load_external",
    "load_rows",
    "other_language_mask",
    "routed_pool",
    "run",
    "save_guard",
]
