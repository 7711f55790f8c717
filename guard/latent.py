"""Public path of `LatentGuard` and its `LatentScores` (they live in `guard.whitebox.latent`).

Example:
    >>> from guard.latent import LatentGuard
    >>> LatentGuard.__module__
    'guard.whitebox.latent'
"""

from guard.whitebox.latent import LatentGuard, LatentScores

__all__ = ["LatentGuard", "LatentScores"]
