"""Fitting a guard and measuring it honestly: fixed splits, a held-out threshold, leave-one-source-out.

Splits are fixed by a hash of each prompt (and the seed), so `guard fit` reproduces the shipped
artifact. The direction is fitted on the *fit* split, the threshold is picked on the *calib*
split (data the detector was not fitted on) and the figures come from the *test* split. The
leave-one-out check refits without one public source (or one topic group of the project's
benign corpus) and scores the part left out against the opposite-label test rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guard.decision.stats import auroc
from guard.errors import InputError
from guard.fitting.augment import TENSE_TEMPLATES, style_variants
from guard.fitting.calibrate import blocked_rate, threshold_for_recall
from guard.io.data import Example, normalize_prompt
from guard.whitebox.latent import LatentGuard

SPLITS = ("fit", "calib", "test")


def split_of(example: Example, seed: int = 0, fractions: tuple[float, float] = (0.6, 0.2)) -> str:
    """The split ("fit", "calib" or "test") of an example: a fixed function of its text and seed.

    Example:
        >>> split_of(Example(prompt="hello", label="benign")) in SPLITS
        True
    """
    digest = hashlib.sha256(f"{seed}:{normalize_prompt(example.prompt)}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "fit" if u < fractions[0] else "calib" if u < fractions[0] + fractions[1] else "test"


def part_of(example: Example) -> str:
    """The leave-one-out part: the public source, or the topic group of the project's corpus."""
    if example.source == "project_benign":
        return f"project_benign:{example.group}"
    return example.source or "unknown"


class FeatureBank:
    """Activations of every example at every candidate layer, from one pass over the host.

    `last[i]` holds example i's last window (used for fitting); `windows`/`owner` hold all
    windows (used for scoring, which takes the max over a prompt's windows).
    """

    def __init__(self, windows: np.ndarray, owner: np.ndarray, layers: list[int]) -> None:
        self.windows = windows
        self.owner = owner
        self.layers = layers
        last = np.zeros(int(owner.max()) + 1, dtype=int)
        last[owner] = np.arange(owner.size)  # later windows overwrite earlier ones
        self.last_index = last

    @classmethod
    def compute(
        cls, latent: LatentGuard, prompts: Sequence[str], chunk: int = 64, progress: bool = True
    ) -> FeatureBank:
        from tqdm.auto import tqdm

        layers = latent._candidate_layers()
        order = np.argsort([len(p) for p in prompts], kind="stable")  # similar lengths batch well
        parts: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        bar = tqdm(total=len(prompts), desc="hidden states", unit="prompt", disable=not progress)
        for s in range(0, len(order), chunk):
            idx = order[s : s + chunk]
            X, own = latent.features([prompts[i] for i in idx], layers)
            parts.append(X.astype(np.float16))
            owners.append(idx[own])
            bar.update(len(idx))
        bar.close()
        owner = np.concatenate(owners)
        windows = np.concatenate(parts)
        # restore prompt order (windows of one prompt stay in their original order)
        perm = np.argsort(owner, kind="stable")
        return cls(windows[perm], owner[perm], layers)

    def save(self, path: str | Path, key: str) -> None:
        """Cache to an `.npz` (plain arrays, no pickle); `key` ties it to host and data."""
        np.savez(
            path, windows=self.windows, owner=self.owner, layers=np.asarray(self.layers), key=np.asarray(key)
        )

    @classmethod
    def load(cls, path: str | Path, key: str) -> FeatureBank | None:
        """A cached bank for the same host and data, or None."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != key:
                    return None
                return cls(z["windows"], z["owner"], [int(x) for x in z["layers"]])
        except (OSError, KeyError, ValueError):
            return None

    @classmethod
    def merge(cls, parts: Sequence[tuple[np.ndarray, FeatureBank]]) -> FeatureBank:
        """One bank from banks of disjoint row sets: `parts` holds `(rows, bank)` pairs, where
        `bank`'s example i is example `rows[i]` of the merged bank."""
        windows = np.concatenate([b.windows for _, b in parts])
        owner = np.concatenate([np.asarray(rows)[b.owner] for rows, b in parts])
        perm = np.argsort(owner, kind="stable")
        return cls(windows[perm], owner[perm], parts[0][1].layers)

    def fit_features(self, rows: np.ndarray) -> np.ndarray:
        return self.windows[self.last_index[rows]].astype(np.float32)

    def scores(self, latent: LatentGuard) -> np.ndarray:
        """Raw harmfulness projection of every example (max over its windows)."""
        li = self.layers.index(latent.layer_)
        dec, _ = latent.project(self.windows[:, li].astype(np.float32))
        out = np.full(self.last_index.size, -np.inf)
        np.maximum.at(out, self.owner, dec)
        return out


