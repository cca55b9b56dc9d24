"""MRI baselines: wavelets, zero-filled, CG-SENSE, l1-wavelet and TV CS (checked against SigPy), real BART data."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch

from medrecon.baselines import (
    DWT2,
    cg_sense,
    cs_tv,
    cs_wavelet,
    dwt2,
    idwt2,
    max_eigenvalue,
    max_level,
    soft_threshold,
    total_variation,
    zero_filled,
)
from medrecon.baselines.mri import _grad, _grad_adjoint
from operators import MultiCoilMRI
from operators.coils import birdcage_maps, espirit_maps
from operators.fft import fft2c
from operators.testing import check_operator


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The iterative solvers make many small tensor calls; on a shared 2-core machine OpenMP
    # threads fight over the cores and run ~10x slower than one thread.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Problem(NamedTuple):
    x: torch.Tensor
    maps: torch.Tensor
    mask: torch.Tensor
    A: MultiCoilMRI
    y: torch.Tensor
    lam: float


@pytest.fixture(scope="module")
def problem() -> Problem:
    """64x64 complex Shepp-Logan, 8 birdcage coils, 4x Cartesian columns + 8 centre lines (complex128)."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    n = 64
    img = resize(shepp_logan_phantom(), (n, n), anti_aliasing=True)
    yy, xx = np.mgrid[:n, :n] / n
    x = torch.from_numpy(img * np.exp(1j * np.pi * (0.5 * xx + 0.3 * yy)))
    maps = birdcage_maps(8, (n, n), dtype=torch.complex128)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[::4] = True
    mask[n // 2 - 4:n // 2 + 4] = True
    A = MultiCoilMRI(maps, mask)
    y = A(x)
    lam = 0.005 * float(A.adjoint(y).abs().max())
    return Problem(x, maps, mask, A, y, lam)


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# --------------------------------------------------------------------------- wavelets
@pytest.mark.parametrize("wavelet", ["haar", "db4"])
@pytest.mark.parametrize("shape", [(64, 64), (2, 37, 20), (180, 230)])
def test_dwt_perfect_reconstruction_and_orthogonality(wavelet, shape):
    x = torch.randn(*shape, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    c = dwt2(x, wavelet)
    lev = max_level(shape, wavelet)
    assert all(s % 2 ** lev == 0 for s in c.shape[-2:])
    assert torch.allclose(idwt2(c, shape[-2:], wavelet), x, atol=1e-12)
    assert abs(float(c.norm() / x.norm()) - 1) < 1e-12
    check_operator(DWT2(shape[-2:], wavelet), torch.float64)


@pytest.mark.parametrize("wavelet", ["haar", "db2", "db4"])
def test_dwt_equals_pywt_periodization(wavelet):
    pywt = pytest.importorskip("pywt")
    x = np.random.default_rng(0).standard_normal((64, 96))
    for levels in (1, 3):
        ref, _ = pywt.coeffs_to_array(pywt.wavedec2(x, wavelet, mode="periodization", level=levels))
        assert np.allclose(dwt2(torch.from_numpy(x), wavelet, levels).numpy(), ref, atol=1e-12)


def test_soft_threshold_complex_shrinks_magnitude():
    z = torch.tensor([3 + 4j, 0.1 + 0j, 0j], dtype=torch.complex128)
    out = soft_threshold(z, 1.0)
    assert torch.allclose(out, torch.tensor([0.8 * (3 + 4j), 0, 0], dtype=torch.complex128))


@pytest.mark.parametrize("boundary", ["periodic", "neumann"])
def test_finite_difference_adjoint_and_tv(boundary):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 9, 7, dtype=torch.complex128, generator=g)
    q = torch.randn(2, 2, 9, 7, dtype=torch.complex128, generator=g)
    lhs = torch.vdot(_grad(x, boundary).flatten(), q.flatten())
    rhs = torch.vdot(x.flatten(), _grad_adjoint(q, boundary).flatten())
    assert abs(lhs - rhs) < 1e-12 * abs(lhs)
    step = torch.zeros(6, 6, dtype=torch.float64)
    step[:, 3:] = 1.0  # one vertical edge of height 6
    expected = 6.0 if boundary == "neumann" else 12.0  # periodic also sees the wrap-around edge
    assert float(total_variation(step, True, boundary)) == pytest.approx(expected)
    assert float(total_variation(step, False, boundary)) == pytest.approx(expected)


# --------------------------------------------------------------------------- zero-filled, SENSE
def test_zero_filled_is_fastmri_rss(problem):
    x, maps, mask, y = problem.x, problem.maps, problem.mask, problem.y
    full = fft2c(maps * x)
    ref = np.sqrt((np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(full.numpy() * mask.numpy(), axes=(-2, -1)),
                                                         norm="ortho"), axes=(-2, -1))) ** 2).sum(0))
    assert np.allclose(zero_filled(full, mask).numpy(), ref, atol=1e-12)
    assert torch.allclose(zero_filled(full, mask), zero_filled(y), atol=1e-12)
    # Fully sampled with RSS-normalised maps: RSS of the coil images is |x|.
    assert torch.allclose(zero_filled(full), x.abs(), atol=1e-10)
    assert zero_filled(torch.stack([y, 2 * y])).shape == (2, 64, 64)


