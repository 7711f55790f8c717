"""Read an artifact folder: one JSON file of metadata and one safetensors file of arrays.

Guard folders (`guard.io.artifacts`) and steering folders (`guard.whitebox.steering`) share this layout; both
read it through `read_folder`, which turns every way the files can be broken (missing, not JSON,
no or another format version, not safetensors) into one `ArtifactError` that names the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np

from guard.errors import ArtifactError
from guard.io.artifacts import MANIFEST_FILE, MANIFEST_FORMAT

logger = logging.getLogger(__name__)


def sha256_of(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: str | Path) -> dict[str, Any]:
    """Write ``manifest.json`` into `folder`: the sha256 of every regular file directly in it.

    `save_latent` calls it after writing a guard folder; call it yourself after editing one by
    hand (its files are then trusted as they are).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "guard.json").write_text("{}")
        >>> list(write_manifest(d)["files"])
        ['guard.json']
    """
    folder = Path(folder)
    files = {
        f.name: sha256_of(f)
        for f in sorted(folder.iterdir())
        if f.is_file() and f.name != MANIFEST_FILE and not f.name.startswith(".")
    }
    manifest = {"format": MANIFEST_FORMAT, "algorithm": "sha256", "files": files}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return manifest


def update_manifest(folder: str | Path, names: list[str]) -> dict[str, Any]:
    """Refresh the checksums of `names` in `folder`'s manifest, leaving its other entries as they
    are (a file written after the manifest, such as ``fit_report.json``, stays outside it).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "guard.json").write_text("{}")
        >>> _ = write_manifest(d); _ = (d / "guard.json").write_text("[]"); _ = (d / "notes.txt").write_text("")
        >>> m = update_manifest(d, ["guard.json"]); list(m["files"]), verify_manifest(d)
        (['guard.json'], True)
    """
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = dict(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return write_manifest(folder)
    files.update({name: sha256_of(folder / name) for name in names})
    manifest = {"format": MANIFEST_FORMAT, "algorithm": "sha256", "files": dict(sorted(files.items()))}
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return manifest


def verify_manifest(
    folder: str | Path,
    required: tuple[str, ...] = (),
    *,
    missing: Literal["error", "warn"] = "error",
    remedy: str = "",
) -> bool:
    """Check every file the folder's manifest lists against its sha256.

    Args:
        folder: the artifact folder.
        required: files the manifest must list.
        missing: what a folder without a manifest gets: an error, or a logged warning (False).
        remedy: appended to messages.

    Raises:
        ArtifactError: no manifest (with ``missing="error"``), a malformed one, a listed file
            missing, or a file whose bytes changed.
    """
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        if missing == "error":
            raise ArtifactError(
                f"{folder} has no {MANIFEST_FILE} (sha256 of its files){remedy}, or, if "
                "you trust the files, write one with guard.io.artifact_io.write_manifest"
            )
        logger.warning("%s has no %s; its files are not checksum-checked", folder, MANIFEST_FILE)
        return False
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError("not a latent-guardrail manifest")
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ArtifactError(f"{path} is malformed ({exc}){remedy}") from None
    for name in required:
        if name not in files:
            raise ArtifactError(f"{path} does not list {name}{remedy}")
    for name, want in files.items():
        f = folder / str(name)
        if Path(str(name)).name != name or not f.is_file():
            raise ArtifactError(f"{folder}: {name!r}, listed in {MANIFEST_FILE}, is missing{remedy}")
        if sha256_of(f) != want:
            raise ArtifactError(
                f"{f} does not match its sha256 in {MANIFEST_FILE}: the file is corrupt or was "
                f"changed{remedy}"
            )
    return True


def read_folder(
    folder: str | Path,
    meta_file: str,
    tensor_file: str,
    format_version: int | tuple[int, ...],
    *,
    kind: str = "artifact",
    remedy: str = "",
    manifest: Literal["error", "warn"] = "warn",
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The metadata dict and the arrays of an artifact folder, checked for the format version.

    Args:
        folder: the folder.
        meta_file: the JSON file's name inside it (must hold ``format_version``).
        tensor_file: the safetensors file's name inside it.
        format_version: the version this library reads (or the versions, when it reads older
            ones too).
        kind: what the folder is, for messages ("guard artifact").
        remedy: appended to messages, e.g. ``"; re-run `guard fit`"``.
        manifest: a folder without ``manifest.json`` is an error, or only a warning; a present
            manifest is always checked.

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
    verify_manifest(folder, (meta_file, tensor_file), missing=manifest, remedy=remedy)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        version = meta["format_version"]
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ArtifactError(f"{meta_path} is corrupt ({exc}){remedy}") from exc
    readable = (format_version,) if isinstance(format_version, int) else tuple(format_version)
    if type(version) is not int or version not in readable:  # 1.0 and True are not 1
        reads = " or ".join(str(v) for v in readable)
        raise ArtifactError(f"{meta_path} has format version {version}, this library reads {reads}")
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{tensor_path} is corrupt ({exc}){remedy}") from exc
    return meta, tensors


__all__ = ["read_folder", "sha256_of", "update_manifest", "verify_manifest", "write_manifest"]
