"""The fitting recipe chosen by grouped validation, and the comparison that chose it.

Each candidate representation is a head on one kind of feature, scored out-of-fold under
grouped cross-validation (`guard.fitting.grouped`: a group is a (source, form) pair):

* ``latent@L:P``: a logistic-regression direction on the host's hidden state at layer ``L``,
  position ``P`` (``instr``: the last instruction token; ``post``: the last post-instruction
  template token), read per token window, the most harmful window deciding. Harmful long texts
  are fitted on their most harmful window only (multiple-instance: the request sits in one
  window, the rest is benign text), so length is not learnt as harm.
* ``minilm``: a linear head on all-MiniLM-L6-v2 sentence embeddings.
* ``use_multilingual``: a linear head on USE-multilingual v3 embeddings (translations lie close).
* ``mpnet``: a linear head on all-mpnet-base-v2 embeddings (`classifiers.mpnet`, 110M parameters).
* ``minilm+use:mlp``: a one-hidden-layer perceptron on both embeddings side by side
  (`classifiers.harm_mlp.HarmMLPClassifier`): a non-linear head that can learn an edgy word in a
  benign frame.
* pooled candidates: a weighted mean of the heads' log-odds, exactly the pooling the policy runs
  (`guard.decision.engine.pool_harm`).

The winner is refitted on the *fit* split, its threshold chosen on *calib*, and it is written
as the shipped artifacts (`ship`).

Example:
    >>> w, b = fit_direction(np.array([[0.0], [1.0], [0.1], [0.9]]), np.array([0, 1, 0, 1]), C=1.0)
    >>> bool(w[0] > 0)
    True
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from guard.decision.stats import logit, sigmoid
from guard.errors import InputError
from guard.fitting.grouped import auroc, group_of, grouped_folds, oof_scores, stress_report, summary
from guard.io.data import Example

#: Where the latent candidates sit, as fractions of the depth: (8, 12, 16, 20, 23) of SmolLM2's 30.
LAYER_FRACTIONS: tuple[float, ...] = (0.28, 0.41, 0.55, 0.69, 0.79)


def candidate_layers(num_layers: int) -> tuple[int, ...]:
    """The decoder layers the latent candidates read, for a host of `num_layers`.

    Example:
        >>> candidate_layers(30)
        (8, 12, 16, 20, 23)
    """
    return tuple(sorted({min(num_layers - 1, round(f * (num_layers - 1))) for f in LAYER_FRACTIONS}))


LAYERS: tuple[int, ...] = candidate_layers(30)
#: Positions: index into [instruction, post-instruction...]; -1 is the last template token.
POSITIONS: dict[str, int] = {"instr": 0, "post": -1}


def fit_direction(Z: np.ndarray, y: np.ndarray, C: float) -> tuple[np.ndarray, float]:
    """An L2 logistic regression on standardised states, folded back to a direction and bias on
    raw states (so the run-time projection stays ``state @ w + b``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    Z = np.asarray(Z, dtype=np.float64)
    scaler = StandardScaler().fit(Z)
    lr = LogisticRegression(C=C, class_weight="balanced", max_iter=3000).fit(scaler.transform(Z), y)
    w = lr.coef_[0] / scaler.scale_
    return w, float(lr.intercept_[0] - (w * scaler.mean_).sum())


@dataclass
class Features:
    """Every feature of the fitting rows, computed once: host states per window, embeddings per row.

    Attributes:
        states: ``[n_windows, len(LAYERS), n_positions, hidden]`` float16.
        owner: the row of each window.
        embeddings: embedder name -> ``[n_rows, dim]``.
    """

    states: np.ndarray
    owner: np.ndarray
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    layers: tuple[int, ...] = LAYERS

    def rows_windows(self, rows: np.ndarray) -> np.ndarray:
        """The windows whose row is in `rows`."""
        return np.flatnonzero(np.isin(self.owner, rows))


def _max_by_owner(values: np.ndarray, owner: np.ndarray, rows: np.ndarray) -> np.ndarray:
    pos = {int(r): k for k, r in enumerate(rows)}
    out = np.full(rows.size, -np.inf)
    for v, o in zip(values, owner):
        k = pos[int(o)]
        if v > out[k]:
            out[k] = v
    return out


@dataclass(frozen=True)
class LatentHead:
    """A linear readout at one position over one or several layers: `w` (``[len(layer_indices),
    hidden]``), `b` on raw states; the score is ``sum_k state[layer_k] @ w[k] + b``."""

    layer_indices: tuple[int, ...]
    position: int
    w: np.ndarray
    b: float

    @property
    def layer_index(self) -> int:
        """The layer of a one-layer head."""
        if len(self.layer_indices) != 1:
            raise InputError(f"this head reads {len(self.layer_indices)} layers, not one")
        return self.layer_indices[0]

    def window_scores(self, states: np.ndarray) -> np.ndarray:
        Z = states[:, list(self.layer_indices), self.position, :].astype(np.float64)
        return np.einsum("nkh,kh->n", Z, self.w) + self.b

    def row_scores(self, feats: Features, rows: np.ndarray) -> np.ndarray:
        """P(harmful) of each row: the most harmful window's."""
        win = feats.rows_windows(rows)
        return sigmoid(_max_by_owner(self.window_scores(feats.states[win]), feats.owner[win], rows))


def fit_latent_head(
    feats: Features,
    y: np.ndarray,
    rows: np.ndarray,
    layer_index: int | Sequence[int],
    position: int,
    C: float = 0.05,
) -> LatentHead:
    """Fit a latent readout on `rows`: benign rows give every window, harmful one-window rows
    their window, harmful long rows only their most harmful window under a first fit.

    `layer_index` is one index into `feats.layers`, or several: the states of those layers side
    by side, one logistic regression over them with `C` divided by their number (the same total
    penalty per row as one layer's)."""
    idx_layers = (int(layer_index),) if isinstance(layer_index, (int, np.integer)) else tuple(layer_index)
    if not idx_layers:
        raise InputError("fit_latent_head needs at least one layer")
    C = C / len(idx_layers)
    hidden = feats.states.shape[-1]
    win = feats.rows_windows(rows)
    own = feats.owner[win]
    n_win = np.bincount(own, minlength=y.size)
    single_or_benign = (y[own] == 0) | (n_win[own] == 1)

    def states(idx: np.ndarray) -> np.ndarray:
        # one gather of [len(idx), k, hidden]: no copy of every layer and position of the windows
        Z = feats.states[idx[:, None], list(idx_layers), position, :].astype(np.float32)
        return Z.reshape(len(idx), -1)

    def head_of(w: np.ndarray, b: float) -> LatentHead:
        return LatentHead(idx_layers, position, w.reshape(len(idx_layers), hidden), b)

    first = win[single_or_benign]
    w, b = fit_direction(states(first), y[feats.owner[first]], C)
    multi = win[~single_or_benign]
    if multi.size:
        head = head_of(w, b)
        s = head.window_scores(feats.states[multi])
        best: dict[int, tuple[float, int]] = {}
        for v, k in zip(s, multi):
            o = int(feats.owner[k])
            if o not in best or v > best[o][0]:
                best[o] = (float(v), int(k))
        chosen = np.array(sorted(k for _, k in best.values()))
        idx = np.concatenate([first, chosen])
        w, b = fit_direction(states(idx), y[feats.owner[idx]], C)
    return head_of(w, b)


def fit_embedding_head(E: np.ndarray, y: np.ndarray, rows: np.ndarray, C: float = 4.0) -> Any:
    """A balanced logistic regression on embeddings (what `PromptRefusalPredictor` fits)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, class_weight="balanced", max_iter=5000).fit(E[rows], y[rows])


def concat_embeddings(embeddings: Mapping[str, np.ndarray], encoders: Sequence[str] = ()) -> np.ndarray:
    """The `encoders`' vectors side by side (default `classifiers.harm_mlp.ENCODERS`, MiniLM and
    USE-multilingual): the MLP head's input."""
    from classifiers.harm_mlp import ENCODERS

    return np.hstack([np.asarray(embeddings[name], dtype=np.float32) for name in encoders or ENCODERS])


