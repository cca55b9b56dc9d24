"""The likelihood weight of every sampler follows the measurement noise in physical units (issue 18).

Two checks with the closed-form Gaussian problem of test_gaussian_posterior.py:

* **Expected change with noise.** The same data, declared noiseless-ish and noisy, give the two different
  exact posterior means; each sampler's mean follows its own one.
* **Units.** Rescaling the physical units (data and gain by ``s``, noise variance by ``s^2``, as a k-space
  scaled by a scanner constant) leaves the network-space result unchanged: nothing in a sampler reads a
  noise level on the prior's normalized scale.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from medrecon.sampling import posterior_sample
from test_gaussian_posterior import S2, GaussianPrior, H, W, N, _problem

SETTINGS = {
    "fast": dict(steps=30, cg_iters=N, eta=1.0, perturb=True, prior_var=S2, tv=0.0),  # exact only without TV
    "langevin": dict(steps=30, inner=4, step=0.5, cg_iters=N, tv=0.0),
    "daps": dict(steps=30, ode_steps=1, langevin=200, lr=0.2, lr_min_ratio=1.0),
}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread (tests/conftest.py)."""


def _exact_mean(problem, noise_var: float) -> torch.Tensor:
    M = problem.A.M
    cov = torch.linalg.inv(M.conj().T @ M / noise_var + torch.eye(N, dtype=torch.float64) / S2)
    return (cov @ (M.conj().T @ problem.y[0]) / noise_var).reshape(H, W)


@pytest.mark.parametrize("method", sorted(SETTINGS))
def test_a_noisier_measurement_moves_each_sampler_as_the_exact_posterior(method):
    problem, _, _ = _problem(is_complex=False, seed=3)
    out = {}
    for nv in (0.01, 1.0):
        prob = replace(problem, noise_var=torch.tensor([nv], dtype=torch.float64))
        res = posterior_sample(method, GaussianPrior(S2), prob, samples=600, seed=0, **SETTINGS[method])
        out[nv] = (res.mean[0].double(), _exact_mean(prob, nv))
    gap = (out[0.01][1] - out[1.0][1]).norm().item()  # how far the two exact answers are apart
    for nv, (got, exact) in out.items():
        assert (got - exact).norm().item() < 0.3 * gap, (method, nv, (got - exact).norm().item(), gap)
    # the noisier data pull less: the mean shrinks towards the prior mean (zero)
    assert out[1.0][0].norm() < out[0.01][0].norm()


@pytest.mark.parametrize("method", sorted(SETTINGS))
def test_rescaling_the_physical_units_leaves_the_result_unchanged(method):
    problem, _, _ = _problem(is_complex=True, seed=4)
    s = 1000.0
    scaled = replace(problem, y=problem.y * s, gain=problem.gain * s, noise_var=problem.noise_var * s ** 2)
    kw = {**SETTINGS[method], "steps": 10}
    a = posterior_sample(method, GaussianPrior(S2), problem, samples=4, seed=1, **kw)
    b = posterior_sample(method, GaussianPrior(S2), scaled, samples=4, seed=1, **kw)
    err = (b.mean / s - a.mean).abs().max().item()
    assert err < 1e-3 * a.mean.abs().max().item(), err
