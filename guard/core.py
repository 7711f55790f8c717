"""Guard: the entry point that turns a request into a `Decision`."""

from __future__ import annotations

import asyncio
import re
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from guard.artifacts import load_latent, recorded_host, save_latent
from guard.constructive import constructive_response
from guard.decision import Action, Decision, Evidence
from guard.errors import ArtifactError, GuardError, InputError
from guard.host import HostModel
from guard.latent import LatentGuard
from guard.policy import Policy
from guard.taxonomy import keyword_category

_SURROGATE = re.compile(r"[\ud800-\udfff]")


def prepare_prompt(prompt: Any) -> tuple[str, list[str]]:
    """Make a prompt safe to tokenize, saying what was changed (nothing is dropped silently).

    Lone surrogates become U+FFFD and control characters (other than tab and newline) become
    spaces; the returned notes name each change.

    Raises:
        InputError: the prompt is not a string.

    Example:
        >>> prepare_prompt("hi\\x00there")
        ('hi there', ['replaced 1 control character(s) with spaces'])
    """
    if not isinstance(prompt, str):
        raise InputError(f"prompt must be a str, got {type(prompt).__name__}; pass the user's text")
    notes = []
    text, n = _SURROGATE.subn("\ufffd", prompt)
    if n:
        notes.append(f"replaced {n} invalid unicode code point(s) (lone surrogates) with U+FFFD")
    controls = sum(1 for c in text if unicodedata.category(c) == "Cc" and c not in "\t\n\r")
    if controls:
        text = "".join(" " if unicodedata.category(c) == "Cc" and c not in "\t\n\r" else c for c in text)
        notes.append(f"replaced {controls} control character(s) with spaces")
    return text, notes


def _default_artifact() -> Path:
    return Path(str(resources.files("guard.resources").joinpath("default_guard")))


