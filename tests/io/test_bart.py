"""BART cfl/hdr: round trips, size checks, and orientation/centring against real BART output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrecon.errors import InputError
from medrecon.io.bart import read_bart_kspace, read_cfl, write_cfl
from operators.coils import rss
from operators.fft import fft2c, ifft2c


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("suffix", ["", ".cfl", ".hdr"])
def test_cfl_round_trip_any_suffix(tmp_path, suffix):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((3, 4, 5)) + 1j * rng.standard_normal((3, 4, 5))).astype(np.complex64)
    write_cfl(tmp_path / f"x{suffix}", arr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.cfl", "x.hdr"]  # no temporaries left
    assert (tmp_path / "x.hdr").read_text().startswith("# Dimensions\n3 4 5")
    out = read_cfl(tmp_path / f"x{suffix}")
    assert out.dtype == np.complex64 and out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, arr)
    # column-major on disk: the first dimension varies fastest
    raw = np.fromfile(tmp_path / "x.cfl", dtype="<c8")
    np.testing.assert_array_equal(raw[:3], arr[:, 0, 0])


def test_cfl_size_mismatch_and_bad_header(tmp_path):
    write_cfl(tmp_path / "x", np.ones((4, 4), np.complex64))
    raw = (tmp_path / "x.cfl").read_bytes()
    (tmp_path / "x.cfl").write_bytes(raw[:-8])
    with pytest.raises(InputError, match="truncated"):
        read_cfl(tmp_path / "x")
    (tmp_path / "y.hdr").write_text("hello\n1 2\n")
    (tmp_path / "y.cfl").write_bytes(b"\0" * 16)
    with pytest.raises(InputError, match="Dimensions"):
        read_cfl(tmp_path / "y")
    with pytest.raises(InputError, match="does not exist"):
        read_cfl(tmp_path / "missing")


def test_bart_kspace_layout_and_mask(tmp_path):
    rng = np.random.default_rng(1)
    h, w, c = 12, 10, 3
    coil_k = (rng.standard_normal((c, h, w)) + 1j * rng.standard_normal((c, h, w))).astype(np.complex64)
    coil_k[:, :, ::2] = 0  # every other phase-encode column unsampled
    bart = np.moveaxis(coil_k, 0, -1)[:, :, None, :]  # (X, Y, 1, C)
    write_cfl(tmp_path / "k2d", bart)
    k, mask = read_bart_kspace(tmp_path / "k2d")
    np.testing.assert_array_equal(k, coil_k)
    assert mask.shape == (h, w) and mask.dtype == bool
    np.testing.assert_array_equal(mask, np.broadcast_to(np.arange(w) % 2 == 1, (h, w)))
    # A slice of 3-D data: (1, Y, Z, C, 1, ...) -> (C, Y, Z)
    write_cfl(tmp_path / "k3d", np.moveaxis(coil_k, 0, -1)[None, :, :, :, None])
    np.testing.assert_array_equal(read_bart_kspace(tmp_path / "k3d")[0], coil_k)
    write_cfl(tmp_path / "maps", np.ones((4, 4, 1, 2, 2), np.complex64))
    with pytest.raises(InputError, match="beyond COIL"):
        read_bart_kspace(tmp_path / "maps")
    write_cfl(tmp_path / "vol", np.ones((4, 4, 4, 2), np.complex64))
    with pytest.raises(InputError, match="2-D"):
        read_bart_kspace(tmp_path / "vol")


def test_bart_kspace_centre_matches_fft2c(tmp_path):
    # A centred object's k-space peak must sit at (H // 2, W // 2), as fft2c puts it.
    img = np.zeros((1, 16, 14), np.complex64)
    img[0, 6:10, 5:9] = 1
    k = fft2c(torch.from_numpy(img)).numpy()
    write_cfl(tmp_path / "k", np.moveaxis(k, 0, -1)[:, :, None, :])
    kread, _ = read_bart_kspace(tmp_path / "k")
    assert np.unravel_index(np.abs(kread[0]).argmax(), kread.shape[1:]) == (8, 7)
    np.testing.assert_allclose(ifft2c(torch.from_numpy(kread)).numpy(), img, atol=1e-6)


@pytest.mark.data
def test_real_bart_kspace_matches_bart_reconstruction(shared_data):
    base = shared_data / "mri" / "bart_pics_brain"
    kspace, mask = read_bart_kspace(base / "ksp")
    assert kspace.shape == (8, 180, 230) and kspace.dtype == np.complex64
    assert 0.10 < mask.mean() < 0.15  # 12.7 % Poisson-disc sampling, per README
    assert mask[80:100, 105:125].all()  # fully sampled ~19x19 centre around (H // 2, W // 2)
    image = rss(ifft2c(torch.from_numpy(kspace))).numpy()
    ref = np.abs(read_cfl(base / "img")[0, :, :, 0, 0].squeeze())
    assert ref.shape == image.shape
    c = _corr(image, ref)
    assert c > 0.9
    # same orientation: any flip correlates worse than the direct image
    assert c > _corr(image[::-1], ref) and c > _corr(image[:, ::-1], ref) and c > _corr(image[::-1, ::-1], ref)


def test_detect_bart_by_content(tmp_path):
    from medrecon.io.detect import detect_format

    write_cfl(tmp_path / "k", np.ones((2, 2), np.complex64))
    assert {detect_format(tmp_path / n) for n in ("k", "k.cfl", "k.hdr")} == {"bart"}
    (tmp_path / "k.cfl").unlink()
    with pytest.raises(InputError):
        detect_format(tmp_path / "k.hdr")  # a lone text header is nothing medrecon reads
