"""One posterior sample has no spread: no std output is written from it (issue 25), in any format."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pydicom
import pytest

from medrecon.cli import main as cli_main

SAMPLE = Path(__file__).resolve().parents[1] / "medrecon" / "data" / "mri_t1_vsseg001_2slices.nii.gz"


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("std") / "sim.h5"
    assert cli_main(["simulate", "mri", "--image", str(SAMPLE), "--slices", "0:1", "--mask", "random", "--accel", "4",
                     "--center-fraction", "0.16", "--coils", "4", "--out", str(out)]) == 0
    return out


def _recon(sim: Path, out: Path, samples: int, *extra: str) -> dict:
    args = ["recon", str(sim), "--method", "fast", "--steps", "2", "--samples", str(samples), "--quiet",
            "--device", "cpu", "--out", str(out), *extra]
    assert cli_main(args) == 0
    return json.loads(Path(str(out) + ".run.json").read_text())


def test_h5_and_nifti(sim, tmp_path):
    rec = _recon(sim, tmp_path / "one.h5", 1)
    with h5py.File(tmp_path / "one.h5") as f:
        assert "reconstruction" in f and "std" not in f
    assert rec["params"]["std"].startswith("not written")
    rec = _recon(sim, tmp_path / "two.h5", 2)
    with h5py.File(tmp_path / "two.h5") as f:
        assert "std" in f and float(f["std"][()].max()) > 0
    assert rec["params"]["std"] == "posterior std of 2 samples"
    _recon(sim, tmp_path / "one.nii.gz", 1)
    assert (tmp_path / "one.nii.gz").is_file() and not list(tmp_path.glob("one_std*"))
    _recon(sim, tmp_path / "two.nii.gz", 2)
    assert (tmp_path / "two_std.nii.gz").is_file()


def test_dicom(sim, tmp_path):
    _recon(sim, tmp_path / "one", 1, "--format", "dicom")
    assert (tmp_path / "one").is_dir() and not (tmp_path / "one_std").exists()
    _recon(sim, tmp_path / "two", 2, "--format", "dicom")
    files = sorted((tmp_path / "two_std").glob("*.dcm"))
    assert files
    desc = pydicom.dcmread(files[0]).SeriesDescription
    assert desc == "medrecon fast posterior std (image units, 2 samples)"
