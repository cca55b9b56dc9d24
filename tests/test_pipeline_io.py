"""Pipeline I/O end to end on real data: CT DICOM in -> sinogram -> FBP -> DICOM series out, and BART k-space."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pydicom
import pytest

from medrecon.cli import main
from medrecon.io.bart import read_cfl
from medrecon.io.volumes import load_dicom

PLANTED_NAME, PLANTED_ID = "Doe^Plantedname", "PLANTED-98765"


def _planted_copy(src, dst, slices):
    """Copy some slices of a real DICOM series, planting a patient name and ID."""
    dst.mkdir()
    files = sorted(src.iterdir())
    for f in files:
        ds = pydicom.dcmread(f)
        ds.PatientName, ds.PatientID = PLANTED_NAME, PLANTED_ID
        ds.save_as(dst / f.name)
    return dst


@pytest.mark.data
def test_ct_dicom_roundtrip_keeps_study_geometry_and_hu(shared_data, tmp_path):
    src = _planted_copy(shared_data / "ct" / "totalseg_ct_dicom", tmp_path / "planted", None)
    source = load_dicom(src)
    sino = tmp_path / "ct.h5"
    assert main(["simulate", "ct", "--image", str(src), "--slices", "9:11", "--views", "90", "--out", str(sino)]) == 0
    out = tmp_path / "fbp_dicom"
    assert main(["recon", str(sino), "--method", "fbp", "--format", "dicom", "--like", str(src), "--out", str(out),
                 "--quiet"]) == 0
    files = sorted(out.iterdir())
    assert len(files) == 2
    first = pydicom.dcmread(files[0])
    ref = pydicom.dcmread(sorted(src.iterdir())[0])
    assert first.StudyInstanceUID == ref.StudyInstanceUID  # same study, same patient module
    assert first.SeriesInstanceUID != ref.SeriesInstanceUID
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    assert "DERIVED" in list(first.ImageType)
    back = load_dicom(out)
    # Geometry: the output's voxels sit at the source's patient coordinates for slices 9 and 10.
    src_pos = source.affine @ np.array([9, 0, 0, 1.0])
    out_pos = back.affine @ np.array([0, 0, 0, 1.0])
    np.testing.assert_allclose(out_pos[:3], src_pos[:3], atol=1e-3)
    np.testing.assert_allclose(back.spacing[1:], source.spacing[1:], rtol=1e-4)
    # HU kept within noise: 90-view FBP of the same slices, compared inside the body.
    truth = source.data[9:11]
    body = truth > -500
    print(f"HU error inside the body: median {np.median(back.data[body] - truth[body]):.1f}, MAE {np.mean(np.abs(back.data[body] - truth[body])):.1f}")
    assert abs(np.median(back.data[body] - truth[body])) < 15
    assert np.mean(np.abs(back.data[body] - truth[body])) < 120
    record = (tmp_path / "fbp_dicom.run.json").read_text()
    assert PLANTED_NAME.split("^")[0] not in record and PLANTED_ID not in record
    assert json.loads(record)["method"] == "fbp"


@pytest.mark.data
def test_bart_kspace_cs_wavelet_matches_bart_pics(shared_data, tmp_path):
    base = tmp_path / "ksp"
    for ext in (".cfl", ".hdr"):
        shutil.copy(shared_data / "mri" / "bart_pics_brain" / f"ksp{ext}", str(base) + ext)
    out = tmp_path / "cs.h5"
    assert main(["recon", str(base), "--method", "cs-wavelet", "--out", str(out), "--quiet"]) == 0
    import h5py

    with h5py.File(out) as f:
        ours = f["reconstruction"][0]
    bart = np.abs(read_cfl(shared_data / "mri" / "bart_pics_brain" / "img")).squeeze()[..., 0]
    ours = ours / np.percentile(ours, 99)
    bart = bart / np.percentile(bart, 99)
    roi = bart > 0.05
    nmse = np.sum((ours - bart)[roi] ** 2) / np.sum(bart[roi] ** 2)
    corr = np.corrcoef(ours[roi], bart[roi])[0, 1]
    print(f"BART cs-wavelet vs pics: NMSE {nmse:.4f}, corr {corr:.4f}")
    assert nmse < 0.02 and corr > 0.97, (nmse, corr)
