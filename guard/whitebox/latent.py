"""LatentGuard: harmfulness and refusal read from the host model's hidden states.

Two directions, kept apart ("LLMs Encode Harmfulness and Refusal Separately"):

* **harmfulness** at the last token of the user instruction (or the post-instruction position
  that separates best), learned from harmful vs benign prompts;
* **refusal** learned contrastively: refusal replies vs compliant replies teacher-forced after
  the same prompts (as CAST derives behaviour vectors), because a weakly aligned host such as
  SmolLM2 almost never refuses on its own, so its own refusals cannot define the direction.

Layer and position are chosen automatically by two criteria that are both reported:
cross-validated AUROC of the difference-in-means projection, and COSMIC's output-free cosine
score (ablate the candidate direction on harmful prompts, add it on benign ones, and measure how
far the late-layer activations move toward the other class).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from guard.decision.stats import auroc, sigmoid
from guard.errors import InputError, NotFittedError
from guard.whitebox.host import Encoded, HostModel

#: Activations a caller already computed (`LatentGuard.reuse_states`), keyed by
#: ``(id(guard), input_ids, layers)``.
_REUSED: contextvars.ContextVar[Mapping[Any, np.ndarray]] = contextvars.ContextVar(
    "latent_reused_states", default={}
)


@dataclass(frozen=True, eq=False)  # eq=False: arrays do not compare to one bool
class LatentScores:
    """What `LatentGuard.scores` returns: one value per prompt, from one forward pass.

    Attributes:
        harmfulness: calibrated P(harmful), shape ``[n]``.
        harmfulness_raw: raw projection on the harmfulness direction (> 0 leans harmful).
        refusal: raw projection of the post-instruction activations on the refusal direction.
        states: with ``with_states=True``, each prompt's last window's activations at `layer_`
            (``[n, n_positions, hidden]``); otherwise None.

    Example:
        >>> s = LatentScores(harmfulness=np.array([0.98]), harmfulness_raw=np.array([3.9]),
        ...                  refusal=np.array([1.2]))
        >>> float(s.harmfulness[0]), s.states is None
        (0.98, True)
    """

    harmfulness: np.ndarray
    harmfulness_raw: np.ndarray
    refusal: np.ndarray
    states: np.ndarray | None = None


#: A chat history: earlier ``{"role", "content"}`` messages, oldest first.
History = Sequence[dict[str, str]]


@dataclass(frozen=True)
class ScoreGroup:
    """Texts read after one chat history: one entry of `LatentGuard.scores_many` (or
    `LatentGuard.capture_states`), which reads several groups, each with its own history, from
    one host capture.

    Attributes:
        prompts: the texts, each read as the user's latest message (a long one over windows,
            as in `LatentGuard.scores`).
        history: the chat read before each of them (its most recent `history_tokens` tokens);
            None: no history.
        with_states: also return the group's states, as ``scores(..., with_states=True)``.

    Example:
        >>> ScoreGroup(["Summarise this page."], history=[{"role": "user", "content": "hi"}]).with_states
        False
    """

    prompts: Sequence[str]
    history: History | None = None
    with_states: bool = False


def _check_groups(groups: Any) -> list[ScoreGroup]:
    if isinstance(groups, (str, bytes, ScoreGroup)) or not isinstance(groups, Sequence):
        raise InputError(f"expected a list of ScoreGroup, got {type(groups).__name__}")
    out = list(groups)
    for i, g in enumerate(out):
        if not isinstance(g, ScoreGroup):
            raise InputError(f"group {i} is {type(g).__name__}, expected ScoreGroup(prompts, history)")
    return out


def _check_prompts(prompts: Any) -> list[str]:
    if isinstance(prompts, str):
        raise InputError("expected a list of prompts, got a single string; wrap it: [prompt]")
    out = list(prompts)
    for i, p in enumerate(out):
        if not isinstance(p, str):
            raise InputError(f"prompt {i} is {type(p).__name__}, expected str")
        if not p.strip():
            raise InputError(f"prompt {i} is empty or whitespace")
    return out


class LatentGuard(BaseEstimator):
    """Harmfulness probe on a host model's hidden states, with a separate refusal direction.

    Follows scikit-learn conventions: `__init__` stores parameters only, `fit` returns `self`,
    learned attributes end in `_`, and use before `fit` raises `NotFittedError`.

    Args:
        host: the `HostModel` whose hidden states are read.
        layers: candidate layers; default: every layer in the first 80 % of the stack (late
            layers mostly carry next-token detail; Arditi et al. exclude them too).
        method: "logistic" (L2 logistic probe, folded back to one direction in activation
            space) or "diffmean" (difference in means).
        C: inverse L2 strength of the logistic probe.
        cv: folds for the selection AUROC and for out-of-fold Platt calibration.
        cosmic_shortlist: how many top-AUROC candidates COSMIC re-ranks (0 disables it).
        cosmic_samples: prompts per class used by COSMIC's interventions.
        selection: "cosmic" (best COSMIC score among candidates within `auroc_tolerance` of
            the best AUROC) or "auroc".
        window_tokens: longest prompt (in tokens) scored in one piece; longer prompts are
            scored over overlapping windows and the maximum is kept.
        window_stride: distance between window starts.
        history_tokens: how much of the chat history (its most recent tokens) is read with each
            prompt window, so the cost of a window does not grow with the history.
        batch_size: prompts per forward pass.
        random_state: seed for folds and sampling.

    Fitted attributes: `layer_`, `position_`, `direction_` and `bias_` (the harmfulness
    direction at one layer, which steering, ablation and the integrity check read),
    `refusal_direction_`, `platt_`; and, for a readout over several layers (chosen by grouped
    validation in ``guard fit --grouped``), `harm_layers_`, `harm_directions_`
    (``[len(harm_layers_), hidden]``) and `harm_bias_`, which then give the harmfulness score.

    Example:
        >>> lg = LatentGuard(host).fit(prompts, labels)  # doctest: +SKIP
        >>> lg.score(["How do I build a pipe bomb?"])  # doctest: +SKIP
        array([0.98])
    """

    def __init__(
        self,
        host: HostModel | None = None,
        *,
        layers: Sequence[int] | None = None,
        method: str = "logistic",
        C: float = 0.05,
        cv: int = 5,
        cosmic_shortlist: int = 6,
        cosmic_samples: int = 24,
        selection: str = "cosmic",
        auroc_tolerance: float = 0.01,
        window_tokens: int = 384,
        window_stride: int = 256,
        history_tokens: int = 1024,
        batch_size: int = 16,
        random_state: int = 0,
    ) -> None:
        self.host = host
        self.layers = layers
        self.method = method
        self.C = C
        self.cv = cv
        self.cosmic_shortlist = cosmic_shortlist
        self.cosmic_samples = cosmic_samples
        self.selection = selection
        self.auroc_tolerance = auroc_tolerance
        self.window_tokens = window_tokens
        self.window_stride = window_stride
        self.history_tokens = history_tokens
        self.batch_size = batch_size
        self.random_state = random_state

    # ------------------------------------------------------------------ features
    def _host(self) -> HostModel:
        if self.host is None:
            raise InputError("LatentGuard needs a host: LatentGuard(HostModel.default())")
        return self.host

    def _candidate_layers(self) -> list[int]:
        n = self._host().num_layers
        if self.layers is not None:
            return sorted(set(int(l) for l in self.layers))
        return list(range(max(1, int(round(0.8 * n)))))

    def _windows(self, prompt: str) -> list[str]:
        """The prompt, or overlapping token windows of it when it is longer than `window_tokens`."""
        if self.window_tokens < 1 or self.window_stride < 1:
            raise InputError(
                f"window_tokens ({self.window_tokens}) and window_stride ({self.window_stride}) must be >= 1"
            )
        tok = self._host().tokenizer
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        if len(ids) <= self.window_tokens:
            return [prompt]
        starts = list(range(0, max(1, len(ids) - self.window_tokens) + 1, self.window_stride))
        if starts[-1] + self.window_tokens < len(ids):
            starts.append(len(ids) - self.window_tokens)
        out = []
        for s in starts:
            text = tok.decode(ids[s : s + self.window_tokens], skip_special_tokens=True).strip()
            out.append(text or prompt[:1])
        return out

    def _history_tail(self, history: Sequence[dict[str, str]] | None) -> list[dict[str, str]] | None:
        """The most recent `history_tokens` tokens of the history (whole messages, the oldest kept
        one cut at its start), computed once per call and shared by every prompt window."""
        if not history:
            return None
        tok = self._host().tokenizer
        budget = max(0, int(self.history_tokens))
        out: list[dict[str, str]] = []
        for m in reversed(list(history)):
            if budget <= 0:
                break
            content = m.get("content", "")
            # a long message is cut by characters first, so tokenizing it stays cheap
            head = content[-8 * budget - 64 :]
            ids = tok(head, add_special_tokens=False)["input_ids"]
            if len(ids) > budget or len(head) < len(content):
                kept = tok.decode(ids[-budget:], skip_special_tokens=True) if len(ids) > budget else head
                out.append({**m, "content": kept})
                break
            out.append(dict(m))
            budget -= len(ids)
        return out[::-1] or None

    def features(
        self,
        prompts: Sequence[str],
        layers: Sequence[int],
        *,
        history: Sequence[dict[str, str]] | None = None,
        windows: str = "all",
        align: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Activations at [instruction, post-instruction...] for each prompt window.

        A text whose last characters merge with the template's next token can give one more
        or one fewer post-instruction token than the others; positions are then counted back
        from the end of the template (with `align`, to the fitted `n_positions_`).

        Returns:
            `(X, owner)`: `X` of shape `[n_windows, len(layers), n_positions, hidden]` and
            `owner[i]`, the index of the prompt window `i` came from. With `windows="last"`
            only each prompt's last window is used (fitting: harmful requests in long
            jailbreak texts usually sit at the end).
        """
        prompts = _check_prompts(prompts)
        encs, owner = self._encode(prompts, history, windows=windows, align=align)
        X = np.stack(self._rows(encs, layers)).astype(np.float32)  # type: ignore[arg-type]
        return X, np.asarray(owner)

    def _encode(
        self, prompts: list[str], history: History | None, *, windows: str = "all", align: bool = False
    ) -> tuple[list[Encoded], list[int]]:
        """Every window of every prompt as a chat after `history`'s tail, and its prompt's index."""
        tail = self._history_tail(history)
        encs: list[Encoded] = []
        owner: list[int] = []
        for i, p in enumerate(prompts):
            parts = self._windows(p)
            if windows == "last":
                parts = parts[-1:]
            for w in parts:
                encs.append(self._host().encode(w, tail))
                owner.append(i)
        return _align_post(encs, getattr(self, "n_positions_", None) if align else None), owner

    def _rows(self, encs: Sequence[Encoded], layers: Sequence[int]) -> list[np.ndarray]:
        """Activations at ``[instruction, *post_instruction]`` for each chat (``[len(layers),
        n_positions, hidden]``): those `reuse_states` holds, the rest from one host capture (a
        chat repeated in `encs` is captured once)."""
        reused = _REUSED.get()
        rows: list[np.ndarray | None] = [reused.get((id(self), e.input_ids, tuple(layers))) for e in encs]
        missing: dict[tuple[int, ...], list[int]] = {}
        for k, r in enumerate(rows):
            if r is None:
                missing.setdefault(encs[k].input_ids, []).append(k)
        if missing:
            firsts = [ks[0] for ks in missing.values()]
            states = self._host().capture([encs[k] for k in firsts], layers, batch_size=self.batch_size)
            for ks, s in zip(missing.values(), states):
                for k in ks:
                    e = encs[k]
                    rows[k] = s[:, [e.instruction, *e.post_instruction], :].numpy()
        return rows  # type: ignore[return-value]

    @contextlib.contextmanager
    def reuse_states(
        self, states: Mapping[tuple[tuple[int, ...], tuple[int, ...]], np.ndarray]
    ) -> Iterator[None]:
        """Inside the block, `features` takes these activations instead of running the host.

        Used by `guard.whitebox.prefill`: the host's own prefill pass during generation already computed
        the activations the guard reads, so scoring costs only a projection. Keys are
        ``(input_ids, layers)`` of an `Encoded` chat, values ``[len(layers), n_positions, hidden]``
        at ``[instruction, *post_instruction]``. Keying by the exact token ids means only the
        very chat the activations came from can take them; any other chat is captured as usual.

        Example:
            >>> with guard.reuse_states({(enc.input_ids, (guard.layer_,)): x}):  # doctest: +SKIP
            ...     guard.scores([prompt])
        """
        # a context variable, not an attribute: concurrent requests (threads, asyncio tasks) on one
        # guard never see each other's activations
        token = _REUSED.set({**_REUSED.get(), **{(id(self), *key): v for key, v in states.items()}})
        try:
            yield
        finally:
            _REUSED.reset(token)

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        prompts: Sequence[str],
        labels: Sequence[int | str] | np.ndarray,
        *,
        refusal_replies: Sequence[str] | None = None,
        compliance_replies: Sequence[str] | None = None,
        features: np.ndarray | None = None,
        with_refusal: bool = True,
    ) -> LatentGuard:
        """Learn the harmfulness direction, choose layer and position, calibrate, learn refusal.

        Args:
            prompts: fitting prompts.
            labels: 1/"harmful" or 0/"benign" per prompt.
            refusal_replies / compliance_replies: reply texts teacher-forced after a sample of
                the prompts to derive the refusal direction; the packaged examples by default.
            features: precomputed `features(prompts, candidate_layers, windows="last")[0]`
                (lets a caller reuse one forward pass across several fits).
            with_refusal: also learn the refusal direction (a few extra forward passes).
        """
        from sklearn.model_selection import StratifiedKFold

        prompts = _check_prompts(prompts)
        y = _labels_to_int(labels)
        if len(y) != len(prompts):
            raise InputError(f"{len(prompts)} prompts but {len(y)} labels")
        if len(np.unique(y)) < 2 or min(np.bincount(y)) < self.cv:
            raise InputError(
                f"need at least {self.cv} prompts of each label, got counts {np.bincount(y).tolist()}"
            )
        layers = self._candidate_layers()
        X = features if features is not None else self.features(prompts, layers, windows="last")[0]
        n, n_layers, n_pos, _ = X.shape
        if n != len(prompts) or n_layers != len(layers):
            raise InputError(
                f"features of shape {X.shape} do not match {len(prompts)} prompts x {len(layers)} layers"
            )

        # 1. cross-validated AUROC of a linear direction for every (layer, position): shrinkage
        #    LDA, a closed-form stand-in for the logistic probe that is cheap enough for the grid
        folds = list(
            StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state).split(np.zeros(n), y)
        )
        oof = np.zeros((n, n_layers, n_pos), dtype=np.float64)
        for tr, te in folds:
            for l in range(n_layers):
                for p in range(n_pos):
                    d = _lda_direction(X[tr, l, p, :], y[tr], self.method)
                    oof[te, l, p] = X[te, l, p, :].astype(np.float64) @ d
        grid = np.array([[auroc(y, oof[:, l, p]) for p in range(n_pos)] for l in range(n_layers)])

        # 2. COSMIC cosine score on a shortlist
        order = np.argsort(-grid, axis=None)
        shortlist = [
            (int(l), int(p))
            for l, p in (np.unravel_index(i, grid.shape) for i in order[: max(1, self.cosmic_shortlist)])
        ]
        cosmic: dict[tuple[int, int], float] = {}
        if self.cosmic_shortlist > 0:
            cosmic = self._cosmic_scores(prompts, y, X, layers, shortlist)
        best = shortlist[0]
        if self.selection == "cosmic" and cosmic:
            top = grid[best]
            eligible = [c for c in shortlist if grid[c] >= top - self.auroc_tolerance]
            best = max(eligible, key=lambda c: cosmic[c])
        elif self.selection not in {"cosmic", "auroc"}:
            raise InputError(f"selection must be 'cosmic' or 'auroc', got {self.selection!r}")
        li, pi = best

        # 3. the probe at the chosen point, with out-of-fold Platt calibration
        Z = X[:, li, pi, :].astype(np.float64)
        oof_dec = np.zeros(n)
        for tr, te in folds:
            w, b = self._probe(Z[tr], y[tr])
            oof_dec[te] = Z[te] @ w + b
        w, b = self._probe(Z, y)
        self.direction_ = w.astype(np.float32)
        self.bias_ = float(b)
        self.platt_ = _platt(oof_dec, y)
        self.layer_ = int(layers[li])
        self.position_ = int(pi)
        self.n_positions_ = int(n_pos)
        self.candidate_layers_ = list(layers)
        self.auroc_grid_ = grid
        self.cosmic_scores_ = {f"{layers[l]}:{p}": float(s) for (l, p), s in cosmic.items()}
        self.cv_auroc_ = float(auroc(y, oof_dec))
        self.selection_auroc_ = float(grid[li, pi])

        # 4. refusal direction, contrastive and teacher-forced, at the same layer
        if with_refusal:
            self._fit_refusal(prompts, refusal_replies, compliance_replies)
        else:
            self.refusal_direction_ = np.zeros_like(self.direction_)
            self.refusal_reply_auroc_ = float("nan")
        r = self.refusal_direction_
        self.harm_refusal_cosine_ = float(
            np.dot(self.direction_, r) / (np.linalg.norm(self.direction_) * np.linalg.norm(r) + 1e-12)
        )
        return self

    def _probe(self, Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        """One direction and bias in raw activation space: decision = z @ w + b."""
        if self.method == "diffmean":
            d = Z[y == 1].mean(0) - Z[y == 0].mean(0)
            mid = 0.5 * (Z[y == 1].mean(0) + Z[y == 0].mean(0))
            return d, float(-mid @ d)
        if self.method != "logistic":
            raise InputError(f"method must be 'logistic' or 'diffmean', got {self.method!r}")
        from sklearn.linear_model import LogisticRegression

        mu, sd = Z.mean(0), Z.std(0) + 1e-6
        clf = LogisticRegression(C=self.C, max_iter=2000, class_weight="balanced")
        clf.fit((Z - mu) / sd, y)
        w = clf.coef_[0] / sd
        return w, float(clf.intercept_[0] - (mu * w).sum())

    def _cosmic_scores(
        self,
        prompts: list[str],
        y: np.ndarray,
        X: np.ndarray,
        layers: list[int],
        shortlist: list[tuple[int, int]],
    ) -> dict[tuple[int, int], float]:
        """COSMIC's output-free score for each candidate (layer index, position).

        For a candidate direction r from (l, p): ablate r̂ from every layer's output on harmful
        prompts and add r at layer l on benign prompts, then take the mean cosine similarity of
        the post-instruction activations in the late layers to the *other* class's mean there.
        A direction that really carries the concept moves each class toward the other.
        """
        import torch

        host = self._host()
        rng = np.random.default_rng(self.random_state)
        harm = [prompts[i] for i in rng.permutation(np.flatnonzero(y == 1))[: self.cosmic_samples]]
        benign = [prompts[i] for i in rng.permutation(np.flatnonzero(y == 0))[: self.cosmic_samples]]
        all_layers = list(range(host.num_layers))
        # late layers: the deepest ~10 % of the model, downstream of every candidate, so a
        # candidate's own edit cannot score itself
        n_late = max(1, round(0.1 * host.num_layers))
        late_layers = [l for l in all_layers[-n_late:] if l > max(layers)] or all_layers[-1:]
        enc_h = [host.encode(self._windows(p)[-1]) for p in harm]
        enc_b = [host.encode(self._windows(p)[-1]) for p in benign]

        def post_means(encs: list[Encoded]) -> np.ndarray:
            states = host.capture(encs, late_layers, batch_size=self.batch_size)
            return np.stack(
                [
                    s[:, list(e.post_instruction) or [e.instruction], :].mean(1).numpy()
                    for s, e in zip(states, encs)
                ]
            )

        tgt_h = post_means(enc_h).mean(0)  # [late, H]
        tgt_b = post_means(enc_b).mean(0)
        mu_h = X[y == 1].mean(0)  # [L, P, H]
        mu_b = X[y == 0].mean(0)
        scores: dict[tuple[int, int], float] = {}
        for li, pi in shortlist:
            r = torch.tensor(mu_h[li, pi] - mu_b[li, pi])
            r_hat = r / (r.norm() + 1e-12)

            def ablate(h: Any, r_hat: Any = r_hat) -> Any:
                rh = r_hat.to(h.dtype).to(h.device)
                return h - (h @ rh).unsqueeze(-1) * rh

            def add(h: Any, r: Any = r) -> Any:
                return h + r.to(h.dtype).to(h.device)

            with host.intervene({l: ablate for l in all_layers}):
                a_h = post_means(enc_h)
            with host.intervene({layers[li]: add}):
                a_b = post_means(enc_b)
            s1 = _mean_cos(a_h, tgt_b)
            s2 = _mean_cos(a_b, tgt_h)
            scores[(li, pi)] = float(0.5 * (s1 + s2))
        return scores

    def _fit_refusal(
        self,
        prompts: list[str],
        refusal: Sequence[str] | None,
        compliance: Sequence[str] | None,
        n_pairs: int = 64,
        reply_tokens: int = 12,
    ) -> None:
        if refusal is None or compliance is None:
            from guard.io.data import load_reply_openings

            r_default, c_default = load_reply_openings()
            refusal = refusal if refusal is not None else r_default
            compliance = compliance if compliance is not None else c_default
        refusal, compliance = list(refusal), list(compliance)
        if not refusal or not compliance:
            raise InputError("the refusal direction needs refusal and compliance replies")
        host = self._host()
        rng = np.random.default_rng(self.random_state + 1)
        idx = rng.permutation(len(prompts))[:n_pairs]
        encs = []
        for k, i in enumerate(idx):
            p = self._windows(prompts[i])[-1]
            encs.append(host.encode(p, reply=refusal[k % len(refusal)]))
            encs.append(host.encode(p, reply=compliance[k % len(compliance)]))
        states = host.capture(encs, [self.layer_], batch_size=self.batch_size)
        vec = np.stack([s[0, list(e.reply[:reply_tokens]), :].mean(0).numpy() for s, e in zip(states, encs)])
        ref, com = vec[0::2], vec[1::2]
        self.refusal_direction_ = (ref.mean(0) - com.mean(0)).astype(np.float32)
        proj = vec @ self.refusal_direction_
        self.refusal_reply_auroc_ = auroc(np.tile([1, 0], len(idx)), proj)

    # ------------------------------------------------------------------ scoring
    def _check_fitted(self) -> None:
        if not hasattr(self, "direction_"):
            raise NotFittedError("this LatentGuard is not fitted yet; call fit() or load an artifact")

    @property
    def readout_layers(self) -> list[int]:
        """The layers the harmfulness score reads: `harm_layers_` for a several-layer readout,
        else `layer_` alone."""
        self._check_fitted()
        layers = getattr(self, "harm_layers_", None)
        return [int(x) for x in layers] if layers else [int(self.layer_)]

    @property
    def capture_layers(self) -> list[int]:
        """Every layer a score needs, in order: the readout layers and `layer_` (refusal, and the
        probes that share the capture). The host pass stops after the last one.

        Example:
            >>> lg.capture_layers  # doctest: +SKIP
            [12, 16, 20]
        """
        return sorted({*self.readout_layers, int(self.layer_)})

    def set_readout(self, layers: Sequence[int], directions: np.ndarray, bias: float) -> LatentGuard:
        """Make the harmfulness score a readout over several layers (what ``guard fit --grouped``
        chooses when it validates better than one layer); `direction_` at `layer_` stays as is.

        Args:
            layers: the layers read, distinct.
            directions: ``[len(layers), hidden]``, one direction per layer on raw states.
            bias: added once to the sum of the projections.

        Example:
            >>> lg.set_readout([12, 16, 20], W, -0.3).capture_layers  # doctest: +SKIP
            [12, 16, 20]
        """
        layers = [int(x) for x in layers]
        directions = np.asarray(directions, dtype=np.float32)
        if not layers or len(set(layers)) != len(layers):
            raise InputError(f"readout layers must be distinct, at least one; got {layers}")
        if directions.ndim != 2 or directions.shape[0] != len(layers):
            raise InputError(f"directions of shape {directions.shape} do not match {len(layers)} layers")
        if not np.isfinite(directions).all() or not np.isfinite(bias):
            raise InputError("readout directions and bias must be finite")
        self.harm_layers_ = layers
        self.harm_directions_ = directions
        self.harm_bias_ = float(bias)
        return self

    def readout(self) -> tuple[np.ndarray, float]:
        """The harmfulness readout: directions ``[len(readout_layers), hidden]`` and its bias."""
        if getattr(self, "harm_layers_", None):
            return np.asarray(self.harm_directions_, dtype=np.float64), float(self.harm_bias_)
        return np.asarray(self.direction_, dtype=np.float64)[None, :], float(self.bias_)

    def _window_scores(
        self, prompts: Sequence[str], history: Sequence[dict[str, str]] | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._check_fitted()
        X, owner = self.features(prompts, self.capture_layers, history=history, align=True)
        dec, ref = self.project(X)
        return dec, ref, owner

    def project(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw harmfulness and refusal projections of captured states.

        `states` is ``[n, len(capture_layers), n_positions, hidden]`` (the layers of
        `capture_layers`, in its order), or ``[n, n_positions, hidden]`` at `layer_` when the
        readout reads that layer alone.
        """
        self._check_fitted()
        layers = self.capture_layers
        states = np.asarray(states)
        if states.ndim == 3:
            if layers != [int(self.layer_)]:
                raise InputError(
                    f"this guard reads layers {layers}; pass states [n, {len(layers)}, positions, hidden]"
                )
            states = states[:, None]
        if states.ndim != 4 or states.shape[1] != len(layers):
            raise InputError(f"states of shape {states.shape} do not hold the {len(layers)} layers {layers}")
        directions, bias = self.readout()
        dec = np.full(states.shape[0], bias)
        for d, layer in zip(directions, self.readout_layers):
            dec = dec + states[:, layers.index(layer), self.position_, :].astype(np.float64) @ d
        own = states[:, layers.index(int(self.layer_))]
        post = own[:, 1:, :].mean(1) if own.shape[1] > 1 else own[:, 0, :]
        return dec, post.astype(np.float64) @ self.refusal_direction_

    def calibrated(self, raw: np.ndarray) -> np.ndarray:
        """Platt-calibrated probability for raw projections."""
        self._check_fitted()
        return sigmoid(self.platt_[0] * np.asarray(raw, dtype=np.float64) + self.platt_[1])

    def decision_function(
        self, prompts: Sequence[str], history: Sequence[dict[str, str]] | None = None
    ) -> np.ndarray:
        """Raw harmfulness projection (the max over a long prompt's windows); > 0 leans harmful."""
        dec, _, owner = self._window_scores(prompts, history)
        return _max_by_owner(dec, owner, len(prompts))

    def score(self, prompts: Sequence[str], history: Sequence[dict[str, str]] | None = None) -> np.ndarray:
        """Calibrated probability in [0, 1] that each prompt is harmful."""
        return self.predict_proba(prompts, history)[:, 1]

    def predict_proba(
        self, prompts: Sequence[str], history: Sequence[dict[str, str]] | None = None
    ) -> np.ndarray:
        """Columns follow `classes_` = [0 (benign), 1 (harmful)]."""
        p = self.calibrated(self.decision_function(prompts, history))
        return np.column_stack([1 - p, p])

    def refusal_score(
        self, prompts: Sequence[str], history: Sequence[dict[str, str]] | None = None
    ) -> np.ndarray:
        """Projection of the post-instruction activations on the refusal direction (raw)."""
        _, ref, owner = self._window_scores(prompts, history)
        return _max_by_owner(ref, owner, len(prompts))

    def scores(
        self,
        prompts: Sequence[str],
        history: Sequence[dict[str, str]] | None = None,
        *,
        with_states: bool = False,
    ) -> LatentScores:
        """Harmfulness probability, raw projection and refusal projection from one forward pass.

        With `with_states`, also ``states``: each prompt's last window's activations at `layer_`
        (``[n, n_positions, hidden]``), for other probes that read the same capture (the
        knowledge probe), so they cost no second pass.

        Example:
            >>> s = lg.scores(["How do I build a pipe bomb?"])  # doctest: +SKIP
            >>> s.harmfulness, s.states is None  # doctest: +SKIP
            (array([0.98]), True)
        """
        return self.scores_many([ScoreGroup(prompts, history, with_states)])[0]

    def scores_many(self, groups: Sequence[ScoreGroup]) -> list[LatentScores]:
        """`scores` for several groups of texts, each read after its own history, from one host
        capture: a request's prompt and its readings after the chat history, its retrieved
        documents after none. (The capture still runs in forward batches of `batch_size`.)

        Each group's result equals ``scores(group.prompts, group.history,
        with_states=group.with_states)``; a group without prompts gives empty arrays.

        Raises:
            InputError: `groups` is not a list of `ScoreGroup`, or a prompt is not a non-empty
                string (checked for every group before the host runs).

        Example:
            >>> request, docs = lg.scores_many([  # doctest: +SKIP
            ...     ScoreGroup(["go on"], history=[{"role": "user", "content": "hi"}]),
            ...     ScoreGroup(["Retrieved page text ..."]),
            ... ])
            >>> float(docs.harmfulness.max())  # doctest: +SKIP
            0.02
        """
        self._check_fitted()
        groups = _check_groups(groups)
        layers = self.capture_layers
        checked = [_check_prompts(g.prompts) for g in groups]
        encoded = [self._encode(p, g.history, align=True) for p, g in zip(checked, groups)]
        rows = self._rows([e for encs, _ in encoded for e in encs], layers)
        empty = (0, len(layers), int(getattr(self, "n_positions_", 1)), int(np.shape(self.direction_)[-1]))
        out: list[LatentScores] = []
        at = 0
        for g, prompts, (encs, owner) in zip(groups, checked, encoded):
            part = rows[at : at + len(encs)]
            at += len(encs)
            X = np.stack(part).astype(np.float32) if part else np.zeros(empty, dtype=np.float32)
            out.append(self._scores_of(X, np.asarray(owner, dtype=int), len(prompts), g.with_states))
        return out

    def capture_states(
        self, groups: Sequence[ScoreGroup]
    ) -> dict[tuple[tuple[int, ...], tuple[int, ...]], np.ndarray]:
        """The activations every window of every group is scored from, from one host capture, in
        `reuse_states`'s format (keyed by each chat's token ids and `capture_layers`).

        A request-scoped feature bundle: a caller that knows every text a request will score
        (the prompt, its readings, its documents, the history turns checked on their own)
        captures them together, then scores each inside ``reuse_states(bundle)`` with no further
        host pass. Chats `reuse_states` already holds are not captured again.

        Example:
            >>> bundle = lg.capture_states([ScoreGroup([prompt], history), ScoreGroup(docs)])  # doctest: +SKIP
            >>> with lg.reuse_states(bundle):  # doctest: +SKIP
            ...     lg.scores([prompt], history), lg.score(docs)  # no host pass
        """
        self._check_fitted()
        groups = _check_groups(groups)
        layers = self.capture_layers
        checked = [_check_prompts(g.prompts) for g in groups]
        encs = [e for p, g in zip(checked, groups) for e in self._encode(p, g.history, align=True)[0]]
        rows = self._rows(encs, layers)
        return {(e.input_ids, tuple(layers)): r for e, r in zip(encs, rows)}

    def _scores_of(self, X: np.ndarray, owner: np.ndarray, n: int, with_states: bool) -> LatentScores:
        """`LatentScores` of `n` prompts from their windows' states `X` (`owner`: each window's prompt)."""
        layers = self.capture_layers
        dec, ref = self.project(X)
        d = _max_by_owner(dec, owner, n)
        states = None
        if with_states:
            own = layers.index(int(self.layer_))
            last = np.array([np.flatnonzero(owner == i)[-1] for i in range(n)], dtype=int)
            states = X[last, own] if n else X[:0, own]
        return LatentScores(
            harmfulness=self.calibrated(d),
            harmfulness_raw=d,
            refusal=_max_by_owner(ref, owner, n),
            states=states,
        )

    @property
    def classes_(self) -> np.ndarray:
        """``[0, 1]``: benign, harmful (a fresh array: nothing shared between instances)."""
        return np.array([0, 1])

    def report(self) -> dict[str, Any]:
        """What fit chose and why: both selection criteria, the cosine between directions."""
        self._check_fitted()
        return {
            "layer": self.layer_,
            "readout_layers": self.readout_layers,
            "position": "instruction" if self.position_ == 0 else f"post_instruction[{self.position_ - 1}]",
            "selection": self.selection,
            "selection_auroc": self.selection_auroc_,
            "cv_auroc_probe": self.cv_auroc_,
            "cosmic_scores": self.cosmic_scores_,
            "harm_refusal_cosine": self.harm_refusal_cosine_,
            "refusal_reply_auroc": self.refusal_reply_auroc_,
            "best_auroc_by_layer": {
                str(l): float(np.nanmax(self.auroc_grid_[i])) for i, l in enumerate(self.candidate_layers_)
            },
        }


def _lda_direction(Z: np.ndarray, y: np.ndarray, method: str, shrinkage: float = 0.1) -> np.ndarray:
    """(Sigma + shrinkage * tr(Sigma)/H * I)^-1 (mu1 - mu0); plain difference in means for "diffmean"."""
    # Kept over LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrinkage / (1 + shrinkage)).coef_[0]:
    # same direction up to a positive scale (1 - cos < 1e-15, identical AUROC) but 5-14x slower per call
    # (its lstsq vs this solve); the 1e-8 jitter alone moves it off sklearn's (1 - cos ~ 1e-5) when
    # tr(Sigma) ~ 1e-4, as on the tiny test hosts. tests/test_library_equivalence.py checks it.
    Z = Z.astype(np.float64)
    diff = Z[y == 1].mean(0) - Z[y == 0].mean(0)
    if method == "diffmean":
        return diff
    centred = np.concatenate([Z[y == 1] - Z[y == 1].mean(0), Z[y == 0] - Z[y == 0].mean(0)])
    cov = centred.T @ centred / max(1, len(Z) - 2)
    cov[np.diag_indices_from(cov)] += shrinkage * np.trace(cov) / cov.shape[0] + 1e-8
    return np.linalg.solve(cov, diff)


def _labels_to_int(labels: Sequence[int | str] | np.ndarray) -> np.ndarray:
    out = []
    for i, v in enumerate(labels):
        if v in (1, True, "harmful"):
            out.append(1)
        elif v in (0, False, "benign"):
            out.append(0)
        else:
            raise InputError(f"label {i} is {v!r}; use 1/'harmful' or 0/'benign'")
    return np.asarray(out, dtype=int)


def _platt(dec: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    # Kept over CalibratedClassifierCV(FrozenEstimator(...), method="sigmoid"): that is Platt with
    # smoothed targets, which moves the probabilities by up to 0.12 (n=60) to 1.4e-3 (n=2000) and costs
    # 2-3x the time; this is the plain logistic MLE to <= 3e-4 on O(1) scores (not on ~1e-4 ones).
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1e4, max_iter=1000).fit(dec.reshape(-1, 1), y)
    return float(clf.coef_[0, 0]), float(clf.intercept_[0])


def _mean_cos(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over samples and layers of cos(a[n, l], b[l])."""
    num = np.einsum("nlh,lh->nl", a, b)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)[None, :] + 1e-12
    return float((num / den).mean())


def _align_post(encs: list[Encoded], n_positions: int | None) -> list[Encoded]:
    """Give every chat the same number of post-instruction positions, counted back from the end of
    the template (the instruction is the token before them)."""
    from collections import Counter

    counts = Counter(len(e.post_instruction) for e in encs)
    want = n_positions - 1 if n_positions is not None else (counts.most_common(1)[0][0] if counts else 0)
    if not encs or set(counts) == {want}:
        return encs
    out = []
    for e in encs:
        if len(e.post_instruction) == want:
            out.append(e)
            continue
        end = (e.post_instruction[-1] + 1) if e.post_instruction else e.instruction + 1
        if end - want - 1 < 0:
            raise InputError(
                f"the chat is {end} tokens long, too short for {want} post-instruction positions"
            )
        out.append(Encoded(e.input_ids, end - want - 1, tuple(range(end - want, end)), e.reply))
    return out


def _max_by_owner(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, -np.inf)
    np.maximum.at(out, owner, values)
    return out
