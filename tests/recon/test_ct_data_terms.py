"""CT data terms (issue 21): PWLS weights against their definition, the weighted operator's adjoint, whitening,
and PWLS-TV against unweighted TV at low dose."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrecon.recon.problems import ct_system, ct_weights
from operators import OperatorShapeError, ParallelBeamCT, RowWeighted, hu_to_mu, transmission_noise


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread (tests/conftest.py)."""


def _phantom(n: int = 48) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    body = ((xx / 0.9) ** 2 + (yy / 0.7) ** 2 < 1).float()
    bone = ((xx - 0.3) ** 2 + yy ** 2 < 0.03).float()
    return -1000.0 + 1000.0 * body + 800.0 * bone  # HU: air, water, bone


def test_row_weighted_is_w_half_a_with_exact_adjoint():
    A = ParallelBeamCT((24, 24), 10)
    w = torch.rand(3, *A.out_shape, dtype=torch.float64) + 0.05
    Aw = RowWeighted(A, w.sqrt())
    x = torch.randn(3, 24, 24, dtype=torch.float64)
    y = torch.randn(3, *A.out_shape, dtype=torch.float64)
    torch.testing.assert_close(Aw(x), w.sqrt() * A(x))
    lhs, rhs = (Aw(x) * y).sum(), (x * Aw.adjoint(y)).sum()
    assert abs(float(lhs - rhs)) <= 1e-10 * float(lhs.abs())
    torch.testing.assert_close(Aw.normal(x), A.adjoint(w * A(x)))
    rep = Aw.batch_repeat(2)  # posterior samples: each row's weights follow it
    torch.testing.assert_close(rep(x.repeat_interleave(2, 0)), Aw(x).repeat_interleave(2, 0))
    torch.testing.assert_close(Aw.batch_select(slice(1, 3))(x[1:3]), Aw(x)[1:3])
    with pytest.raises(OperatorShapeError):
        RowWeighted(A, torch.ones(5, 7))
    with pytest.raises(ValueError, match="non-negative"):
        RowWeighted(A, -torch.ones(A.out_shape))


def test_pwls_weights_are_the_inverse_variance_of_the_log_counts():
    """w = N^2 / (N + sigma_e^2) at N = I0 exp(-l); and 1 / w is the line integral's variance (Monte Carlo)."""
    l = torch.tensor([[[0.5, 2.0, 4.0]]], dtype=torch.float64)
    i0 = 1e4
    n = i0 * np.exp(-l.numpy())
    np.testing.assert_allclose(ct_weights(l, i0).numpy(), n, rtol=1e-12)
    np.testing.assert_allclose(ct_weights(l, i0, electronic_std=10.0).numpy(), n ** 2 / (n + 100.0), rtol=1e-12)
    starved = ct_weights(torch.tensor([[[20.0]]]), i0)  # fewer than one count: clamped to one, no NaN
    assert float(starved) == 1.0
    gen = torch.Generator().manual_seed(0)
    p = torch.full((20000,), 2.0, dtype=torch.float64)
    noisy = transmission_noise(p, i0, gen)
    expected = 1.0 / float(i0 * np.exp(-2.0))
    assert float(noisy.var()) == pytest.approx(expected, rel=0.05)
    with pytest.raises(ValueError, match="photon count"):
        ct_weights(l, 0.0)


def test_pwls_system_whitens_the_noise():
    """The whitened noise has one variance per slice, 1 / mean(w), whatever each ray's attenuation."""
    A = ParallelBeamCT((48, 48), 40, pixel_size=4.0, detector_spacing=4.0)  # long paths: counts vary 30-fold
    mu = hu_to_mu(_phantom())[None]
    p = A(mu).double()
    i0 = 5e3
    gen = torch.Generator().manual_seed(1)
    draws = torch.stack([transmission_noise(p, i0, gen) for _ in range(200)])
    Aw, yw, noise_var = ct_system(A, draws[0].float(), i0, "pwls")
    root = Aw.sqrt_weight  # the whitening weights
    torch.testing.assert_close(yw, root * draws[0].float())
    white = (draws - p).float() * root  # noise after whitening, per draw
    rays = p[0] < 6  # rays with at least ~10 expected counts: the delta method holds
    var = white[:, 0][:, rays].var(dim=0)
    assert float(var.mean()) == pytest.approx(float(noise_var[0]), rel=0.1)
    raw = (draws - p)[:, 0][:, rays].var(dim=0)
    assert float(raw.max() / raw.min()) > 10 and float(var.max() / var.min()) < 3  # unequal before, even after
    A2, y2, nv2 = ct_system(A, draws[0].float(), i0, "ls")
    assert A2 is A and torch.equal(y2, draws[0].float()) and nv2.shape == (1,)
    with pytest.raises(ValueError, match="data term"):
        ct_system(A, draws[0].float(), i0, "gaussian")


def test_pwls_tv_beats_unweighted_tv_at_low_dose():
    """At 1000 photons per ray the starved rays through bone ruin unweighted least squares, not PWLS."""
    from medrecon.recon.config import ReconConfig
    from medrecon.recon.ct import reconstruct_sinogram

    A = ParallelBeamCT((48, 48), 60, pixel_size=4.0, detector_spacing=4.0)
    hu = _phantom()
    y = transmission_noise(A(hu_to_mu(hu)[None]), 1e3, torch.Generator().manual_seed(2))

    def psnr(method: str, data_term: str) -> float:
        cfg = ReconConfig(method=method, device="cpu", progress=False, data_term=data_term)
        out = reconstruct_sinogram(y.numpy(), A, cfg, torch.device("cpu"), photons=1e3).image[0]
        err = ((out - hu.numpy()) ** 2).mean()
        return float(10 * np.log10((hu.numpy() + 1000).max() ** 2 / err))

    ls, pwls = psnr("tv", "ls"), psnr("tv", "pwls")
    assert pwls > ls + 2.0, (ls, pwls)


def test_data_term_bad_uses_are_one_line_errors():
    from medrecon.app.pipeline import reconstruct
    from medrecon.errors import InputError
    from medrecon.io.measurement import LoadedInput
    from medrecon.recon.config import ReconConfig
    from medrecon.recon.ct import reconstruct_sinogram

    A = ParallelBeamCT((24, 24), 10)
    y = A(hu_to_mu(_phantom(24))[None])
    with pytest.raises(InputError, match="photon count") as exc:  # a noiseless sinogram has no counts to weight by
        reconstruct_sinogram(y.numpy(), A, ReconConfig(method="tv", device="cpu", data_term="pwls"),
                             torch.device("cpu"), photons=0.0)
    assert "\n" not in str(exc.value)
    mri = LoadedInput("mri", np.ones((1, 2, 16, 16), np.complex64), None, (16, 16))
    with pytest.raises(InputError, match="applies to CT"):
        reconstruct(mri, ReconConfig(method="zero-filled", device="cpu", data_term="pwls"))
    with pytest.raises(InputError, match="--data-term must be"):
        ReconConfig(method="tv", data_term="gaussian")
