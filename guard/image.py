"""ImageGuard: the guard for prompts sent to a text-to-image model.

It needs no host model: one `classifiers.ImagePromptClassifier` head over MiniLM embeddings says
how likely a prompt asks for a disallowed image and which kind, and an
`image_generation_policy` turns that into answer or refuse, with a constructive reply per category
(an alternative that can be made). It has `check`, `check_batch`, `acheck` and `check_output`, so
`@guarded(guard=ImageGuard.default())` wraps an image-generation function as it wraps a chat one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from guard.decision import Action, Decision, Evidence
from guard.decision.constructive import constructive_response
from guard.decision.policy import Policy
from guard.decision.presets import image_generation_policy
from guard.errors import ArtifactError, InputError
from guard.text.prepare import prepare_prompt

#: The fitting report beside the shipped head: its ``threshold`` is the default policy's.
REPORT_FILE = "fit_report.json"


class ImageGuard:
    """Answer or refuse prompts for an image model, with the category and a constructive reply.

    Args:
        classifier: a fitted `ImagePromptClassifier` (`harm_score`, `category_proba`).
        policy: an `image_generation_policy` (its threshold, allowed categories and replies).

    Example:
        >>> g = ImageGuard.default()  # doctest: +SKIP
        >>> g.check("a shot of espresso on a marble counter").action  # doctest: +SKIP
        <Action.ANSWER: 'answer'>
        >>> ImageGuard.default(allow=["copyright"]).policy.category("copyright").enabled  # doctest: +SKIP
        False
    """

    def __init__(self, classifier: Any, policy: Policy | None = None) -> None:
        self.classifier = classifier
        self.policy = policy or image_generation_policy()

    @classmethod
    def default(cls, *, allow: Sequence[str] = (), threshold: float | None = None) -> ImageGuard:
        """The shipped head with the threshold it was fitted with (``guard fit-image``).

        Args:
            allow: image categories this deployment permits (e.g. ``["copyright"]``).
            threshold: replace the fitted threshold.
        """
        from classifiers.image_prompt import DEFAULT_RESOURCE

        with resources.as_file(resources.files("classifiers.resources").joinpath(DEFAULT_RESOURCE)) as p:
            return cls.load(p, allow=allow, threshold=threshold)

    @classmethod
    def load(
        cls, path: str | Path, *, allow: Sequence[str] = (), threshold: float | None = None
    ) -> ImageGuard:
        """A head written by `guard.fitting.image_fit.fit_image_guard`, with its fitted threshold.

        Raises:
            ArtifactError: no head at `path`, or no valid threshold in its report.
        """
        from classifiers.image_prompt import ImagePromptClassifier

        folder = Path(path)
        try:
            clf = ImagePromptClassifier.load(folder)
            fitted = float(json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))["threshold"])
        except Exception as exc:
            raise ArtifactError(
                f"no image-prompt guard at {folder} ({type(exc).__name__}: {exc}); "
                "fit one with `guard fit-image`"
            ) from exc
        if not 0.0 <= fitted <= 1.0:
            raise ArtifactError(f"{folder}: threshold {fitted} is not a probability")
        return cls(clf, image_generation_policy(fitted if threshold is None else threshold, allow=allow))

    # ------------------------------------------------------------------ decisions
    def check(self, prompt: str, history: Any = None, context: Any = None) -> Decision:
        """Decide on one image prompt (`history` and `context` are not read by an image model)."""
        return self.check_batch([prompt])[0]

    async def acheck(self, prompt: str, history: Any = None, context: Any = None) -> Decision:
        """`check` in a worker thread."""
        return await asyncio.to_thread(self.check, prompt)

    def check_batch(self, prompts: Sequence[str], history: Any = None, context: Any = None) -> list[Decision]:
        """Decide on many image prompts in one pass of the head."""
        if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
            raise InputError("check_batch expects a list of str prompts")
        t0 = time.perf_counter()
        prepared = [prepare_prompt(p) for p in prompts]
        out: list[Decision | None] = [None] * len(prepared)
        todo = []
        for i, (text, notes) in enumerate(prepared):
            if not text.strip():
                out[i] = Decision(
                    action=Action.ABSTAIN,
                    category="empty",
                    reasons=[*notes, "the prompt is empty"],
                    response=constructive_response(Action.ABSTAIN, "empty"),
                )
            elif len(text) > self.policy.max_prompt_chars:
                out[i] = Decision(
                    action=Action.ABSTAIN,
                    category="too_long",
                    reasons=[
                        *notes,
                        f"prompt has {len(text)} characters, over the policy limit "
                        f"of {self.policy.max_prompt_chars}",
                    ],
                    response=constructive_response(Action.ABSTAIN, "too_long"),
                )
            else:
                todo.append(i)
        if todo:
            texts = [prepared[i][0] for i in todo]
            try:
                harm = [float(v) for v in self.classifier.harm_score(texts)]
                cats = self.classifier.category_proba(texts)
            except Exception as exc:  # noqa: BLE001 - an unknown state: fail closed unless configured
                action = Action.REFUSE if self.policy.fail_closed else Action.ANSWER
                for i in todo:
                    out[i] = Decision(
                        action=action,
                        category="guard_unavailable" if action is Action.REFUSE else None,
                        reasons=[*prepared[i][1], f"image head failed ({type(exc).__name__}: {exc})"],
                        response=constructive_response(Action.ABSTAIN, "guard_unavailable")
                        if action is Action.REFUSE
                        else None,
                    )
            else:
                for i, p, c in zip(todo, harm, cats):
                    out[i] = self._decide(p, c, prepared[i][1])
        ms = (time.perf_counter() - t0) * 1000 / max(1, len(prompts))
        return [d.model_copy(update={"latency_ms": ms}) for d in out if d is not None]

    def _decide(self, p: float, cats: dict[str, float], notes: list[str]) -> Decision:
        category = max(cats, key=cats.__getitem__) if cats else None
        cat = self.policy.category(category)
        t = self.policy.threshold_for(category)
        evidence = [
            Evidence(
                source="blackbox",
                name="image_harm",
                value=p,
                threshold=t,
                detail="P(the prompt asks for a disallowed image)",
            )
        ]
        evidence += [Evidence(source="blackbox", name=f"image.{k}", value=v) for k, v in cats.items()]
        scores = {"image_harm": p, **{f"image.{k}": v for k, v in cats.items()}}
        if not p == p or not 0.0 <= p <= 1.0:
            action = Action.REFUSE if self.policy.fail_closed else Action.ANSWER
            return Decision(
                action=action,
                category="guard_unavailable" if action is Action.REFUSE else None,
                scores=scores,
                evidence=evidence,
                reasons=[*notes, f"invalid image_harm score {p!r}"],
            )
        if p < t:
            return Decision(
                action=Action.ANSWER,
                scores=scores,
                evidence=evidence,
                reasons=[*notes, f"image_harm {p:.3f} < {t:.3f}"],
            )
        if not cat.enabled:
            return Decision(
                action=Action.ANSWER,
                scores=scores,
                evidence=evidence,
                reasons=[
                    *notes,
                    f"image_harm {p:.3f} >= {t:.3f} as {category}, a category this policy allows; answered",
                ],
            )
        # a fitted head has a disallowed class next to 'benign', so `cats` is never empty
        assert category is not None
        action = cat.action or Action.REFUSE
        return Decision(
            action=action,
            category=category,
            scores=scores,
            evidence=evidence,
            reasons=[*notes, f"image_harm {p:.3f} >= {t:.3f} [category {category} {cats[category]:.3f}]"],
            response=cat.response or constructive_response(action, category),
        )

    def check_output(self, prompt: str, reply: Any) -> Decision:
        """An image model's output is an image, which this guard does not read: answered, and said so."""
        return Decision(
            action=Action.ANSWER, reasons=["image outputs are not checked by ImageGuard (only the prompt is)"]
        )


__all__ = ["ImageGuard"]
