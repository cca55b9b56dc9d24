"""The joint z solve (issue 19): data term and TV along z by ADMM (medrecon/sampling/zcouple.py, module note).

Pinned here: with many iterations it reaches the minimizer of its objective, found independently by a long FISTA
run (proximal gradient with the 1-D TV prox); a zero weight is the slice-by-slice CG exactly; and in a sampler it
couples the slices.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from medrecon.priors import load_prior
from medrecon.recon.problems import ct_problem
from medrecon.sampling.cg import cg_normal
from medrecon.sampling.volume import volume_sample
from medrecon.sampling.zcouple import ZCoupling, admm_tv_z, tv_z_prox
from operators import ParallelBeamCT, hu_to_mu
from operators.mri import MultiCoilMRI

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread per test (tests/conftest.py)."""


def _mri_stack(s: int = 5, k: int = 1, n: int = 16, seed: int = 0):
    """A small 4-coil Cartesian MRI problem (double precision) on ``s`` slices x ``k`` samples of a z-smooth
    complex image with a jump between slices 2 and 3: ``(A, rhs, lam, p0)``."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(4, n, n, dtype=torch.complex128, generator=g)
    maps = maps / maps.abs().square().sum(0).sqrt()
    mask = (torch.rand(n, generator=g) < 0.4).to(F64)
    mask[n // 2 - 2:n // 2 + 2] = 1
    A = MultiCoilMRI(maps, mask)
    base = torch.randn(n, n, dtype=torch.complex128, generator=g)
    truth = torch.stack([base * (1.0 + 0.05 * i + (0.8 if i >= 3 else 0.0)) for i in range(s)])
    truth = truth.repeat_interleave(k, dim=0)
    y = A(truth) + 0.05 * torch.randn(A(truth).shape, dtype=torch.complex128, generator=g)
    p0 = truth + 0.3 * torch.randn(truth.shape, dtype=torch.complex128, generator=g)
    lam = torch.full((s * k,), 0.2, dtype=F64)
    rhs = A.adjoint(y) + lam.view(-1, 1, 1) * p0
    return A, rhs, lam, p0


def _objective(A, rhs, lam, p, tau, rho, k):
    """``1/2 <p, (A^H A + lam) p> - Re<rhs, p> + rho * sum tau |D_z p|`` (complex jumps by magnitude)."""
    quad = 0.5 * ((p.conj() * (A.normal(p) + lam.view(-1, 1, 1) * p)).real.sum()) - (rhs.conj() * p).real.sum()
    v = p.reshape(p.shape[0] // k, k, *p.shape[1:])
    return quad + rho * (tau * (v[1:] - v[:-1]).abs()).sum()


def _fista_reference(A, rhs, lam, p0, tau, rho, k, iters=1000):
    """The same minimizer by accelerated proximal gradient (Beck & Teboulle 2009): gradient of the quadratic,
    then the exact prox of the z-TV term (tv_z_prox, complex as a 2-vector per pixel)."""
    L = 1.0 + float(lam.max())  # ||A^H A|| <= 1 for orthonormal coils and a 0/1 mask
    shape = (p0.shape[0] // k, k, *p0.shape[1:])
    x = p0.clone()
    yk, t = x.clone(), 1.0
    for _ in range(iters):
        grad = A.normal(yk) + lam.view(-1, 1, 1) * yk - rhs
        w = torch.view_as_real((yk - grad / L).reshape(shape))
        x_new = torch.view_as_complex(tv_z_prox(w, (rho * tau / L)[..., None], iters=50, group_dim=-1)
                                      .contiguous()).reshape(p0.shape)
        t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
        yk = x_new + ((t - 1) / t_new) * (x_new - x)
        x, t = x_new, t_new
    return x


@pytest.mark.parametrize("k", [1, 2])
def test_admm_reaches_the_joint_minimizer(k):
    """Many ADMM iterations land on the minimizer of their objective, found by an independent long FISTA run:
    ADMM's objective is no higher (measured: FISTA's is 8e-8 relative above, still converging) and the images
    agree within 1e-4 relative (measured 4e-6). k = 2: every sample chain is coupled with its own neighbours."""
    A, rhs, lam, p0 = _mri_stack(k=k)
    tau = torch.full((4, k, 1, 1), 0.15, dtype=F64)
    rho = 1.0
    p = admm_tv_z(A.normal, rhs, lam, p0, tau, rho, k=k, admm_iters=200, cg_iters=10)
    ref = _fista_reference(A, rhs, lam, p0, tau, rho, k)
    f_admm, f_ref = float(_objective(A, rhs, lam, p, tau, rho, k)), float(_objective(A, rhs, lam, ref, tau, rho, k))
    assert f_admm <= f_ref + 1e-10 * abs(f_ref)
    assert f_ref - f_admm <= 1e-6 * abs(f_ref)
    assert float((p - ref).norm() / ref.norm()) < 1e-4
    # and it is not the uncoupled solution: the TV term changed the answer
    alone = cg_normal(A, rhs, lam, p0, 200)
    assert float((alone - ref).norm() / ref.norm()) > 1e-2
    assert f_ref < float(_objective(A, rhs, lam, alone, tau, rho, k))


def test_admm_with_zero_threshold_is_the_plain_solve():
    """``tau = 0``: the TV term vanishes and ADMM converges to the ``(A^H A + lam) p = rhs`` solution."""
    A, rhs, lam, p0 = _mri_stack()
    p = admm_tv_z(A.normal, rhs, lam, p0, torch.zeros(4, 1, 1, 1, dtype=F64), 1.0, admm_iters=200, cg_iters=10)
    ref = cg_normal(A, rhs, lam, p0, 300)
    assert float((p - ref).norm() / ref.norm()) < 1e-8


def test_carried_state_continues_the_iterations():
    """With exact p-updates (converged CG), two calls of 20 ADMM iterations that carry ``(d, u)`` equal one call of
    40: the carried state is the whole of ADMM's memory (``solve="admm-carry"`` across diffusion steps)."""
    A, rhs, lam, p0 = _mri_stack()
    tau = torch.full((4, 1, 1, 1), 0.15, dtype=F64)
    state: dict = {}
    admm_tv_z(A.normal, rhs, lam, p0, tau, 1.0, admm_iters=20, cg_iters=60, state=state)
    assert set(state) == {"d", "u"} and state["d"].shape == (4, 1, 16, 16)
    two = admm_tv_z(A.normal, rhs, lam, p0, tau, 1.0, admm_iters=20, cg_iters=60, state=state)
    one = admm_tv_z(A.normal, rhs, lam, p0, tau, 1.0, admm_iters=40, cg_iters=60)
    assert float((two - one).norm() / one.norm()) < 1e-9
    fresh = admm_tv_z(A.normal, rhs, lam, p0, tau, 1.0, admm_iters=20, cg_iters=60)
    assert float((two - fresh).norm() / one.norm()) > 1e-6