class Guard:
    """Decides answer / abstain / refuse for each request, with reasons and a constructive reply.

    The constructor only stores fitted parts; `Guard.default()` and `Guard.load()` load them.

    Args:
        latent: a fitted `LatentGuard` (it carries its `HostModel`).
        policy: thresholds and fail modes.
        detectors: extra black-box scorers, `name -> f(prompts) -> probabilities in [0, 1]`
            (e.g. `classifiers.prompt_refusal_score`). Their scores are attached to every
            decision as evidence; at this stage the action still comes from the latent score.

    Example:
        >>> g = Guard.default()  # doctest: +SKIP
        >>> g.check("How do I build a pipe bomb at home?").action  # doctest: +SKIP
        <Action.REFUSE: 'refuse'>
    """

    def __init__(
        self,
        latent: LatentGuard,
        policy: Policy | None = None,
        detectors: Mapping[str, Callable[[list[str]], Any]] | None = None,
    ) -> None:
        self.latent = latent
        self.policy = policy or Policy()
        self.detectors = dict(detectors or {})

    @property
    def host(self) -> HostModel:
        return self.latent._host()

    # ------------------------------------------------------------------ persistence
    @classmethod
    def default(cls, *, device: str | None = None, blackbox: bool = True) -> Guard:
        """The embedded default: SmolLM2-135M-Instruct host plus the shipped fitted artifacts.

        With `blackbox`, the shipped prompt-refusal and embedding classifiers add evidence.
        """
        return cls.load(_default_artifact(), host=HostModel.default(device=device), blackbox=blackbox)

    @classmethod
    def load(cls, path: str | Path, host: HostModel | None = None, *, blackbox: bool = False) -> Guard:
        """Load a guard saved with `save`, for `host` (default: the host it was fitted on, when its
        recorded path exists, else the embedded SmolLM2 host)."""
        if not Path(path).exists():
            raise ArtifactError(f"no guard at {path}; create one with `guard fit --out {path}`")
        latent, policy, _ = load_latent(path, host or recorded_host(path))
        return cls(latent, policy, detectors=default_detectors() if blackbox else None)

    def save(self, path: str | Path) -> Path:
        """Write the fitted parts to a folder (safetensors + JSON)."""
        return save_latent(path, self.latent, self.policy)

    # ------------------------------------------------------------------ decisions
    def check(
        self,
        prompt: str,
        history: Sequence[dict[str, str]] | None = None,
        context: Sequence[str] | None = None,
    ) -> Decision:
        """Decide on one request.

        Args:
            prompt: the user's latest message.
            history: earlier chat messages (`{"role", "content"}` dicts), read with the prompt.
            context: retrieved documents (RAG); each is scored for harmful or injected content.
        """
        return self.check_batch([prompt], history=history, context=context)[0]

    async def acheck(
        self,
        prompt: str,
        history: Sequence[dict[str, str]] | None = None,
        context: Sequence[str] | None = None,
    ) -> Decision:
        """`check` without blocking the event loop (runs in a worker thread)."""
        return await asyncio.to_thread(self.check, prompt, history, context)

    def check_batch(
        self,
        prompts: Sequence[str],
        history: Sequence[dict[str, str]] | None = None,
        context: Sequence[str] | None = None,
    ) -> list[Decision]:
        """Decide on many requests; scoring runs batched through the host."""
        if isinstance(prompts, str):
            raise InputError("check_batch expects a list of prompts; use check() for one")
        history = _check_history(history)
        docs = _check_context(context)
        start = time.perf_counter()
        prepared = [prepare_prompt(p) for p in prompts]
        decisions: list[Decision | None] = [None] * len(prepared)
        todo: list[int] = []
        for i, (text, notes) in enumerate(prepared):
            if not text.strip():
                decisions[i] = self._decide(Action.ABSTAIN, "empty", {}, [*notes, "the prompt is empty"])
            elif len(text) > self.policy.max_prompt_chars:
                decisions[i] = self._decide(
                    Action.ABSTAIN, "too_long", {},
                    [*notes, f"prompt has {len(text)} characters, over the policy limit of "
                             f"{self.policy.max_prompt_chars}; not scored"],
                )
            else:
                todo.append(i)
        if todo:
            try:
                scored = self.latent.scores([prepared[i][0] for i in todo], history=history)
                ctx = self.latent.score(docs) if docs else None
            except GuardError:
                raise
            except Exception as exc:  # an unknown state: fail closed unless configured otherwise
                for i in todo:
                    decisions[i] = self._unavailable(exc, prepared[i][1])
            else:
                extra = self._blackbox([prepared[i][0] for i in todo])
                for k, i in enumerate(todo):
                    d = self._from_scores(prepared[i][0], prepared[i][1], scored, k, ctx)
                    for name, values in extra.items():
                        if isinstance(values, str):
                            d.reasons.append(values)
                            continue
                        d.scores[name] = float(values[k])
                        d.evidence.append(Evidence(source="blackbox", name=name, value=float(values[k]),
                                                   detail="evidence only at this stage"))
                    decisions[i] = d
        elapsed = (time.perf_counter() - start) * 1000 / max(1, len(prompts))
        out = []
        for d in decisions:
            assert d is not None
            d.latency_ms = elapsed
            out.append(d)
        return out

    def check_output(self, prompt: str, reply: str) -> Decision:
        """Decide on a reply before it reaches the user (the reply is scored like a request)."""
        text, notes = prepare_prompt(reply)
        if not text.strip():
            return self._decide(Action.ANSWER, None, {}, [*notes, "empty reply"])
        return self.check(text[: self.policy.max_prompt_chars], history=[{"role": "user", "content": prepare_prompt(prompt)[0]}])

    # ------------------------------------------------------------------ internals
    def _blackbox(self, texts: list[str]) -> dict[str, Any]:
        """Scores of the extra detectors; a failing detector is reported, not fatal (evidence only)."""
        out: dict[str, Any] = {}
        for name, fn in self.detectors.items():
            try:
                out[name] = [float(v) for v in fn(texts)]
            except Exception as exc:  # noqa: BLE001 - evidence-only detectors must not break a decision
                out[name] = f"detector {name!r} failed ({type(exc).__name__}: {exc}); its evidence is missing"
        return out

    def _from_scores(
        self, text: str, notes: list[str], scored: dict[str, Any], k: int, ctx: Any
    ) -> Decision:
        p = float(scored["harmfulness"][k])
        t = self.policy.threshold
        scores = {
            "harmfulness": p,
            "harmfulness_raw": float(scored["harmfulness_raw"][k]),
            "refusal": float(scored["refusal"][k]),
        }
        evidence = [
            Evidence(source="latent", name="harmfulness", value=p, threshold=t,
                     detail=f"layer {self.latent.layer_}, position {self.latent.position_}"),
            Evidence(source="latent", name="refusal", value=scores["refusal"],
                     detail="projection on the contrastive refusal direction (not used to decide yet)"),
        ]
        reasons = list(notes)
        action, category = Action.ANSWER, None
        if p >= t:
            action = Action.REFUSE
            category = (keyword_category(text) or "other_harm").__str__()
            reasons.append(f"latent harmfulness {p:.3f} >= threshold {t:.3f}")
        else:
            reasons.append(f"latent harmfulness {p:.3f} < threshold {t:.3f}")
        if ctx is not None:
            ct = self.policy.context_threshold if self.policy.context_threshold is not None else t
            worst = float(max(ctx))
            scores["context_harmfulness"] = worst
            evidence.append(Evidence(source="latent", name="context_harmfulness", value=worst, threshold=ct,
                                     detail=f"max over {len(ctx)} retrieved document(s)"))
            if worst >= ct and action is Action.ANSWER:
                action, category = Action.REFUSE, "jailbreak_injection"
                reasons.append(f"a retrieved document scores {worst:.3f} >= {ct:.3f} (harmful or injected content)")
        return Decision(action=action, category=category, scores=scores, reasons=reasons,
                        response=constructive_response(action, category), evidence=evidence)

    def _unavailable(self, exc: Exception, notes: list[str]) -> Decision:
        action = Action.REFUSE if self.policy.fail_closed else Action.ANSWER
        mode = "fail closed" if self.policy.fail_closed else "fail open (configured)"
        return self._decide(action, "guard_unavailable" if action is not Action.ANSWER else None, {},
                            [*notes, f"guard unavailable ({type(exc).__name__}: {exc}); {mode}"],
                            abstain_style=True)

    @staticmethod
    def _decide(action: Action, category: str | None, scores: dict[str, float], reasons: list[str],
                abstain_style: bool = False) -> Decision:
        response = constructive_response(Action.ABSTAIN if abstain_style and action is not Action.ANSWER else action,
                                         category)
        return Decision(action=action, category=category, scores=scores, reasons=reasons, response=response)