def test_cg_sense_matches_sigpy_and_batches(problem):
    mr = pytest.importorskip("sigpy.mri")
    maps, A, y, lam = problem.maps, problem.A, problem.y, problem.lam
    for lam in (0.0, 0.01):
        ref = mr.app.SenseRecon(y.numpy(), maps.numpy(), lamda=lam, max_iter=30, show_pbar=False).run()
        assert _rel(cg_sense(A, y, lam, 30).numpy(), ref) < 1e-8
    both = cg_sense(A, torch.stack([y, 2 * y]), 0.0, 10)
    one = cg_sense(A, y, 0.0, 10)
    assert torch.allclose(both[0], one, atol=1e-10) and torch.allclose(both[1], 2 * one, atol=1e-10)


def test_max_eigenvalue(problem):
    A, y = problem.A, problem.y
    lip = float(max_eigenvalue(A, A.adjoint(y), 30))
    assert 0.95 < lip <= 1.0 + 1e-9  # S^H S = I and a binary mask: ||A^H A|| <= 1


# --------------------------------------------------------------------------- CS vs SigPy
def _l1_objective(A, y, lam, x, coeffs) -> float:
    return float(0.5 * (A(torch.as_tensor(x)) - y).abs().square().sum()) + lam * float(np.abs(coeffs).sum())


def test_cs_wavelet_haar_matches_sigpy(problem):
    """With Haar on a 64x64 grid, PyWavelets' zero-padding mode has no boundary coefficients, so
    SigPy's transform equals our periodized one and FISTA must give the same iterates."""
    mr = pytest.importorskip("sigpy.mri")
    x, maps, A, y, lam = problem.x, problem.maps, problem.A, problem.y, problem.lam
    np.random.seed(0)
    ref = mr.app.L1WaveletRecon(y.numpy(), maps.numpy(), lam, wave_name="haar", max_iter=100, show_pbar=False).run()
    ours = cs_wavelet(A, y, lam, iters=100, wavelet="haar")
    assert _rel(ours.numpy(), ref) < 1e-4  # measured 1e-6
    assert _rel(ours.numpy(), x.numpy()) < 0.16  # zero-filled / SENSE are far worse


def test_cs_wavelet_db4_vs_sigpy(problem):
    """db4: SigPy uses PyWavelets mode='zero' (a redundant, non-orthogonal frame with boundary
    coefficients), we use the orthogonal periodized DWT, so the problems differ. Each objective is
    evaluated with its own transform; the reconstructions are compared loosely."""
    mr = pytest.importorskip("sigpy.mri")
    pywt = pytest.importorskip("pywt")
    x, maps, A, y, lam = problem.x, problem.maps, problem.A, problem.y, problem.lam
    np.random.seed(0)
    ref = mr.app.L1WaveletRecon(y.numpy(), maps.numpy(), lam, wave_name="db4", max_iter=100, show_pbar=False).run()
    ours = cs_wavelet(A, y, lam, iters=100, wavelet="db4")
    f_ref = _l1_objective(A, y, lam, ref, pywt.coeffs_to_array(pywt.wavedecn(ref, "db4", mode="zero"))[0])
    f_ours = _l1_objective(A, y, lam, ours, dwt2(ours, "db4").numpy())
    assert abs(f_ours / f_ref - 1) < 0.05  # measured: 1.0972 vs 1.1196 (-2.0 %)
    assert _rel(ours.numpy(), ref) < 0.25  # measured 0.176
    assert _rel(ours.numpy(), x.numpy()) < 0.22  # measured 0.193 (SigPy's: 0.175)


