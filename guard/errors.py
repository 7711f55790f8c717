"""The error hierarchy: every error the library raises on purpose derives from `GuardError`.

Messages name the bad value and say how to fix it.
"""

from __future__ import annotations


class GuardError(Exception):
    """Root of all errors raised by this library."""


class InputError(GuardError, ValueError):
    """A prompt or argument the guard cannot use (wrong type, empty, invalid)."""


class DataFormatError(GuardError, ValueError):
    """A data file that does not follow the expected schema; the message names file and line."""


class FetchError(GuardError, RuntimeError):
    """A public package could not be downloaded or failed its sha256 check."""


class ArtifactError(GuardError, RuntimeError):
    """A saved guard is missing, corrupt, of another format version, or for another host."""


class NotFittedError(GuardError, AttributeError):
    """An estimator was used before `fit`.

    Also a subclass of scikit-learn's `NotFittedError` contract (ValueError/AttributeError), so
    `sklearn.utils.validation.check_is_fitted` users can catch it the usual way.
    """


class MissingDependencyError(GuardError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""
