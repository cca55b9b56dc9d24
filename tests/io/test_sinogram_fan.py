"""Fan-beam sinogram files (issue 21): the stored geometry rebuilds the projector; `simulate ct` -> `recon` round
trip with a clinical geometry; a bad geometry is one error line."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from medrecon.errors import InputError
from medrecon.io.sinogram import projector_from_geometry, read_sinogram, write_sinogram
from operators import FanBeamCT, FanBeamCurvedCT

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "medrecon" / "data" / "ct_totalseg_2slices.nii.gz"


@pytest.mark.parametrize("op", [FanBeamCT((20, 18), 7, 80.0, 130.0, 33, 1.3, 0.9),
                                FanBeamCurvedCT((20, 18), 7, 80.0, 130.0, 33, 1.3, 0.9, scan_range="short")])
def test_fan_geometry_survives_the_file(op, tmp_path):
    x = torch.rand(2, 20, 18, dtype=torch.float64)
    write_sinogram(tmp_path / "s.h5", op(x).numpy(), op.geometry(), 0.019, 0.0, 0)
    f = read_sinogram(tmp_path / "s.h5")
    again = projector_from_geometry(f.geometry)
    assert type(again) is type(op) and again.geometry() == op.geometry()
    torch.testing.assert_close(again(x), op(x), rtol=0, atol=0)


def test_bad_stored_fan_geometries_are_input_errors(tmp_path):
    op = FanBeamCurvedCT((16, 16), 5, 60.0, 100.0, 30, 1.0, scan_range="short")
    sino = op(torch.rand(1, 16, 16)).numpy()
    for change, match in ((dict(type="fan"), "unknown CT geometry type"),
                          (dict(scan_range=-1.0), "scan_range must be a positive number"),
                          (dict(scan_range=1.0), "does not describe a valid projector"),
                          (dict(source_distance=5.0), "does not describe a valid projector"),
                          (dict(detector_distance="far"), "detector_distance must be a positive number")):
        write_sinogram(tmp_path / "s.h5", sino, {**op.geometry(), **change}, 0.019, 0.0, 0)
        with pytest.raises(InputError, match=match) as e:
            projector_from_geometry(read_sinogram(tmp_path / "s.h5").geometry)
        assert "\n" not in str(e.value)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medrecon", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("flags", [["--scanner", "siemens-definition"],
                                   ["--sid", "541", "--sdd", "949", "--detector-pitch", "1.0239", "--detectors", "1000",
                                    "--detector", "flat", "--scan", "short"]])
def test_simulate_fan_and_reconstruct_from_the_stored_geometry(flags, tmp_path):
    """`simulate ct --geometry fan ...` stores the clinical geometry; `recon --method fbp` rebuilds the projector
    from it. Measured on the 2-slice sample at 64 x 64 (7.8 mm pixels), 60 noiseless views: PSNR 29.97 dB (Siemens
    preset, curved, full scan) and 29.99 dB (flat, short scan)."""
    out = tmp_path / "x.h5"
    r = _run("simulate", "ct", "--image", str(IMAGE), "--size", "64", "--views", "60", "--geometry", "fan", *flags,
             "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr  # these fans cover the 500 mm field
    with h5py.File(out, "r") as f:
        g = json.loads(f.attrs["geometry"])
        assert f["sinogram"].shape[:2] == (2, 60)
        scanner = f.attrs.get("scanner")
    if "--scanner" in flags:
        assert g["type"] == "fan_curved" and scanner == "siemens-definition"
        assert (g["source_distance"], g["detector_distance"], g["n_detectors"], g["detector_spacing"]) == \
            (595.0, 1085.6, 736, 1.2858)
        assert g["scan_range"] == pytest.approx(2 * math.pi)
    else:
        assert g["type"] == "fan_flat" and scanner is None and g["n_detectors"] == 1000
        assert g["scan_range"] == pytest.approx(math.pi + 2 * math.atan(500 * 1.0239 / 949))
    assert g["pixel_size"] == pytest.approx(500 / 64, rel=1e-3)
    r = _run("recon", str(out), "--method", "fbp", "--out", str(tmp_path / "y.nii.gz"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = json.loads((tmp_path / "y.nii.gz.run.json").read_text())
    assert 27.0 < run["metrics"]["psnr"] < 40.0, run["metrics"]


def test_simulate_fan_with_the_source_inside_the_image_is_one_error_line(tmp_path):
    r = _run("simulate", "ct", "--image", str(IMAGE), "--size", "64", "--geometry", "fan", "--sid", "200", "--sdd",
             "400", "--detector-pitch", "1", "--detectors", "800", "--out", str(tmp_path / "x.h5"), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("medrecon: error: fan-beam geometry") and "source lies inside" in r.stderr
    assert not (tmp_path / "x.h5").exists()
    r = _run("simulate", "ct", "--image", str(IMAGE), "--scanner", "ge-lightspeed", "--out", str(tmp_path / "x.h5"),
             cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "add --geometry fan" in r.stderr


def test_flat_panel_preset_warns_of_truncation_once(tmp_path):
    r = _run("simulate", "ct", "--image", str(IMAGE), "--size", "32", "--views", "8", "--geometry", "fan",
             "--scanner", "cbct-flat", "--out", str(tmp_path / "x.h5"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if x]
    assert len(lines) == 1 and lines[0].startswith("medrecon: warning: FanBeamCT: the fan covers a circle of radius")
    assert np.isfinite(read_sinogram(tmp_path / "x.h5").sinogram).all()
