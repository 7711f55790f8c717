"""Public path of `LatentGuard` (it lives in `guard.whitebox.latent`).

Example:
    >>> from guard.latent import LatentGuard
    >>> LatentGuard.__module__
    'guard.whitebox.latent'
"""

from guard.whitebox.latent import LatentGuard

__all__ = ["LatentGuard"]
