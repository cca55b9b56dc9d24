"""Known-answer tests: with a Gaussian prior the posterior is closed-form, so samplers can be checked exactly.

Prior ``x0 ~ N(0, s2 I)`` in network space. Then ``x_t = sqrt(abar) x0 + sqrt(1 - abar) n`` is
``N(0, (abar s2 + 1 - abar) I)``, whose score is ``-x_t / (abar s2 + 1 - abar)``, so the ideal noise
predictor is ``eps = -sqrt(1 - abar) score``. With ``y = M x + n`` (noise variance ``sigma2``) the
posterior is Gaussian with covariance ``(M^H M / sigma2 + I / v)^-1`` and mean ``cov M^H y / sigma2``
(``v = s2`` for real images, ``2 s2`` for complex ones whose real and imaginary parts each have ``s2``).
"""

from __future__ import annotations

import pytest
import torch

from medrecon.priors.prior import DEFAULT_SCHEDULE, make_scheduler
from medrecon.sampling import InverseProblem, posterior_sample
from operators.base import LinearOperator

H = W = 5
N = H * W
M_ROWS = 15
SIGMA2 = 0.05
S2 = 1.0


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this module runs with one torch thread (see tests/conftest.py)."""


class GaussianPrior:
    """An exact denoiser for ``x0 ~ N(0, s2 I)``, with the sampler-facing interface of DiffusionPrior."""

    def __init__(self, s2: float) -> None:
        self.s2 = s2
        self.alphas_cumprod = make_scheduler(DEFAULT_SCHEDULE).alphas_cumprod.to(torch.float64)
        self.num_timesteps = 1000

    def _abar(self, t, x):
        return self.alphas_cumprod[int(t)]

    def eps(self, x, t):
        abar = self._abar(t, x)
        score = -x / (abar * self.s2 + 1 - abar)
        return -(1 - abar).sqrt() * score

    def x0_from_eps(self, x, t, eps):
        abar = self._abar(t, x)
        return (x - (1 - abar).sqrt() * eps) / abar.sqrt()


class MatrixOperator(LinearOperator):
    """``p (..., H, W) -> M vec(p) (..., m)`` for an explicit matrix ``M``."""

    def __init__(self, M: torch.Tensor, shape: tuple[int, int]) -> None:
        super().__init__(shape, (M.shape[0],), M.is_complex(), M.is_complex())
        self.register_buffer("M", M)

    def _forward(self, x):
        return x.to(self.M.dtype).reshape(*x.shape[:-2], -1) @ self.M.T

    def _adjoint(self, y):
        return (y.to(self.M.dtype) @ self.M.conj()).reshape(*y.shape[:-1], *self.in_shape)


def _problem(is_complex: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if is_complex:
        M = torch.complex(torch.randn(M_ROWS, N, generator=g, dtype=torch.float64),
                          torch.randn(M_ROWS, N, generator=g, dtype=torch.float64)) / (2 * N) ** 0.5 * 2
        x_true = torch.complex(torch.randn(N, generator=g, dtype=torch.float64),
                               torch.randn(N, generator=g, dtype=torch.float64)) * S2 ** 0.5
        noise = torch.complex(torch.randn(M_ROWS, generator=g, dtype=torch.float64),
                              torch.randn(M_ROWS, generator=g, dtype=torch.float64)) * (SIGMA2 / 2) ** 0.5
        v = 2 * S2  # E|p|^2 per pixel
    else:
        M = torch.randn(M_ROWS, N, generator=g, dtype=torch.float64) / N ** 0.5 * 2
        x_true = torch.randn(N, generator=g, dtype=torch.float64) * S2 ** 0.5
        noise = torch.randn(M_ROWS, generator=g, dtype=torch.float64) * SIGMA2 ** 0.5
        v = S2
    y = M @ x_true + noise
    A = MatrixOperator(M, (H, W))
    problem = InverseProblem(A, y[None], gain=torch.ones(1, 1, 1, dtype=torch.float64),
                             offset=torch.zeros(1, 1, 1, dtype=torch.float64),
                             noise_var=torch.tensor([SIGMA2], dtype=torch.float64), is_complex=is_complex)
    cov = torch.linalg.inv(M.conj().T @ M / SIGMA2 + torch.eye(N, dtype=torch.float64) / v)
    mean = cov @ (M.conj().T @ y) / SIGMA2
    return problem, mean.reshape(H, W), cov


# The fast sampler's exactness (eta 1 + perturb-and-MAP) holds for the Gaussian prior alone: the default in-plane TV
# (--tv 0.3, sampling/tv2d.py) is a second prior, so these checks turn it off.


def test_fast_sampler_matches_exact_gaussian_posterior_mean_and_std():
    problem, mean, cov = _problem(is_complex=False)
    res = posterior_sample("fast", GaussianPrior(S2), problem, samples=1500, seed=0, steps=30, cg_iters=N,
                           eta=1.0, perturb=True, prior_var=S2, tv=0.0)
    std = cov.diagonal().sqrt().reshape(H, W)
    err = (res.mean[0].double() - mean).abs().max().item()
    ratio = res.std[0].double() / std
    assert res.mean.shape == (1, H, W) and res.std.shape == (1, H, W)
    assert err < 0.08, err  # measured 0.012-0.044 over seeds 0-4 (Monte Carlo error at 1500 samples)
    assert (ratio - 1).abs().max().item() < 0.10, ratio  # measured <= 0.04
    # The prior mean (zero) is far from the posterior mean: the check has teeth.
    assert mean.abs().max().item() > 10 * err


def test_fast_sampler_matches_exact_complex_gaussian_posterior_mean():
    problem, mean, cov = _problem(is_complex=True, seed=1)
    res = posterior_sample("fast", GaussianPrior(S2), problem, samples=1500, seed=0, steps=30, cg_iters=N,
                           eta=1.0, perturb=True, prior_var=S2, tv=0.0, keep_samples=True)
    assert res.mean.is_complex() and res.mean.shape == (1, H, W)
    err = (res.mean[0].to(torch.complex128) - mean).abs().max().item()
    assert err < 0.12, err  # measured 0.037-0.062 over seeds 0-4
    assert mean.abs().max().item() > 10 * err
    # The complex spread E|p - E p|^2 per pixel matches the diagonal of the complex posterior covariance.
    samples = res.samples[0].to(torch.complex128)
    spread = (samples - samples.mean(0)).abs().pow(2).mean(0).sqrt()
    ratio = spread / cov.diagonal().real.sqrt().reshape(H, W)
    assert (ratio - 1).abs().max().item() < 0.10, ratio


def test_fast_sampler_without_perturbation_is_narrower_than_posterior():
    """Without perturb-and-MAP the chain returns near-MAP estimates: the spread must shrink."""
    problem, _, cov = _problem(is_complex=False)
    res = posterior_sample("fast", GaussianPrior(S2), problem, samples=200, seed=0, steps=30, cg_iters=N,
                           eta=1.0, perturb=False, prior_var=S2, tv=0.0)
    std = cov.diagonal().sqrt().reshape(H, W)
    assert (res.std[0].double() < std).float().mean().item() > 0.9


def test_dps_approaches_exact_gaussian_posterior_mean():
    problem, mean, _ = _problem(is_complex=False)
    res = posterior_sample("dps", GaussianPrior(S2), problem, samples=200, seed=0, steps=150, zeta=1.0)
    err = (res.mean[0].double() - mean).abs()
    prior_err = mean.abs()  # the prior mean is zero
    assert torch.isfinite(res.mean).all()
    # measured relative error 0.06-0.09 over seeds 0-4 (zeta 0.3-10 all give < 0.12)
    assert err.norm().item() < 0.2 * prior_err.norm().item(), (err.norm().item(), prior_err.norm().item())


def _spread_ratio(res, cov) -> torch.Tensor:
    """Per-pixel sample spread ``sqrt(E|p - E p|^2)`` over the exact posterior std (real or complex)."""
    samples = res.samples[0].to(torch.complex128 if res.samples.is_complex() else torch.float64)
    spread = (samples - samples.mean(0)).abs().pow(2).mean(0).sqrt()
    return spread / cov.diagonal().real.sqrt().reshape(H, W)


@pytest.mark.parametrize("is_complex", [False, True])
def test_langevin_sampler_approaches_exact_gaussian_posterior(is_complex):
    """pULA: several half steps per level bring mean and spread to the closed form (one full step per level
    narrows the spread, see medrecon/sampling/langevin.py)."""
    problem, mean, cov = _problem(is_complex=is_complex, seed=int(is_complex))
    res = posterior_sample("langevin", GaussianPrior(S2), problem, samples=1500, seed=0, steps=30, inner=4,
                           step=0.5, cg_iters=N, keep_samples=True, tv=0.0)  # exact only without TV
    err = (res.mean[0].to(mean.dtype) - mean).abs().max().item()
    ratio = _spread_ratio(res, cov)
    assert err < 0.08, err  # measured 0.029 (real), 0.035 (complex)
    assert mean.abs().max().item() > 10 * err
    assert (ratio - 1).abs().max().item() < 0.12, ratio  # measured 0.92-1.00 (real), 0.94-0.98 (complex)


@pytest.mark.parametrize("is_complex", [False, True])
def test_daps_approaches_exact_gaussian_posterior(is_complex):
    problem, mean, cov = _problem(is_complex=is_complex, seed=int(is_complex))
    res = posterior_sample("daps", GaussianPrior(S2), problem, samples=1000, seed=0, steps=30, ode_steps=1,
                           langevin=200, lr=0.2, lr_min_ratio=1.0, keep_samples=True)
    err = (res.mean[0].to(mean.dtype) - mean).abs().max().item()
    ratio = _spread_ratio(res, cov)
    assert err < 0.1, err  # measured 0.029-0.033 (real), 0.048-0.060 (complex), seeds 0-1
    assert mean.abs().max().item() > 10 * err
    # measured 0.93-1.01 (real), 0.86-0.93 (complex): r_t = sigma_t is wider than the exact x0 | x_t spread
    assert (ratio - 1).abs().max().item() < 0.16, ratio


@pytest.mark.parametrize("method,kw", [("langevin", {"steps": 8, "cg_iters": 3}),
                                       ("daps", {"steps": 8, "langevin": 5})])
def test_new_samplers_are_reproducible_with_a_seed(method, kw):
    problem, _, _ = _problem(is_complex=True)
    a = posterior_sample(method, GaussianPrior(S2), problem, samples=3, seed=7, **kw)
    b = posterior_sample(method, GaussianPrior(S2), problem, samples=3, seed=7, **kw)
    c = posterior_sample(method, GaussianPrior(S2), problem, samples=3, seed=8, **kw)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.std, b.std)
    assert not torch.equal(a.mean, c.mean)
