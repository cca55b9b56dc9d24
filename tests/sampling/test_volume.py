"""Volume mode: the TV-along-z proximal map, the samplers' z coupling, per-slice random streams, and slabs.

The proximal map is checked against closed forms and optimality certificates (float64); the sampler tests run
the shipped CT prior on a small stack of 32x32 slices whose disc grows slowly with the slice index (12 parallel
views, noiseless), with a handful of steps.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
import torch

from medrecon.priors import load_prior
from medrecon.recon.problems import ct_problem
from medrecon.sampling import posterior_sample
from medrecon.sampling.common import RowStreams, randn
from medrecon.sampling.volume import default_overlap, slab_ranges, slab_weights, volume_sample
from medrecon.sampling.zcouple import ZCoupling, tv_z_prox
from operators import ParallelBeamCT, hu_to_mu

F64 = torch.float64
SIZE = 32
SLICES = 8


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread per test (tests/conftest.py): small tensors, and reproducible CPU reductions."""


# --------------------------------------------------------------------------- helpers
def _objective(v: torch.Tensor, x: torch.Tensor, mu: float, group_dim=None) -> torch.Tensor:
    """``1/2 ||v - x||^2 + mu sum_i |v_{i+1} - v_i|`` (the jump as a vector along ``group_dim`` if given)."""
    d = v[1:] - v[:-1]
    tv = d.abs().sum() if group_dim is None else d.square().sum(dim=group_dim).sqrt().sum()
    return 0.5 * (v - x).square().sum() + mu * tv


