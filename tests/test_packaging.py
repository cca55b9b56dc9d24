"""The wheel carries what a fresh install needs: shipped priors, sample scans and benchmark suites."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_priors_samples_and_suites(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", str(REPO), "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path)], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("medrecon-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for prior in ("mri-brain", "ct-body"):
        for part in ("configs/metadata.json", "models/model.safetensors", "docs/README.md"):
            assert f"medrecon/weights/{prior}/{part}" in names
    for sample in (REPO / "medrecon" / "data").glob("*.nii.gz"):
        assert f"medrecon/data/{sample.name}" in names
    suites = {Path(n).stem for n in names if n.startswith("medrecon/data/suites/") and n.endswith(".json")}
    assert {"smoke", "mri-4x", "mri-8x", "ct-60", "ct-120", "fastmri", "mri-4x-gpu"} <= suites
    assert any(n.startswith("operators/") for n in names)
