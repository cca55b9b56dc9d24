"""Volume mode outside the samplers: ``ReconConfig``'s checks and z weights, ``check_volume``, and the 3-D TV of
``cs-tv`` (MRI) and ``tv`` (CT), whose z term is a third block of the primal-dual solver."""

from __future__ import annotations

import math

import pytest
import torch

from medrecon.baselines import cs_tv, total_variation, tv_iterative
from medrecon.errors import InputError
from medrecon.recon.config import ReconConfig
from medrecon.recon.volume import Z_WEIGHTS, check_volume, z_weight_for
from operators import MultiCoilMRI, ParallelBeamCT
from operators.coils import birdcage_maps

N = 32
S = 5


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread per test (tests/conftest.py): many small operator calls."""


# --------------------------------------------------------------------------- configuration
@pytest.mark.parametrize("kwargs,match", [
    ({"method": "fast", "volume": True, "z_weight": -1}, "--z-weight must be a finite number >= 0"),
    ({"method": "fast", "volume": True, "z_weight": float("nan")}, "--z-weight must be a finite number >= 0"),
    ({"method": "fast", "volume": True, "z_weight": float("inf")}, "--z-weight must be a finite number >= 0"),
    ({"method": "fast", "volume": True, "z_weight": True}, "--z-weight must be a finite number >= 0"),
    ({"method": "fast", "z_weight": 0.5}, "--z-weight acts only in volume mode"),
    ({"method": "fast", "slab": 8}, "--slab acts only in volume mode"),
    ({"method": "fast", "volume": True, "slab": 1}, "--slab must be at least 2"),
    ({"method": "sense", "volume": True, "z_weight": 1.0}, "method sense has no term along z"),
    ({"method": "fbp", "volume": True, "z_weight": 0.3}, "method fbp has no term along z"),
    ({"method": "fast", "volume": True, "z_solve": "cg"}, "--z-solve must be one of prox, admm, admm-carry"),
    ({"method": "fast", "volume": True, "z_solve": "admm", "z_rho": 0}, "--z-rho must be a finite number > 0"),
    ({"method": "fast", "volume": True, "z_rho": float("nan")}, "--z-rho must be a finite number > 0"),
    ({"method": "fast", "z_solve": "admm"}, "--z-solve acts only in volume mode"),
])
def test_config_rejects_bad_volume_settings(kwargs, match):
    """Each bad volume setting is an InputError with a one-line message naming the flag."""
    with pytest.raises(InputError, match=match) as err:
        ReconConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_config_effective_z_weight():
    """``effective_z_weight``: 0 outside volume mode and for methods without a z term (which accept volume mode
    with no z weight, or with 0); the given weight when set; else the measured default of ``z_weight_for``
    (the values tuned on the volume suites' tuning slabs)."""
    sense = ReconConfig(method="sense", volume=True)
    assert sense.effective_z_weight("mri") == 0.0
    assert ReconConfig(method="sense", volume=True, z_weight=0.0).effective_z_weight("mri") == 0.0
    fast = ReconConfig(method="fast", volume=True)
    assert fast.effective_z_weight("mri") == z_weight_for("fast", "mri") == Z_WEIGHTS["learned"]["mri"] == 1.0
    assert fast.effective_z_weight("ct") == z_weight_for("fast", "ct")
    assert ReconConfig(method="fast").effective_z_weight("mri") == 0.0
    assert ReconConfig(method="fast", volume=True, z_weight=0.25).effective_z_weight("ct") == 0.25
    assert ReconConfig(method="fast", volume=True, z_weight=0).effective_z_weight("mri") == 0.0
    assert ReconConfig(method="cs-tv", volume=True).effective_z_weight("mri") == z_weight_for("cs-tv", "mri") == 1.0
    assert ReconConfig(method="tv", volume=True).effective_z_weight("ct") == z_weight_for("tv", "ct") == 8.0
    assert ReconConfig(method="cs-tv").effective_z_weight("mri") == 0.0
    assert z_weight_for("sense", "mri") == 0.0 and z_weight_for("fbp", "ct") == 0.0
    assert ReconConfig(method="dps", volume=True, slab=2).slab == 2


def test_config_effective_z_solve():
    """The z solve: the measured default (prox on both modalities, with admm's tuned rho per modality) unless given."""
    from medrecon.recon.volume import Z_RHO

    fast = ReconConfig(method="fast", volume=True)
    assert fast.effective_z_solve("mri") == ("prox", Z_RHO["mri"]) and fast.effective_z_solve("ct")[0] == "prox"
    assert ReconConfig(method="fast", volume=True, z_solve="admm").effective_z_solve("ct") == ("admm", Z_RHO["ct"])
    assert ReconConfig(method="fast", volume=True, z_solve="admm", z_rho=0.5).effective_z_solve("mri") == ("admm", 0.5)


def test_check_volume():
    """A volume needs two slices: one is a one-line InputError, two pass."""
    with pytest.raises(InputError, match="at least 2") as err:
        check_volume(1)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError):
        check_volume(0)
    check_volume(2)
    check_volume(40)


