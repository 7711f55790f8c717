"""Read an artifact folder: one JSON file of metadata and one safetensors file of arrays.

Guard folders (`guard.io.artifacts`) and steering folders (`guard.whitebox.steering`) share this layout; both
read it through `read_folder`, which turns every way the files can be broken (missing, not JSON,
no or another format version, not safetensors) into one `ArtifactError` that names the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from guard.errors import ArtifactError


def read_folder(
    folder: str | Path,
    meta_file: str,
    tensor_file: str,
    format_version: int,
    *,
    kind: str = "artifact",
    remedy: str = "",
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The metadata dict and the arrays of an artifact folder, checked for the format version.

    Args:
        folder: the folder.
        meta_file: the JSON file's name inside it (must hold ``format_version``).
        tensor_file: the safetensors file's name inside it.
        format_version: the version this library reads.
        kind: what the folder is, for messages ("guard artifact").
        remedy: appended to messages, e.g. ``"; re-run `guard fit`"``.

    Raises:
        ArtifactError: a file is missing or corrupt, or the format version differs.

    Example:
        >>> read_folder("nowhere", "guard.json", "latent.safetensors", 1)
        Traceback (most recent call last):
        ...
        guard.errors.ArtifactError: artifact incomplete: nowhere/guard.json is missing
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(folder)
    meta_path, tensor_path = folder / meta_file, folder / tensor_file
    for f in (meta_path, tensor_path):
        if not f.is_file():
            raise ArtifactError(f"{kind} incomplete: {f} is missing{remedy}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        version = meta["format_version"]
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ArtifactError(f"{meta_path} is corrupt ({exc}){remedy}") from exc
    if version != format_version:
        raise ArtifactError(f"{meta_path} has format version {version}, this library reads {format_version}")
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{tensor_path} is corrupt ({exc}){remedy}") from exc
    return meta, tensors


__all__ = ["read_folder"]
