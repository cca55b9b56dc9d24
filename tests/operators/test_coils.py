"""Tests for operators.coils: RSS / SENSE combination, birdcage maps, calibration, ESPIRiT."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from operators.coils import (
    birdcage_maps,
    calibration_region,
    espirit_maps,
    fully_sampled_center,
    rss,
    sense_combine,
)
from operators.fft import fft2c

N = 64
N_COILS = 8


def _phantom(n: int = N, dtype=torch.complex128) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth elliptical object with an inner bump; returns (image, interior support)."""
    t = torch.linspace(-1, 1, n, dtype=torch.float64)
    y, x = torch.meshgrid(t, t, indexing="ij")
    r = (x / 0.7) ** 2 + (y / 0.85) ** 2
    body = torch.sigmoid((1 - r) * 20)
    bump = 0.5 * torch.exp(-((x - 0.2) ** 2 + (y + 0.1) ** 2) / 0.05)
    return (body * (1 + bump)).to(dtype), r < 0.8


def _agreement(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel |<a, b>| / (|a| |b|) over coils: 1 where the maps agree up to a phase."""
    num = (a.conj() * b).sum(0).abs()
    den = a.abs().square().sum(0).sqrt() * b.abs().square().sum(0).sqrt()
    return num / den.clamp_min(1e-30)


@pytest.fixture(scope="module")
def synthetic():
    x, support = _phantom()
    maps = birdcage_maps(N_COILS, (N, N), dtype=torch.complex128)
    coil_images = maps * x
    ksp = fft2c(coil_images).to(torch.complex64)
    return x, support, maps, coil_images, ksp


# ----------------------------------------------------------------------------- combination
def test_rss_and_sense_combine_known_answers(synthetic):
    x, _, maps, coil_images, _ = synthetic
    torch.testing.assert_close(rss(coil_images), x.abs(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sense_combine(coil_images, maps), x, rtol=1e-12, atol=1e-12)
    # fastMRI's rss on a real tensor, any coil dim.
    v = torch.tensor([[3.0, 0.0], [4.0, 1.0]])
    torch.testing.assert_close(rss(v, dim=0), torch.tensor([5.0, 1.0]))
    assert rss(coil_images.to(torch.complex64)).dtype == torch.float32


def test_sense_combine_guards_zero_maps_and_broadcasts(synthetic):
    x, _, maps, coil_images, _ = synthetic
    cropped = maps.clone()
    cropped[:, :10] = 0
    out = sense_combine(coil_images, cropped)
    assert torch.isfinite(out.real).all() and torch.isfinite(out.imag).all()
    assert (out[:10] == 0).all()
    torch.testing.assert_close(out[10:], x[10:])
    batch = torch.stack([coil_images, 2 * coil_images])  # (S, C, H, W) with shared (C, H, W) maps
    torch.testing.assert_close(sense_combine(batch, maps), torch.stack([x, 2 * x]))


# ----------------------------------------------------------------------------- birdcage
def test_birdcage_normalised_reproducible_and_matches_sigpy():
    sigpy_mri = pytest.importorskip("sigpy.mri")
    maps = birdcage_maps(N_COILS, (48, 40), dtype=torch.complex128)
    assert maps.shape == (N_COILS, 48, 40) and maps.dtype == torch.complex128
    torch.testing.assert_close(rss(maps, dim=0), torch.ones(48, 40, dtype=torch.float64))
    assert torch.equal(maps, birdcage_maps(N_COILS, (48, 40), dtype=torch.complex128))
    np.testing.assert_allclose(maps.numpy(), sigpy_mri.birdcage_maps((N_COILS, 48, 40)), atol=1e-12)
    # Two rings of 4: SigPy's 3-D model evaluated on the central plane z = 0.
    rings = birdcage_maps(8, (32, 40), n_rings=2, dtype=torch.complex128)
    ref = sigpy_mri.birdcage_maps((8, 2, 32, 40), nzz=4)[:, 1]
    ref = ref / np.sqrt((np.abs(ref) ** 2).sum(0))
    np.testing.assert_allclose(rings.numpy(), ref, atol=1e-12)
    assert birdcage_maps(4, (8, 8)).dtype == torch.complex64
    with pytest.raises(ValueError):
        birdcage_maps(6, (8, 8), n_rings=4)


# ----------------------------------------------------------------------------- calibration
def test_calibration_region_is_centred():
    k = torch.zeros(2, 3, 17, 20, dtype=torch.complex64)
    k[..., 17 // 2, 20 // 2] = 1  # DC
    calib = calibration_region(k, (7, 8))
    assert calib.shape == (2, 3, 7, 8)
    assert calib[..., 7 // 2, 8 // 2].eq(1).all() and calib.abs().sum() == 6
    assert calibration_region(k, 5).shape == (2, 3, 5, 5)
    with pytest.raises(ValueError):
        calibration_region(k, 30)


def test_fully_sampled_center_measures_block():
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(40, 50, generator=g) < 0.2
    mask[20 - 6:20 - 6 + 12, 25 - 9:25 - 9 + 18] = True  # centred 12 x 18 block
    mask[20 - 7, :] = False  # keep the block from growing by chance
    mask[20 - 6 + 12, :] = False
    mask[:, 25 - 10] = False
    mask[:, 25 - 9 + 18] = False
    assert fully_sampled_center(mask) == (12, 18)
    ksp = torch.randn(4, 40, 50, dtype=torch.complex64, generator=g) * mask
    assert fully_sampled_center(ksp) == (12, 18)
    assert calibration_region(ksp, None).shape == (4, 12, 18)
    with pytest.raises(ValueError):
        fully_sampled_center(torch.ones(50, dtype=torch.bool))


# ----------------------------------------------------------------------------- ESPIRiT
def test_espirit_matches_sigpy_and_reconstructs_phantom(synthetic):
    app = pytest.importorskip("sigpy.mri.app")
    x, support, _, coil_images, ksp = synthetic
    ours, eig = espirit_maps(ksp, calib_width=24, return_eigenvalues=True)
    assert ours.shape == ksp.shape and ours.dtype == ksp.dtype
    ref, ref_eig = app.EspiritCalib(
        ksp.numpy(), calib_width=24, thresh=0.02, kernel_width=6, crop=0.95, show_pbar=False,
        output_eigenvalue=True,
    ).run()
    ref = torch.from_numpy(ref)
    agree = _agreement(ours, ref)[support]
    assert agree.mean() > 0.999 and agree.min() > 0.99  # brief: > 0.98 on average; measured ~1 - 1e-7
    torch.testing.assert_close(eig, torch.from_numpy(ref_eig[0]), atol=1e-4, rtol=1e-4)
    # Projection of the coil images onto our maps recovers the object (up to a phase).
    combined = sense_combine(coil_images.to(torch.complex64), ours).abs()
    rel = (combined - x.abs().float())[support].norm() / x.abs().float()[support].norm()
    assert rel < 1e-3  # measured ~6e-6


def test_espirit_uses_only_calibration_region_and_batches(synthetic):
    *_, ksp = synthetic
    ky, kx = torch.meshgrid(torch.arange(N), torch.arange(N), indexing="ij")
    calib = ((ky - N // 2).abs() <= 10) & ((kx - N // 2).abs() <= 10)
    mask = calib | (torch.rand(N, N, generator=torch.Generator().manual_seed(3)) < 0.25)
    under = ksp * mask + 0.0
    assert fully_sampled_center(under) == (21, 21)
    full_maps = espirit_maps(ksp, calib_width=20, max_iter=30)
    under_maps = espirit_maps(under, calib_width=20, max_iter=30)
    torch.testing.assert_close(under_maps, full_maps)
    auto = espirit_maps(under, calib_width=None, max_iter=30)  # measured 21 x 21
    assert torch.equal(auto, espirit_maps(under, calib_width=21, max_iter=30))
    batch = espirit_maps(torch.stack([ksp, 3 * ksp]), calib_width=20, max_iter=30)
    assert batch.shape == (2, N_COILS, N, N)
    torch.testing.assert_close(batch[0], full_maps)
    torch.testing.assert_close(batch[1], full_maps, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        espirit_maps(ksp, calib_width=4, kernel_width=6)


@pytest.mark.gpu
def test_espirit_on_gpu_matches_cpu(synthetic):
    *_, ksp = synthetic
    cpu = espirit_maps(ksp, max_iter=30)
    gpu = espirit_maps(ksp.cuda(), max_iter=30)
    assert gpu.is_cuda
    region = cpu.abs().square().sum(0) > 0
    assert _agreement(gpu.cpu(), cpu)[region].mean() > 0.999


@pytest.mark.data
def test_espirit_real_brain_matches_sigpy(shared_data):
    app = pytest.importorskip("sigpy.mri.app")
    folder = shared_data / "mri" / "bart_pics_brain"
    dims = [int(d) for d in (folder / "ksp.hdr").read_text().splitlines()[1].split()][:4]
    raw = np.fromfile(folder / "ksp.cfl", np.complex64).reshape(dims, order="F")  # (x, y, z, coil)
    ksp = np.ascontiguousarray(np.transpose(raw[0], (2, 0, 1)))  # (C, H, W) = (8, 180, 230)
    ksp_t = torch.from_numpy(ksp)
    ch, cw = fully_sampled_center(ksp_t)
    assert min(ch, cw) >= 18  # the ~19 x 19 fully sampled Poisson-disc centre
    width = min(ch, cw, 24)

    t0 = time.perf_counter()
    ours = espirit_maps(ksp_t, calib_width=width, max_iter=40)  # 40 iterations keep the test short
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = app.EspiritCalib(
        ksp, calib_width=width, thresh=0.02, kernel_width=6, crop=0.95, max_iter=40, show_pbar=False
    ).run()
    t_sigpy = time.perf_counter() - t0

    ref = torch.from_numpy(ref)
    region = ref.abs().square().sum(0) > 0
    agree = _agreement(ours, ref)[region]
    print(f"real brain: calib {width}, agreement mean {agree.mean():.6f} min {agree.min():.6f}, "
          f"ours {t_ours:.2f} s, sigpy {t_sigpy:.2f} s")
    assert region.float().mean() > 0.3
    assert agree.mean() > 0.95
    # Same crop: our maps are non-zero exactly where sigpy's are (eigenvalue > crop).
    assert ((ours.abs().square().sum(0) > 0) == region).float().mean() > 0.99
