"""One place for heavy or optional imports, so a missing package names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from guard.errors import MissingDependencyError

_EXTRA_FOR = {
    "langchain": "agents",
    "onnxruntime": "onnx",
    "skl2onnx": "onnx",
    "langchain_core": "langchain",
    "matplotlib": "viz",
    "jinja2": "viz",
    "gguf": "core (pip install gguf)",
}


def require(module: str) -> ModuleType:
    """Import `module` or raise `MissingDependencyError` naming the extra that provides it.

    Example:
        >>> np = require("numpy")
        >>> np.zeros(2).shape
        (2,)
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRA_FOR.get(top, "all")
        raise MissingDependencyError(
            f"{module!r} is needed here but is not installed: "
            f"pip install 'latent-guardrail[{extra}]' (or pip install {top})"
        ) from exc
