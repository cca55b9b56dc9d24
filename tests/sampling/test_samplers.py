"""Sampler behaviour on real MRI/CT operators: seeding, shapes, NFE, batching, divergence, data consistency."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from medrecon.errors import SamplerDivergedError
from medrecon.priors import DiffusionPrior, load_prior
from medrecon.recon.problems import ct_problem, mri_problem
from medrecon.sampling import posterior_sample
from medrecon.sampling.cg import cg_normal
from medrecon.sampling.schedule import strided_timesteps
from medrecon.acquisition.mri import simulate_kspace
from operators import ParallelBeamCT, birdcage_maps, hu_to_mu, rss
from operators.base import LinearOperator
from operators.fft import ifft2c

TINY = {"channels": [16, 32, 32, 32], "norm_num_groups": 8, "num_head_channels": 32}
SIZE = 32


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this module runs with one torch thread (see tests/conftest.py)."""


@pytest.fixture(scope="module")
def mri_prior():
    torch.manual_seed(0)
    return DiffusionPrior("mri", TINY).eval()


@pytest.fixture(scope="module")
def ct_prior():
    torch.manual_seed(0)
    return DiffusionPrior("ct", TINY).eval()


def _image(s=2, size=SIZE):
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    disc = ((xx ** 2 + yy ** 2) < 0.6).float()
    return torch.stack([disc * (1 + 0.3 * i) + 0.5 * ((xx - 0.2) ** 2 + yy ** 2 < 0.05).float() for i in range(s)])


@pytest.fixture(scope="module")
def mri_setup(mri_prior):
    """Two slices with different coil maps (coil order rotated), so rows must keep their own maps."""
    maps0 = birdcage_maps(4, (SIZE, SIZE))
    maps = torch.stack([maps0, maps0.roll(1, dims=0)])
    img = _image()
    sims = [simulate_kspace(img[i:i + 1], 4, "equispaced", 4, 0.25, seed=0, noise_std=0.01, maps=maps[i])
            for i in range(2)]
    kspace = torch.cat([s["kspace"] for s in sims])
    problem, _ = mri_problem(mri_prior, kspace, sims[0]["mask"], maps=maps, noise_var=torch.full((2,), 1e-4))
    return problem


@pytest.fixture(scope="module")
def ct_setup(ct_prior):
    A = ParallelBeamCT((SIZE, SIZE), 12)
    hu = (_image() - 1.0) * 1000.0  # air outside, around water inside
    return ct_problem(ct_prior, A, A(hu_to_mu(hu)))


SETTINGS = {"dps": {"steps": 4, "zeta": 1.0}, "fast": {"steps": 4, "cg_iters": 3, "eta": 0.85},
            "langevin": {"steps": 4, "cg_iters": 3}, "daps": {"steps": 4, "ode_steps": 1, "langevin": 3}}
ALL = ["dps", "fast", "langevin", "daps"]


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("modality", ["mri", "ct"])
def test_seeded_reproducibility(method, modality, request):
    prior = request.getfixturevalue(f"{modality}_prior")
    problem = request.getfixturevalue(f"{modality}_setup")
    a = posterior_sample(method, prior, problem, samples=2, seed=7, **SETTINGS[method])
    b = posterior_sample(method, prior, problem, samples=2, seed=7, **SETTINGS[method])
    c = posterior_sample(method, prior, problem, samples=2, seed=8, **SETTINGS[method])
    assert torch.equal(a.mean, b.mean) and torch.equal(a.std, b.std)
    assert not torch.allclose(a.mean, c.mean)
    assert a.mean.shape == (2, SIZE, SIZE)
    assert a.mean.is_complex() == (modality == "mri")
    assert torch.isfinite(a.mean).all()


@pytest.mark.parametrize("method", ALL)
def test_samples_give_std_map_and_nfe_equals_steps(method, mri_prior, mri_setup):
    res = posterior_sample(method, mri_prior, mri_setup, samples=3, seed=0, keep_samples=True, **SETTINGS[method])
    assert res.std.shape == (2, SIZE, SIZE) and not res.std.is_complex()
    assert float(res.std.amax()) > 0
    assert res.samples.shape == (2, 3, SIZE, SIZE)
    torch.testing.assert_close(res.samples.mean(1), res.mean)
    assert res.nfe == SETTINGS[method]["steps"]
    assert res.seconds > 0 and res.info["method"] == method
    one = posterior_sample(method, mri_prior, mri_setup, samples=1, seed=0, **SETTINGS[method])
    assert one.std.shape == (2, SIZE, SIZE) and float(one.std.abs().amax()) == 0.0
    assert one.samples is None


@pytest.mark.parametrize("batch_size", [1, 4, 100])
def test_batch_size_chunks_give_right_shapes(batch_size, ct_prior, ct_setup):
    res = posterior_sample("fast", ct_prior, ct_setup, samples=3, seed=0, batch_size=batch_size, keep_samples=True,
                           **SETTINGS["fast"])
    assert res.mean.shape == res.std.shape == (2, SIZE, SIZE)
    assert res.samples.shape == (2, 3, SIZE, SIZE)
    assert res.info["batch_size"] == min(batch_size, 100)
    assert torch.isfinite(res.samples).all()


