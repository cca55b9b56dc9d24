"""Benchmark inputs: sha256 checks, missing files, simulated and fastMRI cases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medrecon.benchmark import load_suite
from medrecon.benchmark.data import data_root, load_cases, sha256_of, verify_dataset
from medrecon.cli import main as cli_main
from medrecon.errors import InputError

REPO = Path(__file__).resolve().parents[2]


def test_sha256_mismatch_is_refused_naming_suite_and_file(tmp_path, suite_json, write_manifest, capfd):
    # Same file names as the shipped samples, different contents.
    fake = tmp_path / "data"
    fake.mkdir()
    for f in (REPO / "medrecon" / "data").glob("*.nii.gz"):
        (fake / f.name).write_bytes(f.read_bytes() + b"\0")
    path = write_manifest(suite_json("smoke"), root=fake)
    code = cli_main(["benchmark", "--suite", str(path), "--device", "cpu", "--out", str(tmp_path / "o")])
    _, err = capfd.readouterr()
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("medrecon: error: suite smoke: mri_t1_vsseg001_2slices.nii.gz has sha256")
    assert "refusing" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "results.json").exists()


def test_missing_file_and_missing_root(tmp_path, suite_json, write_manifest):
    path = write_manifest(suite_json("smoke"), root=tmp_path)
    suite = load_suite(path)
    with pytest.raises(InputError, match="suite smoke: data file mri_t1_vsseg001_2slices.nii.gz is missing"):
        verify_dataset(suite, suite.datasets[0], data_root(suite, None))
    with pytest.raises(InputError, match="data folder .* does not exist"):
        data_root(suite, str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="pass --data-root"):
        data_root(load_suite("fastmri"), None)


def test_folder_digest_matches_the_shared_data_convention(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.dcm").write_bytes(b"one")
    (tmp_path / "y.dcm").write_bytes(b"two")
    d1 = sha256_of(tmp_path)
    (tmp_path / "y.dcm").write_bytes(b"tw0")
    assert sha256_of(tmp_path) != d1


def test_smoke_cases_are_simulated_from_the_right_slices():
    suite = load_suite("smoke")
    root = data_root(suite, None)
    mri, ct = suite.datasets
    (case,) = load_cases(suite, mri, verify_dataset(suite, mri, root), "test")
    assert case.kspace.shape == (1, 8, 128, 128) and case.kspace.dtype == np.complex64
    assert case.target.shape == (1, 128, 128) and case.mask.shape == (128,)
    assert case.slices == [0] and case.noise_std == pytest.approx(0.002)
    (tune,) = load_cases(suite, mri, verify_dataset(suite, mri, root), "tuning")
    assert tune.slices == [1] and not np.allclose(tune.target, case.target)
    (c,) = load_cases(suite, ct, verify_dataset(suite, ct, root), "test")
    assert c.target.shape == (1, 160, 160) and c.sinogram.shape[:2] == (1, 60)
    assert c.target.min() < -500 and c.target.max() > 500  # HU


@pytest.mark.data
def test_shared_suites_match_the_shared_data_files(shared_data):
    for name in ("mri-4x", "mri-8x", "ct-60", "ct-120"):
        suite = load_suite(name)
        root = data_root(suite, None)
        assert root == shared_data.resolve()
        for ds in suite.datasets:
            assert verify_dataset(suite, ds, root).exists()


@pytest.mark.data
def test_ct_60_suite_runs_fbp_on_the_held_out_volume(tmp_path):
    code = cli_main(["benchmark", "--suite", "ct-60", "--methods", "fbp", "--device", "cpu", "--no-figures",
                     "--out", str(tmp_path)])
    assert code == 0
    res = json.loads((tmp_path / "results.json").read_text())
    (row,) = res["rows"]
    assert row["method"] == "fbp" and row["n_slices"] == 4 and 20 < row["psnr"] < 50
    assert [s["slice"] for s in row["volumes"][0]["slices"]] == [1, 5, 9, 13]


def _fake_fastmri(folder: Path, names: list[str]) -> None:
    """Tiny fully sampled multicoil fastMRI-layout files with reconstruction_rss targets."""
    import torch

    from medrecon.io.fastmri import write_fastmri_kspace
    from operators import fft2c

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[-1:1:64j, -1:1:48j]
    for i, name in enumerate(names):
        img = ((xx**2 / 0.6 + yy**2 / 0.8) < 0.7).astype(np.float32) * (1 + 0.1 * rng.standard_normal((64, 48)))
        coils = np.stack([img * np.exp(-((xx - c) ** 2 + yy**2)) for c in (-0.8, -0.3, 0.3, 0.8)])
        k = fft2c(torch.from_numpy(np.stack([coils, coils * 0.9]).astype(np.complex64))).numpy()
        target = np.sqrt((np.abs(np.stack([coils, coils * 0.9])) ** 2).sum(1)).astype(np.float32)
        write_fastmri_kspace(folder / name, k, target=target, recon_size=(64, 48))


def test_fastmri_suite_uses_official_masks_seeded_by_file_name(tmp_path):
    from operators import cartesian_mask

    data = tmp_path / "multicoil_val"
    data.mkdir()
    _fake_fastmri(data, ["file1000.h5", "file1001.h5", "file1002.h5"])
    code = cli_main(["benchmark", "--suite", "fastmri", "--methods", "zero-filled", "--datasets", "fastmri-4x",
                     "--device", "cpu", "--data-root", str(data), "--out", str(tmp_path / "o")])
    assert code == 0
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    (row,) = res["rows"]
    # The first file (sorted) is the tuning split; the other two are the test volumes, scored per volume.
    assert [v["volume"] for v in row["volumes"]] == ["file1001.h5", "file1002.h5"]
    assert row["spread"] == "volumes" and row["n_slices"] == 4
    suite = load_suite("fastmri")
    ds = suite.datasets[0]
    cases = load_cases(suite, ds, verify_dataset(suite, ds, data), "test")
    expected = cartesian_mask("random", 48, 0.08, 4, seed=tuple(map(ord, "file1001.h5"))).numpy()
    assert np.array_equal(cases[0].mask, expected)
    assert not np.array_equal(cases[0].mask, cases[1].mask)
    assert (np.abs(cases[0].kspace[..., ~expected]) == 0).all()


def test_fastmri_suite_refuses_files_without_a_target(tmp_path):
    from medrecon.io.fastmri import write_fastmri_kspace

    data = tmp_path / "test_files"
    data.mkdir()
    k = (np.random.default_rng(0).standard_normal((1, 2, 32, 32)) + 0j).astype(np.complex64)
    for n in ("a.h5", "b.h5"):
        write_fastmri_kspace(data / n, k, mask=np.ones(32, bool))
    suite = load_suite("fastmri")
    ds = suite.datasets[0]
    with pytest.raises(InputError, match="fully sampled multicoil files"):
        load_cases(suite, ds, verify_dataset(suite, ds, data), "test")
    shutil.rmtree(data)


def test_further_undersampling_keeps_the_centre_and_a_fraction_of_the_acquired_samples():
    from medrecon.benchmark.data import _further_mask
    from operators import poisson_disc_mask

    acquired = poisson_disc_mask((64, 80), 4, calib=(12, 12), seed=0).numpy().astype(bool)
    m = _further_mask(acquired, 0.5, seed=1)
    assert not (m & ~acquired).any()  # never a sample that was not acquired
    assert m[32 - 6:32 + 6, 40 - 6:40 + 6].all()  # the calibration block survives
    outside = acquired.copy()
    outside[32 - 6:32 + 6, 40 - 6:40 + 6] = False
    assert 0.4 < (m & outside).sum() / outside.sum() < 0.6
    assert np.array_equal(m, _further_mask(acquired, 0.5, seed=1))


@pytest.mark.data
def test_real_kspace_case_has_a_pseudo_reference_on_the_kspace_scale(shared_data):
    from medrecon.benchmark.data import dataset_source, load_cases
    from medrecon.metrics import volume_metrics
    from operators import rss
    from operators.fft import ifft2c

    suite = load_suite("robust-bart")
    ds = suite.datasets[0]
    (case,) = load_cases(suite, ds, dataset_source(suite, ds, shared_data), "test")
    assert case.target.shape == (1, 180, 230) and case.mask.shape == (180, 230)
    assert 0.05 < case.mask.mean() < 0.09  # half of the 12.7 % acquired outside the centre
    zf = rss(ifft2c(torch.from_numpy(case.kspace))).numpy()
    # same scale: zero-filled is a poor but recognisable image of the reference, not off by 12 orders
    assert 18 < volume_metrics(case.target, zf)["psnr"] < 30
