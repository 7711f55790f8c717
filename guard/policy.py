"""Policy: how evidence becomes an action. At this stage a harmfulness threshold and fail modes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Policy(BaseModel):
    """Decision settings for a `Guard`.

    Attributes:
        threshold: refuse when the calibrated harmfulness probability is at or above it.
        fail_closed: when the guard cannot decide (an internal error), refuse (True) or
            answer (False).
        max_prompt_chars: longer prompts are not scored; they get `abstain` with a request to
            shorten them (a decision, not a crash, and nothing unchecked gets through).
        context_threshold: refuse when a retrieved document scores at or above it (it may
            carry an injected instruction); `None` means use `threshold`.

    Example:
        >>> Policy(threshold=0.7).threshold
        0.7
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    threshold: float = Field(0.5, ge=0.0, le=1.0)
    fail_closed: bool = True
    max_prompt_chars: int = Field(32_000, gt=0)
    context_threshold: float | None = Field(None, ge=0.0, le=1.0)