def _dual(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The dual variable the optimality conditions determine: ``v = x - D^T q`` solved for ``q`` (cumulative
    sums of ``v - x``), shape ``(S-1, ...)``."""
    return torch.cumsum(v - x, dim=0)[:-1]


def _stack_hu(s: int, n: int) -> torch.Tensor:
    """``s`` slices of a disc whose radius (and an off-centre insert) grow slowly with the slice index, in HU."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    out = []
    for i in range(s):
        disc = ((xx ** 2 + yy ** 2) < (0.5 + 0.03 * i) ** 2).float()
        insert = 0.5 * (((xx - 0.2) ** 2 + yy ** 2) < (0.15 + 0.01 * i) ** 2).float()
        out.append(disc + insert)
    return (torch.stack(out) - 1.0) * 1000.0  # air outside, about water inside


def _zdiff(vol: torch.Tensor) -> torch.Tensor:
    """Mean absolute slice-to-slice difference per neighbouring pair: ``(S, H, W) -> (S-1,)``."""
    return (vol[1:] - vol[:-1]).abs().mean(dim=(1, 2))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def prior():
    return load_prior(None, "ct", torch.device("cpu"))


@pytest.fixture(scope="module")
def volume(prior):
    """An 8-slice CT problem (32x32, 12 views, noiseless) on the shipped CT prior."""
    A = ParallelBeamCT((SIZE, SIZE), 12)
    return ct_problem(prior, A, A(hu_to_mu(_stack_hu(SLICES, SIZE))))


# --------------------------------------------------------------------------- tv_z_prox
@pytest.mark.parametrize("a,b,mu", [(1.0, 0.2, 0.3), (1.0, 0.2, 0.5), (-0.4, 2.0, 0.25), (0.7, 0.7, 1.0),
                                    (3.0, -1.0, 1.9)])
def test_tv_z_prox_two_slices_closed_form(a, b, mu):
    """Two slices: the prox merges them to their mean when ``|a - b| <= 2 mu``, else moves each by ``mu`` toward
    the other (the closed form of 1-D TV denoising on two points), column by column."""
    x = torch.tensor([[a, b - 1.0], [b, a + 0.5]], dtype=F64)  # (S=2, 2 columns): two independent problems
    out = tv_z_prox(x, mu, iters=200)

    def expect(p, q):
        if abs(p - q) <= 2 * mu:
            return [(p + q) / 2, (p + q) / 2]
        s = math.copysign(mu, q - p)
        return [p + s, q - s]

    ref = torch.tensor([expect(a, b), expect(b - 1.0, a + 0.5)], dtype=F64).T
    assert torch.allclose(out, ref, atol=1e-10, rtol=0)


def test_tv_z_prox_trivial_cases_return_input():
    """``mu = 0`` (scalar or all-zero tensor) and a single slice leave the input unchanged."""
    x = torch.randn(5, 3, 4, dtype=F64)
    assert torch.equal(tv_z_prox(x, 0.0), x)
    assert torch.equal(tv_z_prox(x, torch.zeros(()), iters=10), x)
    one = torch.randn(1, 3, 4, dtype=F64)
    assert torch.equal(tv_z_prox(one, 5.0), one)
    # but a positive mu does act on several slices (so the cases above are not vacuous)
    assert not torch.allclose(tv_z_prox(x, 0.5), x)


def test_tv_z_prox_optimal_on_random_data():
    """On random data (S = 10) the converged prox is optimal: its dual certificate ``q = cumsum(v - x)`` satisfies
    ``|q| <= mu``, ``q = mu sign(dv)`` on every jump and closes (``sum(v - x) = 0``); no small perturbation
    lowers the objective; and the default 40 iterations are within 5e-3 of it (max abs, unit-variance data)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10, 3, 5, generator=gen, dtype=F64)
    mu = 0.3
    v = tv_z_prox(x, mu, iters=2000)
    assert v.shape == x.shape and v.dtype == F64
    # optimality certificate of argmin 1/2||v-x||^2 + mu ||Dv||_1
    q = _dual(v, x)
    assert float((v - x).sum(dim=0).abs().max()) < 1e-10
    assert float(q.abs().max()) <= mu + 1e-9
    jump = (v[1:] - v[:-1])
    moving = jump.abs() > 1e-6
    assert int(moving.sum()) > 20  # the data are not merged into constant columns: jumps exist to check
    assert torch.allclose(q[moving], mu * jump[moving].sign(), atol=1e-6, rtol=0)
    assert int((~moving).sum()) > 20  # nor left alone: the threshold merges many neighbours
    # brute force: the objective at v is no larger than at nearby points
    f = _objective(v, x, mu)
    for _ in range(8):
        for scale in (1e-2, 1e-4):
            dv = scale * torch.randn(x.shape, generator=gen, dtype=F64)
            assert float(f) <= float(_objective(v + dv, x, mu)) + 1e-12
    # the default number of iterations is close to converged
    assert float((tv_z_prox(x, mu, iters=40) - v).abs().max()) < 5e-3  # measured 2.6e-4 (30 iterations: 9.1e-4)
    # and the prox clearly lowers the objective below the input's own (45.8 -> 32.6 measured)
    assert float(f) < 0.8 * float(_objective(x, x, mu))


def test_tv_z_prox_grouped_channels_isotropic():
    """``group_dim``: the (real, imaginary) pair of a pixel is one vector. Rotating the pair of the input by a
    fixed angle rotates the output by the same angle (no preferred phase); the grouped result satisfies the
    vector optimality conditions, and differs from thresholding the two channels separately."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 2, 4, 3, generator=gen, dtype=F64)  # (S, channels, H, W)
    mu = 0.4
    out = tv_z_prox(x, mu, iters=2000, group_dim=1)

    def rot(t, th):
        c, s = math.cos(th), math.sin(th)
        return torch.stack([c * t[:, 0] - s * t[:, 1], s * t[:, 0] + c * t[:, 1]], dim=1)

    for th in (0.7, 2.0):
        assert torch.allclose(tv_z_prox(rot(x, th), mu, iters=2000, group_dim=1), rot(out, th), atol=1e-9, rtol=0)
        # the channel-separate prox is not rotation-equivariant, so the check above can fail
        sep = tv_z_prox(x, mu, iters=2000)
        assert float((tv_z_prox(rot(x, th), mu, iters=2000) - rot(sep, th)).abs().max()) > 1e-2
    # vector optimality: |q| <= mu per pixel pair, q = mu * jump / |jump| where the pair jumps
    q = _dual(out, x)
    qn = q.square().sum(dim=1).sqrt()
    assert float(qn.max()) <= mu + 1e-9
    jump = out[1:] - out[:-1]
    jn = jump.square().sum(dim=1, keepdim=True).sqrt()
    moving = (jn > 1e-6).expand_as(jump)
    assert int(moving.sum()) > 0
    assert torch.allclose(q[moving], (mu * jump / jn.clamp_min(1e-30))[moving], atol=1e-6, rtol=0)
    # grouped and separate thresholds differ
    sep = tv_z_prox(x, mu, iters=2000)
    assert float((out - sep).abs().max()) > 1e-2
    assert _objective(out, x, mu, group_dim=1) < _objective(sep, x, mu, group_dim=1)


# --------------------------------------------------------------------------- ZCoupling
def test_zcoupling_zero_weight_is_identity_and_negative_raises():
    """``ZCoupling(0)`` returns its input exactly (volume mode with z weight 0 is the slice-by-slice sampler); a
    negative or NaN weight is a ValueError; a positive weight applies ``tv_z_prox`` with threshold ``w * r``."""
    x = torch.randn(6, 1, 4, 4)
    assert torch.equal(ZCoupling(0.0)(x, torch.tensor(0.8)), x)
    for bad in (-1, -1e-9, float("nan")):
        with pytest.raises(ValueError):
            ZCoupling(bad)
    w, r = 0.5, torch.tensor(0.8)
    out = ZCoupling(w, iters=30)(x, r)
    assert torch.allclose(out, tv_z_prox(x, w * r, 30), atol=1e-6)
    assert float((out - x).abs().max()) > 1e-2


def test_zcoupling_couples_each_sample_with_the_same_sample_of_neighbours():
    """Rows are slice-major with ``k`` samples per slice adjacent: with ``k = 2`` sample 0 of a slice is coupled
    only with sample 0 of the neighbouring slices. Sample-0 rows all zero stay zero although the sample-1 rows
    next to them vary; the sample-1 rows get the prox of their own stack."""
    s, k = 6, 2
    gen = torch.Generator().manual_seed(2)
    x = torch.zeros(s * k, 2, 4, 4)
    x[1::2] = torch.randn(s, 2, 4, 4, generator=gen)  # sample 1 of every slice varies; sample 0 is zero
    c = ZCoupling(0.5).with_k(k)
    assert c.k == k
    out = c(x, torch.tensor(1.0))
    assert torch.equal(out[0::2], torch.zeros_like(out[0::2]))
    ref = tv_z_prox(x[1::2], 0.5, c.iters, group_dim=1)
    assert torch.allclose(out[1::2], ref, atol=1e-6)
    assert float((out[1::2] - x[1::2]).abs().max()) > 1e-2
    # with k = 1 the same rows would be coupled across samples: the zero rows move
    wrong = ZCoupling(0.5)(x, torch.tensor(1.0))
    assert float(wrong[0::2].abs().max()) > 1e-2


def test_problem_couple_and_repeat(volume):
    """``InverseProblem.couple`` is the identity without a coupling and applies it (then the support constraint)
    with one; ``repeat(k)`` sets the coupling's ``k`` (samples of one slice adjacent) and ``select`` keeps it."""
    x = torch.randn(volume.batch, 1, SIZE, SIZE)
    assert volume.zcouple is None
    assert torch.equal(volume.couple(x, 1.0), x)
    coupled = replace(volume, zcouple=ZCoupling(0.5))
    assert torch.allclose(coupled.couple(x, torch.tensor(1.0)), ZCoupling(0.5)(x, torch.tensor(1.0)))
    assert coupled.repeat(3).zcouple.k == 3 and coupled.repeat(3).zcouple.weight == 0.5
    assert coupled.repeat(3).batch == 3 * volume.batch
    assert coupled.select(slice(1, 4)).zcouple == coupled.zcouple
    assert volume.repeat(3).zcouple is None


def test_row_streams_depend_only_on_the_slice_index():
    """``RowStreams.for_rows``: row ``(slice s, sample j)`` draws the same noise whichever range of slices the
    streams cover, different rows draw different noise, and ``randn`` checks the row count."""
    dev = torch.device("cpu")
    whole = randn((4 * 2, 1, 3, 3), RowStreams.for_rows(7, range(4), 2, dev), dev)
    part = randn((2 * 2, 1, 3, 3), RowStreams.for_rows(7, range(2, 4), 2, dev), dev)
    assert torch.equal(whole[4:], part)
    assert not torch.equal(whole[0], whole[1]) and not torch.equal(whole[0], whole[2])
    other_seed = randn((8, 1, 3, 3), RowStreams.for_rows(8, range(4), 2, dev), dev)
    assert not torch.equal(whole, other_seed)
    with pytest.raises(ValueError):
        randn((5, 1, 3, 3), RowStreams.for_rows(7, range(4), 1, dev), dev)


# --------------------------------------------------------------------------- slabs
@pytest.mark.parametrize("n,slab,overlap", [(10, 4, None), (10, 4, 1), (7, 4, None), (8, 4, 2), (20, 6, 3),
                                            (9, 2, 0), (9, 2, 1), (12, 5, 0), (33, 8, None)])
def test_slab_ranges_cover_and_overlap(n, slab, overlap):
    """Slabs: ``slab`` slices each, the first starts at 0 and the last ends at ``n``, every slice covered,
    starts strictly increasing, neighbours sharing at least the overlap (default: ``default_overlap``)."""
    slabs = slab_ranges(n, slab, overlap)
    ov = default_overlap(slab) if overlap is None else overlap
    assert all(len(r) == slab and r.step == 1 for r in slabs)
    assert slabs[0].start == 0 and slabs[-1].stop == n
    assert set().union(*map(set, slabs)) == set(range(n))
    for a, b in itertools.pairwise(slabs):
        assert a.start < b.start
        assert a.stop - b.start >= ov
    assert len(slabs) >= 2


def test_slab_ranges_one_slab_and_errors():
    """``slab=None`` or ``slab >= n`` is one slab of every slice; ``slab < 2`` or an overlap outside
    ``[0, slab)`` is a ValueError; ``default_overlap`` is a quarter of the slab, at least 1, below the slab."""
    assert slab_ranges(6, None) == [range(6)]
    assert slab_ranges(6, 6) == [range(6)]
    assert slab_ranges(6, 9) == [range(6)]
    for slab, ov in ((1, None), (0, None), (4, 4), (4, 5), (4, -1)):
        with pytest.raises(ValueError):
            slab_ranges(10, slab, ov)
    assert [default_overlap(s) for s in (2, 3, 8, 12, 16)] == [1, 1, 2, 3, 4]


@pytest.mark.parametrize("n,slab,overlap", [(10, 4, None), (7, 4, None), (20, 6, 3), (12, 5, 0), (8, 3, 2)])
def test_slab_weights(n, slab, overlap):
    """Blending weights: per slab in ``(0, 1]``; their sum over slabs is positive on every slice; a slice in one
    slab only has weight exactly 1; in a slice shared with a neighbour each slab's weight is below 1."""
    slabs = slab_ranges(n, slab, overlap)
    weights = slab_weights(slabs, n)
    total = torch.zeros(n, dtype=F64)
    count = torch.zeros(n, dtype=torch.long)
    for r, w in zip(slabs, weights):
        assert w.shape == (len(r),)
        assert bool((w > 0).all()) and bool((w <= 1).all())
        total[r.start:r.stop] += w
        count[r.start:r.stop] += 1
    assert bool((total > 0).all())
    single = count == 1
    assert torch.equal(total[single], torch.ones(int(single.sum()), dtype=F64))
    for r, w in zip(slabs, weights):
        shared = count[r.start:r.stop] > 1
        assert bool((w[shared] < 1).all())
        assert torch.equal(w[~shared], torch.ones(int((~shared).sum()), dtype=F64))
    assert slab_weights([range(n)], n)[0].eq(1).all()


# --------------------------------------------------------------------------- volume_sample
FAST = {"steps": 5}


@pytest.mark.parametrize("samples", [1, 2])
def test_uncoupled_slabs_equal_one_pass(prior, volume, samples):
    """With ``z_weight = 0`` slab processing reproduces one pass (each slice's noise comes from its own stream,
    seeded by its index in the whole volume, so a slice gets the same noise in any slab), on 7 slices with 3-slice
    slabs (5 slabs, each slice in up to 3 of them).

    Not bitwise: measured max |diff| 1.5e-7 to 5.5e-7 (values up to ~0.03 /mm). The rows' CG solves sum
    (``batched_dot``) over the sparse projector's transposed outputs, whose memory layout depends on the batch
    size, so float32 sums round differently per slab; plus the float32 ramp blending. A wrong stream (e.g. a slice
    renumbered inside its slab) changes a slice by ~1e-2, so 1e-5 separates the two by three orders of magnitude.
    """
    vol = volume.select(slice(0, 7))
    one = volume_sample("fast", prior, vol, 0.0, samples=samples, seed=3, keep_samples=True, **FAST)
    slabs = volume_sample("fast", prior, vol, 0.0, samples=samples, seed=3, slab=3, overlap=2, keep_samples=True,
                          **FAST)
    assert slabs.info["volume"]["slabs"] == 5 and one.info["volume"]["slabs"] == 1
    assert slabs.samples.shape == one.samples.shape == (7, samples, SIZE, SIZE)
    assert float((slabs.samples - one.samples).abs().max()) < 1e-5
    assert float((slabs.mean - one.mean).abs().max()) < 1e-5
    if samples > 1:  # the two samples of a slice are different draws, and the std map is blended the same way
        assert float((one.samples[:, 0] - one.samples[:, 1]).abs().max()) > 1e-3
        assert float((slabs.std - one.std).abs().max()) < 1e-5
    # and a different seed gives a clearly different volume (the tolerance above is meaningful)
    other = volume_sample("fast", prior, vol, 0.0, samples=samples, seed=4, **FAST)
    assert float((other.mean - one.mean).abs().max()) > 1e-3


def test_uncoupled_slice_does_not_depend_on_the_other_slices(prior, volume):
    """With ``z_weight = 0`` a slice's result does not depend on which other slices share its batch: a volume of
    slices 0..3 gives the same slices as the volume 0..5, and slices 2..5 sampled alone with the streams of their
    indices in the whole volume (what a slab does) give the same slices 2..5. Tolerance: float32 rounding, as in
    :func:`test_uncoupled_slabs_equal_one_pass`. (``volume_sample`` on ``problem.select(2..6)`` numbers those
    slices 0..3, so it draws other noise: that is not compared here.)"""
    vol = volume.select(slice(0, 6))
    whole = volume_sample("fast", prior, vol, 0.0, seed=5, **FAST).mean
    prefix = volume_sample("fast", prior, volume.select(slice(0, 4)), 0.0, seed=5, **FAST).mean
    assert float((prefix - whole[:4]).abs().max()) < 1e-5
    sub = replace(volume.select(slice(2, 6)), zcouple=ZCoupling(0.0))
    streams = RowStreams.for_rows(5, range(2, 6), 1, torch.device("cpu"))
    suffix = posterior_sample("fast", prior, sub, samples=1, seed=5, streams=streams, **FAST).mean
    assert float((suffix - whole[2:]).abs().max()) < 1e-5
    # the streams of slices 0..3 (the numbering volume_sample gives a sub-volume) give clearly different slices
    shifted = posterior_sample("fast", prior, sub, samples=1, seed=5,
                               streams=RowStreams.for_rows(5, range(4), 1, torch.device("cpu")), **FAST).mean
    assert float((shifted - whole[2:]).abs().max()) > 1e-3


SLAB_STEPS = {"steps": 8}


def test_coupled_slabs_close_to_one_pass_without_seams(prior, volume):
    """With coupling (``z_weight = 0.5``) 4-slice slabs (overlap 2: slabs 0-3, 2-5, 4-7) approximate one pass.

    Agreement: ``||slabs - one pass|| / ||one pass||`` measured 0.023 (seeds 0 and 2: 0.023, 0.024; 8 steps);
    tolerance 0.05. For scale, two seeds of the one-pass volume differ by 0.069, and an uncoupled volume by
    ~0.4, so the tolerance sits below what a wrong stream or a lost coupling would give.

    No seam: every slice-to-slice difference that touches a shared slice (where slabs are blended) is at most
    1.5x the largest one-pass difference at those positions. Per-position ratios are not robust (a one-pass
    difference can be small by chance: measured ratios up to 2.7 at one position on 16x16 images), the maximum
    over the border positions is. The bound catches gross seams (slices of a slab misplaced, or slabs that lost
    the coupling: uncoupled differences are ~2x the coupled ones at 8 steps). It cannot see subtle ones: the
    coupled slabs agree so well here that even a hard switch between slabs (no blending) was measured to raise
    the border differences by only ~6% (max excess 8.5e-5 against differences of ~1.4e-3), below the sampler's
    own seed-to-seed variation of those differences (~7e-5).
    """
    one = volume_sample("fast", prior, volume, 0.5, seed=0, **SLAB_STEPS).mean
    slabbed = volume_sample("fast", prior, volume, 0.5, seed=0, slab=4, overlap=2, **SLAB_STEPS)
    assert slabbed.info["volume"] == {"z_weight": 0.5, "slices": SLICES, "slab": 4, "overlap": 2, "slabs": 3,
                                      "prox_iters": 30, "z_solve": "prox"}
    x = slabbed.mean
    assert _rel(x, one) < 0.05  # measured 0.023
    other_seed = volume_sample("fast", prior, volume, 0.5, seed=1, **SLAB_STEPS).mean
    assert _rel(other_seed, one) > 0.05  # measured 0.069: the tolerance discriminates
    # positions s (difference x_{s+1} - x_s) touching a slice covered by more than one slab
    count = torch.zeros(SLICES, dtype=torch.long)
    for r in slab_ranges(SLICES, 4, 2):
        count[r.start:r.stop] += 1
    border = [s for s in range(SLICES - 1) if count[s] > 1 or count[s + 1] > 1]
    assert border == [1, 2, 3, 4, 5]
    d_one, d_slab = _zdiff(one)[border], _zdiff(x)[border]
    assert float(d_slab.max()) <= 1.5 * float(d_one.max())


def test_coupling_smooths_along_z(prior, volume):
    """With the same seed, ``z_weight = 0.5`` makes the volume's mean absolute slice-to-slice difference smaller
    than ``z_weight = 0``, at every neighbouring pair, and brings the volume closer to the phantom (whose own slice
    differences are smaller still). Measured (8 steps, seeds 0-3): mean ratio 0.47-0.53, worst pair 0.60-0.74,
    relative error to the phantom 0.16 against 0.24. The coupling alone: the default in-plane TV (``tv`` 0.3) already
    smooths every slice, so it is off here (with it, the ratio is 0.90)."""
    coupled = volume_sample("fast", prior, volume, 0.5, seed=0, tv=0.0, **SLAB_STEPS)
    alone = volume_sample("fast", prior, volume, 0.0, seed=0, tv=0.0, **SLAB_STEPS)
    dc, da = _zdiff(coupled.mean), _zdiff(alone.mean)
    assert float(dc.mean()) < 0.7 * float(da.mean())  # measured 0.53
    assert bool((dc < da).all())
    truth = hu_to_mu(_stack_hu(SLICES, SIZE))
    assert _rel(coupled.mean, truth) < _rel(alone.mean, truth)


SAMPLER_SETTINGS = {"fast": {"steps": 4, "cg_iters": 3}, "langevin": {"steps": 4, "cg_iters": 3},
                    "daps": {"steps": 3, "ode_steps": 1, "langevin": 5}, "dps": {"steps": 4, "zeta": 1.0}}


@pytest.mark.parametrize("method", ["fast", "langevin", "daps", "dps"])
def test_every_sampler_accepts_a_coupled_volume(prior, volume, method):
    """Each sampler runs on a coupled volume (``z_weight = 0.5``, two samples): finite outputs of the volume's
    shape, the z weight recorded, and the coupling actually applied (the result differs from ``z_weight = 0``
    with the same seed, and the slices are closer to each other)."""
    vol = volume.select(slice(0, 4))
    kw = SAMPLER_SETTINGS[method]
    res = volume_sample(method, prior, vol, 0.5, samples=2, seed=1, keep_samples=True, **kw)
    assert res.mean.shape == res.std.shape == (4, SIZE, SIZE)
    assert res.samples.shape == (4, 2, SIZE, SIZE)
    assert bool(torch.isfinite(res.samples).all()) and bool(torch.isfinite(res.std).all())
    assert res.info["volume"]["z_weight"] == 0.5 and res.info["volume"]["slices"] == 4
    assert res.info["method"] == method
    alone = volume_sample(method, prior, vol, 0.0, samples=2, seed=1, **kw)
    assert float((alone.mean - res.mean).abs().max()) > 1e-4
    assert float(_zdiff(res.mean).mean()) < float(_zdiff(alone.mean).mean())


def test_volume_sample_rejects_bad_input(prior, volume):
    """One slice, a negative z weight and a 1-slice slab are ValueErrors (before any sampling)."""
    with pytest.raises(ValueError, match="at least 2 slices"):
        volume_sample("fast", prior, volume.select(slice(0, 1)), 0.5, **FAST)
    with pytest.raises(ValueError):
        volume_sample("fast", prior, volume, -0.1, **FAST)
    with pytest.raises(ValueError):
        volume_sample("fast", prior, volume, 0.5, slab=1, **FAST)