def fit_mlp_head(
    E: np.ndarray, y: np.ndarray, rows: np.ndarray, seed: int = 0, encoders: Sequence[str] = ()
) -> Any:
    """The non-linear head on concatenated embeddings (`HarmMLPClassifier`, its defaults; `encoders`
    names what `E` concatenates when it is not the default)."""
    from classifiers.harm_mlp import HarmMLPClassifier

    if encoders:
        return HarmMLPClassifier(random_state=seed, encoders=tuple(encoders)).fit_embeddings(E[rows], y[rows])
    return HarmMLPClassifier(random_state=seed).fit_embeddings(E[rows], y[rows])


def pool(probs: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """The policy's pooling: weighted mean of log-odds (weights > 0 only)."""
    used = {k: float(w) for k, w in weights.items() if w > 0}
    if not used:
        raise InputError("pool needs at least one positive weight")
    z = sum(w * logit(probs[k]) for k, w in used.items()) / sum(used.values())
    return sigmoid(z)


@dataclass(frozen=True)
class Candidate:
    """A representation to compare: a latent head, an embedding head, or a pooling of heads."""

    name: str
    kind: str  # "latent", "embedding", "mlp" or "pooled"
    layer_index: int = 0
    position: int = -1
    embedder: str = ""
    #: the MLP's encoders (empty: `classifiers.harm_mlp.ENCODERS`, what the shipped MLP reads)
    encoders: tuple[str, ...] = ()
    #: a latent readout over several layers (indices into `Features.layers`); empty: `layer_index`
    layer_indices: tuple[int, ...] = ()

    @property
    def latent_layers(self) -> int | tuple[int, ...]:
        """What `fit_latent_head` reads: one layer index, or several."""
        return self.layer_indices or self.layer_index


#: Several-layer readouts compared beside the one-layer heads, as indices into the candidate
#: layers (12+16+20 and 16+20 of SmolLM2's 30; all five), at the post-instruction position.
MULTI_LAYER_SETS: tuple[tuple[int, ...], ...] = ((1, 2, 3), (2, 3), (0, 1, 2, 3, 4))


def latent_candidates(layers: Sequence[int] = LAYERS) -> list[Candidate]:
    """One-layer heads at every (layer, position), then the several-layer readouts.

    Example:
        >>> [c.name for c in latent_candidates()][-3:]
        ['latent@12+16+20:post', 'latent@16+20:post', 'latent@8+12+16+20+23:post']
    """
    single = [
        Candidate(f"latent@{layer}:{pname}", "latent", li, pos)
        for li, layer in enumerate(layers)
        for pname, pos in POSITIONS.items()
    ]
    several = [
        Candidate(
            f"latent@{'+'.join(str(layers[i]) for i in idx)}:post",
            "latent",
            idx[0],
            POSITIONS["post"],
            layer_indices=idx,
        )
        for idx in MULTI_LAYER_SETS
        if max(idx) < len(layers) and len(set(layers[i] for i in idx)) == len(idx)
    ]
    return single + several


def head_scores(
    c: Candidate, feats: Features, y: np.ndarray, train: np.ndarray, test: np.ndarray, C_latent: float = 0.05
) -> np.ndarray:
    """Fit candidate `c` on `train` rows, P(harmful) of the `test` rows."""
    if c.kind == "latent":
        return fit_latent_head(feats, y, train, c.latent_layers, c.position, C_latent).row_scores(feats, test)
    if c.kind == "embedding":
        E = feats.embeddings[c.embedder]
        return fit_embedding_head(E, y, train).predict_proba(E[test])[:, 1]
    if c.kind == "mlp":
        E = concat_embeddings(feats.embeddings, c.encoders)
        return fit_mlp_head(E, y, train, encoders=c.encoders).predict_proba_embeddings(E[test])[:, 1]
    raise InputError(f"head_scores does not fit {c.kind!r} candidates; pool their heads' scores")


def compare(
    candidates: Sequence[Candidate],
    feats: Features,
    rows: Sequence[Example],
    n_splits: int = 5,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Grouped out-of-fold P(harmful) per row of each head candidate, by candidate name."""
    from tqdm.auto import tqdm

    y = np.array([int(r.label == "harmful") for r in rows])
    folds = grouped_folds([group_of(r) for r in rows], n_splits)
    oof: dict[str, np.ndarray] = {}
    for c in tqdm(list(candidates), desc="grouped CV", disable=not progress):
        oof[c.name] = oof_scores(lambda tr, te: head_scores(c, feats, y, tr, te), y, folds)
    return oof


def threshold_at_recall(scores: np.ndarray, y: np.ndarray, recall: float) -> float:
    """The highest threshold blocking at least `recall` of the harmful rows."""
    from guard.fitting.calibrate import threshold_for_recall

    return threshold_for_recall(scores[y == 1], recall)


def figures(scores: np.ndarray, y: np.ndarray, forms: Sequence[str], recall: float = 0.9) -> dict[str, Any]:
    """Grouped AUROC, and blocked rates overall and by form at `recall` out-of-fold."""
    t = threshold_at_recall(scores, y, recall)
    return {
        "grouped_auroc": auroc(y, scores),
        "threshold_at_90_recall": t,
        "overall": summary(scores, y, t),
        "by_form": stress_report(scores, y, forms, t),
    }


def rows_key(rows: Sequence[Example]) -> str:
    """A digest of the fitting rows (text and label), recorded beside the figures."""
    h = hashlib.sha256()
    for r in rows:
        h.update(f"{r.label}\0{r.prompt}\0".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def external_figures(
    scores: Mapping[str, np.ndarray], sets: Mapping[str, Sequence[Example]], threshold: float
) -> dict[str, Any]:
    """Blocked rates on data written by someone else, never fitted on: per set, and per language
    for sets with several (MultiJail: recall per language beside English's)."""
    out: dict[str, Any] = {}
    for name, rows in sets.items():
        s = scores[name]
        y = np.array([int(r.label == "harmful") for r in rows])
        fig: dict[str, Any] = summary(s, y, threshold)
        langs = sorted({r.lang or "" for r in rows} - {""})
        if len(langs) > 1:
            lang = np.array([r.lang or "" for r in rows])
            fig["by_lang_blocked"] = {g: float((s[lang == g] >= threshold).mean()) for g in langs}
        out[name] = fig
    return out


__all__ = [
    "Candidate",
    "Features",
    "LAYERS",
    "LatentHead",
    "MLP_CANDIDATE",
    "MPNET_MLP_CANDIDATE",
    "MULTI_LAYER_SETS",
    "POSITIONS",
    "SIGNAL_OF",
    "candidate_layers",
    "compare",
    "concat_embeddings",
    "external_figures",
    "figures",
    "fit_direction",
    "fit_embedding_head",
    "fit_latent_head",
    "fit_mlp_head",
    "head_scores",
    "signal_embeddings",
    "latent_candidates",
    "pool",
    "rows_key",
    "threshold_at_recall",
]


EMBEDDERS: tuple[str, ...] = ("minilm", "use_multilingual", "mpnet")


def _embedder(name: str) -> Any:
    if name == "minilm":
        from classifiers.embeddings import SentenceEmbedder

        return SentenceEmbedder()
    if name == "mpnet":
        from classifiers.mpnet import MpnetEmbedder

        return MpnetEmbedder()
    from classifiers.multilingual import MultilingualEmbedder

    return MultilingualEmbedder()


def build_features(
    latent: Any, prompts: Sequence[str], cache_dir: str | Path, progress: bool = True, max_windows: int = 2
) -> Features:
    """Host states (per window, at `candidate_layers`) and both embeddings of `prompts`, cached."""
    from guard.fitting.state_cache import EmbeddingCache, StateCache

    layers = candidate_layers(latent._host().num_layers)
    cache = StateCache(Path(cache_dir) / "states", latent._host(), layers)
    states, owner = cache.features(latent, prompts, max_windows=max_windows, progress=progress)
    emb = {
        name: EmbeddingCache(Path(cache_dir) / "emb", name, _embedder(name)).transform(list(prompts))
        for name in EMBEDDERS
    }
    return Features(states, owner, emb, layers)


def default_candidates(layers: Sequence[int] = LAYERS) -> list[Candidate]:
    """Every latent (layer, position) head, a linear head on each encoder, the shipped MLP (MiniLM +
    USE) and the MLP with mpnet added (compared, not pooled: it lost on the external sets)."""
    return [
        *latent_candidates(layers),
        Candidate("minilm", "embedding", embedder="minilm"),
        Candidate("use_multilingual", "embedding", embedder="use_multilingual"),
        Candidate("mpnet", "embedding", embedder="mpnet"),
        Candidate(MLP_CANDIDATE, "mlp"),
        Candidate(MPNET_MLP_CANDIDATE, "mlp", encoders=("minilm", "use_multilingual", "mpnet")),
    ]


def pooled_candidates(
    grid: Sequence[float] = (0.0, 0.5, 1.0, 2.0),
) -> dict[str, tuple[tuple[str, float], ...]]:
    """Weightings of (latent, minilm, use_multilingual, the MLP) to pool, named by their weights.

    Example:
        >>> len(pooled_candidates((0.0, 1.0)))  # every subset of two or more heads
        11
    """
    out: dict[str, tuple[tuple[str, float], ...]] = {}
    for a, b, c, d in itertools.product(grid, repeat=4):
        if (a, b, c, d).count(0.0) >= 3:
            continue  # single heads are already candidates
        w = (("harmfulness", a), ("embedding_harm", b), ("multilingual_harm", c), ("combined_harm", d))
        out[f"pooled(latent={a:g},minilm={b:g},use={c:g},mlp={d:g})"] = w
    return out


#: The grouped-validation candidate of the MLP head.
MLP_CANDIDATE = "minilm+use:mlp"
#: The MLP with all-mpnet-base-v2 added (a compared candidate; README, "Feature models").
MPNET_MLP_CANDIDATE = "minilm+use+mpnet:mlp"
#: Black-box evidence name -> the candidate whose scores it pools.
SIGNAL_OF = {
    "embedding_harm": "minilm",
    "multilingual_harm": "use_multilingual",
    "combined_harm": MLP_CANDIDATE,
}


def signal_embeddings(embeddings: Mapping[str, np.ndarray], signal: str) -> np.ndarray:
    """The vectors a black-box signal's head reads: one encoder's, or both side by side (MLP)."""
    return (
        concat_embeddings(embeddings) if SIGNAL_OF[signal] == MLP_CANDIDATE else embeddings[SIGNAL_OF[signal]]
    )


def oof_probs(oof: Mapping[str, np.ndarray], latent_name: str) -> dict[str, np.ndarray]:
    """The out-of-fold scores by the evidence name the policy pools them under."""
    return {"harmfulness": oof[latent_name], **{sig: oof[name] for sig, name in SIGNAL_OF.items()}}


def pooled_oof(
    oof: Mapping[str, np.ndarray], latent_name: str, weights: Sequence[tuple[str, float]]
) -> np.ndarray:
    return pool(oof_probs(oof, latent_name), dict(weights))
