"""In-plane TV on the samplers' estimates (medrecon/sampling/tv2d.py) and the ``tv`` setting of fast and Langevin."""

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.restoration import denoise_tv_chambolle
from skimage.transform import resize

from medrecon.baselines.mri import total_variation
from medrecon.sampling.tv2d import tv_prox_2d


def _noisy_phantom(n: int = 96, sigma: float = 0.1) -> np.ndarray:
    img = resize(shepp_logan_phantom(), (n, n)).astype(np.float32)
    return img + sigma * np.random.default_rng(0).standard_normal(img.shape).astype(np.float32)


@pytest.mark.parametrize("mu", [0.03, 0.1])
def test_matches_an_independent_solver(mu):
    """Converged, the prox is scikit-image's Chambolle TV denoiser (same objective, independent code)."""
    f = _noisy_phantom()
    ref = denoise_tv_chambolle(f.astype(np.float64), weight=mu, eps=1e-12, max_num_iter=5000)
    u = tv_prox_2d(torch.from_numpy(f)[None, None], mu, iters=3000)[0, 0].numpy()
    assert np.linalg.norm(u - ref) / np.linalg.norm(ref) < 2e-3
    # and the default, inexact iteration count is already close at the weights the sampler uses late
    u40 = tv_prox_2d(torch.from_numpy(f)[None, None], mu)[0, 0].numpy()
    assert np.linalg.norm(u40 - ref) / np.linalg.norm(ref) < 0.03


def test_zero_weight_and_constant_images_are_left_alone():
    f = torch.from_numpy(_noisy_phantom())[None, None].repeat(2, 2, 1, 1)
    out = tv_prox_2d(f, torch.tensor([0.0, 0.2]))
    assert torch.equal(out[0], f[0])  # mu = 0: that row unchanged, bit for bit
    assert not torch.allclose(out[1], f[1])
    const = torch.full((1, 2, 16, 16), 0.7)
    assert torch.allclose(tv_prox_2d(const, 0.5), const, atol=1e-6)


def test_the_channels_form_one_vector_so_a_global_phase_commutes():
    """MRI's two channels are TV'd jointly: rotating (real, imag) by a constant phase commutes with the prox."""
    f = torch.from_numpy(_noisy_phantom(64))
    x = torch.stack([f, 0.3 * f.flip(-1)])[None]  # (1, 2, H, W)
    c, s = np.cos(0.9), np.sin(0.9)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float32)
    rotate = lambda v: torch.einsum("ij,bjhw->bihw", rot, v)  # noqa: E731
    assert torch.allclose(tv_prox_2d(rotate(x), 0.1), rotate(tv_prox_2d(x, 0.1)), atol=1e-5)


def test_tv_lowers_total_variation_and_the_objective():
    f = torch.from_numpy(_noisy_phantom())[None, None]
    mu = 0.1
    u = tv_prox_2d(f, mu)

    def tv(v):
        return total_variation(v[0, 0], boundary="neumann")

    assert tv(u) < 0.5 * tv(f)
    assert 0.5 * ((u - f) ** 2).sum() + mu * tv(u) < mu * tv(f)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="B, C, H, W"):
        tv_prox_2d(torch.zeros(4, 4), 0.1)


@pytest.mark.parametrize("modality", ["mri", "ct"])
def test_fast_sampler_tv_zero_is_off_and_the_default_applies_tv(modality, one_thread):
    from medrecon.sampling.fast import fast_chain
    from medrecon.testing.problems import small_problem

    prior, problem = small_problem(modality)

    def run(**kw):
        return fast_chain(prior, problem, steps=4, generator=torch.Generator().manual_seed(3), **kw)[0]

    default, off, on = run(), run(tv=0.0), run(tv=0.3)
    assert torch.equal(default, on)  # the chain's default is the registry's 0.3
    assert not torch.allclose(off, on)
    assert torch.isfinite(on).all()


def test_langevin_sampler_default_applies_tv_and_zero_turns_it_off(one_thread):
    from medrecon.sampling.langevin import langevin_chain
    from medrecon.testing.problems import small_problem

    prior, problem = small_problem("mri")

    def run(**kw):
        return langevin_chain(prior, problem, steps=4, cg_iters=3, generator=torch.Generator().manual_seed(3), **kw)[0]

    default, off, on = run(), run(tv=0.0), run(tv=0.1)
    assert torch.equal(default, on)  # the chain's default is the registry's 0.1
    assert not torch.allclose(off, on)
    assert torch.isfinite(on).all()
