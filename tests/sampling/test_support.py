"""The measurement-support rule: exact where the true support is known, no effect where maps cover everything.

Why it exists (docs/robustness.md): where every coil map vanishes the data term is flat, so a sampler
keeps whatever its prior puts there; on unseen full-field-of-view brains that was invented anatomy.
"""

from __future__ import annotations

import pytest
import torch

from medrecon.priors import DiffusionPrior
from medrecon.recon.problems import ct_problem, mri_problem
from medrecon.sampling import posterior_sample
from medrecon.acquisition.mri import simulate_kspace
from operators import ParallelBeamCT, birdcage_maps, coil_support, espirit_maps, hu_to_mu

SIZE = 32
TINY = {"channels": [16, 32, 32, 32], "norm_num_groups": 8, "num_head_channels": 32}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread (tests/conftest.py)."""


class Hallucinator(torch.nn.Module):
    """A test denoiser whose clean-image estimate is a bright square in the corner, whatever the input.

    ``eps`` is chosen so that ``x0_from_eps(x, t, eps)`` equals that fixed image exactly: the worst
    case of a prior that invents structure where the data cannot see.
    """

    def __init__(self, prior: DiffusionPrior, channels: int) -> None:
        super().__init__()
        self.p = prior
        self.img = torch.zeros(1, channels, SIZE, SIZE)
        self.img[:, 0, :6, :6] = 3.0
        self.alphas_cumprod = prior.alphas_cumprod
        self.num_timesteps = prior.num_timesteps
        self.rule = prior.rule

    def x0_from_eps(self, x, t, eps):
        return self.p.x0_from_eps(x, t, eps)

    def eps(self, x, t):
        ab = self.alphas_cumprod[t]
        return (x - ab.sqrt() * self.img.to(x.dtype)) / (1 - ab).sqrt()

    def scale_of(self, zf):
        return self.p.scale_of(zf)


def _disc(size=SIZE, r2=0.45):
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    return (xx ** 2 + yy ** 2) < r2


def test_coil_support_exact_for_masked_maps():
    """Maps that vanish outside a known disc (as ESPIRiT's crop does) give exactly that disc."""
    disc = _disc()
    maps = birdcage_maps(8, (SIZE, SIZE)) * disc
    assert torch.equal(coil_support(maps), disc)
    assert torch.equal(coil_support(torch.stack([maps, maps])), torch.stack([disc, disc]))


def test_coil_support_whole_image_for_covering_maps():
    assert bool(coil_support(birdcage_maps(8, (SIZE, SIZE))).all())
    assert bool(coil_support(birdcage_maps(16, (48, 40))).all())


def test_coil_support_of_espirit_maps_is_the_crop_region():
    """ESPIRiT maps are unit-norm inside their crop and zero outside: the support is where they are non-zero."""
    disc = _disc(48, 0.3)
    img = disc.to(torch.complex64)[None]
    sim = simulate_kspace(img.abs(), 8, "equispaced", 2, 0.5, seed=0, maps=birdcage_maps(8, (48, 48)))
    maps = espirit_maps(sim["kspace"][0], calib_width=24, kernel_width=5)
    sup = coil_support(maps)
    assert torch.equal(sup, maps.abs().sum(0) > 0)
    assert 0.2 < sup.float().mean() < 1.0 and bool(sup[disc].float().mean() > 0.99)


def test_coil_support_rejects_bad_level():
    with pytest.raises(ValueError):
        coil_support(birdcage_maps(4, (8, 8)), level=0.0)


@pytest.mark.parametrize("method,kw", [("fast", {"steps": 4, "cg_iters": 3}), ("dps", {"steps": 4, "zeta": 1.0})])
def test_invented_background_removed_outside_the_support(method, kw):
    """A prior that invents a corner square: with the support rule the corner (unseen) stays exactly empty."""
    torch.manual_seed(0)
    base = DiffusionPrior("mri", TINY).eval()
    prior = Hallucinator(base, 2)
    disc = _disc()
    maps = (birdcage_maps(4, (SIZE, SIZE)) * disc)[None]
    img = disc.float()[None] * 0.8
    sim = simulate_kspace(img, 4, "equispaced", 2, 0.5, seed=0, maps=maps[0])
    on, _ = mri_problem(base, sim["kspace"], sim["mask"], maps=maps, noise_var=torch.zeros(1))
    off, _ = mri_problem(base, sim["kspace"], sim["mask"], maps=maps, noise_var=torch.zeros(1), support=False)
    assert torch.equal(on.support[0], disc) and off.support is None
    a = posterior_sample(method, prior, on, seed=0, **kw).mean[0]
    b = posterior_sample(method, prior, off, seed=0, **kw).mean[0]
    assert float(a[:6, :6].abs().max()) == 0.0 and float(a[~disc].abs().max()) == 0.0
    assert float(b[:6, :6].abs().mean()) > 0.5  # without the rule the invented square stays
    # inside the disc the data decide either way (close, not identical: DPS's gradient sees the whole image)
    assert float((a[disc].abs() - b[disc].abs()).abs().mean()) < 0.2 * float(b[disc].abs().mean())


@pytest.mark.parametrize("method,kw", [("fast", {"steps": 3, "cg_iters": 2}), ("dps", {"steps": 3, "zeta": 1.0})])
def test_support_covering_everything_changes_nothing(method, kw):
    """Birdcage maps cover the whole image: the rule is a no-op, bit for bit."""
    torch.manual_seed(0)
    prior = DiffusionPrior("mri", TINY).eval()
    maps = birdcage_maps(4, (SIZE, SIZE))[None]
    sim = simulate_kspace(_disc().float()[None], 4, "equispaced", 2, 0.5, seed=0, maps=maps[0])
    on, _ = mri_problem(prior, sim["kspace"], sim["mask"], maps=maps, noise_var=torch.full((1,), 1e-4))
    off, _ = mri_problem(prior, sim["kspace"], sim["mask"], maps=maps, noise_var=torch.full((1,), 1e-4), support=False)
    assert bool(on.support.all())
    a = posterior_sample(method, prior, on, seed=3, **kw)
    b = posterior_sample(method, prior, off, seed=3, **kw)
    assert torch.equal(a.mean, b.mean)


def test_constrain_is_physical_zero_for_ct_offsets():
    """CT network space has an offset (air is not 0 there): outside the support the image is mu = 0 (air)."""
    torch.manual_seed(0)
    prior = DiffusionPrior("ct", TINY).eval()
    A = ParallelBeamCT((SIZE, SIZE), 8)
    prob = ct_problem(prior, A, A(hu_to_mu(torch.zeros(1, SIZE, SIZE))))
    prob.support = _disc()[None]
    x = torch.randn(1, 1, SIZE, SIZE)
    p = prob.to_phys(prob.constrain(x))
    assert float(p[0][~_disc()].abs().max()) < 1e-7
    assert torch.allclose(p[0][_disc()], prob.to_phys(x)[0][_disc()])