# --------------------------------------------------------------------------- 3-D TV
def _phantom(s: int, n: int) -> torch.Tensor:
    """``s`` slices of a disc whose radius (and an off-centre insert) grow slowly with the slice index, float64."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n, dtype=torch.float64),
                            torch.linspace(-1, 1, n, dtype=torch.float64), indexing="ij")
    return torch.stack([((xx ** 2 + yy ** 2) < (0.5 + 0.03 * i) ** 2).double()
                        + 0.5 * (((xx - 0.2) ** 2 + yy ** 2) < (0.15 + 0.01 * i) ** 2).double() for i in range(s)])


def _zdiff(v: torch.Tensor) -> float:
    """Mean absolute difference between neighbouring slices (complex modulus)."""
    return float((v[1:] - v[:-1]).abs().mean())


def _ztv(v: torch.Tensor) -> torch.Tensor:
    return (v[1:] - v[:-1]).abs().sum()


@pytest.fixture(scope="module")
def mri():
    """5 complex slices (smooth phase), 4 birdcage coils, 4x columns + 6 centre lines, k-space noise (complex128)."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, N, dtype=torch.float64),
                            torch.linspace(-1, 1, N, dtype=torch.float64), indexing="ij")
    x = _phantom(S, N) * torch.exp(1j * math.pi * (0.3 * xx + 0.2 * yy))
    mask = torch.zeros(N, dtype=torch.bool)
    mask[::4] = True
    mask[N // 2 - 3:N // 2 + 3] = True
    A = MultiCoilMRI(birdcage_maps(4, (N, N), dtype=torch.complex128), mask)
    gen = torch.Generator().manual_seed(0)
    y = A(x)
    noise = torch.randn(y.shape, generator=gen, dtype=torch.float64) + 1j * torch.randn(y.shape, generator=gen,
                                                                                      dtype=torch.float64)
    y = y + 0.02 * mask * noise
    lam = 0.01 * float(A.adjoint(y).abs().max())
    return A, y, lam


def test_cs_tv_z_term(mri):
    """``cs_tv(z_lam=)``: (a) ``z_lam = 0`` is every slice reconstructed alone; (b) a large z weight makes the
    slices nearly identical (measured 1e-2 of the slice-by-slice difference); (c) the z-coupled result has a lower
    3-D objective ``0.5||Ax - y||^2 + lam TV(x) + z_lam sum|x_{s+1} - x_s|`` than the slice-by-slice one (measured
    11.39 against 11.83), which in turn is lower on the 2-D objective: each solves its own problem."""
    A, y, lam = mri
    iters = 200
    alone = torch.stack([cs_tv(A, y[s], lam, iters=iters) for s in range(S)])
    flat = cs_tv(A, y, lam, iters=iters)
    assert torch.allclose(flat, alone, atol=1e-10, rtol=0)  # (a), measured bitwise equal
    assert torch.allclose(cs_tv(A, y, lam, iters=iters, z_lam=0.0), flat, atol=1e-10, rtol=0)
    big = cs_tv(A, y, lam, iters=iters, z_lam=100 * lam)
    assert _zdiff(big) < 0.05 * _zdiff(flat)  # (b), measured 0.011
    z_lam = lam
    coupled = cs_tv(A, y, lam, iters=iters, z_lam=z_lam)
    assert _zdiff(coupled) < _zdiff(flat)

    def objective(v, zl):
        return float(0.5 * (A(v) - y).abs().square().sum() + lam * total_variation(v).sum() + zl * _ztv(v))

    assert objective(coupled, z_lam) < objective(flat, z_lam) - 0.1  # (c), measured 11.39 < 11.83
    assert objective(flat, 0.0) < objective(coupled, 0.0)
    with pytest.raises(ValueError):
        cs_tv(A, y, lam, iters=2, z_lam=-1.0)


def test_cs_tv_z_term_with_different_operator_norms():
    """With ``z_lam > 0`` every slice's data term is normalized by the same ``||A||`` (the volume's largest), so the
    coupled slices share one objective even when their operators differ (here slice 0's coil maps are 3x the
    others'). Reversing the slice order (data and maps) then reverses the result exactly (measured bitwise); a
    per-slice normalization would weight the z term by the first slice's norm and break this (measured: max
    difference 0.30 on images of magnitude ~1.5)."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, N, dtype=torch.float64),
                            torch.linspace(-1, 1, N, dtype=torch.float64), indexing="ij")
    x = _phantom(S, N) * torch.exp(1j * math.pi * (0.3 * xx + 0.2 * yy))
    mask = torch.zeros(N, dtype=torch.bool)
    mask[::4] = True
    mask[N // 2 - 3:N // 2 + 3] = True
    scale = torch.tensor([3.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64).view(-1, 1, 1, 1)
    maps = birdcage_maps(4, (N, N), dtype=torch.complex128)[None] * scale  # (S, C, H, W): one set per slice
    A, A_rev = MultiCoilMRI(maps, mask), MultiCoilMRI(maps.flip(0), mask)
    gen = torch.Generator().manual_seed(1)
    y = A(x)
    y = y + 0.02 * mask * torch.complex(torch.randn(y.shape, generator=gen, dtype=torch.float64),
                                        torch.randn(y.shape, generator=gen, dtype=torch.float64))
    lam = 0.01 * float(A.adjoint(y).abs().max())
    out = cs_tv(A, y, lam, iters=100, z_lam=lam)
    rev = cs_tv(A_rev, y.flip(0), lam, iters=100, z_lam=lam)
    assert float((rev.flip(0) - out).abs().max()) < 1e-8 * float(out.abs().max())
    assert _zdiff(out) < _zdiff(cs_tv(A, y, lam, iters=100))


def test_tv_iterative_z_term():
    """``tv_iterative(z_lam=)`` (diagonally preconditioned CT solver): (a) ``z_lam = 0`` is every slice alone;
    (b) a large z weight (1000x the in-plane weight) makes the slices nearly identical (measured 1.4e-2 of the
    slice-by-slice difference after 1000 iterations); (c) the coupled result (z weight = in-plane weight) has the
    lower 3-D objective (measured 0.0721 against 0.0739) and the slice-by-slice one the lower 2-D objective."""
    A = ParallelBeamCT((N, N), 12)
    x = (_phantom(S, N) * 0.02).float()
    gen = torch.Generator().manual_seed(0)
    y = A(x)
    y = y + 0.01 * float(y.abs().max()) * torch.randn(y.shape, generator=gen)
    lam, iters = 0.005, 200
    alone = torch.stack([tv_iterative(A, y[s], lam, iters=iters) for s in range(S)])
    flat = tv_iterative(A, y, lam, iters=iters)
    assert torch.allclose(flat, alone, atol=1e-7, rtol=0)  # (a), measured bitwise equal
    big = tv_iterative(A, y, lam, iters=1000, z_lam=1000 * lam)
    assert _zdiff(big) < 0.05 * _zdiff(flat)  # (b), measured 0.014
    assert float(big.min()) >= 0.0  # the non-negativity constraint still holds with the z block
    coupled = tv_iterative(A, y, lam, iters=iters, z_lam=lam)
    assert _zdiff(coupled) < 0.9 * _zdiff(flat)  # measured 0.80

    def objective(v, zl):
        return float(0.5 * (A(v) - y).square().sum() + lam * total_variation(v, boundary="neumann").sum()
                     + zl * _ztv(v))

    assert objective(coupled, lam) < objective(flat, lam)
    assert objective(flat, 0.0) < objective(coupled, 0.0)
