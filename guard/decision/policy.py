"""Policy: how evidence becomes an action. Thresholds per category, costs, rules, noncompliance.

A `Policy` is plain data (pydantic): build it in Python, or load it from YAML or JSON. The
decision engine (`guard.decision.engine.decide`) reads it; `calibrate` sets per-category thresholds so
each category reaches a target refusal rate or recall on a calibration set (the idea of
"Refusal Tokens", per-category refusal rates chosen at inference, without retraining).

Example:
    >>> from guard.decision import Action
    >>> from guard.decision.rules import About, Rule
    >>> p = Policy(threshold=0.6, categories={"self_harm": CategoryPolicy(threshold=0.3)},
    ...            rules=[Rule(when=About("legal advice", threshold=0.5), then=Action.ABSTAIN)])
    >>> p.threshold_for("self_harm"), p.threshold_for("drugs")
    (0.3, 0.6)
    >>> Policy.from_yaml(p.to_yaml()) == p
    True
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from guard.decision import Action
from guard.decision.risk import Costs
from guard.decision.rules import Rule
from guard.errors import InputError

logger = logging.getLogger(__name__)

#: Evidence names that carry P(harmful) (the latent probe and the black-box scorers).
HARM_SIGNALS: tuple[str, ...] = (
    "harmfulness",
    "embedding_harm",
    "prompt_refusal",
    "multilingual_harm",
    "combined_harm",
)
#: The default `Policy.noncompliance_precedence` (chosen under grouped validation: see README).
NONCOMPLIANCE_PRECEDENCE = 0.9


class CategoryPolicy(BaseModel):
    """Settings for one category (a harm category, or a noncompliance category).

    Attributes:
        threshold: for a harm category: block when the pooled P(harmful) is at or above it; for
            a noncompliance category: abstain when its probability is at or above it. None: the
            policy's default.
        action: what to do when the category triggers; default: refuse for harm categories,
            abstain for noncompliance categories (e.g. ``specialized_advice`` -> abstain).
        costs: per-category costs; when set (here or as `Policy.costs`), Chow's rule decides.
        response: a constructive reply that replaces the category's template.
        enabled: False turns the category off (never triggers).

    Example:
        >>> CategoryPolicy(threshold=0.3).threshold
        0.3
    """

    model_config = ConfigDict(extra="forbid")

    threshold: float | None = Field(None, ge=0.0, le=1.0)
    action: Action | None = None
    costs: Costs | None = None
    response: str | None = None
    enabled: bool = True


class LanguagePooling(BaseModel):
    """How the harm heads are pooled for a text in a language other than English.

    The heads carry across languages unequally (the multilingual encoder's head more than the
    host's latent head), so a text that `guard.text.language.detect_language` reads as another
    language at `min_probability` or more is pooled with `weights` instead of
    `Policy.harm_weights`. The threshold stays the policy's (and its categories').

    Attributes:
        weights: evidence name -> weight, as `Policy.harm_weights` (log-odds mean, weights > 0).
        min_probability: the language reading's probability from which the text is routed here.

    Example:
        >>> lp = LanguagePooling(weights={"harmfulness": 1, "multilingual_harm": 1})
        >>> lp.min_probability
        0.5
    """

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float]
    min_probability: float = Field(0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> LanguagePooling:
        bad = {k: v for k, v in self.weights.items() if v < 0}
        if bad:
            raise ValueError(f"weights must be >= 0, got {bad}")
        if not any(v > 0 for v in self.weights.values()):
            raise ValueError("LanguagePooling needs at least one positive weight")
        return self


class Policy(BaseModel):
    """Decision settings for a `Guard`.

    Attributes:
        threshold: refuse when the pooled harmfulness probability is at or above it (categories
            may override it).
        fail_closed: when the guard cannot decide (an internal error), refuse (True) or
            answer (False).
        reply_threshold: `check_output` blocks a reply whose reply-harm score is at or above
            this (chosen by ``guard fit`` on grouped out-of-fold scores).
        conversation_threshold: with a history, refuse when the conversation as a whole (the
            user's turns) scores at or above it on the conversation head (multi-turn
            escalation); None: the head's fitted threshold.
        knowledge_threshold: abstain on a short factual question when the knowledge probe's
            P(the host answers correctly) is below it; None: the probe's fitted threshold.
        max_prompt_chars: longer prompts are not scored; they get `abstain` with a request to
            shorten them (a decision, not a crash, and nothing unchecked gets through).
        max_history_turns / max_history_chars: a chat history with more messages, or more
            characters in all, is not scored: the request gets `abstain` (``too_long``) at once,
            so the cost of a check stays bounded.
        max_context_docs / max_context_chars: the same for retrieved documents (their count,
            and their characters in all).
        context_threshold: refuse when a retrieved document scores at or above it (it may
            carry an injected instruction); `None` means use `threshold`.
        categories: per-category settings, keyed by a `HarmCategory` value or a noncompliance
            category (``incomplete_ambiguous``, ``unsupported_infeasible``, ``indeterminate``,
            ``humanizing``, ``insufficient_context``).
        costs: default costs for every harm category; when set, the action of least expected
            cost is taken (Chow's rule, which can abstain) instead of the threshold test.
        harm_weights: which evidence names are pooled into P(harmful), with weights; pooling
            averages log-odds. When none of them is present, every `HARM_SIGNALS` score present
            is pooled with weight 1 (e.g. an API model with no latent guard).
        other_language: pooling weights for text read as a language other than English
            (`LanguagePooling`); None: every text is pooled with `harm_weights`.
        noncompliance_threshold: abstain when a noncompliance category's probability is at or
            above it (per-category thresholds override); None turns noncompliance abstention off.
        noncompliance_precedence: a noncompliance abstention wins over a harm refusal when the
            noncompliance head rates its category above ``unsafe`` and the pooled P(harmful) is
            below this value ("Do you ever feel lonely?" is a question for an honest "I don't
            feel", not a refusal); self-harm is never demoted (it gets the supportive reply).
            None: the strictest proposal wins, as for every other signal.
        reject_option: abstain when reject-option evidence (ambiguity, novelty) flags a prompt.
        rules: conditional rules, in precedence order.
        rule_mode: ``"first"`` (the first rule that fires decides) or ``"strictest"``.

    Example:
        >>> Policy(threshold=0.7).threshold
        0.7
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    threshold: float = Field(0.5, ge=0.0, le=1.0)
    fail_closed: bool = True
    max_prompt_chars: int = Field(32_000, gt=0)
    max_history_turns: int = Field(64, ge=0)
    max_history_chars: int = Field(32_000, ge=0)
    max_context_docs: int = Field(32, ge=0)
    max_context_chars: int = Field(32_000, ge=0)
    context_threshold: float | None = Field(None, ge=0.0, le=1.0)
    reply_threshold: float = Field(0.5, ge=0.0, le=1.0)
    conversation_threshold: float | None = Field(None, ge=0.0, le=1.0)
    knowledge_threshold: float | None = Field(None, ge=0.0, le=1.0)
    categories: dict[str, CategoryPolicy] = Field(default_factory=dict)
    costs: Costs | None = None
    harm_weights: dict[str, float] = Field(default_factory=lambda: {"harmfulness": 1.0})
    other_language: LanguagePooling | None = None
    noncompliance_threshold: float | None = Field(0.6, ge=0.0, le=1.0)
    noncompliance_precedence: float | None = Field(NONCOMPLIANCE_PRECEDENCE, ge=0.0, le=1.0)
    reject_option: bool = True
    rules: list[Rule] = Field(default_factory=list)
    rule_mode: Literal["first", "strictest"] = "first"

    @model_validator(mode="after")
    def _check(self) -> Policy:
        bad = {k: v for k, v in self.harm_weights.items() if v < 0}
        if bad:
            raise ValueError(f"harm_weights must be >= 0, got {bad}")
        names = [r.name for r in self.rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(
                f"rule names must be unique (decisions name the rule that fired); duplicated: {dup}"
            )
        return self

    # ------------------------------------------------------------------ lookups
    def category(self, name: str | None) -> CategoryPolicy:
        """The settings of a category (defaults when it is not listed)."""
        return self.categories.get(name or "", CategoryPolicy())

    def pooled_signals(self) -> set[str]:
        """Every evidence name that can decide the harm pool: `harm_weights` and, when set, the
        other-language weights (weight > 0).

        Example:
            >>> sorted(Policy(harm_weights={"harmfulness": 1}, other_language=LanguagePooling(
            ...     weights={"multilingual_harm": 1})).pooled_signals())
            ['harmfulness', 'multilingual_harm']
        """
        names = {k for k, w in self.harm_weights.items() if w > 0}
        if self.other_language is not None:
            names |= {k for k, w in self.other_language.weights.items() if w > 0}
        return names

    def threshold_for(self, category: str | None) -> float:
        """The harm threshold of a category."""
        t = self.category(category).threshold
        return self.threshold if t is None else t

    def costs_for(self, category: str | None) -> Costs | None:
        """The category's costs, else the policy's, else None (threshold rule)."""
        return self.category(category).costs or self.costs

    def noncompliance_threshold_for(self, category: str) -> float | None:
        """The abstain threshold of a noncompliance category (None: off)."""
        c = self.category(category)
        if not c.enabled:
            return None
        return c.threshold if c.threshold is not None else self.noncompliance_threshold

    # ------------------------------------------------------------------ files
    def to_json(self) -> str:
        """The policy as JSON (fitted `About` state is not stored; it is refitted on first use)."""
        return self.model_dump_json(indent=2, exclude_defaults=False)

    def to_yaml(self) -> str:
        """The policy as YAML."""
        import yaml

        return yaml.safe_dump(json.loads(self.to_json()), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_json(cls, text: str) -> Policy:
        """Parse a policy from JSON text."""
        return cls.model_validate_json(text)

    @classmethod
    def from_yaml(cls, text: str) -> Policy:
        """Parse a policy from YAML text.

        Example:
            >>> Policy.from_yaml("threshold: 0.4\\ncategories: {self_harm: {threshold: 0.2}}").threshold_for("self_harm")
            0.2
        """
        import yaml

        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise InputError(f"a policy file must hold a mapping at the top level, got {type(data).__name__}")
        return cls.model_validate(data)

    def save(self, path: str | Path) -> Path:
        """Write the policy to ``.yaml``/``.yml`` or ``.json`` (by suffix)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".yaml", ".yml", ".json"):
            raise InputError(f"policy file {path} must end in .yaml, .yml or .json")
        path.write_text(self.to_json() if suffix == ".json" else self.to_yaml(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """Read a policy from a ``.yaml``/``.yml`` or ``.json`` file.

        Raises:
            InputError: missing file or unknown suffix; pydantic's ValidationError names bad fields.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"no policy file at {path}")
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            return cls.from_json(text)
        if path.suffix.lower() in (".yaml", ".yml"):
            return cls.from_yaml(text)
        raise InputError(f"policy file {path} must end in .yaml, .yml or .json")


# ------------------------------------------------------------------------------------ calibration
__all__ = ["HARM_SIGNALS", "CategoryPolicy", "LanguagePooling", "Policy"]
