"""The server's optional imports, through one helper that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from guard.errors import MissingDependencyError


def require_server(module: str) -> ModuleType:
    """Import `module` (fastapi, uvicorn, httpx, ...) or say to install the `server` extra.

    Raises:
        MissingDependencyError: the module is not installed.

    Example:
        >>> require_server("json").dumps([1])
        '[1]'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise MissingDependencyError(
            f"{module!r} is needed by the gateway (`guard serve`) but is not installed: "
            f"pip install 'latent-guardrail[server]' (or pip install {top})"
        ) from exc
