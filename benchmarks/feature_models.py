"""Which sentence encoders should the black-box harm heads read? Grouped validation and external sets.

On the host-sampled rows of `guard fit --grouped` (60 per (source, form) group), for MiniLM,
USE-multilingual and all-mpnet-base-v2: a linear head on each encoder, the MLP head
(`HarmMLPClassifier`) on several encoder sets, and the MLP pooled with the shipped recipe's
latent head (latent@16:post, equal weights). For each: grouped out-of-fold AUROC and benign rows
blocked at 90 % out-of-fold harmful recall; then each head refitted on the whole sample scores
the external sets at that threshold (CoCoNot contrast prompts blocked, MultiJail recall per
language), plus the external AUROC (CoCoNot's benign look-alikes against MultiJail's harmful
requests) and MultiJail recall where CoCoNot blocked is 0.234 (the shipped guard's rate). The
external sets compare designs here; no threshold is set on them.

Usage:
    python benchmarks/feature_models.py [--cache /tmp/fitwork] [--external ../shared/data/external]

Embeddings come from (and go to) the `EmbeddingCache` under ``CACHE/emb``; the latent head reads
the `StateCache` under ``CACHE/states`` (the host runs for rows not cached yet). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

EXTERNAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "external"
#: MLP encoder sets compared (the shipped one last).
MLP_SETS: dict[str, tuple[str, ...]] = {
    "minilm+use": ("minilm", "use_multilingual"),
    "mpnet+use": ("mpnet", "use_multilingual"),
    "minilm+use+mpnet": ("minilm", "use_multilingual", "mpnet"),
}


def _figures(
    s: np.ndarray, y: np.ndarray, forms: list[str], ext: dict[str, np.ndarray], lang: np.ndarray
) -> dict:
    from sklearn.metrics import roc_auc_score

    from guard.fitting.recipe import figures

    f = figures(s, y, forms)
    t = f["threshold_at_90_recall"]
    b, h = ext["coconot_contrast_pref"], ext["multijail_dev"]
    en = h[lang == "en"]
    return {
        "grouped_auroc": round(f["grouped_auroc"], 4),
        "benign_blocked_at_90_recall": round(f["overall"]["benign_blocked"], 4),
        "coconot_blocked": round(float((b >= t).mean()), 4),
        "multijail_recall": round(float((h >= t).mean()), 4),
        "multijail_by_lang": {g: round(float((h[lang == g] >= t).mean()), 3) for g in sorted(set(lang))},
        "external_auroc": round(float(roc_auc_score(np.r_[0 * b, 0 * h + 1], np.r_[b, h])), 4),
        "external_auroc_en": round(float(roc_auc_score(np.r_[0 * b, 0 * en + 1], np.r_[b, en])), 4),
        "multijail_recall_at_coconot_0.234": round(float((h >= np.quantile(b, 1 - 0.234)).mean()), 4),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/tmp/fitwork", help="the features cache of guard fit --grouped")
    ap.add_argument("--external", default=str(EXTERNAL), help="folder of the external validation sets")
    args = ap.parse_args(argv)
    from classifiers.harm_mlp import HarmMLPClassifier
    from guard.fitting.grouped import form_of, group_of, grouped_folds, oof_scores, per_group_sample
    from guard.fitting.grouped_fit import load_external, load_rows
    from guard.fitting.recipe import (
        _embedder,
        build_features,
        candidate_layers,
        fit_embedding_head,
        fit_latent_head,
        head_scores,
        latent_candidates,
        pool,
    )
    from guard.fitting.state_cache import EmbeddingCache
    from guard.whitebox.host import HostModel
    from guard.whitebox.latent import LatentGuard

    rows_all = load_rows()
    rows = [rows_all[i] for i in per_group_sample(rows_all, 60, 0)]
    ext = load_external(args.external)
    y = np.array([int(r.label == "harmful") for r in rows])
    forms = [form_of(r) for r in rows]
    folds = grouped_folds([group_of(r) for r in rows])
    lang = np.array([r.lang or "" for r in ext["multijail_dev"]])
    names = ("minilm", "use_multilingual", "mpnet")
    cache = {n: EmbeddingCache(Path(args.cache) / "emb", n, _embedder(n)) for n in names}
    E = {n: c.transform([r.prompt for r in rows]) for n, c in cache.items()}
    X = {n: {k: c.transform([r.prompt for r in v]) for k, v in ext.items()} for n, c in cache.items()}
    out: dict[str, Any] = {"n": len(rows), "groups": len(set(group_of(r) for r in rows))}

    for n in names:
        s = oof_scores(lambda tr, te: fit_embedding_head(E[n], y, tr).predict_proba(E[n][te])[:, 1], y, folds)
        m = fit_embedding_head(E[n], y, np.arange(len(y)))
        out[f"linear:{n}"] = _figures(s, y, forms, {k: m.predict_proba(X[n][k])[:, 1] for k in ext}, lang)

    host = HostModel.default()
    probe = LatentGuard(host, layers=list(candidate_layers(host.num_layers)))
    feats = build_features(probe, [r.prompt for r in rows], args.cache, progress=False)
    c = next(c for c in latent_candidates(feats.layers) if c.name == "latent@16:post")
    lat = oof_scores(lambda tr, te: head_scores(c, feats, y, tr, te), y, folds)
    full = fit_latent_head(feats, y, np.arange(len(y)), c.layer_index, c.position)
    ext_lat = {}
    for k, v in ext.items():
        f = build_features(probe, [r.prompt for r in v], args.cache, progress=False)
        ext_lat[k] = full.row_scores(f, np.arange(len(v)))

    for name, encs in MLP_SETS.items():
        A = np.hstack([E[e] for e in encs]).astype(np.float32)

        def fit(tr: np.ndarray, A: np.ndarray = A) -> Any:
            return HarmMLPClassifier(random_state=0, encoders=encs).fit_embeddings(A[tr], y[tr])

        s = oof_scores(lambda tr, te: fit(tr).predict_proba_embeddings(A[te])[:, 1], y, folds)
        m = fit(np.arange(len(y)))
        ext_mlp = {
            k: m.predict_proba_embeddings(np.hstack([X[e][k] for e in encs]).astype(np.float32))[:, 1]
            for k in ext
        }
        out[f"mlp:{name}"] = _figures(s, y, forms, ext_mlp, lang)
        w = {"harmfulness": 0.5, "combined_harm": 0.5}
        pooled = pool({"harmfulness": lat, "combined_harm": s}, w)
        ext_pooled = {k: pool({"harmfulness": ext_lat[k], "combined_harm": ext_mlp[k]}, w) for k in ext}
        out[f"pooled latent@16:post + mlp:{name}"] = _figures(pooled, y, forms, ext_pooled, lang)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
