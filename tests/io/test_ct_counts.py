"""Pre-log count sinograms (issue 21): `simulate ct --photons` writes the counts with I0, `recon` reads a file of
counts alone, and bad count files get one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from medrecon.io.sinogram import read_sinogram, write_sinogram
from operators import ParallelBeamCT, counts_to_line_integrals, hu_to_mu, transmission_counts, transmission_noise


def _disc(size: int = 24) -> np.ndarray:
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    return np.where(xx ** 2 + yy ** 2 < 0.5, 40.0, -1000.0).astype(np.float32)[None]


def test_counts_and_line_integrals_share_one_random_stream():
    p = torch.linspace(0.0, 9.0, 50, dtype=torch.float64)
    n = transmission_counts(p, 1e3, torch.Generator().manual_seed(3), electronic_std=5.0)
    l = transmission_noise(p, 1e3, torch.Generator().manual_seed(3), electronic_std=5.0)
    torch.testing.assert_close(counts_to_line_integrals(n, 1e3), l)
    assert (n <= 0).any()  # starved rays with electronic noise: zero or negative counts...
    assert torch.isfinite(l).all() and float(l.max()) <= np.log(1e3) + 1e-12  # ...stay finite, capped at log(I0)


def test_simulate_writes_counts_with_i0_and_recon_reads_counts_alone(tmp_path):
    src = tmp_path / "ct.nii.gz"
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.repeat(_disc(32).transpose(1, 2, 0), 2, axis=2), np.eye(4)), src)
    sim = tmp_path / "sim.h5"
    out = subprocess.run([sys.executable, "-m", "medrecon", "simulate", "ct", "--image", str(src), "--views", "20",
                          "--photons", "2000", "--seed", "1", "--out", str(sim)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    with h5py.File(sim, "r") as f:
        counts, sino, i0 = f["counts"][()], f["sinogram"][()], float(f.attrs["photons"])
    assert i0 == 2000 and counts.shape == sino.shape and (counts >= 0).all()
    np.testing.assert_allclose(np.log(i0 / np.maximum(counts, 1.0)), sino, rtol=1e-5, atol=1e-5)
    # A file of counts only (a scanner's pre-log data): read as the same line integrals.
    pre = tmp_path / "pre.h5"
    with h5py.File(sim, "r") as f, h5py.File(pre, "w") as g:
        for k in ("counts", "angles", "target_hu"):
            g.create_dataset(k, data=f[k][()])
        for k, v in f.attrs.items():
            g.attrs[k] = v
    np.testing.assert_allclose(read_sinogram(pre).sinogram, sino, rtol=1e-5, atol=1e-5)
    rec = subprocess.run([sys.executable, "-m", "medrecon", "recon", str(pre), "--method", "tv", "--data-term", "pwls",
                          "--out", str(tmp_path / "tv.nii.gz")], capture_output=True, text=True, check=False)
    assert rec.returncode == 0, rec.stderr
    record = json.loads((tmp_path / "tv.nii.gz.run.json").read_text())
    assert record["params"]["data_term"] == "pwls"


def test_bad_count_files_are_one_line_errors(tmp_path, capsys):
    from medrecon.cli import main

    A = ParallelBeamCT((16, 16), 8)
    hu = _disc(16)
    counts = 1e3 * np.exp(-A(hu_to_mu(torch.from_numpy(hu))).numpy())
    cases = {}
    for name, i0 in (("no_i0", 0.0), ("negative_i0", -5.0)):
        path = tmp_path / f"{name}.h5"
        with h5py.File(path, "w") as g:
            g.create_dataset("counts", data=counts.astype(np.float32))
            g.create_dataset("angles", data=np.asarray(A.geometry()["angles"]))
            g.attrs["geometry"] = json.dumps(A.geometry())
            g.attrs["photons"] = i0
        cases[name] = path
    for name, path in cases.items():
        rc = main(["recon", str(path), "--method", "fbp", "--out", str(tmp_path / f"{name}.nii.gz")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc != 0 and len(err) == 1 and "I0" in err[0], (name, err)
        assert not (tmp_path / f"{name}.nii.gz").exists()
    # A post-log file without a photon count cannot be weighted.
    plain = write_sinogram(tmp_path / "plain.h5", A(hu_to_mu(torch.from_numpy(hu))).numpy(), A.geometry(), 0.019, 0.0, 0)
    rc = main(["recon", str(plain), "--method", "tv", "--data-term", "pwls", "--out", str(tmp_path / "p.nii.gz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "photon count" in err[0]


@pytest.mark.slow
def test_pwls_on_the_shipped_real_ct_through_the_cli(tmp_path):
    """End to end on real data (the package's held-out body-CT slices): simulate at 2e3 photons per ray, then
    `recon --method tv` with each data term; PWLS-TV must beat unweighted TV clearly (measured 30.9 vs 15.2 dB at
    180 views, benchmarks/results/ct_lowdose_2026-12-07)."""
    from medrecon.app.demo import SAMPLES

    sim = tmp_path / "ct.h5"
    run = [sys.executable, "-m", "medrecon"]
    out = subprocess.run([*run, "simulate", "ct", "--image", str(SAMPLES["ct"]), "--views", "90", "--photons", "2000",
                          "--seed", "0", "--out", str(sim)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    psnr = {}
    for term in ("ls", "pwls"):
        dst = tmp_path / f"tv_{term}.nii.gz"
        rec = subprocess.run([*run, "recon", str(sim), "--method", "tv", "--data-term", term, "--out", str(dst)],
                             capture_output=True, text=True, check=False)
        assert rec.returncode == 0, rec.stderr
        psnr[term] = json.loads(Path(str(dst) + ".run.json").read_text())["metrics"]["psnr"]
    assert psnr["pwls"] > psnr["ls"] + 5.0, psnr
