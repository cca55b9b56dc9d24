import pytest
import torch

import operators as O
from operators.testing import adjoint_error, check_operator


def _maps(c=4, h=16, w=20, dtype=torch.complex128):
    g = torch.Generator().manual_seed(0)
    return torch.randn(c, h, w, dtype=dtype, generator=g)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_multicoil_passes_operator_checks(dtype):
    cdt = torch.complex128 if dtype == torch.float64 else torch.complex64
    mask = torch.arange(20) % 3 == 0
    check_operator(O.MultiCoilMRI(_maps(dtype=cdt), mask), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_singlecoil_and_fft_pass_operator_checks(dtype):
    mask = torch.rand(16, 20, generator=torch.Generator().manual_seed(1)) > 0.5
    check_operator(O.SingleCoilMRI(mask, (16, 20)), dtype)
    check_operator(O.FFT2C((16, 20)), dtype)


def test_fft2c_matches_fastmri_convention_dc_at_centre():
    x = torch.ones(8, 10, dtype=torch.complex64)
    k = O.fft2c(x)
    assert torch.isclose(k[4, 5].abs(), torch.tensor(80 ** 0.5)).item()
    assert k.abs().sum() - k[4, 5].abs() < 1e-4
    torch.testing.assert_close(O.ifft2c(k), x)


def test_forward_is_mask_times_fft_of_coil_images():
    maps = _maps(dtype=torch.complex64)
    mask = torch.zeros(20, dtype=torch.bool)
    mask[::2] = True
    x = torch.randn(16, 20, dtype=torch.complex64)
    y = O.MultiCoilMRI(maps, mask)(x)
    expect = O.fft2c(maps * x) * mask
    torch.testing.assert_close(y, expect)
    assert not torch.signbit(y.real[..., 1]).any()  # no -0.0 in unsampled columns


def test_adjoint_cache_and_composition():
    A = O.MultiCoilMRI(_maps(dtype=torch.complex64), torch.ones(20))
    assert A.H.H is A
    N = A.H @ A
    x = torch.randn(2, 16, 20, dtype=torch.complex64)
    torch.testing.assert_close(N(x), A.normal(x))


def test_broken_adjoint_is_caught():
    class Broken(O.CoilExpand):
        def _adjoint(self, y):
            return (y * self.coil_maps).sum(dim=-3)  # missing conj

    assert adjoint_error(Broken(_maps()), torch.float64) > 1e-3


def test_shape_and_dtype_errors_name_the_operator():
    A = O.MultiCoilMRI(_maps(dtype=torch.complex64), torch.ones(20))
    with pytest.raises(O.OperatorShapeError, match="MultiCoilMRI.forward"):
        A(torch.zeros(16, 19, dtype=torch.complex64))
    with pytest.raises(O.OperatorShapeError, match="complex"):
        A(torch.zeros(16, 20))
    with pytest.raises(O.OperatorShapeError, match="columns"):
        O.MultiCoilMRI(_maps(dtype=torch.complex64), torch.ones(19))


def test_per_slice_maps_repeat_and_select_match_the_rows():
    maps = _maps(c=3, h=8, w=10, dtype=torch.complex64)
    per_slice = torch.stack([maps, 2 * maps])  # (S=2, C, H, W)
    A = O.MultiCoilMRI(per_slice, torch.ones(10))
    x = torch.randn(2, 8, 10, dtype=torch.complex64)
    rep = A.batch_repeat(3)  # rows s0,s0,s0,s1,s1,s1
    torch.testing.assert_close(rep(x.repeat_interleave(3, dim=0))[3:], A(x)[1:].repeat_interleave(3, dim=0))
    torch.testing.assert_close(A.batch_select(slice(1, 2))(x[1:]), A(x)[1:])
    shared = O.MultiCoilMRI(maps, torch.ones(10))
    assert shared.batch_repeat(3) is shared and shared.batch_select(slice(0, 1)) is shared
