"""Non-Cartesian MRI through the reconstruction layer (issue 20): every method on radial k-space of a real brain
slice, known answers against the Cartesian path, and the coil-map calibration from the gridded centre."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medrecon.acquisition.noncart import NonCartesianSampling, noncart_calib, simulate_noncartesian
from medrecon.errors import InputError
from medrecon.io.volumes import load_volume
from medrecon.metrics import psnr
from medrecon.recon.config import ReconConfig
from medrecon.recon.noncart import reconstruct_noncartesian

T1 = Path(__file__).resolve().parents[2] / "medrecon" / "data" / "mri_t1_vsseg001_2slices.nii.gz"
CPU = torch.device("cpu")


def _slice(size: int = 64) -> torch.Tensor:
    vol = load_volume(T1)
    x = torch.from_numpy(vol.data[:1] / np.percentile(vol.data, 99)).float()
    return torch.nn.functional.interpolate(x[:, None], size=(size, size), mode="bilinear", antialias=True)[:, 0]


def _radial(spokes: int, size: int = 64, noise: float = 0.002, kind: str = "golden-radial") -> dict:
    traj = NonCartesianSampling(kind, spokes).trajectory((size, size))
    return simulate_noncartesian(_slice(size), 8, traj, seed=0, noise_std=noise)


def _recon(sim: dict, method: str, maps=None, prior=None, **kw):
    cfg = ReconConfig(method=method, device="cpu", **kw)
    m = None if maps is None else np.broadcast_to(maps, (sim["kspace"].shape[0], *maps.shape)).copy()
    return reconstruct_noncartesian(sim["kspace"].numpy(), sim["trajectory"], (64, 64), cfg, CPU, maps=m,
                                    prior=prior)


def _psnr(res, sim) -> float:
    t = sim["target"].numpy()
    return float(psnr(t, res.image, maxval=float(t.max())))


def test_cg_sense_on_nyquist_radial_recovers_the_image(one_thread):
    """At about Nyquist (100 spokes for a 64 matrix: pi/2 * 64) with the true maps, CG-SENSE is the image up to
    the noise; gridding, an approximate inverse, is well below it. The measured values (2026-12-07) are in the
    comments: a bound 3 dB under them, so a broken density compensation or NUFFT scale fails."""
    sim = _radial(100, noise=0.0005)
    sense = _psnr(_recon(sim, "sense", maps=sim["maps"].numpy(), iters=30), sim)
    grid = _psnr(_recon(sim, "zero-filled"), sim)
    assert sense > 41.0, sense  # measured 44.46
    assert grid > 34.0, grid  # measured 37.44: gridding of a Nyquist-sampled scan is close to the image
    assert sense > grid + 4.0


def test_undersampled_radial_every_classical_method_runs_and_regularization_helps(one_thread):
    sim = _radial(24)
    maps = None  # ESPIRiT on the gridded centre
    lam = {"cs-wavelet": 0.001, "cs-tv": 0.001}  # radial's max|A^H y| is larger than a Cartesian mask's
    out = {m: _psnr(_recon(sim, m, maps=maps, lam=lam.get(m)), sim) for m in ("zero-filled", "sense", "cs-wavelet",
                                                                               "cs-tv")}
    assert all(np.isfinite(v) for v in out.values()), out
    assert out["cs-tv"] > out["zero-filled"], out
    assert out["cs-wavelet"] > out["zero-filled"], out


def test_espirit_from_the_gridded_centre_is_as_good_as_espirit_on_full_cartesian_data(one_thread):
    """The calibration block grows with the spokes (r ~ n / pi). ESPIRiT on the least-squares gridded centre of 64
    spokes gives CG-SENSE as good as ESPIRiT calibrated on the fully sampled Cartesian k-space of the same coil
    images (measured 2026-12-07: 36.10 against 35.68 dB; the true maps give 42.7: ESPIRiT's support crop, not the
    gridding, costs the rest)."""
    from medrecon.acquisition.mri import ESPIRIT_CROP, ESPIRIT_THRESHOLD, espirit_kernel
    from operators import espirit_maps, fft2c

    assert noncart_calib(torch.from_numpy(_radial(64)["trajectory"]), (64, 64)) >= 16
    assert noncart_calib(torch.from_numpy(_radial(16)["trajectory"]), (64, 64)) <= 12
    sim = _radial(64)
    est = _psnr(_recon(sim, "sense", iters=20), sim)
    cart = fft2c(sim["maps"] * _slice(64).to(torch.complex64)[:, None])
    ref_maps = espirit_maps(cart, calib_width=(24, 24), kernel_width=espirit_kernel((24, 24)),
                            threshold=ESPIRIT_THRESHOLD, crop=ESPIRIT_CROP)
    ref = _psnr(_recon(sim, "sense", maps=ref_maps[0].numpy(), iters=20), sim)
    assert est > ref - 1.0, (est, ref)


def test_a_cartesian_trajectory_gives_the_cartesian_paths_answer(one_thread):
    """The NUFFT on the Cartesian grid is the unitary FFT: CG-SENSE of the same data through both paths agrees."""
    from medrecon.recon.mri import reconstruct_kspace

    n = 32
    k = torch.arange(n) - n // 2
    ky, kx = torch.meshgrid(k, k, indexing="ij")
    traj = (torch.stack([ky, kx], -1).float() * (2 * np.pi / n)).reshape(-1, 2).numpy()
    x = _slice(n)
    sim = simulate_noncartesian(x, 4, traj, seed=0, noise_std=0.0)
    maps = sim["maps"].numpy()
    cfg = ReconConfig(method="sense", device="cpu", iters=10)
    nc = reconstruct_noncartesian(sim["kspace"].numpy(), traj, (n, n), cfg, CPU, maps=maps[None],
                                  dcf=np.ones(n * n, np.float32))
    cart_k = sim["kspace"].numpy().reshape(1, 4, n, n)
    cart = reconstruct_kspace(cart_k, np.ones(n, bool), (n, n), cfg, CPU, maps=maps[None])
    np.testing.assert_allclose(nc.image, cart.image, rtol=0, atol=1e-4 * float(cart.image.max()))


def test_the_fast_sampler_runs_on_radial_data_with_the_shipped_prior(one_thread):
    from medrecon.priors import load_prior

    sim = _radial(32)
    res = _recon(sim, "fast", prior=load_prior(None, "mri", "cpu"), steps=8)
    assert np.isfinite(res.image).all() and res.image.shape == (1, 64, 64)
    assert res.info["data_misfit"]["mean"] < 0.5
    assert _psnr(res, sim) > 18.0


def test_bad_inputs_get_one_line_errors():
    sim = _radial(8)
    with pytest.raises(InputError, match="trajectory has"):
        reconstruct_noncartesian(sim["kspace"].numpy()[..., :-3], sim["trajectory"], (64, 64),
                                 ReconConfig(method="zero-filled"), CPU)
    with pytest.raises(InputError, match="--mask"):
        reconstruct_noncartesian(sim["kspace"].numpy(), sim["trajectory"], (64, 64),
                                 ReconConfig(method="sense", mask="random"), CPU)
    with pytest.raises(InputError, match="trajectory"):
        NonCartesianSampling("rosette", 8)
    with pytest.raises(InputError, match="--spokes"):
        NonCartesianSampling("radial", 0)