def bank_key(latent: LatentGuard, prompts: Sequence[str]) -> str:
    """What a cached feature bank depends on: host weights, candidate layers, windows, prompts."""
    h = hashlib.sha256()
    host = latent._host()
    h.update(
        f"{host.fingerprint}|{latent._candidate_layers()}|{latent.window_tokens}|{latent.window_stride}".encode()
    )
    for p in prompts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def fit_and_evaluate(
    make_latent: Callable[[], LatentGuard],
    examples: Sequence[Example],
    *,
    seed: int = 0,
    target_recall: float = 0.9,
    leave_one_out: bool = True,
    progress: bool = True,
    bank: FeatureBank | None = None,
    features_cache: str | Path | None = None,
    augment: bool = True,
    augment_tense: bool = False,
    evidence: Mapping[str, np.ndarray] | None = None,
    compare_recall: float = 0.95,
) -> tuple[LatentGuard, float, dict[str, Any]]:
    """Fit the latent guard on the fit split, pick the threshold on calib, measure on test.

    Args:
        make_latent: builds an unfitted `LatentGuard` (called again for each leave-one-out fold).
        examples: labelled prompts (public sources plus the project's benign corpus).
        seed: split and model seed.
        target_recall: harmful recall the threshold must reach on the calib split.
        leave_one_out: also run the leave-one-source-out check.
        bank: precomputed features (else computed here, with a progress bar).
        features_cache: a folder that keeps the host's activations across runs, one `.npz` per
            source (so adding a source computes only that source's activations).
        augment: add style variants of fit-split rows (`guard.fitting.augment`) to the fitting data.
        augment_tense: also add their past-tense variants (`guard.fitting.augment.TENSE_TEMPLATES`, both
            labels; activations cached under the ``tense-`` prefix).
        evidence: black-box signal name -> P(harmful) per example, from models fitted on the
            fit split only (`guard.fitting.fit_blackbox.fit_prompt_predictors`). Then the report also
            compares the latent score alone with the pooled evidence (`guard.fitting.comparison`) at
            `compare_recall`, and ``report["policy"]`` gives the weighting and threshold chosen
            on calib at `target_recall` (the returned threshold is that pooled threshold).
        compare_recall: the recall of that comparison.

    Returns:
        `(latent, threshold, report)`; the report holds every figure the README quotes.
    """
    if not examples:
        raise InputError("no examples to fit on")
    y = np.array([1 if e.label == "harmful" else 0 for e in examples])
    split = np.array([split_of(e, seed) for e in examples])
    parts = np.array([part_of(e) for e in examples])
    edgy = np.array([e.label == "benign" and e.edgy for e in examples])
    latent = make_latent()
    sources = [e.source or "unknown" for e in examples]
    bank = bank or _grouped_bank(latent, [e.prompt for e in examples], sources, features_cache, "", progress)
    fit_rows = np.flatnonzero(split == "fit")
    aug_origin, aug_bank, aug_y = np.zeros(0, dtype=int), None, np.zeros(0, dtype=int)
    n_tense = 0
    if augment:
        groups = [("style-", [(i, v) for i in fit_rows for v in style_variants(examples[int(i)])])]
        if augment_tense:
            groups.append(
                (
                    "tense-",
                    [(i, v) for i in fit_rows for v in style_variants(examples[int(i)], TENSE_TEMPLATES)],
                )
            )
            n_tense = len(groups[-1][1])
        aug_parts, origins, start = [], [], 0
        for prefix, pairs in groups:
            if not pairs:
                continue
            origin = np.array([i for i, _ in pairs])
            sub = _grouped_bank(
                latent,
                [v.prompt for _, v in pairs],
                [sources[i] for i in origin],
                features_cache,
                prefix,
                progress,
            )
            aug_parts.append((np.arange(start, start + origin.size), sub))
            origins.append(origin)
            start += origin.size
        if aug_parts:
            aug_origin = np.concatenate(origins)
            aug_y = y[aug_origin]
            aug_bank = aug_parts[0][1] if len(aug_parts) == 1 else FeatureBank.merge(aug_parts)

    def training_set(rows: np.ndarray, keep_aug: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        X = bank.fit_features(rows)
        labels = y[rows]
        texts = [examples[i].prompt for i in rows]
        if aug_bank is not None and keep_aug.any():
            idx = np.flatnonzero(keep_aug)
            X = np.concatenate([X, aug_bank.fit_features(idx)])
            labels = np.concatenate([labels, aug_y[idx]])
            texts += [examples[i].prompt for i in aug_origin[idx]]  # texts only seed refusal pairs
        return X, labels, texts

    X_fit, y_fit, texts = training_set(fit_rows, np.ones(aug_origin.size, dtype=bool))
    latent.fit(texts, y_fit, features=X_fit)
    prob = latent.calibrated(bank.scores(latent))

    calib, test = split == "calib", split == "test"
    threshold = threshold_for_recall(prob[calib & (y == 1)], target_recall)
    test_harm = prob[test & (y == 1)]
    t90 = threshold_for_recall(test_harm, 0.9)
    report: dict[str, Any] = {
        "seed": seed,
        "n": {s: int((split == s).sum()) for s in SPLITS}
        | {"fit_style_variants": int(aug_origin.size) - n_tense, "fit_tense_variants": n_tense},
        "latent": latent.report(),
        "threshold": threshold,
        "target_recall": target_recall,
        "random_split": {
            "auroc": auroc(y[test], prob[test]),
            "recall_at_threshold": blocked_rate(test_harm, threshold),
            "over_refusal_at_threshold": blocked_rate(prob[test & (y == 0)], threshold),
            "edgy_over_refusal_at_threshold": blocked_rate(prob[test & edgy], threshold),
            "edgy_over_refusal_at_90_recall": blocked_rate(prob[test & edgy], t90),
            "n_edgy_test": int((test & edgy).sum()),
            "calib_recall": blocked_rate(prob[calib & (y == 1)], threshold),
            "calib_edgy_over_refusal": blocked_rate(prob[calib & edgy], threshold),
        },
        "by_part_test_blocked": {
            p: blocked_rate(prob[test & (parts == p)], threshold) for p in sorted(set(parts))
        },
    }
    report["policy"] = {"harm_weights": {"harmfulness": 1.0}, "threshold": threshold}
    if evidence:
        comparison, policy = pooled_policy(prob, evidence, y, split, edgy, target_recall, compare_recall)
        report["combined_vs_latent"], report["policy"] = comparison, policy
        threshold = policy["threshold"]
    if leave_one_out:
        report["leave_one_out"] = leave_one_out_auroc(
            make_latent, bank, y, split, parts, lambda rows, keep: training_set(rows, keep), aug_origin
        )
    return latent, threshold, report


def pooled_policy(
    latent_prob: np.ndarray,
    evidence: Mapping[str, np.ndarray],
    y: np.ndarray,
    split: np.ndarray,
    edgy: np.ndarray,
    target_recall: float,
    compare_recall: float = 0.95,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The latent-vs-pooled comparison at `compare_recall`, and the policy chosen at `target_recall`.

    Both choose on the calib split and measure on test (`guard.fitting.comparison.compare_at_recall`);
    `evidence` must come from models fitted on the fit split only.

    Returns:
        ``(comparison, policy)``; the policy holds ``harm_weights`` and ``threshold`` plus its
        test figures.
    """
    from guard.fitting.comparison import compare_at_recall

    signals = {"harmfulness": np.asarray(latent_prob, dtype=float)}
    signals |= {k: np.asarray(v, dtype=float) for k, v in evidence.items()}
    comparison = compare_at_recall(signals, y, split, edgy, recall=compare_recall)
    chosen = compare_at_recall(signals, y, split, edgy, recall=target_recall)["combined"]
    policy = {
        "harm_weights": chosen["weights"],
        "threshold": chosen["threshold"],
        "target_recall": target_recall,
        "test_recall": chosen["test_recall"],
        "test_edgy_over_refusal": chosen["test_edgy_over_refusal"],
        "test_over_refusal": chosen["test_over_refusal"],
    }
    return comparison, policy


def leave_one_out_auroc(
    make_latent: Callable[[], LatentGuard],
    bank: FeatureBank,
    y: np.ndarray,
    split: np.ndarray,
    parts: np.ndarray,
    training_set: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, list[str]]],
    aug_origin: np.ndarray,
) -> dict[str, Any]:
    """Refit without each part; AUROC of the part against opposite-label test rows of the others.

    A part with both labels is scored on its own; a one-label part (most public sources) is
    paired with the test rows of the other parts that carry the label it lacks. Style variants
    of the held-out part's rows are left out of that fold's fitting data too.
    """
    out: dict[str, float] = {}
    for part in sorted(set(parts)):
        held = parts == part
        train = np.flatnonzero((split == "fit") & ~held)
        if len(np.unique(y[train])) < 2:
            continue
        lg = make_latent().set_params(cosmic_shortlist=0, selection="auroc", cv=3)
        X, labels, texts = training_set(
            train, ~held[aug_origin] if aug_origin.size else aug_origin.astype(bool)
        )
        lg.fit(texts, labels, features=X, with_refusal=False)
        prob = lg.calibrated(bank.scores(lg))
        labels_here = set(y[held])
        if labels_here == {0, 1}:
            rows = held
        else:
            rows = held | ((split == "test") & ~held & (y != next(iter(labels_here))))
        out[part] = auroc(y[rows], prob[rows])
    values = [v for v in out.values() if not np.isnan(v)]
    return {"by_part": out, "mean_auroc": float(np.mean(values)) if values else float("nan")}


def _bank(latent: LatentGuard, prompts: list[str], cache: str | Path | None, progress: bool) -> FeatureBank:
    key = bank_key(latent, prompts)
    bank = FeatureBank.load(cache, key) if cache else None
    if bank is None:
        bank = FeatureBank.compute(latent, prompts, progress=progress)
        if cache:
            bank.save(cache, key)
    return bank


def bank_file(folder: str | Path, group: str, prefix: str = "") -> Path:
    """The cache file of one group's activations inside a features-cache folder."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in group)
    return Path(folder) / f"{prefix}{safe}.npz"


def _grouped_bank(
    latent: LatentGuard,
    prompts: list[str],
    groups: list[str],
    folder: str | Path | None,
    prefix: str,
    progress: bool,
) -> FeatureBank:
    """A bank computed (or loaded) one group at a time, each group cached in its own file."""
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
    parts = []
    for group in dict.fromkeys(groups):
        rows = np.array([i for i, g in enumerate(groups) if g == group])
        cache = bank_file(folder, group, prefix) if folder is not None else None
        parts.append((rows, _bank(latent, [prompts[i] for i in rows], cache, progress)))
    return FeatureBank.merge(parts)
