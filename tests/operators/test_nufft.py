"""operators.nufft: adjointness, agreement with the exact NDFT, the Cartesian known answer, autograd, batching,
per-slice maps and one-line errors (issue 20)."""

from __future__ import annotations

import copy
import importlib.util
import math

import numpy as np
import pytest
import torch

import operators as O
from operators.nufft import NUFFT, NonCartesianMRI, ndft_matrix, resolve_backend
from operators.testing import adjoint_error, check_operator
from operators.trajectories import TrajectoryError


def _has(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


# ducc0 is a dependency (the CPU default); finufft and torchkbnufft are optional backends, tested when installed.
CPU_BACKENDS = ["ducc0", "torch", "ndft"] + [b for b in ("finufft", "torchkbnufft") if _has(b)]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small transforms: one thread avoids OpenMP contention on the shared 2-core machine."""


def _traj(m: int = 300, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(m, 2, generator=g, dtype=torch.float64) * 2 - 1) * math.pi


def _cplx(*shape, dtype=torch.complex128, seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=dtype, generator=g)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("shape", [(24, 20), (23, 21)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_nufft_passes_operator_checks(shape, dtype, backend):
    errs = check_operator(NUFFT(_traj(), shape, backend=backend), dtype)
    assert errs["adjoint"] < (1e-12 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_noncartesian_mri_passes_operator_checks(dtype, backend):
    cdt = torch.complex128 if dtype == torch.float64 else torch.complex64
    maps = _cplx(3, 23, 20, dtype=cdt)
    check_operator(NonCartesianMRI(maps, _traj(250), backend=backend), dtype)


def test_measured_adjoint_errors_are_at_rounding_level():
    """The dot test of each backend's forward/adjoint pair on 24x21 with 300 points. Measured (2026-12-07), single /
    double: ducc0 7.3e-9 / 3.1e-17, finufft 4.9e-9 / 0, torch 2.1e-8 / 1.2e-17, torchkbnufft 4.9e-9 / 1.2e-17,
    ndft 3.5e-8 / 3.7e-17."""
    for backend in CPU_BACKENDS:
        op = NUFFT(_traj(), (24, 21), backend=backend)
        assert adjoint_error(op, torch.float32) < 1e-6, backend
        assert adjoint_error(op, torch.float64) < 1e-14, backend


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("cdt", [torch.complex64, torch.complex128])
def test_forward_and_adjoint_match_exact_ndft(backend, cdt):
    shape, traj = (24, 21), _traj()
    e = ndft_matrix(traj, shape)
    x, y = _cplx(*shape), _cplx(traj.shape[0], seed=2)
    op = NUFFT(traj, shape, backend=backend)
    fwd = op(x.to(cdt)).to(torch.complex128)
    adj = op.adjoint(y.to(cdt)).to(torch.complex128)
    assert fwd.dtype == adj.dtype == torch.complex128 and op(x.to(cdt)).dtype == cdt
    assert _rel(fwd, e @ x.reshape(-1)) < 1e-4
    assert _rel(adj.reshape(-1), e.conj().T @ y) < 1e-4


def test_torch_backend_chunking(monkeypatch):
    """Large problems gather/scatter in chunks of samples; tiny chunks give the same result."""
    from operators.nufft import _GridInterp

    op = NUFFT(_traj(), (24, 21), backend="torch")
    x, y = _cplx(2, 24, 21), _cplx(2, 300, seed=2)
    fx, ay = op(x), op.adjoint(y)
    monkeypatch.setattr(_GridInterp, "chunk_bytes", 4096)
    op2 = NUFFT(_traj(), (24, 21), backend="torch")
    assert _rel(op2(x), fx) < 1e-13 and _rel(op2.adjoint(y), ay) < 1e-13


def test_ndft_matrix_convention():
    """One sample by hand: the pixel at (r, c) contributes exp(-i (w0 (r - H//2) + w1 (c - W//2))) / sqrt(H W)."""
    w = torch.tensor([[0.3, -1.1]], dtype=torch.float64)
    e = ndft_matrix(w, (5, 4))
    r, c = 4, 0
    expect = np.exp(-1j * (0.3 * (r - 2) - 1.1 * (c - 2))) / math.sqrt(20)
    assert abs(complex(e[0, r * 4 + c]) - expect) < 1e-14


def _cartesian_grid(h: int, w: int) -> torch.Tensor:
    ky = 2 * math.pi * (torch.arange(h, dtype=torch.float64) - h // 2) / h
    kx = 2 * math.pi * (torch.arange(w, dtype=torch.float64) - w // 2) / w
    return torch.stack(torch.meshgrid(ky, kx, indexing="ij"), dim=-1)  # (H, W, 2), C order = fft2c's layout


@pytest.mark.parametrize("shape", [(16, 20), (15, 13)])
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_cartesian_grid_reproduces_multicoil_fft(shape, backend):
    """Known answer: on the full Cartesian grid the NUFFT SENSE model is MultiCoilMRI with a full mask."""
    h, w = shape
    maps = _cplx(4, h, w, dtype=torch.complex64, seed=3)
    x = _cplx(2, h, w, dtype=torch.complex64, seed=4)
    nc = NonCartesianMRI(maps, _cartesian_grid(h, w), backend=backend)
    cart = O.MultiCoilMRI(maps, torch.ones(w, dtype=torch.bool))
    y = nc(x).reshape(2, 4, h, w)
    assert _rel(y, cart(x)) < 1e-4
    assert _rel(nc.adjoint(cart(x).reshape(2, 4, -1)), cart.adjoint(cart(x))) < 1e-4


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_gradcheck_double(backend):
    op = NUFFT(_traj(20), (6, 5), backend=backend)
    x = _cplx(6, 5).requires_grad_(True)
    assert torch.autograd.gradcheck(op, (x,), eps=1e-6, atol=1e-7)
    y = _cplx(20, seed=5).requires_grad_(True)
    assert torch.autograd.gradcheck(op.adjoint, (y,), eps=1e-6, atol=1e-7)


def test_gradient_of_data_fit_matches_ndft_version():
    """The DPS-style gradient of ||A x - y||^2 through NonCartesianMRI equals the dense-matrix model's."""
    shape, traj = (12, 10), _traj(120)
    maps = _cplx(3, *shape, seed=6)
    y = _cplx(3, 120, seed=7)
    e = ndft_matrix(traj, shape)
    x0 = _cplx(*shape, seed=8)
    grads = []
    for model in (lambda v: NonCartesianMRI(maps, traj)(v), lambda v: (maps * v).reshape(3, -1) @ e.T):
        x = x0.clone().requires_grad_(True)
        (model(x) - y).abs().pow(2).sum().backward()
        grads.append(x.grad)
    assert _rel(grads[0], grads[1]) < 1e-5
    # Second derivatives flow too (the backward is itself differentiable).
    x = x0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(NUFFT(traj, shape)(x).abs().pow(2).sum(), x, create_graph=True)
    g.abs().pow(2).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_batch_dims_and_per_slice_maps():
    shape, traj = (12, 11), _traj(90)
    op = NUFFT(traj.float(), shape)
    x = _cplx(2, 3, *shape, dtype=torch.complex64)
    y = op(x)
    assert y.shape == (2, 3, 90)
    assert _rel(y[1, 2], op(x[1, 2])) < 1e-6
    maps = _cplx(2, 4, *shape, dtype=torch.complex64, seed=9)  # one set per slice
    a = NonCartesianMRI(maps, traj)
    xs = _cplx(2, *shape, dtype=torch.complex64, seed=10)
    ys = a(xs)
    assert ys.shape == (2, 4, 90)
    for s in range(2):
        assert _rel(ys[s], NonCartesianMRI(maps[s], traj)(xs[s])) < 1e-6
    r = a.batch_repeat(3)
    assert r.coil_maps.shape == (6, 4, *shape) and r.nufft is a.nufft  # plans shared, not rebuilt
    assert _rel(r(xs.repeat_interleave(3, dim=0))[3:6], ys[1].expand(3, 4, 90)) < 1e-6
    sel = a.batch_select(slice(1, 2))
    assert _rel(sel(xs[1:2]), ys[1:2]) < 1e-6
    shared = NonCartesianMRI(maps[0], traj)
    assert shared.batch_repeat(3) is shared and shared.batch_select(slice(0, 1)) is shared


def test_properties_gridding_and_copy():
    shape, traj = (10, 9), _traj(70).reshape(7, 10, 2)  # (spokes, readout, 2): flattened in C order
    maps = _cplx(3, *shape, dtype=torch.complex64)
    dcf = torch.rand(7, 10, generator=torch.Generator().manual_seed(0))
    a = NonCartesianMRI(maps, traj, dcf=dcf)
    assert a.trajectory.shape == (70, 2) and torch.equal(a.trajectory, traj.reshape(70, 2))
    assert a.coil_maps is maps or torch.equal(a.coil_maps, maps)
    assert a.dcf.shape == (70,) and a.out_shape == (3, 70) and a.in_shape == shape
    y = _cplx(2, 3, 70, dtype=torch.complex64, seed=11)
    g = a.gridding(y)
    assert g.shape == (2, 3, *shape)
    assert _rel(g, a.nufft.adjoint(y * dcf.reshape(70))) < 1e-6
    x = torch.ones(shape, dtype=torch.complex64)
    b = copy.deepcopy(a)  # finufft plans are not copied; the copy builds its own
    assert _rel(b(x), a(x)) < 1e-6
    with pytest.raises(ValueError, match="needs a density compensation"):
        NonCartesianMRI(maps, traj).gridding(y)


@pytest.mark.parametrize("bad, match", [
    (torch.full((5, 2), float("nan")), "NaN or inf"),
    (torch.tensor([[0.0, float("inf")]]), "NaN or inf"),
    (torch.zeros(5, 3), r"shape \(\.\.\., 2\)"),
    (torch.zeros(5), r"shape \(\.\.\., 2\)"),
    (torch.tensor([[0.5, 4.0]]), r"outside the 'radians' range"),
    (torch.tensor([[100.0, 3.0]]), "to_radians"),
    (torch.zeros(0, 2), "no samples"),
    (torch.zeros(4, 2, dtype=torch.complex64), "must be real"),
])
def test_bad_trajectories_raise_one_line_errors(bad, match):
    with pytest.raises(TrajectoryError, match=match) as info:
        NUFFT(bad, (8, 8))
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bad_maps_dcf_and_backend_raise_one_line_errors():
    traj = _traj(30)
    for maps in (torch.ones(3, 8, 8), torch.ones(8, 8, dtype=torch.complex64),
                 torch.ones(1, 2, 3, 8, 8, dtype=torch.complex64)):
        with pytest.raises(O.OperatorShapeError, match="coil_maps must be complex") as info:
            NonCartesianMRI(maps, traj)
        assert "\n" not in str(info.value)
    maps = torch.ones(2, 8, 8, dtype=torch.complex64)
    with pytest.raises(O.OperatorShapeError, match="dcf must hold 30"):
        NonCartesianMRI(maps, traj, dcf=torch.ones(29))
    with pytest.raises(ValueError, match="finite and non-negative"):
        NonCartesianMRI(maps, traj, dcf=-torch.ones(30))
    with pytest.raises(ValueError, match="unknown NUFFT backend"):
        NUFFT(traj, (8, 8), backend="nfft")
    with pytest.raises(O.OperatorShapeError, match=r"trailing shape \(\.\.\., 8, 8\)"):
        NUFFT(traj, (8, 8))(torch.ones(8, 7, dtype=torch.complex64))


def test_auto_backend_resolution():
    assert resolve_backend("auto", torch.device("cpu")) == "ducc0"
    assert resolve_backend("torch", torch.device("cpu")) == "torch"


@pytest.mark.gpu
def test_cuda_backends_match_cpu():
    """GPU path (cufinufft when installed, else the torch backend): agrees with the CPU and stays adjoint."""
    shape, traj = (32, 30), _traj(400)
    x = _cplx(2, *shape, dtype=torch.complex64)
    ref = NUFFT(traj, shape)(x)
    for backend in ("auto", "torch"):
        op = NUFFT(traj.cuda(), shape, backend=backend)
        assert _rel(op(x.cuda()).cpu(), ref) < 1e-4
        check_operator(op, torch.float32)
