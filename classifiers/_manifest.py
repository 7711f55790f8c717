"""sha256 manifests for saved model folders: written by `save`, checked by `load`.

A flipped byte in a weights file loads silently as a different model; the manifest names every
file of the folder with its sha256, so `load` can refuse a changed one. (`guard.io.artifact_io`
has the same format for guard folders; this copy keeps `classifiers` free of `guard` imports.)

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "model.json").write_text("{}")
    >>> sorted(write_manifest(d)["files"])
    ['model.json']
    >>> verify_manifest(d)
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from classifiers.errors import ClassifierError

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "latent-guardrail/manifest"
logger = logging.getLogger(__name__)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: str | Path) -> dict[str, Any]:
    """Write ``manifest.json``: the sha256 of every regular file directly in `folder`."""
    folder = Path(folder)
    files = {
        f.name: sha256_of(f)
        for f in sorted(folder.iterdir())
        if f.is_file() and f.name != MANIFEST_FILE and not f.name.startswith(".")
    }
    manifest = {"format": MANIFEST_FORMAT, "algorithm": "sha256", "files": files}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return manifest


def verify_manifest(folder: str | Path, required: tuple[str, ...] = ()) -> bool:
    """Check every file the manifest lists (and that `required` ones are listed).

    Returns False when the folder has no manifest (a folder saved before manifests existed; a
    warning is logged), True when every checksum matches.

    Raises:
        ClassifierError: a listed file is missing or changed, or the manifest is malformed.
    """
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        logger.warning(
            "%s has no %s; its files are not checksum-checked (save it again to add one)",
            folder,
            MANIFEST_FILE,
        )
        return False
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError("not a manifest")
    except (ValueError, KeyError, TypeError) as exc:
        raise ClassifierError(f"{path} is malformed ({exc}); save the model again") from None
    for name in required:
        if name not in files:
            raise ClassifierError(f"{path} does not list {name}; save the model again")
    for name, want in files.items():
        f = folder / str(name)
        if Path(str(name)).name != name or not f.is_file():
            raise ClassifierError(f"{folder}: {name!r} listed in {MANIFEST_FILE} is missing")
        if sha256_of(f) != want:
            raise ClassifierError(
                f"{f} does not match its sha256 in {MANIFEST_FILE} (corrupt or changed); "
                "restore or save the model again"
            )
    return True


__all__ = ["MANIFEST_FILE", "sha256_of", "verify_manifest", "write_manifest"]