def test_zcoupling_modes_and_errors():
    """``solve`` is checked; ``joint`` only with a positive weight and the admm solve."""
    assert ZCoupling(0.5, solve="admm").joint and not ZCoupling(0.0, solve="admm").joint
    assert ZCoupling(0.5, solve="admm-carry").joint
    assert not ZCoupling(0.5).joint
    for bad in ({"solve": "cg"}, {"solve": "admm", "rho": 0.0}, {"solve": "admm", "admm_iters": 0}):
        with pytest.raises(ValueError):
            ZCoupling(0.5, **bad)


@pytest.fixture(scope="module")
def prior():
    return load_prior(None, "ct", torch.device("cpu"))


@pytest.fixture(scope="module")
def volume(prior):
    """A 6-slice CT problem (32x32, 12 views, noiseless) of a disc that grows with z."""
    n, s = 32, 6
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    hu = torch.stack([((xx ** 2 + yy ** 2) < (0.5 + 0.03 * i) ** 2).float() for i in range(s)]) * 1000 - 1000
    A = ParallelBeamCT((n, n), 12)
    return ct_problem(prior, A, A(hu_to_mu(hu)))


def test_problem_dc_solve_is_cg_without_a_joint_coupling(volume):
    """Slice by slice, and with a proximal or zero-weight coupling, ``dc_solve`` is exactly ``cg_normal``."""
    p0 = volume.to_phys(torch.zeros(volume.batch, 1, 32, 32))
    rhs = volume.A.adjoint(volume.y) + 0.1 * p0
    lam = torch.full((volume.batch,), 0.1)
    ref = cg_normal(volume.A, rhs, lam, p0, 4)
    for zc in (None, ZCoupling(0.5), ZCoupling(0.0, solve="admm")):
        out = replace(volume, zcouple=zc).dc_solve(volume.A, rhs, lam, p0, 4, torch.tensor(0.5))
        assert torch.equal(out, ref)
    joint = replace(volume, zcouple=ZCoupling(0.5, solve="admm")).dc_solve(volume.A, rhs, lam, p0, 4,
                                                                           torch.tensor(0.5))
    assert float((joint - ref).abs().max()) > 0


@pytest.mark.parametrize("method,solve", [("fast", "admm"), ("langevin", "admm"), ("fast", "admm-carry")])
def test_joint_solve_couples_the_samplers(prior, volume, method, solve):
    """With a joint z solve the fast and Langevin samplers give a different volume from the proximal mode and
    from ``z_weight = 0``, with (admm) smaller slice-to-slice differences than ``z_weight = 0`` (same seed); a zero
    weight is the slice-by-slice result exactly in either mode. The run record names the solve."""
    kw = {"steps": 4, "cg_iters": 3}
    joint = volume_sample(method, prior, volume, 0.5, seed=2, z_solve=solve, z_rho=0.1, **kw)
    prox = volume_sample(method, prior, volume, 0.5, seed=2, **kw)
    alone = volume_sample(method, prior, volume, 0.0, seed=2, **kw)
    alone_admm = volume_sample(method, prior, volume, 0.0, seed=2, z_solve=solve, **kw)
    assert torch.equal(alone.mean, alone_admm.mean)
    assert float((joint.mean - prox.mean).abs().max()) > 1e-4
    assert bool(torch.isfinite(joint.mean).all())
    if solve == "admm":  # carried variables lag a 4-step chain's fast-moving estimates: no smoothing pinned there
        zd = lambda v: float((v[1:] - v[:-1]).abs().mean())  # noqa: E731
        assert zd(joint.mean) < zd(alone.mean)
    assert joint.info["volume"]["z_solve"] == solve and joint.info["volume"]["admm_iters"] >= 1
