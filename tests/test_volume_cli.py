"""Volume mode end to end (issue 19): the source geometry survives simulate -> recon --volume -> NIfTI/DICOM,
bad volumes get one-line errors, and a 32-slice MRI slab runs on the CPU in a test-sized setting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medrecon.io.dicom_writer import write_dicom_series
from medrecon.io.volumes import load_volume

PACKAGE_CT = Path(__file__).resolve().parents[1] / "medrecon" / "data" / "ct_totalseg_2slices.nii.gz"


def medrecon(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medrecon", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, check=False)


def _series(tmp_path: Path, n: int = 4, size: int = 96) -> tuple[Path, np.ndarray]:
    """A CT DICOM series of ``n`` slices (the package's body-CT slices, repeated and shifted) with a tilted,
    off-centre geometry, so that a geometry bug cannot pass by accident. Returns ``(folder, affine)``."""
    vol = load_volume(PACKAGE_CT, modality="CT")
    import torch

    hu = torch.nn.functional.interpolate(torch.from_numpy(vol.data[:, None]), size=(size, size), mode="bilinear",
                                         antialias=True)[:, 0].numpy()
    data = np.stack([np.roll(hu[k % 2], 2 * k, axis=1) for k in range(n)]).astype(np.float32)
    c, s = np.cos(0.1), np.sin(0.1)
    affine = np.eye(4)
    affine[:3, 0] = [0.0, -2.5 * s, 2.5 * c]  # slice step: 2.5 mm along a tilted axis
    affine[:3, 1] = [0.0, 3.0 * c, 3.0 * s]   # row step (3 mm pixels)
    affine[:3, 2] = [3.0, 0.0, 0.0]           # column step
    affine[:3, 3] = [-140.0, -120.0, 35.0]
    folder = tmp_path / "series"
    write_dicom_series(folder, data, affine, "CT", None, "test series", "test")
    return folder, affine


def _positions(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    import pydicom

    files = sorted(folder.glob("*.dcm"))
    ds = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    ds.sort(key=lambda d: int(d.InstanceNumber))
    return (np.array([[float(v) for v in d.ImagePositionPatient] for d in ds]),
            np.array([float(v) for v in ds[0].PixelSpacing]))


def test_volume_dicom_output_keeps_the_input_series_positions_and_spacing(tmp_path):
    """simulate ct from a DICOM series, recon --volume (3-D TV) to DICOM: every output slice sits at the input
    slice's ImagePositionPatient, with the input's slice spacing, and pixel spacing scaled by the resampling."""
    series, affine = _series(tmp_path, n=4, size=96)
    r = medrecon("simulate", "ct", "--image", series, "--views", 24, "--size", 48, "--out", "ct.h5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = medrecon("recon", "ct.h5", "--method", "tv", "--iters", 5, "--volume", "--format", "dicom", "--quiet",
                 "--out", "out_dicom", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    pos_in, pix_in = _positions(series)
    pos_out, pix_out = _positions(tmp_path / "out_dicom")
    assert pos_out.shape == (4, 3)
    # 96 -> 48 pixels over the same field of view: each output slice's first pixel is the centre of a 2x2 block of
    # the input's, half an input pixel along the row and the column from the input slice's position
    np.testing.assert_allclose(pos_out, pos_in + 0.5 * (affine[:3, 1] + affine[:3, 2]), atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(np.diff(pos_out, axis=0), axis=1), 2.5, atol=1e-3)
    np.testing.assert_allclose(pix_out, 2 * pix_in, rtol=1e-6)
    out = load_volume(tmp_path / "out_dicom")
    np.testing.assert_allclose(out.affine[:3, 0], affine[:3, 0], atol=1e-4)
    np.testing.assert_allclose(out.affine[:3, 1:3], 2 * affine[:3, 1:3], atol=1e-4)
    record = json.loads((tmp_path / "out_dicom.run.json").read_text())
    assert record["params"]["volume"]["z_weight"] > 0


def test_volume_nifti_output_keeps_the_slab_affine(tmp_path):
    """A slab cut from the middle of a series (--slices 1:4) keeps its place: the output NIfTI's affine is the input
    affine moved to slice 1, with the in-plane steps scaled by the resampling."""
    series, affine = _series(tmp_path, n=5, size=64)
    r = medrecon("simulate", "ct", "--image", series, "--slices", "1:4", "--views", 24, "--size", 32,
                 "--out", "ct.h5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = medrecon("recon", "ct.h5", "--method", "tv", "--iters", 5, "--volume", "--z-weight", 2, "--quiet",
                 "--out", "out.nii.gz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = load_volume(tmp_path / "out.nii.gz")
    assert out.data.shape == (3, 32, 32)
    want = affine.copy()
    want[:3, 3] = affine[:3, 3] + affine[:3, 0]  # slice 1 of the series
    want[:3, 3] += 0.5 * (affine[:3, 1] + affine[:3, 2])  # the first coarse pixel's centre, half a fine pixel in
    want[:3, 1:3] *= 2
    assert out.space == "RAS"  # NIfTI is read in RAS; the series' affine is LPS
    want = np.diag([-1.0, -1.0, 1.0, 1.0]) @ want
    np.testing.assert_allclose(out.affine, want, atol=1e-3)


def test_bad_volumes_get_one_line_errors(tmp_path):
    """One slice, a negative z weight, --z-weight without --volume and uneven slice spacing: one line, exit 1."""
    series, _ = _series(tmp_path, n=3, size=32)
    r = medrecon("simulate", "ct", "--image", series, "--views", 12, "--out", "ct.h5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cases = [(["recon", "ct.h5", "--method", "fbp", "--volume", "--slices", "0:1", "--out", "a.nii.gz"],
              "at least 2 contiguous slices"),
             (["recon", "ct.h5", "--method", "fast", "--volume", "--z-weight", -0.5, "--out", "b.nii.gz"],
              "--z-weight must be"),
             (["recon", "ct.h5", "--method", "fast", "--z-weight", 0.5, "--out", "c.nii.gz"], "add --volume"),
             (["recon", "ct.h5", "--method", "fast", "--z-solve", "admm", "--out", "e.nii.gz"], "add --volume"),
             (["recon", "ct.h5", "--method", "fast", "--volume", "--z-rho", -1, "--out", "f.nii.gz"], "--z-rho must be"),
             (["recon", "ct.h5", "--method", "fbp", "--volume", "--z-weight", 1, "--out", "d.nii.gz"],
              "no term along z")]
    for args, text in cases:
        r = medrecon(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)  # InputError: exit 2 (medrecon.cli.main)
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and text in lines[0], (args, r.stderr)
        assert not list(tmp_path.glob(str(args[-1]) + "*")), "nothing may be written"
    # uneven spacing: move the last slice of the series 4 mm further along its axis
    import pydicom

    last = max(series.glob("*.dcm"))
    ds = pydicom.dcmread(last)
    ds.ImagePositionPatient = [float(v) + 4.0 * d for v, d in zip(ds.ImagePositionPatient, (0.0, 0.0, 1.0))]
    ds.save_as(last)
    r = medrecon("simulate", "ct", "--image", series, "--views", 12, "--out", "uneven.h5", cwd=tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "spacing" in lines[0], r.stderr
    assert not (tmp_path / "uneven.h5").exists()


@pytest.mark.data
@pytest.mark.slow
def test_a_32_slice_mri_slab_runs_end_to_end_on_the_cpu(tmp_path, shared_data):
    """Done-when: a 32-slice MRI slab of the held-out T1, test-sized (48 px, 4 steps), through simulate and
    recon --volume in slabs of 12, to a 32-slice NIfTI with finite metrics and the slabs in the run record."""
    r = medrecon("simulate", "mri", "--image", shared_data / "mri" / "vsseg001_t1_dicom", "--slices", "48:80",
                 "--size", 48, "--center-fraction", 0.16, "--noise-std", 0.002, "--out", "slab.h5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = medrecon("recon", "slab.h5", "--method", "fast", "--steps", 4, "--volume", "--slab", 12, "--quiet",
                 "--out", "slab.nii.gz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = load_volume(tmp_path / "slab.nii.gz")
    assert out.data.shape[0] == 32 and np.isfinite(out.data).all()
    record = json.loads((tmp_path / "slab.nii.gz.run.json").read_text())
    assert record["params"]["volume"] == {"z_weight": 1.0, "slab": 12}
    assert np.isfinite(record["metrics"]["psnr"]) and record["metrics"]["psnr"] > 15
