"""The CT acquisition model (medrecon.acquisition.ct.CtScan): settings checks, the geometry rule, the dose model."""

from __future__ import annotations

import pytest
import torch

from medrecon.acquisition.ct import CtScan, simulate_sinogram
from medrecon.cli import main
from medrecon.errors import InputError
from operators import FanBeamCT, ParallelBeamCT, hu_to_mu
from operators.testing import check_operator


@pytest.mark.parametrize("kw, match", [
    (dict(geometry="cone"), "--geometry must be one of"),
    (dict(views=0), "--views must be a whole number"),
    (dict(views=2.5), "--views must be a whole number"),
    (dict(views=10**9), "--views must be a whole number"),
    (dict(photons=0.0), "--photons must be a positive"),
    (dict(photons=-5.0), "--photons must be a positive"),
    (dict(photons=float("nan")), "--photons must be a positive"),
    (dict(pixel_mm=0.0), "pixel size"),
    (dict(mu_water=float("inf")), "mu_water"),
])
def test_bad_settings_are_one_line_input_errors(kw, match):
    with pytest.raises(InputError, match=match) as e:
        CtScan(**kw)
    assert "\n" not in str(e.value)


def test_parallel_geometry_rule():
    A = CtScan("parallel", 12, pixel_mm=0.8).operator((24, 24))
    g = A.geometry()
    ref = ParallelBeamCT((24, 24), 12, pixel_size=0.8, detector_spacing=0.8).geometry()
    assert isinstance(A, ParallelBeamCT) and str(g) == str(ref)


def test_fan_geometry_rule_covers_the_magnified_field_of_view():
    """Source at 4 field-of-view widths, detector at 6 (magnification 1.5), 1.5 cells of 1.5 px per column."""
    n, pix = 32, 1.2
    A = CtScan("fan", 10, pixel_mm=pix).operator((n, n))
    assert isinstance(A, FanBeamCT)
    g = A.geometry()
    assert g["source_distance"] == pytest.approx(4 * pix * n) and g["detector_distance"] == pytest.approx(6 * pix * n)
    assert g["n_detectors"] == int(1.5 * n)
    # the detector spans the image diagonal magnified 1.5x, so no ray through the image misses it
    assert g["n_detectors"] * g["detector_spacing"] >= 1.5 * pix * n
    check_operator(A.double(), dtype=torch.float64)


def test_simulate_is_the_seeded_dose_model():
    hu = torch.zeros(1, 16, 16)
    hu[:, 4:12, 4:12] = 40.0
    scan = CtScan("parallel", 8, photons=1e4, seed=3)
    y = scan.simulate(hu)
    A = scan.operator((16, 16))
    clean = A(hu_to_mu(hu))
    assert torch.equal(y, simulate_sinogram(hu, A, 3, 1e4))  # same seed, same noise
    assert not torch.equal(y, CtScan("parallel", 8, photons=1e4, seed=4).simulate(hu))
    # Beer-Lambert with 1e4 photons: the noise on a line integral p has variance about exp(p)/N0
    resid = (y - clean)[clean < 0.05]
    assert 0.5 < resid.var().item() / (1 / 1e4) < 2.0
    assert torch.equal(CtScan("parallel", 8).simulate(hu), clean)  # no dose: noiseless


@pytest.mark.parametrize("args", [["--views", "0"], ["--photons", "0"], ["--photons", "-1"], ["--size", "3"]])
def test_simulate_ct_bad_settings_exit_2_before_reading(args, tmp_path, capfd):
    """The image does not exist: the settings error comes first, as one line."""
    code = main(["simulate", "ct", "--image", str(tmp_path / "missing.nii.gz"), "--out", str(tmp_path / "s.h5"), *args])
    err = capfd.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "medrecon: error:" in err and not (tmp_path / "s.h5").exists()
