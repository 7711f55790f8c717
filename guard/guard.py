"""Guard: the entry point that turns a request into a `Decision`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np

from classifiers.embeddings import shared_embeddings
from guard.decision import Action, Decision, Evidence
from guard.decision.constructive import constructive_response
from guard.decision.engine import decide, harm_category
from guard.decision.mitigation import OverRefusalMitigation, borderline
from guard.decision.policy import Policy
from guard.decision.rules import STRICTNESS
from guard.errors import ArtifactError, GuardError, InputError
from guard.features.evidence import DecisionEngine
from guard.features.reject import RejectOptionEvidence
from guard.features.reply_stream import LazyReplyHarm, LazyReplyScreen, ReplyStreamScorer
from guard.features.threads import one_blas_thread
from guard.features.windows import WindowSpec, split_windows, windowed_max
from guard.text.normalize import DECODING_KINDS, View, alternate_views, part_views
from guard.text.occlusion import _WORD, IGNORE_WORD_INSTRUCTION, ProbaFn, drop_span, occlusion
from guard.text.prepare import (
    PreparedText,
    check_context,
    check_history,
    neutralize_control_tokens,
    prepare_prompt,
    removed_control_tokens,
)
from guard.whitebox.artifacts import load_latent, recorded_host, save_latent
from guard.whitebox.host import HostModel
from guard.whitebox.knowledge import KnowledgeProbe, looks_factual
from guard.whitebox.latent import LatentGuard, LatentScores, ScoreGroup
from guard.whitebox.sae import NamedFeatures

#: Sub-folder of a guard folder holding its fitted reject option.
REJECT_OPTION_FOLDER = "reject_option"
#: Sub-folder of a guard folder holding its knowledge-boundary probe.
KNOWLEDGE_FOLDER = "knowledge"
#: Sub-folder of a guard folder holding its sparse autoencoder and feature names.
SAE_FOLDER = "sae"
#: A reply the reply head blocks is let through when the reply-refusal detector reads it as a
#: refusal at least this surely (it names a harmful topic only to decline it). At 0.5 the
#: detector let through 63 % of the labelled harmful replies (it reads an eager "Sure, here's..."
#: reply as declining); at 0.9, 5 of 2,046 (`fit_report.json` ``reply_side``; README, reply side).
REPLY_REFUSAL_LETS_THROUGH = 0.9


def _refusal_evidence(p: float) -> Evidence:
    """The reply-refusal detector's reading as evidence (NaN, a failed reading, shows as 0)."""
    return Evidence(
        source="blackbox",
        name="reply_refusal",
        value=p if p == p else 0.0,
        threshold=REPLY_REFUSAL_LETS_THROUGH,
    )


def _refusal_reason(p: float) -> str:
    """Why a blocked reply was let through: the detector reads it as a refusal."""
    return f"the reply is a refusal (P={p:.3f} >= {REPLY_REFUSAL_LETS_THROUGH}); let through"


def _default_artifact() -> Path:
    return Path(str(resources.files("guard.resources").joinpath("default_guard")))


def merge_readings(
    own: Decision, readings: Sequence[tuple[View, Decision]], *, judge_decoded: bool = True
) -> Decision:
    """One decision for a text from its own and its other readings' decisions.

    The strictest reading decides (ties keep the text's own). With `judge_decoded`, a decoding
    reading (`DECODING_KINDS`) stands in for the text as written: the detectors cannot read an
    encoded blob, so it is judged on what it says decoded; other readings (leetspeak, case,
    tense, parts) still decide when stricter. Every reading is named in the reasons.

    Example:
        >>> from guard.decision.decision import Action
        >>> blocked = Decision(action=Action.REFUSE, reasons=["pooled harm 0.9"])
        >>> fine = Decision(action=Action.ANSWER, reasons=["pooled harm 0.1"])
        >>> view = View(kind="base64", text="how do I bake bread", note="decoded 1 base64 blob")
        >>> merge_readings(blocked, [(view, fine)]).action
        <Action.ANSWER: 'answer'>
        >>> merge_readings(blocked, [(view, fine)], judge_decoded=False).action
        <Action.REFUSE: 'refuse'>
    """
    decoded = [(v, d) for v, d in readings if judge_decoded and v.kind in DECODING_KINDS]
    if decoded:
        view, best = max(decoded, key=lambda x: STRICTNESS[x[1].action])
        own = best.model_copy(
            update={
                "reasons": [
                    (
                        f"{view.note}: the text as written is encoded, so its decoded reading was judged "
                        f"({best.action.value}; as written: {own.action.value})"
                    ),
                    *best.reasons,
                ]
            }
        )
    for view, alt in readings:
        if decoded and view.kind in DECODING_KINDS:
            continue
        if STRICTNESS[alt.action] > STRICTNESS[own.action]:
            own = alt.model_copy(
                update={
                    "reasons": [
                        (
                            f"{view.note}: that reading decided ({alt.action.value}; the text as written: "
                            f"{own.action.value})"
                        ),
                        *alt.reasons,
                    ]
                }
            )
        else:
            own = own.model_copy(
                update={"reasons": [*own.reasons, f"{view.note} ({alt.action.value}; not stricter)"]}
            )
    return own


