"""The MRI acquisition model's sampling rule (medrecon.acquisition.mri.CartesianSampling)."""

from __future__ import annotations

import numpy as np
import pytest

from medrecon.acquisition.mri import CartesianSampling
from medrecon.errors import InputError
from operators import cartesian_mask


@pytest.mark.parametrize("kind", ["random", "equispaced_fraction"])
def test_masks_are_the_operators_fastmri_masks(kind):
    for seed in (0, 7, tuple(map(ord, "file1000001.h5"))):
        got = CartesianSampling(kind, 4, 0.08, seed).mask(368)
        assert got.dtype == bool and np.array_equal(got, cartesian_mask(kind, 368, 0.08, 4, seed=seed).numpy())


@pytest.mark.parametrize("kw, match", [
    (dict(kind="spiral"), "--mask must be one of"),
    (dict(accel=0), "--accel must be a whole number"),
    (dict(accel=-2), "--accel must be a whole number"),
    (dict(accel=2.5), "--accel must be a whole number"),
    (dict(center_fraction=0.0), "--center-fraction"),
    (dict(center_fraction=float("nan")), "--center-fraction"),
])
def test_bad_settings_are_one_line_input_errors(kw, match):
    """Issue 23, defect 9: `simulate mri --accel 0` and `recon --mask random --accel 0` raised ValueError (exit 1)."""
    args = {"kind": "random", "accel": 4, "center_fraction": 0.08, **kw}
    with pytest.raises(InputError, match=match):
        CartesianSampling(**args)


def test_impossible_masks_are_input_errors():
    with pytest.raises(InputError, match="cannot draw"):
        CartesianSampling("equispaced_fraction", 8, 0.5).mask(64)  # the centre alone is above 1/8


def test_cli_refuses_bad_acquisition_settings_with_exit_2(tmp_path, capsys):
    from medrecon.cli import main
    from medrecon.testing.samples import tiny_nifti

    img = tiny_nifti(tmp_path / "i.nii")
    for extra in (["--accel", "0"], ["--accel", "-2"]):
        assert main(["simulate", "mri", "--image", str(img), "--out", str(tmp_path / "s.h5"), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--accel" in err[0]
    assert not (tmp_path / "s.h5").exists()
