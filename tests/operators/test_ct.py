"""CT projectors: exact adjoints, known line integrals, FBP accuracy, geometry files, noise."""

import json
import math

import numpy as np
import pytest
import torch

from operators.base import OperatorShapeError
from operators.ct import FanBeamCT, ParallelBeamCT, hu_to_mu, mu_to_hu, transmission_noise
from operators.testing import check_operator


def _disc(n: int, pixel_size: float, radius: float, value: float, ss: int = 4) -> torch.Tensor:
    """Anti-aliased centred disc (radius in mm) on an n x n grid, float64."""
    c = ((torch.arange(n * ss, dtype=torch.float64) + 0.5) / ss - n / 2) * pixel_size
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    inside = (xx ** 2 + yy ** 2 <= radius ** 2).double() * value
    return inside.reshape(n, ss, n, ss).mean((1, 3))


def _fan(shape=(24, 20), angles=10):
    return FanBeamCT(shape, angles, source_distance=60.0, detector_distance=100.0, n_detectors=40,
                     detector_spacing=1.2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("make", [lambda: ParallelBeamCT((24, 24), 10), lambda: ParallelBeamCT((24, 20), 10),
                                  lambda: _fan((24, 24)), lambda: _fan((24, 20))])
def test_operator_checks(make, dtype):
    errs = check_operator(make(), dtype)
    assert errs["adjoint"] < (1e-12 if dtype == torch.float64 else 1e-5)


def test_chunking_does_not_change_results_and_adjoint_is_differentiable():
    op = _fan((24, 24), 12)
    x = torch.randn(2, 24, 24, dtype=torch.float64)
    y = torch.randn(2, 12, 40, dtype=torch.float64)
    ref_f, ref_a = op(x), op.adjoint(y)
    op.max_chunk_elements = 1  # one view per chunk
    torch.testing.assert_close(op(x), ref_f)
    torch.testing.assert_close(op.adjoint(y), ref_a)
    yg = y.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(op.adjoint(yg), yg, grad_outputs=x)
    torch.testing.assert_close(g, ref_f)  # VJP of the adjoint is the forward projector
    with torch.inference_mode():
        torch.testing.assert_close(op.adjoint(y), ref_a)


def test_parallel_disc_line_integrals_in_mm():
    # mu = 0.02 /mm, diameter 100 mm on 2 mm pixels: central ray 2.0, chord 2 sqrt(R^2 - t^2) mu.
    op = ParallelBeamCT((64, 64), 12, pixel_size=2.0, detector_spacing=2.0)
    sino = op(_disc(64, 2.0, 50.0, 0.02))
    t = op.detector_positions
    expect = 0.04 * torch.sqrt((50.0 ** 2 - t ** 2).clamp_min(0))
    central = sino[:, (op.n_detectors - 1) // 2]
    assert torch.allclose(central, torch.full_like(central, 2.0), rtol=0.02)
    inner = t.abs() < 45
    assert torch.allclose(sino[:, inner], expect[inner].expand(12, -1), rtol=0.02, atol=0.01)


def test_fan_disc_line_integrals():
    dso, dsd = 300.0, 500.0
    op = FanBeamCT((64, 64), 8, dso, dsd, n_detectors=121, detector_spacing=2.0, pixel_size=2.0)
    sino = op(_disc(64, 2.0, 50.0, 0.02))
    u = op.detector_positions
    dist = dso * torch.sin(torch.atan(u / dsd))  # distance of each ray from the isocentre
    expect = 0.04 * torch.sqrt((50.0 ** 2 - dist ** 2).clamp_min(0))
    assert abs(sino[:, 60].mean().item() - 2.0) < 0.04
    inner = dist.abs() < 45
    assert torch.allclose(sino[:, inner], expect[inner].expand(8, -1), rtol=0.02, atol=0.01)


def test_point_traces_expected_sinusoid():
    h = w = 32
    i0, j0 = 6, 25
    x0, y0 = j0 - (w - 1) / 2, (h - 1) / 2 - i0  # mm (pixel_size 1), y up
    img = torch.zeros(h, w, dtype=torch.float64)
    img[i0, j0] = 1.0
    par = ParallelBeamCT((h, w), 36, n_detectors=241, detector_spacing=0.25)
    fan = FanBeamCT((h, w), 36, 100.0, 150.0, n_detectors=401, detector_spacing=0.25)
    c, s = torch.cos(fan.angles), torch.sin(fan.angles)
    magnification = 150.0 / (100.0 - x0 * s + y0 * c)  # D_sd / (D_so + p . r_beta), r = (-sin, cos)
    for op, expect, mag in (
        (par, x0 * torch.cos(par.angles) + y0 * torch.sin(par.angles), torch.ones(36, dtype=torch.float64)),
        # fan: u = D_sd (p . e_beta) / (D_so + p . r_beta), e = (cos, sin)
        (fan, magnification * (x0 * c + y0 * s), magnification),
    ):
        sino = op(img)
        u = op.detector_positions
        centroid = (sino * u).sum(-1) / sino.sum(-1)
        assert (centroid - expect).abs().max() < 0.05, op.name
        assert (u[sino.argmax(-1)] - expect).abs().max() <= 0.5, op.name
        # integral over the detector = pixel area (1 mm^2) x magnification
        mass = sino.sum(-1) * op.detector_spacing / mag
        assert torch.allclose(mass, torch.ones_like(mass), rtol=0.03), op.name


@pytest.mark.parametrize("filter", ["ramp", "shepp-logan", "hann"])
def test_fbp_recovers_disc_value(filter):
    img = _disc(64, 2.0, 50.0, 0.02)
    par = ParallelBeamCT((64, 64), 90, pixel_size=2.0, detector_spacing=2.0)
    fan = FanBeamCT((64, 64), 180, 300.0, 500.0, n_detectors=161, detector_spacing=2.5, pixel_size=2.0)
    for op in (par, fan):
        rec = op.fbp(op(img), filter=filter)
        centre = rec[20:44, 20:44]
        assert abs(centre.mean().item() - 0.02) < 0.02 * 0.02, op.name
        assert centre.std().item() < 0.02 * 0.02, op.name
        assert rec.dtype == torch.float64


def test_fbp_psnr_at_least_skimage_iradon():
    from skimage.data import shepp_logan_phantom
    from skimage.transform import iradon, radon, resize

    n = 128
    phantom = resize(shepp_logan_phantom(), (n, n))
    c = np.arange(n) - (n - 1) / 2
    yy, xx = np.meshgrid(c, c, indexing="ij")
    inside = xx ** 2 + yy ** 2 <= (n / 2 - 1) ** 2

    def psnr(rec):
        mse = ((phantom - rec)[inside] ** 2).mean()
        return 10 * np.log10(phantom[inside].max() ** 2 / mse)

    theta = np.linspace(0.0, 180.0, 90, endpoint=False)
    ref = iradon(radon(phantom, theta, circle=True), theta, filter_name="ramp", circle=True)
    op = ParallelBeamCT((n, n), 90)
    x = torch.from_numpy(phantom)
    ours = op.fbp(op(x), filter="ramp").numpy()
    assert psnr(ours) >= psnr(ref), (psnr(ours), psnr(ref))
    # float32 gives the same image
    ours32 = op.fbp(op(x.float())).numpy()
    assert abs(psnr(ours32) - psnr(ours)) < 0.01


def test_buffers_follow_to_and_dtype():
    op = ParallelBeamCT((16, 16), 5)
    assert {"angles", "detector_positions"} <= dict(op.named_buffers()).keys()
    op = op.to("cpu")
    assert all(b.device.type == "cpu" for b in op.buffers())
    y = op(torch.rand(3, 16, 16, dtype=torch.float64))
    assert y.dtype == torch.float64 and y.shape == (3, 5, op.n_detectors)
    assert op.adjoint(y).dtype == torch.float64


def test_geometry_round_trip():
    for op in (ParallelBeamCT((20, 18), torch.tensor([0.1, 0.7, 2.0]), pixel_size=0.8),
               FanBeamCT((20, 18), 7, 80.0, 130.0, n_detectors=33, detector_spacing=1.3, pixel_size=0.9)):
        d = json.loads(json.dumps(op.geometry()))
        again = type(op).from_geometry(d)
        assert again.geometry() == op.geometry()
        x = torch.rand(20, 18, dtype=torch.float64)
        torch.testing.assert_close(again(x), op(x), rtol=0, atol=0)
    assert ParallelBeamCT((8, 8), 4).geometry()["angles"][1] == pytest.approx(math.pi / 4)
    with pytest.raises(ValueError):
        FanBeamCT.from_geometry(ParallelBeamCT((8, 8), 4).geometry())


def test_transmission_noise_seeded_and_dose_dependent():
    p = torch.full((4, 200), 2.0, dtype=torch.float64)
    a = transmission_noise(p, 1e4, torch.Generator().manual_seed(0))
    b = transmission_noise(p, 1e4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    v_low = transmission_noise(p, 1e3, torch.Generator().manual_seed(1)).var()
    v_high = transmission_noise(p, 1e5, torch.Generator().manual_seed(1)).var()
    assert v_high < v_low / 10
    assert abs(transmission_noise(p, 1e6, torch.Generator().manual_seed(2)).mean().item() - 2.0) < 0.01
    # photon starvation and electronic noise stay finite (counts clamped at 1 -> p <= log I0)
    starved = transmission_noise(torch.full((100,), 50.0), 1e3, torch.Generator().manual_seed(3), electronic_std=5.0)
    assert torch.isfinite(starved).all() and starved.max() <= math.log(1e3) + 1e-5
    assert starved.dtype == torch.float32


def test_hu_mu_conversion():
    assert hu_to_mu(0.0) == pytest.approx(0.019) and hu_to_mu(-1000.0) == pytest.approx(0.0)
    hu = torch.tensor([-1000.0, 0.0, 1000.0])
    torch.testing.assert_close(mu_to_hu(hu_to_mu(hu, 0.02), 0.02), hu)


def test_shape_errors_name_the_operator():
    par, fan = ParallelBeamCT((16, 16), 5), _fan()
    for op, name in ((par, "ParallelBeamCT"), (fan, "FanBeamCT")):
        with pytest.raises(OperatorShapeError, match=name):
            op(torch.zeros(15, 16))
        with pytest.raises(OperatorShapeError, match=name):
            op.adjoint(torch.zeros(4, op.n_detectors))
        with pytest.raises(OperatorShapeError, match=name):
            op.fbp(torch.zeros(5, 3))
    with pytest.raises(ValueError):
        FanBeamCT((64, 64), 4, source_distance=30.0, detector_distance=60.0, n_detectors=10, detector_spacing=1.0)


@pytest.mark.parametrize("make", [lambda: ParallelBeamCT((24, 20), 13, pixel_size=0.8),
                                  lambda: _fan((20, 24), 11), lambda: ParallelBeamCT((32, 32), 7)])
def test_sparse_matrix_path_equals_grid_sample_path(make, monkeypatch):
    """The cached CSR system matrix holds exactly the Joseph weights the grid_sample path applies."""
    op = make()
    x = torch.randn(3, *op.image_shape, dtype=torch.float64)
    y = torch.randn(3, *op.out_shape, dtype=torch.float64)
    sparse_f, sparse_a = op(x), op.adjoint(y)
    a, at = op.system_matrix("cpu", torch.float64)
    assert a.layout == torch.sparse_csr and at.shape == (a.shape[1], a.shape[0])
    assert a._nnz() == at._nnz() and a._nnz() <= 2 * op.out_shape[0] * op.n_detectors * op.n_samples
    monkeypatch.setenv("MEDRECON_CT_SPARSE_MAX_GB", "0")  # force the grid_sample path
    grid_f, grid_a = op(x), op.adjoint(y)
    assert torch.allclose(sparse_f, grid_f, rtol=0, atol=1e-12 * float(grid_f.abs().max()))
    assert torch.allclose(sparse_a, grid_a, rtol=0, atol=1e-12 * float(grid_a.abs().max()))
    # and the transposed matrix really is the transpose
    assert torch.allclose(at.to_dense(), a.to_dense().T)


def test_sparse_path_is_used_by_default_and_differentiable():
    op = ParallelBeamCT((16, 16), 5)
    x = torch.randn(2, 16, 16, dtype=torch.float64, requires_grad=True)
    op(x).square().sum().backward()
    assert op.__dict__.get("_csr_cache"), "sparse system matrix not built"
    g_ref = 2 * op.adjoint(op(x.detach()))
    assert torch.allclose(x.grad, g_ref)