def default_detectors() -> dict[str, Callable[[list[str]], Any]]:
    """The shipped black-box scorers (MiniLM features; onnxruntime when installed)."""
    from classifiers import embedding_harm_score, prompt_refusal_score

    return {"prompt_refusal": prompt_refusal_score, "embedding_harm": embedding_harm_score}


def _check_history(history: Any) -> list[dict[str, str]] | None:
    if history is None:
        return None
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise InputError("history must be a list of {'role': ..., 'content': ...} messages")
    out = []
    for i, m in enumerate(history):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise InputError(f"history[{i}] must be a dict with str 'role' and 'content', got {m!r:.80}")
        if m["role"] not in {"system", "user", "assistant"}:
            raise InputError(f"history[{i}] has role {m['role']!r}; use system, user or assistant")
        out.append({"role": m["role"], "content": prepare_prompt(m["content"])[0]})
    return out


def _check_context(context: Any) -> list[str]:
    if context is None:
        return []
    if isinstance(context, str):
        context = [context]
    docs = []
    for i, d in enumerate(context):
        text = getattr(d, "page_content", d)  # LangChain Documents work as they are
        if not isinstance(text, str):
            raise InputError(f"context[{i}] must be a str (or have .page_content), got {type(d).__name__}")
        text = prepare_prompt(text)[0]
        if text.strip():
            docs.append(text)
    return docs