def test_cs_tv_matches_sigpy(problem):
    """SigPy's TotalVariationRecon is anisotropic TV with periodic differences solved by PDHG; with
    its sigma set to our dual step (1/9, tau then ~1) both reach the same objective."""
    mr = pytest.importorskip("sigpy.mri")
    x, maps, A, y, lam = problem.x, problem.maps, problem.A, problem.y, problem.lam
    np.random.seed(0)
    ref = mr.app.TotalVariationRecon(y.numpy(), maps.numpy(), lam, max_iter=100, sigma=1 / 9,
                                     show_pbar=False).run()
    ours = cs_tv(A, y, lam, iters=100, isotropic=False)

    def objective(v):
        v = torch.as_tensor(v)
        return float(0.5 * (A(v) - y).abs().square().sum() + lam * total_variation(v, False, "periodic"))

    assert _rel(ours.numpy(), ref) < 1e-2  # measured 2.6e-3
    assert abs(objective(ours) / objective(ref) - 1) < 1e-3  # measured 2.6e-4; optimum within 0.2 %
    iso = cs_tv(A, y, lam, iters=100)
    assert _rel(iso.numpy(), x.numpy()) < 0.5 * _rel(A.adjoint(y).numpy(), x.numpy())


def test_cs_batched_equals_single(problem):
    A, y, lam = problem.A, problem.y, problem.lam
    ys = torch.stack([y, 0.5 * y.flip(-1)])
    for fn in (lambda t: cs_wavelet(A, t, lam, iters=5), lambda t: cs_tv(A, t, lam, iters=5)):
        both = fn(ys)
        assert torch.allclose(both[0], fn(ys[0]), atol=1e-10)
        assert torch.allclose(both[1], fn(ys[1]), atol=1e-10)


# --------------------------------------------------------------------------- real data (BART)
def _read_cfl(stem):
    with open(f"{stem}.hdr") as fh:
        dims = [int(v) for v in fh.read().split("\n")[1].split()]
    data = np.fromfile(f"{stem}.cfl", np.complex64, count=int(np.prod(dims)))
    return data.reshape(dims, order="F")


@pytest.mark.data
def test_cs_wavelet_real_bart_brain(shared_data):
    from skimage.metrics import structural_similarity

    root = shared_data / "mri" / "bart_pics_brain"
    ksp = _read_cfl(root / "ksp")  # (1, 180, 230, 8, 1, ...): readout already transformed
    kspace = torch.from_numpy(np.ascontiguousarray(ksp.reshape(ksp.shape[1:4], order="F").transpose(2, 0, 1)))
    bart = np.abs(_read_cfl(root / "img").reshape(180, 230, 2, order="F")[..., 0])  # first ESPIRiT map set
    mask = (kspace != 0).any(dim=0).float()  # Poisson disc, 12.7 %
    maps = espirit_maps(kspace, calib_width=None)
    A = MultiCoilMRI(maps, mask)
    lam = 0.005 * float(A.adjoint(kspace).abs().max())
    ours = cs_wavelet(A, kspace, lam, iters=100).abs().numpy()

    # BART's centred FFT and ours agree on even sizes: no shift or flip is needed.
    ref = bart / np.percentile(bart, 99)
    img = ours / np.percentile(ours, 99)
    rows, cols = np.nonzero((ref > 0.05).any(1))[0], np.nonzero((ref > 0.05).any(0))[0]
    crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    g, p = ref[crop], img[crop]
    nmse = float(np.sum((g - p) ** 2) / np.sum(g ** 2))
    ssim = structural_similarity(g, p, data_range=float(g.max()), win_size=7, K1=0.01, K2=0.03)
    zf = zero_filled(kspace).numpy()
    zf = zf / np.percentile(zf, 99)
    ssim_zf = structural_similarity(g, zf[crop], data_range=float(g.max()), win_size=7, K1=0.01, K2=0.03)
    assert nmse < 0.01, nmse  # measured 0.0056
    assert ssim > 0.85, ssim  # measured 0.884 (zero-filled: 0.641)
    assert ssim > ssim_zf + 0.15
