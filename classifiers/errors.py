"""Errors of the classifiers package (independent of `guard`).

`ClassifierError` is a `ValueError`, so code that guards scikit-learn calls with
``except ValueError`` also catches it; messages name the bad value and the fix.

Example:
    >>> issubclass(ClassifierError, ValueError)
    True
"""

from __future__ import annotations


class ClassifierError(ValueError):
    """A bad input, label, parameter or saved model given to a classifier."""


class MissingDependencyError(ClassifierError, ImportError):
    """An optional package is not installed; the message names the extra to install."""


__all__ = ["ClassifierError", "MissingDependencyError"]
