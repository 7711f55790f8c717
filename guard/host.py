"""Public path of `HostModel` (it lives in `guard.whitebox.host`).

Example:
    >>> from guard.host import HostModel
    >>> HostModel.__module__
    'guard.whitebox.host'
"""

from guard.whitebox.host import Encoded, HostModel

__all__ = ["Encoded", "HostModel"]
