"""The layer contracts of pyproject.toml (docs/design.md, section 1), checked with import-linter."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    exe = shutil.which("lint-imports")
    assert exe, "lint-imports is missing: install the test extras (pip install -e '.[dev]')"
    run = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout and "6 kept" in run.stdout


def test_every_package_folder_is_a_package():
    """A folder of modules without __init__.py is left out of a wheel by setuptools' find."""
    for d in list((ROOT / "medrecon").rglob("*")) + list((ROOT / "operators").rglob("*")):
        if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py")):
            assert (d / "__init__.py").is_file(), f"{d.relative_to(ROOT)} has modules but no __init__.py"