def test_batch_size_chunks_with_per_slice_coil_maps(mri_prior, mri_setup):
    res = posterior_sample("fast", mri_prior, mri_setup, samples=2, seed=0, batch_size=3, keep_samples=True,
                           steps=4, cg_iters=30, eta=0.85)
    assert res.samples.shape == (2, 2, SIZE, SIZE)
    # Each row was made consistent with its own slice's data and coil maps (chunk 0 holds rows 0-2,
    # chunk 1 row 3): every sample fits its slice's k-space.
    A = mri_setup.A
    for s in range(2):
        y = mri_setup.y[s]
        for k in range(2):
            fit = float((y - A(res.samples[s, k][None])[s]).norm() / y.norm())
            assert fit < 0.1, (s, k, fit)  # measured <= 0.044; using slice 0's maps for both gives 0.21


class _NaNPrior(DiffusionPrior):
    def eps(self, x_t, t):
        return super().eps(x_t, t) * float("nan")


@pytest.mark.parametrize("method", ALL)
def test_nan_prior_raises_sampler_diverged(method, ct_setup):
    torch.manual_seed(0)
    prior = _NaNPrior("ct", TINY).eval()
    with pytest.raises(SamplerDivergedError, match="diverged"):
        posterior_sample(method, prior, ct_setup, samples=1, seed=0, **SETTINGS[method])


def test_unknown_method_is_refused(ct_prior, ct_setup):
    with pytest.raises(ValueError, match="unknown sampler"):
        posterior_sample("ddim", ct_prior, ct_setup)


def test_dps_lowers_data_residual_below_zero_filled():
    """Shipped mri-brain prior, a 64x64 slice of the packaged T1 sample, 4x random mask, 20 DPS steps."""
    from medrecon.io.volumes import load_volume
    from medrecon.priors.registry import SHIPPED_DIR

    prior = load_prior(None, "mri")
    vol = load_volume(SHIPPED_DIR.parent / "data" / "mri_t1_vsseg001_2slices.nii.gz")
    img = torch.from_numpy(vol.data[:1].copy()).float()
    img = F.interpolate(img[:, None], size=(64, 64), mode="bilinear", antialias=True)[:, 0]
    img = img / img.flatten().quantile(0.99)
    sim = simulate_kspace(img, 8, "random", 4, 0.08, seed=0)
    problem, _ = mri_problem(prior, sim["kspace"], sim["mask"], maps=sim["maps"], noise_var=torch.zeros(1))
    y = problem.y
    zero_filled = rss(ifft2c(y)).to(torch.complex64)  # what `recon --method zero-filled` outputs
    r_zf = float((y - problem.A(zero_filled)).norm())
    res = posterior_sample("dps", prior, problem, samples=1, seed=0, steps=20, zeta=3.0)
    r_dps = float((y - problem.A(res.mean)).norm())
    # measured: ||y|| 35.0, zero-filled 12.7, DPS 2.9 (zeta 1-10 give 1.6-6.3)
    assert r_dps < 0.5 * r_zf, (r_dps, r_zf)
    assert r_dps < 0.15 * float(y.norm())


# ----------------------------------------------------------------------------- CG and schedules
class _Matrix(LinearOperator):
    def __init__(self, M: torch.Tensor, shape) -> None:
        super().__init__(shape, (M.shape[0],), M.is_complex(), M.is_complex())
        self.M = M

    def _forward(self, x):
        return x.reshape(*x.shape[:-2], -1) @ self.M.T

    def _adjoint(self, y):
        return (y @ self.M.conj()).reshape(*y.shape[:-1], *self.in_shape)


@pytest.mark.parametrize("is_complex", [False, True])
def test_cg_normal_matches_direct_solve(is_complex):
    g = torch.Generator().manual_seed(0)
    dt = torch.complex128 if is_complex else torch.float64
    n, m = 12, 20  # (3, 4) images, overdetermined so lam = 0 is well posed
    M = torch.randn(m, n, generator=g, dtype=dt)
    A = _Matrix(M, (3, 4))
    lam = torch.tensor([0.0, 0.5, 3.0], dtype=torch.float64)
    rhs = torch.randn(3, 3, 4, generator=g, dtype=dt)
    x0 = torch.randn(3, 3, 4, generator=g, dtype=dt)
    x = cg_normal(A, rhs, lam, x0, iters=3 * n)
    for i in range(3):
        G = M.conj().T @ M + lam[i] * torch.eye(n, dtype=torch.float64)
        direct = torch.linalg.solve(G, rhs[i].reshape(-1)).reshape(3, 4)
        torch.testing.assert_close(x[i], direct, rtol=1e-8, atol=1e-8)
    # With a tolerance the loop may stop early but still solves the system.
    xt = cg_normal(A, rhs, lam, x0, iters=3 * n, tol=1e-12)
    torch.testing.assert_close(xt, x, rtol=1e-6, atol=1e-6)
    # Zero iterations return the starting point; a few iterations reduce the residual.
    torch.testing.assert_close(cg_normal(A, rhs, lam, x0, iters=0), x0)
    res = lambda v: (A.normal(v) + lam.view(-1, 1, 1) * v - rhs).abs().flatten(1).norm(dim=1)
    assert (res(cg_normal(A, rhs, lam, x0, iters=3)) < res(x0)).all()


@pytest.mark.parametrize("steps", [1, 2, 7, 50, 333, 999, 1000])
def test_strided_timesteps_descending_unique(steps):
    ts = strided_timesteps(1000, steps)
    assert len(ts) == steps
    assert ts[0] == 999 and ts[-1] == 0 or steps == 1
    assert all(a > b for a, b in itertools.pairwise(ts))
    assert all(isinstance(t, int) and 0 <= t <= 999 for t in ts)


def test_strided_timesteps_full_schedule_and_bad_steps():
    assert strided_timesteps(1000, 1000) == list(range(999, -1, -1))
    for bad in (0, -1, 1001):
        with pytest.raises(ValueError):
            strided_timesteps(1000, bad)
