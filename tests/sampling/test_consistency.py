"""The final exact data-consistency step (medrecon/sampling/consistency.py) and the misfit it is judged by.

Noiseless data: the measured entries become exact, the null-space component and the pixels outside the
support stay as they were. Noisy data: each row stops at the noise level (Morozov). Then the plumbing:
posterior_sample's ``final_dc`` and misfit, ``--final-dc`` on the command line, the run record and the
benchmark row.
"""

from __future__ import annotations

import json

import pytest
import torch

from medrecon import methods as registry
from medrecon.cli import main as cli_main
from medrecon.errors import InputError
from medrecon.priors.prior import DEFAULT_SCHEDULE, make_scheduler
from medrecon.recon.config import ReconConfig
from medrecon.sampling import InverseProblem, posterior_sample
from medrecon.sampling.consistency import data_misfit, final_dc, measured_count, noise_misfit
from operators import MultiCoilMRI, ParallelBeamCT, SingleCoilMRI, coil_support
from operators.fft import fft2c

H = W = 16


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this module runs with one torch thread (see tests/conftest.py)."""


def _cplx(g: torch.Generator, *shape: int, dtype=torch.complex64) -> torch.Tensor:
    return torch.complex(torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)).to(dtype)


def _mask(step: int) -> torch.Tensor:
    """Cartesian column mask: every ``step``-th column plus the four central ones."""
    m = torch.zeros(W, dtype=torch.bool)
    m[::step] = True
    m[W // 2 - 2:W // 2 + 2] = True
    return m


def _maps(g: torch.Generator, coils: int, disk: bool = False) -> torch.Tensor:
    """Random coil maps normalised to ``sum_c |S_c|^2 = 1``; with ``disk`` they vanish in the corners."""
    maps = _cplx(g, coils, H, W)
    maps = maps / maps.abs().square().sum(0).sqrt()
    if disk:
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
        maps = maps * (xx ** 2 + yy ** 2 < 1.5)  # the corners
    return maps


def _problem(A, y: torch.Tensor, noise_var: torch.Tensor, is_complex: bool, support=None) -> InverseProblem:
    one = torch.ones(y.shape[0], 1, 1, dtype=torch.float64)
    return InverseProblem(A, y, one, torch.zeros_like(one), noise_var, is_complex, support=support)


def _null_part(A, v: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """``(I - A^+ A) v`` per row, from the dense matrix of ``A`` (restricted to ``keep``'s pixels), in float64."""
    n = H * W
    cols = keep.reshape(-1).nonzero().squeeze(1) if keep is not None else torch.arange(n)
    basis = torch.zeros(len(cols), n, dtype=v.dtype)
    basis[torch.arange(len(cols)), cols] = 1
    M = A(basis.reshape(-1, H, W)).reshape(len(cols), -1).T.to(torch.complex128)  # (rows, pixels)
    proj = torch.eye(len(cols), dtype=torch.complex128) - torch.linalg.pinv(M) @ M
    vv = v.reshape(v.shape[0], -1)[:, cols].to(torch.complex128)
    return vv @ proj.T


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def test_noiseless_mri_fits_the_measured_entries_and_keeps_null_space_and_support():
    g = torch.Generator().manual_seed(0)
    maps = _maps(g, 2, disk=True)
    A = MultiCoilMRI(maps, _mask(8))  # 2 coils x 5 of 16 columns: fewer measurements than pixels, a null space
    keep = coil_support(maps).expand(2, H, W)
    truth = _cplx(g, 2, H, W) * keep
    y = A(truth)
    prob = _problem(A, y, torch.zeros(2), True, support=keep)
    p0 = _cplx(g, 2, H, W) * keep  # a "sample": right shape, wrong data
    p = final_dc(prob, p0, 200)
    assert p.shape == p0.shape and p.dtype == p0.dtype
    assert _rel(A(p), y) < 1e-4  # measured entries exact (unsampled k-space of y is 0 and stays 0)
    assert torch.equal(p[~keep], p0[~keep])  # nothing leaks outside the support
    # CG moves p only within range(P A^H): the null-space component of the sampler's image is untouched
    kept = _null_part(A, p0, keep[0])
    assert float((_null_part(A, p, keep[0]) - kept).norm() / kept.norm()) < 1e-4
    assert data_misfit(prob, p).max() < 1e-4 and data_misfit(prob, p0).min() > 0.5
    assert torch.equal(noise_misfit(prob), torch.zeros(2, dtype=torch.float64))


def test_noiseless_single_coil_keeps_unsampled_kspace():
    """Single coil: null(A) is the unsampled k-space, so it must come out bit-for-bit as the sampler left it."""
    g = torch.Generator().manual_seed(1)
    mask = _mask(4)
    A = SingleCoilMRI(mask, (H, W))
    y = A(_cplx(g, 1, H, W))
    prob = _problem(A, y, torch.zeros(1), True)
    assert measured_count(prob) == int(mask.sum()) * H
    p0 = _cplx(g, 1, H, W)
    p = final_dc(prob, p0, 10)
    k, k0 = fft2c(p), fft2c(p0)
    assert _rel(k[..., mask], y[..., mask]) < 1e-5
    assert torch.allclose(k[..., ~mask], k0[..., ~mask], atol=1e-5)


def test_noiseless_ct_fits_the_sinogram_and_keeps_null_space():
    g = torch.Generator().manual_seed(2)
    A = ParallelBeamCT((H, W), 8)  # 8 views x 24 detectors < 256 pixels: a real null space
    truth = torch.rand(2, H, W, generator=g, dtype=torch.float64)
    y = A(truth)
    prob = _problem(A, y, torch.zeros(2, dtype=torch.float64), False)
    assert measured_count(prob) == y[0].numel()
    p0 = torch.rand(2, H, W, generator=g, dtype=torch.float64)
    p = final_dc(prob, p0, 1000)
    assert _rel(A(p), y) < 1e-4
    kept = _null_part(A, p0)
    assert float((_null_part(A, p) - kept).norm() / kept.norm()) < 1e-6
    assert final_dc(prob, p0, 0) is p0


def test_noisy_rows_stop_independently_at_the_noise_level():
    """Morozov: each row stops where ||A p - y||^2 = m noise_var, not at the (noise-fitting) least-squares solution."""
    g = torch.Generator().manual_seed(3)
    A = MultiCoilMRI(_maps(g, 2), _mask(4))  # 2 coils at 4x: fewer measurements than pixels, so LS fits noise exactly
    sig2 = torch.tensor([1e-2, 1e-3, 1e-4])
    noise = _cplx(g, 3, 2, H, W) * (sig2 / 2).sqrt().view(-1, 1, 1, 1) * A.mask
    y = A(_cplx(g, 3, H, W)) + noise
    prob = _problem(A, y, sig2, True)
    m = measured_count(prob)
    assert m == int(_mask(4).sum()) * H * 2
    p = final_dc(prob, torch.zeros(3, H, W, dtype=torch.complex64), 500)
    ratio = (A(p) - y).abs().square().sum((1, 2, 3)) / (m * sig2)
    assert torch.allclose(ratio, torch.ones(3), atol=1e-3), ratio  # lands on the noise level, not below
    assert torch.allclose(data_misfit(prob, p), noise_misfit(prob), rtol=1e-3)
    exact = final_dc(_problem(A, y, torch.zeros(3), True), torch.zeros(3, H, W, dtype=torch.complex64), 500)
    assert float((A(exact) - y).abs().square().sum((1, 2, 3)).div(m * sig2).max()) < 1e-3  # what it avoided
    # a row already below the noise level does not move
    assert torch.equal(final_dc(prob, exact, 50), exact)


class _GaussianDenoiser:
    """Exact denoiser for ``x0 ~ N(0, I)`` (tests/sampling/test_gaussian_posterior.py explains it)."""

    num_timesteps = 1000

    def __init__(self) -> None:
        self.alphas_cumprod = make_scheduler(DEFAULT_SCHEDULE).alphas_cumprod.to(torch.float64)

    def eps(self, x, t):
        abar = self.alphas_cumprod[int(t)]
        return (1 - abar).sqrt() * x  # -sqrt(1 - abar) * score, score = -x for unit variance

    def x0_from_eps(self, x, t, eps):
        abar = self.alphas_cumprod[int(t)]
        return (x - (1 - abar).sqrt() * eps) / abar.sqrt()


def test_posterior_sample_reports_misfit_and_final_dc_reduces_it():
    g = torch.Generator().manual_seed(4)
    A = MultiCoilMRI(_maps(g, 4), _mask(3))
    y = A(_cplx(g, 2, H, W))
    prob = _problem(A, y, torch.full((2,), 1e-6), True)
    prior = _GaussianDenoiser()
    kw = {"steps": 4, "cg_iters": 1, "eta": 0.85}
    off = posterior_sample("fast", prior, prob, samples=2, seed=0, **kw)
    on = posterior_sample("fast", prior, prob, samples=2, seed=0, final_dc=100, **kw)
    for res in (off, on):
        assert len(res.info["misfit"]) == 2 and len(res.info["noise_misfit"]) == 2
        assert res.info["noise_misfit"] == pytest.approx(noise_misfit(prob).tolist())
    assert off.info["final_dc"] == 0 and on.info["final_dc"] == 100 and "final_dc" not in kw
    assert off.info["misfit"] == pytest.approx(data_misfit(prob, off.mean).tolist())
    assert max(on.info["misfit"]) < 0.2 * min(off.info["misfit"])
    # the mean of samples that each sit at the noise level is within it (the misfit is convex)
    assert all(m <= n * 1.001 for m, n in zip(on.info["misfit"], on.info["noise_misfit"]))


def test_final_dc_zero_leaves_dps_unchanged():
    g = torch.Generator().manual_seed(5)
    A = MultiCoilMRI(_maps(g, 2), _mask(2))
    prob = _problem(A, A(_cplx(g, 1, H, W)), torch.full((1,), 1e-4), True)
    a = posterior_sample("dps", _GaussianDenoiser(), prob, seed=1, steps=3, zeta=1.0)
    b = posterior_sample("dps", _GaussianDenoiser(), prob, seed=1, steps=3, zeta=1.0, final_dc=0)
    assert torch.equal(a.mean, b.mean) and a.info == b.info


def test_final_dc_is_a_setting_of_the_learned_methods_with_a_range():
    assert registry.get("dps").resolve("mri").final_dc == 0 and registry.get("fast").resolve("ct").final_dc == 0
    assert ReconConfig("fast", options={"final_dc": 20}).method_params("ct")["final_dc"] == 20
    for bad in (-1, 1001, 2.5):
        with pytest.raises(InputError, match="--final-dc must be") as exc:
            ReconConfig("dps", options={"final_dc": bad})
        assert "\n" not in str(exc.value)
    with pytest.raises(InputError, match="does not apply to method sense"):
        ReconConfig("sense", options={"final_dc": 5})


def test_cli_exposes_final_dc(capsys):
    assert cli_main(["methods", "--json"]) == 0
    rows = {r["name"]: {p["name"]: p for p in r["params"]} for r in json.loads(capsys.readouterr().out)}
    for method in ("dps", "fast"):
        assert rows[method]["final_dc"]["default"] == 0 and rows[method]["final_dc"]["range"] == [0, 1000]
    with pytest.raises(SystemExit):
        cli_main(["recon", "--help"])
    assert "--final-dc" in capsys.readouterr().out
    # an out-of-range value is one line on stderr, before any file is read
    assert cli_main(["recon", "missing.h5", "--out", "o.h5", "--method", "fast", "--final-dc", "-1"]) != 0
    err = capsys.readouterr().err.strip()
    assert "--final-dc must be between 0 and 1000" in err and len(err.splitlines()) == 1


def test_ct_recon_and_benchmark_carry_the_misfit(tmp_path):
    """Classical CT outputs attenuation, so FBP gets a misfit too; the benchmark row and report carry it."""
    from medrecon.benchmark import BenchmarkConfig, run_benchmark

    cfg = BenchmarkConfig(suite="smoke", out=tmp_path / "o", methods=["fbp"], datasets=["smoke-ct"], device="cpu",
                          figures=False, progress=False)
    res = run_benchmark(cfg)
    row = res["rows"][0]
    assert 0 < row["misfit"] < 1 and row["noise_misfit"] is not None and row["noise_misfit"] >= 0
    assert "misfit (noise)" in (tmp_path / "o" / "report.md").read_text()
