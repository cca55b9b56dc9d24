"""npy/npz k-space with an explicit axis order."""

import numpy as np
import pytest

from medrecon.cli import main
from medrecon.errors import InputError
from medrecon.io.numpy_kspace import read_numpy_kspace


def _k(shape, seed=0):
    g = np.random.default_rng(seed)
    return (g.standard_normal(shape) + 1j * g.standard_normal(shape)).astype(np.complex64)


def test_axes_are_reordered_to_schw(tmp_path):
    k = _k((16, 12, 3))  # H, W, C
    np.save(tmp_path / "k.npy", k)
    out, mask = read_numpy_kspace(tmp_path / "k.npy", "hwc")
    assert out.shape == (1, 3, 16, 12) and mask is None
    np.testing.assert_array_equal(out[0, 2], k[..., 2])


def test_npz_with_mask_and_errors(tmp_path):
    k = _k((2, 4, 16, 12))
    np.savez(tmp_path / "k.npz", kspace=k, mask=np.arange(12) % 2 == 0)
    out, mask = read_numpy_kspace(tmp_path / "k.npz", "SCHW")
    assert out.shape == (2, 4, 16, 12) and mask.shape == (12,)
    with pytest.raises(InputError, match="--axes"):
        read_numpy_kspace(tmp_path / "k.npz", None)
    with pytest.raises(InputError, match="dimensions"):
        read_numpy_kspace(tmp_path / "k.npz", "CHW")
    np.save(tmp_path / "real.npy", np.zeros((4, 4)))
    with pytest.raises(InputError, match="complex"):
        read_numpy_kspace(tmp_path / "real.npy", "HW")


def test_recon_cli_reads_npy(tmp_path, capsys):
    np.save(tmp_path / "k.npy", _k((2, 16, 12)))  # C, H, W
    out = tmp_path / "r.h5"
    assert main(["recon", str(tmp_path / "k.npy"), "--axes", "CHW", "--method", "zero-filled", "--out", str(out)]) == 0
    assert out.is_file()
    assert main(["recon", str(tmp_path / "k.npy"), "--method", "zero-filled", "--out", str(tmp_path / "x.h5")]) == 2
    assert "--axes" in capsys.readouterr().err


def test_recon_png_output_with_std(tmp_path):
    np.save(tmp_path / "k.npy", _k((2, 16, 12)))
    out = tmp_path / "r.png"
    assert main(["recon", str(tmp_path / "k.npy"), "--axes", "CHW", "--method", "zero-filled", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "r.png.run.json").is_file()
