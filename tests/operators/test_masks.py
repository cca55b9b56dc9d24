"""Tests of operators.masks: fastMRI-identical Cartesian masks and variable-density Poisson disc."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from operators.masks import MASK_KINDS, CartesianMask, cartesian_mask, cartesian_mask_info, poisson_disc_mask

# Known outputs of fastMRI 0.3.0 (pip package ``fastmri==0.3.0``, fastmri/data/subsample.py), made with
#   mask, nlf = create_mask_for_mask_type(kind, [cf], [acc])((1, 640, num_cols, 1), offset=offset, seed=seed)
#   hex = np.packbits(mask.numpy().reshape(-1).astype(bool)).tobytes().hex()
# so these tests need no fastmri install. The tuple seed mimics fastMRI's data transforms, which seed
# with tuple(map(ord, fname)). Fields: kind, num_cols, center_fraction, acceleration, seed, offset,
# num_low_frequencies, packed mask.
FASTMRI_PINS = [
    ('random', 368, 0.08, 4, 0, None, 29, '000380a02011050d1415210950000002080022a1027ffffffe1c02008040518106080014108135c0602801410400'),
    ('random', 640, 0.04, 8, 7, None, 26, '8104100000000102000000080809000400026a00808500000040020000000012020100100c029ffffffa8001000004000000000000200000000002140000008200200101140300000000060208a11001'),
    ('random', 33, 0.08, 4, 3, 1, 3, '02a1c10000'),
    ('random', 372, 0.04, 8, (102, 105, 108, 101), None, 15, '0003020000200c00000020000000c0500406000000111fffca00000800000080040041081091000120101030000000'),
    ('random', 320, 0.08, 4, 11, 2, 26, 'c212d0c800a80980000604000050000010001ffffff82822028020400440000204440408ce1608c0'),
    ('equispaced', 368, 0.08, 4, 0, None, 29, '888888888888888888888888888888888888888888bffffffe888888888888888888888888888888888888888888'),
    ('equispaced', 640, 0.04, 8, 7, None, 26, '01010101010101010101010101010101010101010101010101010101010101010101010101011ffffff90101010101010101010101010101010101010101010101010101010101010101010101010101'),
    ('equispaced', 33, 0.08, 4, 3, 1, 3, '4445c44400'),
    ('equispaced', 372, 0.04, 8, (102, 105, 108, 101), None, 15, '101010101010101010101010101010101010101010101fffd010101010101010101010101010101010101010101010'),
    ('equispaced', 320, 0.08, 4, 11, 2, 26, '2222222222222222222222222222222222223ffffffa222222222222222222222222222222222222'),
    ('equispaced_fraction', 368, 0.08, 4, 0, None, 29, '0841082108210821042104210420842084108410843ffffffe108210421042084208420841084108410821082104'),
    ('equispaced_fraction', 640, 0.04, 8, 7, None, 26, '08010010020040040080080100200200400800801001002004004008010010020020040080081ffffffa0040080080100100200400400801001002002004008008010020020040040080100100200400'),
    ('equispaced_fraction', 33, 0.08, 4, 3, 1, 3, '4109e08200'),
    ('equispaced_fraction', 372, 0.04, 8, (102, 105, 108, 101), None, 15, '100200200400800801002002004008008010020020041fffc801002002004008008010020020040080080100200200'),
    ('equispaced_fraction', 320, 0.08, 4, 11, 2, 26, '2104208410821082104208410841082104209ffffff8821042104208410821082104208410841082'),
    ('magic', 368, 0.08, 4, 0, None, 29, '4444444444444444444444444444444444444444447ffffffe444444444444444444444444444444444444444444'),
    ('magic', 640, 0.04, 8, 7, None, 26, '40404040404040404040404040404040404040404040404040404040404040404040404040405ffffff84040404040404040404040404040404040404040404040404040404040404040404040404040'),
    ('magic', 33, 0.08, 4, 3, 1, 3, '1111d11100'),
    ('magic', 372, 0.04, 8, (102, 105, 108, 101), None, 15, '010101010101010101010101010101010101010101011fffc101010101010101010101010101010101010101010100'),
    ('magic', 320, 0.08, 4, 11, 2, 26, '1111111111111111111111111111111111111ffffff9111111111111111111111111111111111111'),
    ('magic_fraction', 368, 0.08, 4, 0, None, 29, '1041041041041041041041041041041041041041043ffffffe410410410410410410410410410410410410410410'),
    ('magic_fraction', 640, 0.04, 8, 7, None, 26, '40040040040040040040040040040040040040040040040040040040040040040040040040041ffffff84004004004004004004004004004004004004004004004004004004004004004004004004004'),
    ('magic_fraction', 33, 0.08, 4, 3, 1, 3, '4081d02000'),
    ('magic_fraction', 372, 0.04, 8, (102, 105, 108, 101), None, 15, '010010010010010010010010010010010010010010011fffc100100100100100100100100100100100100100100100'),
    ('magic_fraction', 320, 0.08, 4, 11, 2, 26, '0410410410410410410410410410410410411ffffff9041041041041041041041041041041041041'),
]


def _unpack(hex_bits: str, num_cols: int) -> torch.Tensor:
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(hex_bits), dtype=np.uint8))[:num_cols]
    return torch.from_numpy(bits.astype(bool))


def _centre(num_cols: int, num_low: int) -> slice:
    start = (num_cols - num_low + 1) // 2
    return slice(start, start + num_low)


# --------------------------------------------------------------------------- Cartesian
def test_pins_cover_every_kind():
    assert {p[0] for p in FASTMRI_PINS} == set(MASK_KINDS)


@pytest.mark.parametrize("kind,num_cols,cf,acc,seed,offset,num_low,hex_bits", FASTMRI_PINS)
def test_matches_pinned_fastmri_output(kind, num_cols, cf, acc, seed, offset, num_low, hex_bits):
    info = cartesian_mask_info(kind, num_cols, cf, acc, seed=seed, offset=offset)
    assert isinstance(info, CartesianMask)
    assert info.mask.dtype == torch.bool and info.mask.shape == (num_cols,)
    assert torch.equal(info.mask, _unpack(hex_bits, num_cols))
    assert info.num_low_frequencies == num_low
    assert torch.equal(cartesian_mask(kind, num_cols, cf, acc, seed=seed, offset=offset), info.mask)


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("num_cols", [368, 33, 101])
def test_centre_columns_fully_sampled(kind, num_cols):
    for cf, acc in [(0.08, 4), (0.04, 8)]:
        mask, num_low = cartesian_mask_info(kind, num_cols, cf, acc, seed=5)
        if kind != "magic_fraction":  # magic_fraction clips the centre to the column budget
            assert num_low == round(num_cols * cf)
        assert mask[_centre(num_cols, num_low)].all()


@pytest.mark.parametrize("offset", [0, 1, 3])
def test_equispaced_lines_are_exactly_every_acceleration_th_column(offset):
    num_cols, acc = 368, 4
    mask, num_low = cartesian_mask_info("equispaced", num_cols, 0.08, acc, seed=0, offset=offset)
    expected = torch.arange(num_cols) % acc == offset
    expected[_centre(num_cols, num_low)] = True
    assert torch.equal(mask, expected)


def test_equispaced_random_offset_is_in_range_and_seeded():
    for seed in range(8):
        mask, num_low = cartesian_mask_info("equispaced", 320, 0.08, 4, seed=seed)
        outer = mask.clone()
        outer[_centre(320, num_low)] = False
        residues = set((torch.nonzero(outer).flatten() % 4).tolist())
        assert len(residues) == 1  # one offset in [0, 4)


@pytest.mark.parametrize("num_cols", [368, 372, 320, 640])
def test_equispaced_fraction_hits_the_column_budget(num_cols):
    for cf, acc in [(0.08, 4), (0.04, 8)]:
        for seed in range(3):
            count = int(cartesian_mask("equispaced_fraction", num_cols, cf, acc, seed=seed).sum())
            assert abs(count - num_cols / acc) <= 2


@pytest.mark.parametrize("num_cols", [368, 320, 640])
def test_magic_fraction_is_near_the_column_budget(num_cols):
    for cf, acc in [(0.08, 4), (0.04, 8)]:
        count = int(cartesian_mask("magic_fraction", num_cols, cf, acc, seed=1).sum())
        assert abs(count / (num_cols / acc) - 1) < 0.15


def test_same_seed_same_mask_and_random_depends_on_seed():
    for kind in MASK_KINDS:
        assert torch.equal(cartesian_mask(kind, 320, 0.08, 4, seed=3), cartesian_mask(kind, 320, 0.08, 4, seed=3))
    a, b = cartesian_mask("random", 320, 0.08, 4, seed=3), cartesian_mask("random", 320, 0.08, 4, seed=4)
    assert not torch.equal(a, b)
    assert cartesian_mask("random", 320, 0.08, 4).shape == (320,)  # seed=None: fresh entropy


def test_does_not_touch_global_numpy_state():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    cartesian_mask("random", 320, 0.08, 4, seed=9)
    assert np.random.rand() == expected


@pytest.mark.parametrize(
    "args,match",
    [
        (("gaussian", 320, 0.08, 4), "unknown mask kind"),
        (("random", 320, 0.08, 0), "acceleration"),
        (("random", 320, 0.08, -4), "acceleration"),
        (("equispaced", 320, 0.08, 2.5), "acceleration"),
        (("random", 320, 0.0, 4), "center_fraction"),
        (("random", 320, 1.0, 4), "center_fraction"),
        (("random", 320, -0.1, 4), "center_fraction"),
        (("random", 1, 0.08, 4), "num_cols"),
        (("equispaced_fraction", 320, 0.5, 4), "centre"),
        (("magic_fraction", 320, 0.08, 16), "centre"),
    ],
)
def test_invalid_arguments_raise_value_error(args, match):
    with pytest.raises(ValueError, match=match):
        cartesian_mask(*args, seed=0)


def test_negative_offset_and_bad_seed_raise_value_error():
    with pytest.raises(ValueError, match="offset"):
        cartesian_mask("equispaced", 320, 0.08, 4, seed=0, offset=-1)
    with pytest.raises(ValueError, match="seed"):
        cartesian_mask("random", 320, 0.08, 4, seed=-5)


# --------------------------------------------------------------------------- Poisson disc
@pytest.mark.parametrize("shape,accel,calib", [((96, 80), 4.0, (12, 12)), ((63, 47), 3.0, (7, 6)), ((320, 320), 8.0, (24, 24))])
def test_poisson_hits_acceleration_and_samples_calibration(shape, accel, calib):
    mask = poisson_disc_mask(shape, accel, calib=calib, seed=1, tol=0.1)
    assert mask.dtype == torch.bool and mask.shape == shape
    achieved = mask.numel() / mask.sum().item()
    assert abs(achieved / accel - 1) <= 0.1
    h, w = shape
    r0, c0 = (h - calib[0] + 1) // 2, (w - calib[1] + 1) // 2
    assert mask[r0 : r0 + calib[0], c0 : c0 + calib[1]].all()
    # The box is centred on the k-space centre (H // 2, W // 2).
    assert mask[h // 2, w // 2]


def test_poisson_tight_tolerance():
    mask = poisson_disc_mask((64, 64), 5.0, calib=(8, 8), seed=2, tol=0.02)
    assert abs(mask.numel() / mask.sum().item() / 5.0 - 1) <= 0.02


def test_poisson_density_falls_off_and_is_roughly_symmetric():
    h = w = 128
    mask = poisson_disc_mask((h, w), 6.0, calib=(10, 10), seed=0).numpy()
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - h // 2, xx - w // 2)
    inner = mask[(r > 8) & (r < 25)].mean()
    outer = mask[r > 50].mean()
    assert inner > 2 * outer > 0
    quadrants = [mask[:64, :64].mean(), mask[:64, 64:].mean(), mask[64:, :64].mean(), mask[64:, 64:].mean()]
    assert max(quadrants) / min(quadrants) < 1.25


def test_poisson_is_seeded():
    a = poisson_disc_mask((64, 72), 4.0, calib=(8, 8), seed=7)
    assert torch.equal(a, poisson_disc_mask((64, 72), 4.0, calib=(8, 8), seed=7))
    assert not torch.equal(a, poisson_disc_mask((64, 72), 4.0, calib=(8, 8), seed=8))


def test_poisson_keeps_samples_apart_far_from_centre():
    # At the edges the exclusion radius is several pixels: no two edge samples are 4-neighbours.
    mask = poisson_disc_mask((96, 96), 8.0, calib=(8, 8), seed=3).numpy()
    edge = np.zeros_like(mask)
    edge[:10], edge[-10:], edge[:, :10], edge[:, -10:] = True, True, True, True
    m = mask & edge
    assert not (m[1:, :] & m[:-1, :]).any() and not (m[:, 1:] & m[:, :-1]).any()


def test_poisson_full_sampling_and_edge_cases():
    assert poisson_disc_mask((20, 30), 1.0).all()  # calib clipped to the shape
    mask = poisson_disc_mask((1, 64), 2.0, calib=(1, 4), seed=0)
    assert mask.shape == (1, 64) and abs(64 / mask.sum().item() / 2 - 1) <= 0.1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"shape": (32, 32), "acceleration": 0.5}, "acceleration"),
        ({"shape": (32, 32), "acceleration": float("nan")}, "acceleration"),
        ({"shape": (32, 32, 2), "acceleration": 4}, "shape"),
        ({"shape": (0, 32), "acceleration": 4}, "shape"),
        ({"shape": (32, 32), "acceleration": 4, "calib": (-1, 4)}, "calib"),
        ({"shape": (32, 32), "acceleration": 4, "tol": 0}, "tol"),
        ({"shape": (32, 32), "acceleration": 4, "seed": -1}, "seed"),
        ({"shape": (32, 32), "acceleration": 4, "max_attempts": 0}, "max_attempts"),
        ({"shape": (32, 32), "acceleration": 4, "calib": (30, 30)}, "unreachable"),
    ],
)
def test_poisson_invalid_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        poisson_disc_mask(**kwargs)
