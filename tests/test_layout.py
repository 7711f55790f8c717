"""The import direction of DESIGN.md holds (the import-linter contracts in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is missing: install the dev extra (import-linter)")
    run = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def test_public_paths_stay_importable():
    from guard import Action, Decision, Guard, Policy
    from guard.host import HostModel
    from guard.latent import LatentGuard

    assert HostModel.__module__ == "guard.whitebox.host"
    assert LatentGuard.__module__ == "guard.whitebox.latent"
    assert Guard.__module__ == "guard.guard"
    assert {Action.ANSWER, Action.ABSTAIN, Action.REFUSE} and Decision and Policy
