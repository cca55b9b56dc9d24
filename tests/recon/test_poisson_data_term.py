"""The pre-log Poisson data term of the CT samplers (issue 21): its quadratic expansion has the exact likelihood's
gradient at the estimate, its fixed point is the Poisson maximum, and the samplers run on it."""

from __future__ import annotations

import pytest
import torch

from medrecon.errors import InputError
from medrecon.recon.config import ReconConfig
from medrecon.recon.poisson import poisson_nll, poisson_nll_grad
from medrecon.recon.problems import PoissonLinearization, ct_problem
from operators import ParallelBeamCT, hu_to_mu, transmission_counts


def _scan(photons: float = 300.0, size: int = 24, views: int = 18):
    """A low-dose scan of a disc phantom: projector, true attenuation, counts and post-log sinogram."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    hu = torch.where(xx ** 2 + yy ** 2 < 0.7, torch.tensor(40.0), torch.tensor(-1000.0))[None].double()
    A = ParallelBeamCT((size, size), views, pixel_size=4.0)
    mu = hu_to_mu(hu)
    counts = transmission_counts(A(mu), photons, torch.Generator().manual_seed(0))
    sino = torch.log(photons / counts.clamp_min(1.0))
    return A, mu, counts, sino


def test_expansion_has_the_exact_poisson_gradient_at_the_estimate():
    """At an estimate ``p`` inside the expansion's trust region (line integrals within one unit of the data's), the
    gradient of the expansion's weighted least squares (autograd through the whitened operator, times the
    normalization ``mean(c)``) equals ``A^T`` of the exact pre-log gradient."""
    A, mu, counts, sino = _scan()
    lin = PoissonLinearization(A, sino, 300.0)
    p = (mu * 0.9).detach()  # an estimate that is not the truth
    assert float((A(p) - sino).abs().max()) < 1 and float(A(p).min()) >= 0  # the trust region does not bind
    Aw, yw, noise_var = lin(p.float())
    x = p.float().clone().requires_grad_(True)
    (0.5 * (Aw(x) - yw).square().sum()).backward()
    grad_wls = x.grad.double() / noise_var.double().view(-1, 1, 1)  # undo the normalization by mean(c)
    l0 = A(p).clamp_min(0)
    exact = A.adjoint(poisson_nll_grad(l0, counts.clamp_min(1.0), 300.0))
    rel = float((grad_wls - exact).norm() / exact.norm())
    assert rel < 1e-4, rel


def test_repeated_expansion_climbs_the_poisson_likelihood():
    """Gauss-Newton on the expansion (re-expanded at every iterate, solved by a few CG steps) lowers the exact
    pre-log negative log-likelihood from the FBP image, as the sampler's data steps rely on."""
    from medrecon.sampling.cg import cg_normal

    A, mu, counts, sino = _scan()
    lin = PoissonLinearization(A, sino, 300.0)
    p = A.fbp(sino).clamp_min(0).float()
    start = float(poisson_nll(A(p.double()).clamp_min(0), counts.clamp_min(1.0), 300.0).sum())
    for _ in range(6):
        Aw, yw, _ = lin(p)
        p = cg_normal(Aw, Aw.adjoint(yw), torch.zeros(1), p, 10).clamp_min(0)
    end = float(poisson_nll(A(p.double()).clamp_min(0), counts.clamp_min(1.0), 300.0).sum())
    assert end < start - 50, (start, end)


def test_fast_and_langevin_samplers_run_on_the_poisson_term():
    """Both samplers take ``data_term="poisson"`` on a real prior and return finite images that fit the data
    better than FBP does in the likelihood's own measure."""
    from medrecon.priors import load_prior
    from medrecon.sampling import posterior_sample

    prior = load_prior(None, "ct", torch.device("cpu"))
    A, mu, counts, sino = _scan(photons=2000.0, size=32, views=24)
    prob = ct_problem(prior, A, sino.float(), photons=2000.0, data_term="poisson")
    assert prob.linearize is not None
    for method, kw in (("fast", {"steps": 4, "cg_iters": 5}), ("langevin", {"steps": 4, "cg_iters": 5})):
        res = posterior_sample(method, prior, prob, samples=2, seed=0, **kw)
        assert torch.isfinite(res.mean).all() and res.mean.shape == (1, 32, 32)


def test_poisson_is_refused_where_it_is_not_expanded():
    """TV, DPS and DAPS would use a fixed quadratic: asking them for the Poisson term is a one-line error."""
    for method in ("tv", "dps", "daps", "fbp"):
        with pytest.raises(InputError, match="pwls"):
            ReconConfig(method=method, data_term="poisson")
    ReconConfig(method="fast", data_term="poisson")
    ReconConfig(method="langevin", data_term="poisson")


def test_poisson_needs_a_photon_count():
    """Without I0 the expansion cannot be formed: ValueError in the library (the recon layer's InputError says
    which flag)."""
    A, _, _, sino = _scan()
    with pytest.raises(ValueError, match="I0"):
        PoissonLinearization(A, sino, 0.0)
