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
from guard.engine import DecisionEngine, decide
from guard.errors import ArtifactError, GuardError, InputError
from guard.host import HostModel
from guard.latent import LatentGuard
from guard.policy import Policy

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
            decision as evidence; the policy's `harm_weights` say which ones decide.
        engine: computes model-backed evidence (noncompliance, rule topics) and decides;
            default: `DecisionEngine(policy, noncompliance=False)`.
        reply_refusal: `f(replies) -> P(refusal)`, used by `check_output` so refusals pass.

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
        engine: DecisionEngine | None = None,
        reply_refusal: Callable[[list[str]], Any] | None = None,
    ) -> None:
        self.latent = latent
        self.policy = policy or Policy()
        self.detectors = dict(detectors or {})
        self.engine = engine or DecisionEngine(self.policy, noncompliance=False)
        self.reply_refusal = reply_refusal

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
        if not blackbox:
            return cls(latent, policy)
        return cls(latent, policy, detectors=default_detectors(), engine=DecisionEngine(policy),
                   reply_refusal=default_reply_refusal())

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
                self._score_and_decide(prepared, todo, history, docs, decisions)
            except GuardError:
                raise
            except Exception as exc:  # an unknown state: fail closed unless configured otherwise
                for i in todo:
                    decisions[i] = self._unavailable(exc, prepared[i][1])
        elapsed = (time.perf_counter() - start) * 1000 / max(1, len(prompts))
        out = []
        for d in decisions:
            assert d is not None
            d.latency_ms = elapsed
            out.append(d)
        return out

    def check_output(self, prompt: str, reply: str) -> Decision:
        """Decide on a reply before it reaches the user.

        The reply is read like a request, after the user's prompt. A reply the
        reply-refusal detector (when configured) reads as a refusal is let through: it names a
        harmful topic only to decline it, and replacing it would replace our own safe replies.
        """
        text, notes = prepare_prompt(reply)
        if not text.strip():
            return self._decide(Action.ANSWER, None, {}, [*notes, "empty reply"])
        user = prepare_prompt(prompt)[0] if isinstance(prompt, str) else ""
        history = [{"role": "user", "content": user}] if user.strip() else None
        d = self.check(text[: self.policy.max_prompt_chars], history=history)
        if d.blocked and d.category not in {"guard_unavailable", "too_long"} and self.reply_refusal is not None:
            p = float(self.reply_refusal([text])[0])
            d.scores["reply_refusal"] = p
            d.evidence.append(Evidence(source="blackbox", name="reply_refusal", value=p, threshold=0.5))
            if p >= 0.5:
                return Decision(action=Action.ANSWER, scores=d.scores, evidence=d.evidence,
                                reasons=[*d.reasons, f"the reply is a refusal (P={p:.3f} >= 0.5); let through"],
                                latency_ms=d.latency_ms)
        return d

    # ------------------------------------------------------------------ internals
    def _score_and_decide(
        self,
        prepared: list[tuple[str, list[str]]],
        todo: list[int],
        history: list[dict[str, str]] | None,
        docs: list[str],
        decisions: list[Decision | None],
    ) -> None:
        texts = [prepared[i][0] for i in todo]
        scored = self.latent.scores(texts, history=history)
        ctx = self.latent.score(docs) if docs else None
        extra, notes = self._blackbox(texts)
        try:
            model_evidence = self.engine.evidence(texts)
        except Exception as exc:  # noqa: BLE001 - optional evidence; say it is missing
            model_evidence = [[] for _ in texts]
            notes.append(f"decision-engine evidence failed ({type(exc).__name__}: {exc})")
        for k, i in enumerate(todo):
            evidence = self._latent_evidence(scored, k, ctx)
            evidence += [Evidence(source="blackbox", name=n, value=v[k]) for n, v in extra.items()]
            decisions[i] = self._verdict(prepared[i][0], [*prepared[i][1], *notes],
                                         evidence + model_evidence[k], bool(docs))

    def _blackbox(self, texts: list[str]) -> tuple[dict[str, list[float]], list[str]]:
        """Scores of the extra detectors; a failing detector is reported, not fatal (evidence only)."""
        out: dict[str, list[float]] = {}
        notes: list[str] = []
        for name, fn in self.detectors.items():
            try:
                out[name] = [float(v) for v in fn(texts)]
            except Exception as exc:  # noqa: BLE001 - evidence-only detectors must not break a decision
                notes.append(f"detector {name!r} failed ({type(exc).__name__}: {exc}); its evidence is missing")
        return out, notes

    def _latent_evidence(self, scored: dict[str, Any], k: int, ctx: Any) -> list[Evidence]:
        where = f"layer {self.latent.layer_}, position {self.latent.position_}"
        out = [
            Evidence(source="latent", name="harmfulness", value=float(scored["harmfulness"][k]), detail=where),
            Evidence(source="latent", name="harmfulness_raw", value=float(scored["harmfulness_raw"][k]),
                     detail="raw projection on the harmfulness direction"),
            Evidence(source="latent", name="refusal", value=float(scored["refusal"][k]),
                     detail="projection on the contrastive refusal direction (reported, not decisive)"),
        ]
        if ctx is not None:
            out.append(Evidence(source="latent", name="context_harmfulness", value=float(max(ctx)),
                                detail=f"max over {len(ctx)} retrieved document(s)"))
        return out

    def _verdict(self, text: str, notes: list[str], evidence: list[Evidence], has_context: bool) -> Decision:
        v = decide(text, evidence, self.policy, has_context=has_context)
        return Decision(action=v.action, category=v.category, scores=v.scores, reasons=[*notes, *v.reasons],
                        response=constructive_response(v.action, v.category, override=v.response),
                        evidence=v.evidence, rule=v.rule)

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


def default_reply_refusal() -> Callable[[list[str]], Any]:
    """P(a reply is a refusal), from the shipped `ResponseRefusalDetector` (loaded on first use)."""
    import functools

    @functools.lru_cache(maxsize=1)
    def detector() -> Any:
        from classifiers import ResponseRefusalDetector

        return ResponseRefusalDetector.default()

    return lambda replies: detector().refusal_score(replies)


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