class _HistoryPlan(NamedTuple):
    """The earlier messages a request checks on their own (`Guard._history_parts`)."""

    #: ``(index, text)`` of the user, system and tool turns checked as requests (not those the
    #: assistant declined).
    turns: list[tuple[int, str]]
    #: ``(index, user turn before it, text)`` of the assistant turns checked as replies.
    replies: list[tuple[int, str, str]]


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
        reply_harm: `f(requests, replies) -> P(harmful reply)`, what `check_output` decides on
            (`default_reply_harm`); None reads a reply like a request. A head that also says
            which windows it reads (`guard.features.reply_stream.ReplyHead`) is read window by
            window over a stream (`reply_stream`), each complete window once.
        reply_screen: `f(requests, windows) -> P(the reply head blocks the window)` with a
            `threshold` (`default_reply_screen`): over a stream, the growing last window goes to
            the reply head only when the screen is at or above its threshold (complete windows
            and the whole reply at the end always go). None: the head reads it whenever the
            stream's spacing allows (`Guard.reply_stream`).
        normalize: undo cheap obfuscations before scoring (`prepare_prompt`), and score decoded
            base64/hex, de-leeted and re-cased readings too, the strictest reading deciding; every
            change is named in the decision's reasons.
        mitigation: opt-in over-refusal mitigation for borderline, benign-looking refusals
            (`guard.decision.mitigation.OverRefusalMitigation`); None (default) turns it off.
        windows: how texts longer than the sentence encoders read (256 tokens) are cut for the
            black-box detectors; every window is scored and the most harmful one decides.
        split_parts: also score each line or sentence of every short multi-part prompt on its
            own (`guard.text.normalize.part_views`), so a harmful request is not diluted by a
            harmless one after it; the strictest reading decides. Off by default: on the blind
            set it raised benign multi-part prompts blocked from 0.29 to 0.53 to catch one more
            harmful of 84. The turns of a chat-template injection are always read on their own.
        reject_option: ambiguity and novelty evidence (`guard.features.reject`), fitted by
            `guard fit`; the policy abstains on a flag when `Policy.reject_option` is on.
        conversation: a `classifiers.ConversationHarmClassifier`: with a history, the user's
            turns are read as one trajectory, and a conversation heading somewhere harmful is
            refused even when each turn alone is answered (multi-turn escalation).
        knowledge: a `guard.whitebox.knowledge.KnowledgeProbe` reading the same capture as the
            Latent Guard: abstain ("I'm not certain") on short factual questions the host would
            likely answer wrongly.
        sae: `guard.whitebox.sae.NamedFeatures`: the sparse-autoencoder features of the same
            capture that go with harm, named; the active ones are evidence on every decision and
            named in the reasons of a blocked one (they do not decide).
        judge_decoded: where a text carries an encoding the detectors cannot read (base64, hex,
            ROT13, reversed words, spelt-out letters: `guard.text.normalize.DECODING_KINDS`), its
            decoded reading is judged instead of the encoded text as written, so an encoding is
            not evidence of harm by itself (`merge_readings`). False: the text as written is
            judged too, the strictest reading deciding.

    Example:
        >>> g = Guard.default()  # doctest: +SKIP
        >>> g.check("How do I build a pipe bomb at home?").action  # doctest: +SKIP
        <Action.REFUSE: 'refuse'>
    """

    #: `check(prompt, history=...)` checks every history message on its own too (integrations
    #: need not check them again).
    checks_history_messages: bool = True

    #: Set by `load` (read it as `loaded_from`); None for a guard built in memory.
    _loaded_from: Path | None = None

    def __init__(
        self,
        latent: LatentGuard,
        policy: Policy | None = None,
        detectors: Mapping[str, Callable[[list[str]], Any]] | None = None,
        engine: DecisionEngine | None = None,
        reply_refusal: Callable[[list[str]], Any] | None = None,
        *,
        reply_harm: Callable[[list[str], list[str]], Any] | None = None,
        reply_screen: Any = None,
        normalize: bool = True,
        mitigation: OverRefusalMitigation | None = None,
        windows: WindowSpec | None = None,
        split_parts: bool = False,
        reject_option: RejectOptionEvidence | None = None,
        conversation: Any = None,
        knowledge: KnowledgeProbe | None = None,
        sae: NamedFeatures | None = None,
        judge_decoded: bool = True,
    ) -> None:
        self.latent = latent
        self.policy = policy or Policy()
        self.detectors = dict(detectors or {})
        self.engine = engine or DecisionEngine(self.policy, noncompliance=False)
        self.reply_refusal = reply_refusal
        self.reply_harm = reply_harm
        self.reply_screen = reply_screen
        self.normalize = normalize
        self.mitigation = mitigation
        self.windows = windows or WindowSpec()
        self.split_parts = split_parts
        self.reject_option = reject_option
        self.conversation = conversation
        self.knowledge = knowledge
        self.sae = sae
        self.judge_decoded = judge_decoded
        self._check_shared_capture()

    def _check_shared_capture(self) -> None:
        """The knowledge probe and the SAE read the Latent Guard's own capture: at another layer
        their weights would read the wrong activations, silently."""
        parts = [
            (name, part)
            for name, part in (("knowledge probe", self.knowledge), ("sparse autoencoder", self.sae))
            if part is not None
        ]
        layer = getattr(self.latent, "layer_", None) if parts else None
        for name, part in parts:
            if layer is not None and part.layer != layer:
                raise ArtifactError(
                    f"the {name} reads layer {part.layer}, the Latent Guard layer {layer}; "
                    f"refit it for this guard (guard fit-knowledge / guard fit-sae --guard DIR)"
                )

    @property
    def host(self) -> HostModel:
        return self.latent._host()

    @property
    def loaded_from(self) -> Path | None:
        """The folder `Guard.load` read this guard from (resolved), or None.

        None for a guard built in memory, for `Guard.default()` (the shipped default, whose
        host and options are not all in a folder), and for one loaded with `blackbox` against
        the folder's own choice: `Guard.load(loaded_from)` rebuilds exactly the guards it names,
        but for changes made to the object after loading, which are not tracked. (What a
        `GuardedRunnable` writes, when serialised, for its guard.)
        """
        return self._loaded_from

    # ------------------------------------------------------------------ persistence
    @classmethod
    def default(cls, *, device: str | None = None, blackbox: bool = True, knowledge: bool = False) -> Guard:
        """The embedded default: SmolLM2-135M-Instruct host plus the shipped fitted artifacts.

        With `blackbox`, the shipped prompt-refusal and embedding classifiers add evidence. With
        `knowledge`, the shipped knowledge-boundary probe (opt-in: the 135M host answers a third of
        the project's factual questions correctly, so it abstains on about half of them; figures in
        README) makes the guard abstain on factual questions the host would likely get wrong.
        """
        g = cls.load(_default_artifact(), host=HostModel.default(device=device), blackbox=blackbox)
        if knowledge:
            g.knowledge = KnowledgeProbe.load(
                Path(str(resources.files("guard.resources").joinpath("knowledge_probe")))
            )
            g._check_shared_capture()
        g._loaded_from = None  # the shipped default, not a folder `Guard.load(path)` rebuilds alone
        return g

    @classmethod
    def load(cls, path: str | Path, host: HostModel | None = None, *, blackbox: bool | None = None) -> Guard:
        """Load a guard saved with `save` (or written by `guard fit`).

        Args:
            path: the guard folder.
            host: the host model (default: the host it was fitted on, when its recorded path
                exists, else the embedded SmolLM2 host).
            blackbox: add the black-box classifiers' evidence, from ``path/classifiers`` when
                `guard fit --with-classifiers` wrote them there, else the shipped ones. Default:
                when the policy pools a black-box signal (its `harm_weights`), since its
                threshold was chosen for the pooled score.

        Raises:
            ArtifactError: no guard at `path`, or a corrupt or mismatched artifact.
        """
        if not Path(path).exists():
            raise ArtifactError(f"no guard at {path}; create one with `guard fit --out {path}`")
        latent, policy, _ = load_latent(path, host or recorded_host(path))
        ro_dir = Path(path) / REJECT_OPTION_FOLDER
        reject = RejectOptionEvidence.load(ro_dir) if ro_dir.is_dir() else None
        k_dir = Path(path) / KNOWLEDGE_FOLDER
        knowledge = KnowledgeProbe.load(k_dir) if k_dir.is_dir() else None
        s_dir = Path(path) / SAE_FOLDER
        sae = NamedFeatures.load(s_dir) if s_dir.is_dir() else None
        own_blackbox = bool(policy.pooled_signals() - {"harmfulness"})
        if blackbox is None:
            blackbox = own_blackbox
        if not blackbox:
            g = cls(latent, policy, reject_option=reject, knowledge=knowledge, sae=sae)
            g._loaded_from = Path(path).resolve() if blackbox == own_blackbox else None
            return g
        folder = Path(path) / "classifiers"
        own_head = folder if (folder / "reply_harm").is_dir() else None
        g = cls(
            latent,
            policy,
            detectors=default_detectors(folder if folder.is_dir() else None),
            engine=DecisionEngine(policy),
            reply_refusal=default_reply_refusal(),
            reply_harm=default_reply_harm(own_head),
            reply_screen=default_reply_screen(
                folder if (folder / "reply_screen").is_dir() else None,
                own_head / "reply_harm" if own_head is not None else None,
            ),
            reject_option=reject,
            knowledge=knowledge,
            sae=sae,
            conversation=default_conversation(folder if (folder / "conversation_harm").is_dir() else None),
        )
        g._loaded_from = Path(path).resolve() if blackbox == own_blackbox else None
        return g

    def save(self, path: str | Path) -> Path:
        """Write the fitted parts to a folder (safetensors + JSON; the reject option in its sub-folder)."""
        out = save_latent(path, self.latent, self.policy)
        if self.reject_option is not None:
            self.reject_option.save(Path(path) / REJECT_OPTION_FOLDER)
        if self.knowledge is not None:
            self.knowledge.save(Path(path) / KNOWLEDGE_FOLDER, getattr(self.knowledge, "report_", None))
        if self.sae is not None:
            self.sae.save(Path(path) / SAE_FOLDER, getattr(self.sae, "report_", None))
        return out

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
        """Decide on many requests; scoring runs batched through the host.

        Every history message is checked on its own too (see `checks_history_messages`).
        """
        with shared_embeddings():  # one sentence embedding per distinct text, for every head
            return self._check_many(prompts, history, context, history_parts=True)

    def _check_many(
        self,
        prompts: Sequence[str],
        history: Sequence[dict[str, str]] | None,
        context: Sequence[str] | None,
        *,
        history_parts: bool,
    ) -> list[Decision]:
        start = time.perf_counter()
        prepared, todo, history, docs, decisions = self._prepare_request(prompts, history, context)
        if todo:
            plan = self._history_plan(history) if history and history_parts else None
            bundle = self._request_states(prepared, todo, history, docs, plan)
            # every Latent Guard read below (the prompt, its documents, the history turns) takes
            # its activations from the bundle's one host capture
            with (
                self.latent.reuse_states(bundle) if bundle else contextlib.nullcontext(),
                one_blas_thread(),  # no BLAS workers left spinning for the next host pass
            ):
                self._decide_request(prepared, todo, history, docs, decisions, plan, history_parts)
        elapsed = (time.perf_counter() - start) * 1000 / max(1, len(prompts))
        return [d.model_copy(update={"latency_ms": elapsed}) for d in decisions if d is not None]

    def _prepare_request(
        self,
        prompts: Sequence[str],
        history: Sequence[dict[str, str]] | None,
        context: Sequence[str] | None,
    ) -> tuple[list[PreparedText], list[int], list[dict[str, str]] | None, list[str], list[Decision | None]]:
        """Validated and prepared prompts, history and documents; the indices of the prompts to
        score, and the decisions already made (abstentions) for the others."""
        if isinstance(prompts, str):
            raise InputError("check_batch expects a list of prompts; use check() for one")
        if isinstance(prompts, (bytes, Mapping)) or not isinstance(prompts, Sequence):
            raise InputError(
                f"check_batch expects a list of str prompts, got {type(prompts).__name__}; "
                "pass e.g. ['How do I bake bread?']"
            )
        checked = check_history(history)
        docs = check_context(context)
        prepared = [self._prepare(p) for p in prompts]
        shared, too_big = self._prepare_history_and_docs(checked, docs)
        hist = cast("list[dict[str, str]] | None", shared["history"])
        docs = shared["docs"]
        for _, notes in prepared:
            notes.extend(shared["notes"])
        decisions: list[Decision | None] = [None] * len(prepared)
        todo: list[int] = []
        for i, (text, notes) in enumerate(prepared):
            if too_big:
                decisions[i] = self._decide(Action.ABSTAIN, "too_long", {}, [*notes, too_big])
            elif not text.strip():
                decisions[i] = self._decide(Action.ABSTAIN, "empty", {}, [*notes, "the prompt is empty"])
            elif len(text) > self.policy.max_prompt_chars:
                decisions[i] = self._decide(
                    Action.ABSTAIN,
                    "too_long",
                    {},
                    [
                        *notes,
                        f"prompt has {len(text)} characters, over the policy limit of "
                        f"{self.policy.max_prompt_chars}; not scored",
                    ],
                )
            else:
                todo.append(i)
        return prepared, todo, hist, docs, decisions

    def _decide_request(
        self,
        prepared: list[PreparedText],
        todo: list[int],
        history: list[dict[str, str]] | None,
        docs: list[str],
        decisions: list[Decision | None],
        plan: _HistoryPlan | None,
        history_parts: bool,
    ) -> None:
        try:
            self._score_and_decide(prepared, todo, history, docs, decisions)
        except GuardError:
            raise
        except Exception as exc:  # an unknown state: fail closed unless configured otherwise
            for i in todo:
                decisions[i] = self._unavailable(exc, prepared[i].notes)
        if self.mitigation is not None:
            done = [decisions[i] for i in todo]
            try:
                revisited = mitigate(
                    self,
                    [prepared[i].text for i in todo],
                    done,  # type: ignore[arg-type]
                    self.mitigation,
                    history,
                )
            except Exception as exc:  # noqa: BLE001 - optional; the unmitigated decisions stand
                note = f"over-refusal mitigation failed ({type(exc).__name__}: {exc}); decisions unchanged"
                revisited = [d.model_copy(update={"reasons": [*d.reasons, note]}) for d in done]  # type: ignore[union-attr]
            for i, d in zip(todo, revisited):
                decisions[i] = d
        if history and history_parts:
            self._apply_history(history, todo, decisions, plan)
        if history and history_parts and self.conversation is not None:
            self._apply_conversation(
                history, [prepared[i].text for i in range(len(prepared))], todo, decisions
            )

    def _request_states(
        self,
        prepared: list[PreparedText],
        todo: list[int],
        history: list[dict[str, str]] | None,
        docs: list[str],
        plan: _HistoryPlan | None,
    ) -> dict[tuple[tuple[int, ...], tuple[int, ...]], np.ndarray]:
        """The request's feature bundle (`LatentGuard.capture_states`): the activations of every
        text the request reads through the Latent Guard, from one host capture: the distinct
        readings of its prompts after the history, its documents, and the history turns checked
        on their own (user turns as requests, assistant turns as replies after theirs).

        Empty when the prompts and documents are all there is (`_score_and_decide` reads them in
        one capture itself) or when planning fails: each reader then captures for itself, and
        meets the failure, if any, where it always did.
        """
        if plan is None or not (plan.turns or (plan.replies and self.reply_harm is None)):
            return {}
        try:
            groups = [ScoreGroup(list(self._readings(prepared, todo)[2]), history), ScoreGroup(docs)]
            if plan.turns:
                turns = [PreparedText(t, []) for _, t in plan.turns]
                groups.append(ScoreGroup(list(self._readings(turns, list(range(len(turns))))[2])))
            if self.reply_harm is None:
                for _, user, reply in plan.replies:
                    groups.extend(self._reply_groups(user, reply))
            return self.latent.capture_states(groups)
        except Exception:  # noqa: BLE001 - an optimisation only; the readers report any failure
            return {}

    def _reply_groups(self, user: str, reply: str) -> list[ScoreGroup]:
        """What `check_output(user, reply)` reads through the Latent Guard (no reply head)."""
        text = prepare_prompt(reply)[0]
        if not text.strip():
            return []
        prompts, history = self._reply_as_request(prepare_prompt(user)[0], text)
        prepared, todo, hist, _, _ = self._prepare_request(prompts, history, None)
        return [ScoreGroup(list(self._readings(prepared, todo)[2]), hist)] if todo else []

    def check_output(self, prompt: str, reply: str) -> Decision:
        """Decide on a reply before it reaches the user.

        With a reply-side head (`reply_harm`, the shipped `classifiers.ReplyHarmClassifier` by
        default) the whole reply is read, window by window, beside the request, and its most
        harmful window decides: a reply is judged for harm, not for being a good request. A
        blocked reply the reply-refusal detector reads as a refusal is let through (it names a
        harmful topic only to decline it). Without a reply head the reply is read like a request
        after the user's prompt, as before. A failing or invalid reply score is an unknown state:
        refuse when `Policy.fail_closed`, else answer, with the reason named.

        Example:
            >>> g = Guard.default()  # doctest: +SKIP
            >>> g.check_output("How do I kill a Python process?", "Run `kill -9 <pid>`.").action  # doctest: +SKIP
            <Action.ANSWER: 'answer'>
        """
        with shared_embeddings(), one_blas_thread():
            return self._check_output(prompt, reply)

    def reply_stream(
        self, prompt: str, *, look_every: int | None = None, head_every: int | None = None
    ) -> ReplyStream:
        """Checks of a reply that grows as it streams: `check` the text so far, again and again,
        then `finish` with the whole reply (the same decision as `check_output` of it).

        The reply's sentence embeddings are kept over the stream and, with a windowed reply head,
        each complete reply window is scored once; with a `reply_screen` the growing last window
        waits for the head until the screen flags it or it is complete. A check's cost is then
        that of the new text, not of the whole reply.

        Args:
            prompt: the user's prompt the reply answers.
            look_every: characters the growing last window must gain before it is screened
                again (`ReplyStreamScorer`; None: a fifth of the head's window stride, 60).
            head_every: unread characters at the end before the reply head reads the growing
                last window when the screen flags it (None: a third of the stride, 100).

        Example:
            >>> g = Guard.default()  # doctest: +SKIP
            >>> s = g.reply_stream("How do I bake bread?")  # doctest: +SKIP
            >>> s.check("Mix flour,").action, s.finish("Mix flour, water and salt.").action  # doctest: +SKIP
            (<Action.ANSWER: 'answer'>, <Action.ANSWER: 'answer'>)
        """
        return ReplyStream(self, prompt, look_every=look_every, head_every=head_every)

    def _check_output(self, prompt: str, reply: str, stream: ReplyStreamScorer | None = None) -> Decision:
        text, notes = prepare_prompt(reply)
        if not text.strip():
            return self._decide(Action.ANSWER, None, {}, [*notes, "empty reply"])
        user = prepare_prompt(prompt)[0] if isinstance(prompt, str) else ""
        if self.reply_harm is None:
            return self._check_output_as_request(user, text)
        t0 = time.perf_counter()
        threshold = self.policy.reply_threshold
        try:
            if stream is None:
                p = float(np.asarray(self.reply_harm([user], [text]), dtype=float).reshape(-1)[0])
            else:
                s = stream.score(user, text)
                p = s.p
                if s.screened:
                    notes = [
                        *notes,
                        f"reply_screen: the growing last window screened at {s.screen_score:.3f} < "
                        f"{float(self.reply_screen.threshold):.3f}; the reply head reads it when it is complete",
                    ]
                elif s.waiting:
                    notes = [
                        *notes,
                        f"reply_screen: the last {s.unread_chars} characters wait for the reply head "
                        "(the growing last window grew too little since it was last looked at or read)",
                    ]
            if not 0.0 <= p <= 1.0:
                raise InputError(f"reply-harm score {p!r} is not a probability")
        except Exception as exc:  # noqa: BLE001 - an unknown state, decided by fail_closed
            action = Action.REFUSE if self.policy.fail_closed else Action.ANSWER
            d = self._decide(
                action,
                "guard_unavailable" if action is Action.REFUSE else None,
                {},
                [
                    *notes,
                    f"reply-harm detector failed ({type(exc).__name__}: {exc}); "
                    f"{'fail closed' if action is Action.REFUSE else 'fail open'}",
                ],
            )
            return d
        evidence = [Evidence(source="blackbox", name="reply_harm", value=p, threshold=threshold)]
        scores = {"reply_harm": p}
        ms = (time.perf_counter() - t0) * 1000
        if p < threshold:
            return Decision(
                action=Action.ANSWER,
                scores=scores,
                evidence=evidence,
                latency_ms=ms,
                reasons=[*notes, f"reply_harm: P(harmful reply) {p:.3f} < {threshold:.3f}"],
            )
        reasons = [*notes, f"reply_harm: P(harmful reply) {p:.3f} >= {threshold:.3f} (most harmful window)"]
        if self.reply_refusal is not None:
            if stream is None:
                r = float(self.reply_refusal([text])[0])
            else:  # a growing reply's refusal reading is refreshed every few characters
                r = stream.refusal(text, p, self.reply_refusal)
            scores["reply_refusal"] = r
            evidence.append(_refusal_evidence(r))
            if r >= REPLY_REFUSAL_LETS_THROUGH:
                return Decision(
                    action=Action.ANSWER,
                    scores=scores,
                    evidence=evidence,
                    latency_ms=ms,
                    reasons=[*reasons, _refusal_reason(r)],
                )
        category = harm_category(f"{user}\n{text}")
        return Decision(
            action=Action.REFUSE,
            category=category,
            scores=scores,
            evidence=evidence,
            reasons=reasons,
            response=constructive_response(Action.REFUSE, category),
            latency_ms=ms,
        )

    def _check_output_as_request(self, user: str, text: str) -> Decision:
        """The reply read like a request after the user's prompt (no reply-side head)."""
        prompts, history = self._reply_as_request(user, text)
        # the user's prompt is read as the reply's context, not checked again on its own
        d = self._check_many(prompts, history, None, history_parts=False)[0]
        if (
            d.blocked
            and d.category not in {"guard_unavailable", "too_long"}
            and self.reply_refusal is not None
        ):
            p = float(self.reply_refusal([text])[0])
            scores = {**d.scores, "reply_refusal": p}
            evidence = [*d.evidence, _refusal_evidence(p)]
            if p >= REPLY_REFUSAL_LETS_THROUGH:
                return Decision(
                    action=Action.ANSWER,
                    scores=scores,
                    evidence=evidence,
                    reasons=[*d.reasons, _refusal_reason(p)],
                    latency_ms=d.latency_ms,
                )
            return d.model_copy(update={"scores": scores, "evidence": evidence})
        return d

    def _reply_as_request(self, user: str, text: str) -> tuple[list[str], list[dict[str, str]] | None]:
        """The prompts and history a reply is checked as (`_check_output_as_request`)."""
        history = [{"role": "user", "content": user}] if user.strip() else None
        return [text[: self.policy.max_prompt_chars]], history

    # ------------------------------------------------------------------ internals
    @property
    def reply_refusal(self) -> Callable[[list[str]], Any] | None:
        """`f(replies) -> P(refusal)`; a failing or invalid result reads as NaN (never a pass)."""
        return self._reply_refusal

    @reply_refusal.setter
    def reply_refusal(self, fn: Callable[[list[str]], Any] | None) -> None:
        self._reply_refusal = (
            fn if fn is None or isinstance(fn, _CheckedReplyRefusal) else _CheckedReplyRefusal(fn)
        )

    def _control_tokens(self) -> tuple[str, ...]:
        try:
            return self.host.control_tokens
        except Exception:  # noqa: BLE001 - a latent without a host reads no template
            return ()

    def _prepare(self, text: Any, where: str = "") -> PreparedText:
        """`prepare_prompt`, then the host's chat-template control tokens removed (named in the notes)."""
        out, notes = prepare_prompt(text, normalize=self.normalize) if not where else (text, [])
        out, more = neutralize_control_tokens(out, self._control_tokens())
        notes.extend(f"{where}: {n}" if where else n for n in more)
        return PreparedText(out, notes)

    def _prepare_history_and_docs(
        self, history: list[dict[str, str]] | None, docs: list[str]
    ) -> tuple[dict[str, Any], str | None]:
        """History and documents with control tokens removed, and the reason they are over the
        policy's size limits (None when within them)."""
        p = self.policy
        notes: list[str] = []
        too_big = None
        n_hist = sum(len(m["content"]) for m in history or [])
        n_docs = sum(len(d) for d in docs)
        for n, limit, what, field in (
            (len(history or []), p.max_history_turns, "history has {n} messages", "max_history_turns"),
            (n_hist, p.max_history_chars, "history has {n} characters", "max_history_chars"),
            (len(docs), p.max_context_docs, "context has {n} documents", "max_context_docs"),
            (n_docs, p.max_context_chars, "context has {n} characters", "max_context_chars"),
        ):
            if n > limit:
                too_big = (
                    f"{what.format(n=n)}, over the policy limit of {limit} (Policy.{field}); "
                    "not scored: send less, or raise the limit"
                )
                return {"history": history, "docs": docs, "notes": notes}, too_big
        hist = None
        if history is not None:
            hist = []
            for k, m in enumerate(history):
                text, more = self._prepare(m["content"], where=f"history[{k}]")
                notes.extend(more)
                hist.append({**m, "content": text})
        out_docs = []
        for k, d in enumerate(docs):
            text, more = self._prepare(d, where=f"context[{k}]")
            notes.extend(more)
            if text.strip():
                out_docs.append(text)
        return {"history": hist, "docs": out_docs, "notes": notes}, too_big

    def _readings(
        self, prepared: list[PreparedText], todo: list[int]
    ) -> tuple[list[str], list[tuple[int, View]], dict[str, int]]:
        """The texts to score for `todo`: the prompts, then their other readings (decoded blobs,
        de-leeted, re-cased, parts; `views` names each one's prompt), and each distinct text's
        position (a repeated prompt, a reading equal to another text, is scored once)."""
        texts = [prepared[i].text for i in todo]
        views: list[tuple[int, View]] = [
            (k, v)
            for k, t in enumerate(texts)
            for v in (
                (alternate_views(t) if self.normalize else []) + self._part_views(t, prepared[todo[k]].notes)
            )
        ]
        texts = texts + [v.text for _, v in views]
        pos: dict[str, int] = {}
        for t in texts:
            pos.setdefault(t, len(pos))
        return texts, views, pos

    def _score_and_decide(
        self,
        prepared: list[PreparedText],
        todo: list[int],
        history: list[dict[str, str]] | None,
        docs: list[str],
        decisions: list[Decision | None],
    ) -> None:
        texts, views, pos = self._readings(prepared, todo)
        distinct = list(pos)
        with_states = self.knowledge is not None or self.sae is not None
        ctx: np.ndarray | None = None
        if docs:
            # one host capture: the readings after the history, the documents after none
            scored, in_docs = self.latent.scores_many(
                [ScoreGroup(distinct, history, with_states), ScoreGroup(docs)]
            )
            ctx = in_docs.harmfulness
        else:
            scored = self.latent.scores(distinct, history=history, with_states=with_states)
        extra, notes = self._blackbox(distinct)
        try:
            model_evidence = self.engine.evidence(distinct)
        except Exception as exc:  # noqa: BLE001 - optional evidence; say it is missing
            model_evidence = [[] for _ in distinct]
            notes.append(f"decision-engine evidence failed ({type(exc).__name__}: {exc})")
        if self.reject_option is not None:
            try:
                for ev, more in zip(model_evidence, self.reject_option.evidence(distinct)):
                    ev.extend(more)
            except Exception as exc:  # noqa: BLE001 - abstain-only evidence; say it is missing
                notes.append(f"reject-option evidence failed ({type(exc).__name__}: {exc})")
        if self.knowledge is not None:
            assert scored.states is not None  # captured: with_states above
            self._knowledge_evidence(distinct, scored.states, model_evidence)
        sae_ev: list[list[Evidence]] = [[] for _ in distinct]
        if self.sae is not None:
            assert scored.states is not None  # captured: with_states above
            try:
                sae_ev = [self.sae.evidence(st[self.sae.position]) for st in scored.states]
            except Exception as exc:  # noqa: BLE001 - explanatory evidence only
                notes.append(f"SAE features failed ({type(exc).__name__}: {exc})")
        out: list[Decision] = []
        for k, text in enumerate(texts):
            i = todo[k] if k < len(todo) else todo[views[k - len(todo)][0]]
            u = pos[text]
            evidence = self._latent_evidence(scored, u, ctx)
            evidence += [Evidence(source="blackbox", name=n, value=v[u]) for n, v in extra.items()]
            d = self._verdict(
                text, [*prepared[i].notes, *notes], evidence + model_evidence[u] + sae_ev[u], bool(docs)
            )
            if d.blocked and sae_ev[u]:
                named = ", ".join(f"{e.detail} ({e.value:.2f})" for e in sae_ev[u])
                d = d.model_copy(
                    update={"reasons": [*d.reasons, f"active SAE features that go with harm: {named}"]}
                )
            out.append(d)
        readings: dict[int, list[tuple[View, Decision]]] = {}
        for j, (k, view) in enumerate(views):
            readings.setdefault(k, []).append((view, out[len(todo) + j]))
        for k, i in enumerate(todo):
            decisions[i] = merge_readings(out[k], readings.get(k, []), judge_decoded=self.judge_decoded)

    def _apply_history(
        self,
        history: list[dict[str, str]],
        todo: list[int],
        decisions: list[Decision | None],
        plan: _HistoryPlan | None = None,
    ) -> None:
        """Where an earlier message checked on its own is stricter than a prompt's decision, it decides."""
        try:
            parts = self._history_parts(history, plan)
        except GuardError:
            raise
        except Exception as exc:  # noqa: BLE001 - an unknown state, like a failing prompt check
            parts = [("history", self._unavailable(exc, []))]
        if not parts:
            return
        label, worst = max(parts, key=lambda x: STRICTNESS[x[1].action])
        for i in todo:
            d = decisions[i]
            assert d is not None
            if STRICTNESS[worst.action] > STRICTNESS[d.action]:
                decisions[i] = worst.model_copy(
                    update={
                        "scores": {**d.scores, **{f"{label}.{k}": v for k, v in worst.scores.items()}},
                        "reasons": [
                            f"{label} was checked on its own: {worst.action.value}",
                            *worst.reasons,
                            *[f"prompt: {r}" for r in d.reasons],
                        ],
                    }
                )
            else:
                decisions[i] = d.model_copy(
                    update={
                        "reasons": [
                            *d.reasons,
                            f"{len(parts)} earlier message(s) checked on their own; none stricter",
                        ]
                    }
                )

    def _history_plan(self, history: list[dict[str, str]]) -> _HistoryPlan | None:
        """Which earlier messages `_history_parts` checks on their own; None when that fails (the
        check then meets the failure itself)."""
        try:
            return self._plan_history(history)
        except Exception:  # noqa: BLE001 - reported by _apply_history, which plans again
            return None

    def _plan_history(self, history: list[dict[str, str]]) -> _HistoryPlan:
        asked: list[tuple[int, str]] = []
        replies: list[tuple[int, str, str]] = []
        user = ""
        for k, m in enumerate(history):
            if not m["content"].strip():
                continue
            if m["role"] == "assistant":
                replies.append((k, user, m["content"]))
            else:
                asked.append((k, m["content"]))
                if m["role"] == "user":
                    user = m["content"]
        declined: set[int] = set()
        if self.reply_refusal is not None:
            follows = [
                (k, history[k + 1]["content"])
                for k, _ in asked
                if k + 1 < len(history)
                and history[k + 1]["role"] == "assistant"
                and history[k + 1]["content"].strip()
            ]
            if follows:
                p = self.reply_refusal([t for _, t in follows])
                declined = {k for (k, _), v in zip(follows, p) if v >= 0.5}
        return _HistoryPlan([(k, t) for k, t in asked if k not in declined], replies)

    def _history_parts(
        self, history: list[dict[str, str]], plan: _HistoryPlan | None = None
    ) -> list[tuple[str, Decision]]:
        """Every earlier message checked on its own: user, system and tool turns as requests,
        assistant turns as replies to the user turn before them.

        The Latent Guard reads only the most recent history tokens with the prompt, while the
        whole history reaches the model, so a harmful earlier turn followed by "go on" would
        otherwise pass. A user turn the assistant declined (its next message reads as a refusal)
        is not held against later requests.
        """
        plan = plan if plan is not None else self._plan_history(history)
        out: list[tuple[str, Decision]] = []
        todo = plan.turns
        if todo:
            found: list[Decision | None] = [None] * len(todo)
            self._score_and_decide(
                [PreparedText(t, []) for _, t in todo], list(range(len(todo))), None, [], found
            )
            out += [
                (f"history[{k}] ({history[k]['role']})", d) for (k, _), d in zip(todo, found) if d is not None
            ]
        out += [(f"history[{k}] (assistant)", self.check_output(u, t)) for k, u, t in plan.replies]
        return out

    def _part_views(self, text: str, notes: list[str]) -> list[View]:
        """Lines or sentences read on their own: always the turns an injection tried to forge (its
        control tokens became newlines), every sentence of short prompts with `split_parts`."""
        if self.split_parts:
            return part_views(text)
        if removed_control_tokens(notes):
            return part_views(text, sentences=False)
        return []

    def _knowledge_evidence(
        self, texts: list[str], states: np.ndarray, evidence: list[list[Evidence]]
    ) -> None:
        """P(wrong answer) for the short factual questions among `texts` (the probe reads nothing else)."""
        assert self.knowledge is not None
        rows = [k for k, t in enumerate(texts) if looks_factual(t)]
        if not rows:
            return
        p = self.knowledge.proba_correct(states[rows, self.knowledge.position])
        for k, v in zip(rows, p):
            evidence[k].append(self.knowledge.evidence(float(v), self.policy.knowledge_threshold))

    def _apply_conversation(
        self,
        history: list[dict[str, str]],
        prompts: list[str],
        todo: list[int],
        decisions: list[Decision | None],
    ) -> None:
        """Refuse a request whose conversation, read as a whole, is heading somewhere harmful."""
        users = [m["content"] for m in history if m["role"] == "user" and m["content"].strip()]
        if not users:
            return
        head = self.conversation
        t = self.policy.conversation_threshold
        t = float(getattr(head, "threshold_", 0.5)) if t is None else t
        note = "conversation head returned an invalid score"
        try:
            p = [float(v) for v in head.harm_score([[*users, prompts[i]] for i in todo])]
        except Exception as exc:  # noqa: BLE001 - an unknown state, decided like any failing check
            p = [float("nan")] * len(todo)
            note = f"conversation head failed ({type(exc).__name__}: {exc})"
        for i, v in zip(todo, p):
            d = decisions[i]
            assert d is not None
            ev = Evidence(
                source="blackbox",
                name="conversation_harm",
                value=v if v == v else 0.0,
                threshold=t,
                detail=f"the user's {len(users) + 1} turns read as one conversation",
            )
            scores = {**d.scores, "conversation_harm": v}
            if v != v:
                if self.policy.fail_closed and d.action is not Action.REFUSE:
                    decisions[i] = self._unavailable(RuntimeError(note), list(d.reasons))
                continue
            if v >= t and STRICTNESS[Action.REFUSE] > STRICTNESS[d.action]:
                category = harm_category("\n".join([*users, prompts[i]]))
                decisions[i] = Decision(
                    action=Action.REFUSE,
                    category=category,
                    scores=scores,
                    evidence=[*d.evidence, ev],
                    reasons=[
                        f"conversation: P(the conversation seeks harmful help) {v:.3f} >= {t:.3f} "
                        f"over {len(users) + 1} user turns (each turn alone: {d.action.value})",
                        *d.reasons,
                    ],
                    response=constructive_response(Action.REFUSE, category),
                )
            else:
                decisions[i] = d.model_copy(
                    update={
                        "scores": scores,
                        "evidence": [*d.evidence, ev],
                        "reasons": [*d.reasons, f"conversation: P(harmful trajectory) {v:.3f} < {t:.3f}"],
                    }
                )

    def _blackbox(self, texts: list[str]) -> tuple[dict[str, list[float]], list[str]]:
        """Scores of the extra detectors; a failing detector is reported, not fatal (evidence only)."""
        out: dict[str, list[float]] = {}
        notes: list[str] = []
        windows = split_windows(texts, self.windows)  # cut once, read by every detector
        for name, fn in self.detectors.items():
            try:
                out[name] = windowed_max(fn, windows)
            except Exception as exc:  # noqa: BLE001 - evidence-only detectors must not break a decision
                if name in self.policy.pooled_signals():
                    # a pooled detector decides: its failure is invalid evidence, and the engine
                    # fails closed on it (Policy.fail_closed)
                    out[name] = [float("nan")] * len(texts)
                    notes.append(f"pooled detector {name!r} failed ({type(exc).__name__}: {exc})")
                else:
                    notes.append(
                        f"detector {name!r} failed ({type(exc).__name__}: {exc}); its evidence is missing"
                    )
        return out, notes

    def _latent_evidence(self, scored: LatentScores, k: int, ctx: Any) -> list[Evidence]:
        layers = self.latent.readout_layers
        where = f"layer{'s' if len(layers) > 1 else ''} {'+'.join(map(str, layers))}, position {self.latent.position_}"
        out = [
            Evidence(source="latent", name="harmfulness", value=float(scored.harmfulness[k]), detail=where),
            Evidence(
                source="latent",
                name="harmfulness_raw",
                value=float(scored.harmfulness_raw[k]),
                detail="raw projection on the harmfulness direction",
            ),
            Evidence(
                source="latent",
                name="refusal",
                value=float(scored.refusal[k]),
                detail="projection on the contrastive refusal direction (reported, not decisive)",
            ),
        ]
        if ctx is not None:
            out.append(
                Evidence(
                    source="latent",
                    name="context_harmfulness",
                    value=float(max(ctx)),
                    detail=f"max over {len(ctx)} retrieved document(s)",
                )
            )
        return out

    def _verdict(self, text: str, notes: list[str], evidence: list[Evidence], has_context: bool) -> Decision:
        v = decide(text, evidence, self.policy, has_context=has_context)
        return Decision(
            action=v.action,
            category=v.category,
            scores=v.scores,
            reasons=[*notes, *v.reasons],
            response=constructive_response(v.action, v.category, override=v.response),
            evidence=v.evidence,
            rule=v.rule,
        )

    def _unavailable(self, exc: Exception, notes: list[str]) -> Decision:
        action = Action.REFUSE if self.policy.fail_closed else Action.ANSWER
        mode = "fail closed" if self.policy.fail_closed else "fail open (configured)"
        return self._decide(
            action,
            "guard_unavailable" if action is not Action.ANSWER else None,
            {},
            [*notes, f"guard unavailable ({type(exc).__name__}: {exc}); {mode}"],
            abstain_style=True,
        )

    @staticmethod
    def _decide(
        action: Action,
        category: str | None,
        scores: dict[str, float],
        reasons: list[str],
        abstain_style: bool = False,
    ) -> Decision:
        response = constructive_response(
            Action.ABSTAIN if abstain_style and action is not Action.ANSWER else action, category
        )
        return Decision(action=action, category=category, scores=scores, reasons=reasons, response=response)


class ReplyStream:
    """The checks of one reply as it streams (`Guard.reply_stream`): `check` the text so far,
    `finish` with the whole reply.

    Args:
        guard: the guard whose reply side decides.
        prompt: the user's prompt the reply answers.
        look_every, head_every: how often the growing last window is screened and read
            (`Guard.reply_stream`).

    Example:
        >>> s = Guard.default().reply_stream("How do I bake bread?")  # doctest: +SKIP
        >>> s.check("Mix flour,").blocked  # doctest: +SKIP
        False
    """

    def __init__(
        self, guard: Guard, prompt: str, look_every: int | None = None, head_every: int | None = None
    ) -> None:
        self.guard = guard
        self.prompt = prompt
        self._vectors: dict[Any, Any] = {}  # the stream's sentence embeddings, kept between checks
        head = guard.reply_harm
        windowed = head is not None and callable(getattr(head, "windows", None))
        self._scorer = (
            ReplyStreamScorer(head, guard.reply_screen, look_every, head_every)  # type: ignore[arg-type]
            if windowed
            else None
        )

    def check(self, reply: str) -> Decision:
        """Decide on the reply so far (the stream goes on): complete windows read by the reply
        head once each, the growing last one screened (`Guard.reply_screen`)."""
        with shared_embeddings(self._vectors), one_blas_thread():
            return self.guard._check_output(self.prompt, reply, self._scorer)

    def finish(self, reply: str) -> Decision:
        """Decide on the whole reply: `check_output`, reusing the stream's embeddings."""
        with shared_embeddings(self._vectors), one_blas_thread():
            return self.guard._check_output(self.prompt, reply)


class _CheckedReplyRefusal:
    """A reply-refusal scorer whose failures and invalid values read as NaN.

    `check_output` lets a blocked reply through only when P(refusal) >= `REPLY_REFUSAL_LETS_THROUGH`; NaN never is, so a
    failing detector keeps the block (fail closed) and its score names the failure (NaN).
    """

    def __init__(self, fn: Callable[[list[str]], Any]) -> None:
        self.fn = fn

    def __call__(self, replies: list[str]) -> list[float]:
        import logging
        import math

        try:
            values = [float(v) for v in self.fn(replies)]
            if len(values) != len(replies):
                raise InputError(f"returned {len(values)} scores for {len(replies)} replies")
        except Exception as exc:  # noqa: BLE001 - an unknown state: keep the block
            logging.getLogger(__name__).warning(
                "reply-refusal detector failed (%s: %s); the reply stays blocked", type(exc).__name__, exc
            )
            return [float("nan")] * len(replies)
        return [v if math.isfinite(v) and 0.0 <= v <= 1.0 else float("nan") for v in values]


#: Black-box detectors by evidence name, and the sub-folder each one's model is saved in.
DETECTOR_FOLDERS: dict[str, str] = {
    "prompt_refusal": "prompt_refusal",
    "embedding_harm": "prompt_refusal_embedding",
    "multilingual_harm": "multilingual_harm",
    "combined_harm": "harm_mlp",
}


def default_detectors(folder: str | Path | None = None) -> dict[str, Callable[[list[str]], Any]]:
    """The black-box scorers by evidence name (MiniLM and USE-multilingual features).

    `folder` holds predictors written by `guard fit --with-classifiers`; default: the shipped ones
    (``classifiers/resources``). A detector whose sub-folder is missing is left out. Each model
    loads on first use.
    """
    import functools
    from importlib import resources as res

    from classifiers import PromptRefusalPredictor
    from classifiers.harm_mlp import HarmMLPClassifier

    with res.as_file(res.files("classifiers.resources")) as shipped:
        root = Path(folder) if folder is not None else Path(shipped)

    def scorer(sub: str) -> Callable[[list[str]], Any]:
        if sub == DETECTOR_FOLDERS["combined_harm"]:
            mlp = functools.lru_cache(maxsize=1)(lambda: HarmMLPClassifier.load(root / sub))
            return lambda texts: mlp().harm_score(texts)
        model = functools.lru_cache(maxsize=1)(lambda: PromptRefusalPredictor.load(root / sub))
        return lambda texts: model().refusal_score(texts)

    return {name: scorer(sub) for name, sub in DETECTOR_FOLDERS.items() if (root / sub).is_dir()}


def default_reply_harm(folder: str | Path | None = None) -> LazyReplyHarm | None:
    """P(a reply is harmful) per (request, reply), from the `ReplyHarmClassifier` in
    ``folder/reply_harm`` (default: the shipped one), loaded at first use; None when there is none."""
    from importlib import resources as res

    with res.as_file(res.files("classifiers.resources")) as shipped:
        path = (Path(folder) if folder is not None else Path(shipped)) / "reply_harm"
    return LazyReplyHarm(path) if path.is_dir() else None


def default_reply_screen(
    folder: str | Path | None = None, head: str | Path | None = None
) -> LazyReplyScreen | None:
    """The stream's screen in front of the reply head (`classifiers.ReplyScreenClassifier` in
    ``folder/reply_screen``, default: the shipped one), loaded at first use; None when there is none.

    `head` is the folder of the reply head the guard reads (default: the shipped one): a screen
    distilled from another head is off (`LazyReplyScreen.stale`)."""
    from importlib import resources as res

    with res.as_file(res.files("classifiers.resources")) as shipped:
        path = (Path(folder) if folder is not None else Path(shipped)) / "reply_screen"
        head_path = Path(head) if head is not None else Path(shipped) / "reply_harm"
    return LazyReplyScreen(path, head_path) if path.is_dir() else None


def default_conversation(folder: str | Path | None = None) -> Any:
    """The multi-turn escalation head (``folder/conversation_harm``, default: the shipped one), loaded
    on first use; None when there is none."""
    from importlib import resources as res

    with res.as_file(res.files("classifiers.resources")) as shipped:
        path = (Path(folder) if folder is not None else Path(shipped)) / "conversation_harm"
    return _LazyConversation(path) if path.is_dir() else None


class _LazyConversation:
    """A `ConversationHarmClassifier` loaded at its first use (nothing loads in constructors)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._model: Any = None

    def _get(self) -> Any:
        if self._model is None:
            from classifiers.conversation import ConversationHarmClassifier

            self._model = ConversationHarmClassifier.load(self.path)
        return self._model

    @property
    def threshold_(self) -> float:
        return float(self._get().threshold_)

    def harm_score(self, conversations: list[list[str]]) -> Any:
        return self._get().harm_score(conversations)


def default_reply_refusal() -> Callable[[list[str]], Any]:
    """P(a reply is a refusal), from the shipped `ResponseRefusalDetector` (loaded on first use)."""
    import functools

    @functools.lru_cache(maxsize=1)
    def detector() -> Any:
        from classifiers import ResponseRefusalDetector

        return ResponseRefusalDetector.default()

    return lambda replies: detector().refusal_score(replies)


def embedding_scorer(guard: Guard) -> ProbaFn:
    """The guard's black-box embedding harm score (its ``embedding_harm`` detector, else the shipped one)."""
    fn = guard.detectors.get("embedding_harm")
    if fn is None:
        from classifiers.scores import embedding_harm_score

        fn = embedding_harm_score
    return fn


def mitigate(
    guard: Guard,
    texts: Sequence[str],
    decisions: Sequence[Decision],
    mitigation: OverRefusalMitigation,
    history: Sequence[dict[str, str]] | None = None,
) -> list[Decision]:
    """Revisit borderline, benign-looking refusals with the top trigger word masked or ignored.

    Args:
        guard: the guard that made `decisions` (its own mitigation setting is not used here).
        texts: the prepared prompts the decisions are about.
        decisions: one per text.
        mitigation: the settings.
        history: the chat history the decisions were made with.

    Returns:
        The decisions, with each revisited one replaced by an answer when the mitigated text is
        answered, or kept with a reason saying the mitigation did not change it.

    Example:
        >>> g = Guard.default()  # doctest: +SKIP
        >>> texts = ["How do I kill a Python process?"]  # doctest: +SKIP
        >>> mitigate(g, texts, g.check_batch(texts), OverRefusalMitigation())[0].action  # doctest: +SKIP
        <Action.ANSWER: 'answer'>
    """
    if len(texts) != len(decisions):
        raise InputError(f"got {len(texts)} texts for {len(decisions)} decisions; pass one decision per text")
    plain = Guard(
        guard.latent,
        guard.policy,
        detectors=guard.detectors,
        engine=guard.engine,
        reply_refusal=guard.reply_refusal,
        normalize=guard.normalize,
        windows=guard.windows,
        split_parts=guard.split_parts,
        reject_option=guard.reject_option,
        knowledge=guard.knowledge,
        sae=guard.sae,
    )
    fn = guard.latent.score if mitigation.scorer == "latent" else embedding_scorer(guard)
    out = list(decisions)
    todo: list[tuple[int, str, str]] = []
    for i, (text, d) in enumerate(zip(texts, decisions)):
        if not borderline(d, guard.policy.threshold_for(d.category), mitigation):
            continue
        if len(_WORD.findall(text)) > mitigation.max_words:
            continue
        expl = occlusion(text, fn, scorer=mitigation.scorer, max_words=mitigation.max_words)
        if not expl.words or expl.words[0].drop <= 0:
            continue
        w = expl.words[0]
        new = (
            drop_span(text, w.start, w.end)
            if mitigation.method == "mask"
            else IGNORE_WORD_INSTRUCTION.format(word=w.word) + text
        )
        todo.append((i, w.word, new))
    if not todo:
        return out
    again = plain._check_many([new for _, _, new in todo], history, None, history_parts=False)
    for (i, word, _), d2 in zip(todo, again):
        d = out[i]
        how = "masked" if mitigation.method == "mask" else "with an ignore-word instruction"
        p2 = d2.scores.get("harm_pooled")
        what = f"P(harmful) {p2:.3f}" if p2 is not None else d2.action.value
        if d2.action is Action.ANSWER:
            out[i] = Decision(
                action=Action.ANSWER,
                scores={**d.scores, **({"mitigated_harm_pooled": p2} if p2 is not None else {})},
                evidence=d.evidence,
                latency_ms=d.latency_ms,
                reasons=[
                    (
                        f"over-refusal mitigation: borderline refusal re-scored with trigger word {word!r} "
                        f"{how}: {what}; answered"
                    ),
                    *d.reasons,
                ],
            )
        else:
            note = f"over-refusal mitigation: trigger word {word!r} {how} still gives {what}; kept"
            out[i] = d.model_copy(update={"reasons": [*d.reasons, note]})
    return out
