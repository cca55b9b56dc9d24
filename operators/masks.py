"""Sampling masks for accelerated MRI: fastMRI's Cartesian masks and variable-density Poisson disc.

Cartesian (1-D, phase-encode column) masks reproduce fastMRI's ``MaskFunc`` family
(``fastmri.data.subsample``) bit for bit for the same ``(num_cols, center_fraction,
acceleration, seed, offset)``, so that published fastMRI comparisons can be repeated exactly
(docs/design.md, section 3). That means the random draws happen on a legacy ``numpy.random.RandomState``
in the same order and number as fastMRI makes them, and its rounding quirks are kept on purpose.

The 2-D Poisson-disc mask follows the idea of Lustig's / SigPy's ``poisson``: sample points are
kept at least a local radius apart, the radius growing linearly with distance from the k-space
centre, and the growth rate is bisected until the requested acceleration is reached. The
implementation here is a discrete dart-throwing variant (grid pixels visited in a seeded random
order), not Bridson's active-list algorithm.

Centre convention: the k-space centre is index ``N // 2`` along each axis (centered FFT).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["MASK_KINDS", "CartesianMask", "cartesian_mask", "cartesian_mask_info", "poisson_disc_mask"]

#: The Cartesian mask kinds of ``fastmri.data.subsample.create_mask_for_mask_type``.
MASK_KINDS: tuple[str, ...] = ("random", "equispaced", "equispaced_fraction", "magic", "magic_fraction")

SeedLike = int | Sequence[int] | None


class CartesianMask(NamedTuple):
    """A column mask and the number of fully sampled centre columns it contains.

    Attributes:
        mask: bool ``(num_cols,)``; True where a phase-encode column is acquired.
        num_low_frequencies: number of contiguous centre columns (fastMRI's
            ``num_low_frequencies``; stored as the ``num_low_frequency`` attr of test files).
    """

    mask: torch.Tensor
    num_low_frequencies: int


# --------------------------------------------------------------------------- Cartesian masks
def _check_cartesian_args(
    kind: str, num_cols: int, center_fraction: float, acceleration: int, offset: int | None
) -> None:
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; expected one of {', '.join(MASK_KINDS)}")
    if isinstance(num_cols, bool) or not isinstance(num_cols, numbers.Integral) or num_cols < 2:
        raise ValueError(f"num_cols must be an integer >= 2, got {num_cols!r}")
    # fastMRI slices with the acceleration as a step, so it has to be an integer.
    if isinstance(acceleration, bool) or not isinstance(acceleration, numbers.Integral) or acceleration <= 0:
        raise ValueError(f"acceleration must be a positive integer, got {acceleration!r}")
    if not isinstance(center_fraction, numbers.Real) or not 0.0 < float(center_fraction) < 1.0:
        raise ValueError(f"center_fraction must lie in the open interval (0, 1), got {center_fraction!r}")
    if offset is not None and (
        isinstance(offset, bool) or not isinstance(offset, numbers.Integral) or offset < 0
    ):
        raise ValueError(f"offset must be a non-negative integer or None, got {offset!r}")


def _centre_columns(num_cols: int, num_low: int) -> np.ndarray:
    """Contiguous block of ``num_low`` columns around ``num_cols // 2``.

    The start ``(num_cols - num_low + 1) // 2`` is fastMRI's; it differs from
    ``num_cols // 2 - num_low // 2`` only for odd ``num_cols`` with even ``num_low``.
    """
    mask = np.zeros(num_cols, dtype=bool)
    start = (num_cols - num_low + 1) // 2
    mask[start : start + num_low] = True
    return mask


def _random_columns(rng: np.random.RandomState, num_cols: int, acceleration: int, num_low: int) -> np.ndarray:
    if num_low >= num_cols:
        raise ValueError(f"random mask: the centre ({num_low} columns) already covers all {num_cols} columns")
    # Each outer column is kept with the probability that makes the *expected* total
    # num_cols / acceleration (the centre counts towards it); it may be negative, then none is kept.
    keep_prob = (num_cols / acceleration - num_low) / (num_cols - num_low)
    # One uniform per column, centre columns included, exactly as fastMRI draws them.
    return rng.uniform(size=num_cols) < keep_prob


def _equispaced_columns(
    rng: np.random.RandomState, num_cols: int, acceleration: int, offset: int | None
) -> np.ndarray:
    if offset is None:
        offset = rng.randint(0, high=acceleration)
    mask = np.zeros(num_cols, dtype=bool)
    mask[offset::acceleration] = True
    return mask


def _equispaced_fraction_columns(
    rng: np.random.RandomState, num_cols: int, acceleration: int, offset: int | None, num_low: int
) -> np.ndarray:
    # Spacing s of the outer lines such that num_low + (num_cols - num_low) / s == num_cols / acceleration.
    # Integer numerator and denominator: Python's true division is correctly rounded, as in fastMRI.
    denominator = num_low * acceleration - num_cols
    if denominator >= 0:
        # The centre alone already meets the column budget. fastMRI divides by zero, or (negative
        # spacing) cannot draw an offset; with an explicit offset it adds no outer line, and so do we.
        if denominator == 0 or offset is None:
            raise ValueError(
                f"equispaced_fraction mask: the centre ({num_low} of {num_cols} columns) already reaches "
                f"acceleration {acceleration}; lower center_fraction or acceleration, or pass an offset"
            )
        return np.zeros(num_cols, dtype=bool)
    spacing = (acceleration * (num_low - num_cols)) / denominator
    if offset is None:
        offset = rng.randint(0, high=round(spacing))
    # Fractional spacing rounded half-to-even; the last column is never a start point
    # (fastMRI stops the range at num_cols - 1; its issue #54 explains why the lines are then
    # not exactly equispaced - kept to match the public multicoil data).
    positions = np.around(np.arange(offset, num_cols - 1, spacing)).astype(np.int64)
    mask = np.zeros(num_cols, dtype=bool)
    mask[positions] = True
    return mask


def _magic_columns(rng: np.random.RandomState, num_cols: int, acceleration: int, offset: int | None) -> np.ndarray:
    """Defazio's offset sampling (arXiv:1912.01101): the two half-planes of k-space get
    equispaced lines with different offsets, so that with conjugate symmetry the two halves
    together cover more distinct frequencies than a plain equispaced mask."""
    if offset is None:
        offset = rng.randint(0, high=acceleration)
    # Offsets of the positive and (mirrored) negative half; the pairing follows fastMRI.
    if offset % 2 == 0:
        pos_start, neg_start = offset + 1, offset + 2
    else:
        pos_start, neg_start = offset + 2, offset - 1
    n_pos = (num_cols + 1) // 2
    positive = np.zeros(n_pos, dtype=bool)
    negative = np.zeros(num_cols - n_pos, dtype=bool)
    positive[pos_start::acceleration] = True
    negative[neg_start::acceleration] = True
    # The halves are laid out in unshifted FFT order (DC first, negative half reversed at the end),
    # then moved to the centered convention.
    return np.fft.fftshift(np.concatenate((positive, negative[::-1])))


def _magic_fraction_budget(num_cols: int, center_fraction: float, acceleration: int) -> tuple[int, int]:
    """Return ``(num_low, outer_acceleration)`` so the total column count hits num_cols / acceleration."""
    target = round(num_cols / acceleration)
    # The centre is clipped to [1, target] columns so it never exceeds the whole budget.
    num_low = max(min(round(num_cols * center_fraction), target), 1)
    remaining = target - num_low
    if remaining <= 0:
        raise ValueError(
            f"magic_fraction mask: the centre ({num_low} columns) uses the whole budget of {target} "
            f"columns for acceleration {acceleration}; lower center_fraction or acceleration"
        )
    return num_low, round(num_cols / remaining)


def cartesian_mask_info(
    kind: str,
    num_cols: int,
    center_fraction: float,
    acceleration: int,
    seed: SeedLike = None,
    offset: int | None = None,
) -> CartesianMask:
    """Build a fastMRI Cartesian column mask and report its number of centre columns.

    Equals ``create_mask_for_mask_type(kind, [center_fraction], [acceleration])(shape,
    offset=offset, seed=seed)`` of fastMRI 0.3 for any ``shape`` with ``shape[-2] == num_cols``.

    Args:
        kind: one of :data:`MASK_KINDS`.
        num_cols: number of phase-encode columns ``W`` (>= 2).
        center_fraction: fraction of centre columns always acquired, in (0, 1).
        acceleration: nominal undersampling factor (positive integer).
        seed: seed of the ``numpy.random.RandomState`` (an int or, like fastMRI's data
            transforms, a sequence of ints such as ``tuple(map(ord, fname))``). ``None`` draws
            fresh entropy, so the mask is not reproducible.
        offset: first outer column for the equispaced/magic kinds; ``None`` draws it at random
            in ``[0, acceleration)``. Ignored by ``random``.

    Returns:
        ``CartesianMask(mask, num_low_frequencies)``.

    Raises:
        ValueError: unknown kind, ``num_cols < 2``, non-positive acceleration, center fraction
            outside (0, 1), a negative offset, or a centre so large that fastMRI itself fails
            (division by zero or an empty offset range) for this kind.

    Shapes:
        mask: bool ``(num_cols,)``.
    """
    _check_cartesian_args(kind, num_cols, center_fraction, acceleration, offset)
    num_cols, acceleration = int(num_cols), int(acceleration)
    # fastMRI reseeds its RandomState inside ``temp_seed``; a fresh RandomState(seed) is the same state.
    try:
        rng = np.random.RandomState(seed)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"seed must be None, a non-negative int or a sequence of them, got {seed!r}") from exc
    # fastMRI picks the (center_fraction, acceleration) pair with randint over the list length.
    # With a single pair it always returns 0, but the call is kept so the stream stays aligned.
    rng.randint(1)

    if kind == "magic_fraction":
        num_low, outer_accel = _magic_fraction_budget(num_cols, center_fraction, acceleration)
        outer = _magic_columns(rng, num_cols, outer_accel, offset)
    else:
        # Python's round (half to even) on the float product, as fastMRI does.
        num_low = round(num_cols * center_fraction)
        if kind == "random":
            outer = _random_columns(rng, num_cols, acceleration, num_low)
        elif kind == "equispaced":
            outer = _equispaced_columns(rng, num_cols, acceleration, offset)
        elif kind == "equispaced_fraction":
            outer = _equispaced_fraction_columns(rng, num_cols, acceleration, offset, num_low)
        else:  # magic
            outer = _magic_columns(rng, num_cols, acceleration, offset)

    mask = _centre_columns(num_cols, num_low) | outer
    return CartesianMask(torch.from_numpy(mask), int(num_low))


def cartesian_mask(kind: str, num_cols: int, center_fraction: float, acceleration: int, seed: SeedLike = None,
                   offset: int | None = None) -> torch.Tensor:
    """Build a fastMRI Cartesian column mask (see :func:`cartesian_mask_info` for details).

    Args:
        kind: one of :data:`MASK_KINDS`.
        num_cols: number of phase-encode columns ``W``.
        center_fraction: fraction of centre columns always acquired, in (0, 1).
        acceleration: nominal undersampling factor (positive integer).
        seed: RandomState seed (int or sequence of ints); ``None`` is not reproducible.
        offset: first outer column for the equispaced/magic kinds, or ``None`` to draw it.

    Returns:
        The column mask, equal bit for bit to fastMRI's.

    Raises:
        ValueError: see :func:`cartesian_mask_info`.

    Shapes:
        returns: bool ``(num_cols,)``; apply to k-space ``(..., H, W)`` by broadcasting.
    """
    return cartesian_mask_info(kind, num_cols, center_fraction, acceleration, seed, offset).mask


# --------------------------------------------------------------------------- Poisson disc
def _calib_slice(n: int, c: int) -> slice:
    # Same centring rule as the Cartesian centre block, so both families agree on odd sizes.
    start = (n - c + 1) // 2
    return slice(start, start + c)


def _normalised_radius(shape: tuple[int, int], calib: tuple[int, int]) -> np.ndarray:
    """Distance from the calibration box, scaled so that the edge midpoints sit at 1."""
    axes = []
    for n, c in zip(shape, calib):
        d = np.maximum(np.abs(np.arange(n) - n // 2) - c / 2.0, 0.0)
        axes.append(d / d.max() if d.max() > 0 else d)
    return np.sqrt(axes[0][:, None] ** 2 + axes[1][None, :] ** 2)


# Sub-pixel positions (a 4 x 4 lattice inside the cell) at which an accepted sample's exclusion
# disc is centred. Without this, only the grid distances 1, sqrt(2), 2, sqrt(5), ... exist and the
# density falls in visible rings wherever the radius crosses one of them.
_JITTER = (np.arange(4) - 1.5) / 4.0
_N_JITTER = _JITTER.size**2
# With the disc centre at most 3/8 pixel off-grid, a radius up to 5/8 never reaches a neighbour:
# that is the radius at which sampling is full, the start of the radius ramp.
_MIN_RADIUS = 0.5


class _DartThrower:
    """Greedy discrete Poisson-disc sampling on the pixel grid for a fixed visiting order.

    Pixels are visited in one seeded random order; a pixel is accepted unless it lies inside the
    exclusion disc of an earlier accepted sample. That disc has the local radius ``R`` at the
    sample, is centred at a seeded sub-pixel position of the sample's cell (see ``_JITTER``), and
    is measured in a metric that scales each axis by ``max(H, W) / n`` so that the pattern is the
    same in normalised k-space for non-square matrices (as SigPy does). Keeping the order fixed
    across calls makes the sample count vary smoothly with the radius scale, which is what the
    bisection needs.
    """

    _QUANT = 8  # radii are rounded to 1/8 pixel so exclusion stencils can be cached
    _CHUNK = 4096

    def __init__(self, shape: tuple[int, int], calib_mask: np.ndarray, seed: int) -> None:
        self.shape = shape
        self.calib_mask = calib_mask
        big = max(shape)
        self.axis_scale = (big / shape[0], big / shape[1])
        rs = np.random.RandomState(seed)
        order = rs.permutation(shape[0] * shape[1])
        jitter = rs.randint(_N_JITTER, size=order.size)
        # Calibration pixels are sampled anyway; leaving them out of the order saves work.
        keep = ~calib_mask.reshape(-1)[order]
        self.order, self.jitter = order[keep], jitter[keep]
        self.rows, self.cols = np.divmod(self.order, shape[1])
        self._stencils: dict[int, tuple[np.ndarray, int, int]] = {}

    def _stencil(self, key: int) -> tuple[np.ndarray, int, int]:
        """Exclusion stencil for ``key = radius_key * _N_JITTER + jitter_index``.

        Returns the bool stencil and its half-extents ``(ky, kx)``.
        """
        hit = self._stencils.get(key)
        if hit is None:
            radius_key, j = divmod(key, _N_JITTER)
            radius = radius_key / self._QUANT
            jy, jx = _JITTER[j // _JITTER.size], _JITTER[j % _JITTER.size]
            sy, sx = self.axis_scale
            ky, kx = math.ceil(radius / sy + 0.5), math.ceil(radius / sx + 0.5)
            dy = (np.arange(-ky, ky + 1)[:, None] - jy) * sy
            dx = (np.arange(-kx, kx + 1)[None, :] - jx) * sx
            hit = (dy**2 + dx**2 < radius**2, ky, kx)
            self._stencils[key] = hit
        return hit

    def sample(self, radius: np.ndarray) -> np.ndarray:
        """Return the bool mask for the radius field ``radius`` (``(H, W)``, values >= 0.5)."""
        h, w = self.shape
        # A disc wider than the (scaled) grid blocks everything anyway; capping keeps stencils small.
        radius = np.minimum(radius, 1.5 * max(h, w))
        radius_keys = np.rint(radius * self._QUANT).astype(np.int64).reshape(-1)
        # Pad so that stencils never need clipping at the border.
        pad = max(self._stencil(int(radius_keys.max()) * _N_JITTER)[1:]) + 1
        pw = w + 2 * pad
        blocked = np.zeros((h + 2 * pad) * pw, dtype=bool)
        cand_keys = radius_keys[self.order] * _N_JITTER + self.jitter
        # Stencils as offsets into the flat padded array: one fancy assignment per sample is the
        # cheapest numpy call here, and the Python loop below is the whole cost of this sampler.
        offsets: dict[int, np.ndarray | None] = {}
        for key in np.unique(cand_keys).tolist():
            stencil, ky, kx = self._stencil(key)
            dy, dx = np.nonzero(stencil)
            flat = (dy - ky) * pw + (dx - kx)
            # Blocking only the sample's own pixel is useless: it is never visited again.
            offsets[key] = flat if np.any(flat != 0) else None
        padded = (self.rows + pad) * pw + self.cols + pad
        is_blocked = memoryview(blocked)  # fast scalar reads from Python
        accepted: list[int] = []
        for start in range(0, padded.size, self._CHUNK):
            chunk = slice(start, start + self._CHUNK)
            # Vectorised prefilter: most pixels were already blocked by earlier chunks.
            live = ~blocked[padded[chunk]]
            for pflat, key in zip(padded[chunk][live].tolist(), cand_keys[chunk][live].tolist()):
                if is_blocked[pflat]:
                    continue
                accepted.append(pflat)
                off = offsets[key]
                if off is not None:
                    blocked[off + pflat] = True
        mask = np.zeros(blocked.size, dtype=bool)
        mask[np.asarray(accepted, dtype=np.int64)] = True
        return mask.reshape(h + 2 * pad, pw)[pad:-pad, pad:-pad] | self.calib_mask


def _check_poisson_args(
    shape: Sequence[int], acceleration: float, calib: Sequence[int], seed: int, max_attempts: int, tol: float
) -> tuple[tuple[int, int], tuple[int, int]]:
    if len(shape) != 2 or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in shape):
        raise ValueError(f"shape must be two positive integers (H, W), got {tuple(shape)!r}")
    if len(calib) != 2 or any(isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 0 for c in calib):
        raise ValueError(f"calib must be two non-negative integers, got {tuple(calib)!r}")
    shape_t = (int(shape[0]), int(shape[1]))
    calib_t = (min(int(calib[0]), shape_t[0]), min(int(calib[1]), shape_t[1]))
    if not isinstance(acceleration, numbers.Real) or not math.isfinite(acceleration) or acceleration < 1:
        raise ValueError(f"acceleration must be a finite number >= 1, got {acceleration!r}")
    if not 0 < tol < 1:
        raise ValueError(f"tol must lie in (0, 1), got {tol!r}")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, numbers.Integral) or max_attempts < 1:
        raise ValueError(f"max_attempts must be a positive integer, got {max_attempts!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    n_total, n_calib = shape_t[0] * shape_t[1], calib_t[0] * calib_t[1]
    # Even with an infinite radius one sample survives outside the box (plus the box itself).
    best = n_total / (n_calib + (1 if n_calib < n_total else 0))
    if acceleration * (1 - tol) > best:
        raise ValueError(
            f"acceleration {acceleration} unreachable for shape {shape_t} with calib {calib_t} (max about {best:.3g})"
        )
    return shape_t, calib_t


def poisson_disc_mask(
    shape: tuple[int, int],
    acceleration: float,
    calib: tuple[int, int] = (24, 24),
    seed: int = 0,
    max_attempts: int = 30,
    tol: float = 0.1,
) -> torch.Tensor:
    """Variable-density Poisson-disc sampling mask with a fully sampled calibration box.

    Each sample keeps later ones out of a disc of radius ``R(rho) = 0.5 + slope * rho`` pixels, where
    ``rho`` is the distance from the calibration box normalised to 1 at the edge midpoints, so
    the density is highest next to the centre and falls off outwards (variable-density Poisson
    disc, Lustig et al., MRM 2007; SigPy's ``mri.poisson``). Candidates are the grid pixels,
    visited in a seeded random order; each accepted sample's exclusion disc is centred at a
    seeded sub-pixel point of its cell, which keeps the density smooth in ``R`` (on bare grid
    distances it would fall in rings). ``slope`` is searched in a bracket that bisection shrinks
    (secant steps are taken when they fall inside it) until
    ``|H*W / mask.sum() / acceleration - 1| <= tol``. ``slope = 0`` samples everything, so any
    reachable acceleration gets bracketed.

    Args:
        shape: ``(H, W)`` of the k-space grid (both phase-encode directions for 3-D Cartesian).
        acceleration: target ratio ``H * W / number of samples`` (>= 1).
        calib: ``(h, w)`` of the fully sampled calibration box centred at ``(H // 2, W // 2)``;
            clipped to ``shape``.
        seed: seed of the pixel visiting order; the same seed gives the same mask.
        max_attempts: maximum number of density-scale evaluations before giving up.
        tol: relative tolerance on the achieved acceleration.

    Returns:
        The sampling mask.

    Raises:
        ValueError: invalid arguments, an acceleration that the calibration box makes
            unreachable, or no slope found within ``max_attempts`` steps.

    Shapes:
        returns: bool ``(H, W)``.
    """
    shape_t, calib_t = _check_poisson_args(shape, acceleration, calib, seed, max_attempts, tol)
    h, w = shape_t
    calib_mask = np.zeros(shape_t, dtype=bool)
    calib_mask[_calib_slice(h, calib_t[0]), _calib_slice(w, calib_t[1])] = True
    rho = _normalised_radius(shape_t, calib_t)
    thrower = _DartThrower(shape_t, calib_mask, int(seed))

    def achieved(mask: np.ndarray) -> float:
        return h * w / max(int(mask.sum()), 1)

    if 1.0 - 1.0 / acceleration <= tol:
        # Full sampling (slope 0) is already within tolerance.
        return torch.ones(shape_t, dtype=torch.bool)
    lo, hi = 0.0, math.inf  # bracket on the slope: accel(lo) < target <= accel(hi)
    # The acceleration grows roughly linearly in the slope (about 1 + 1.5 * slope on a square
    # grid), so secant steps through the last two evaluations (the first through the known point
    # slope 0 -> acceleration 1) converge in 2-3 evaluations for tol = 0.1. Every evaluation also
    # shrinks the bracket and a step leaving it is replaced by bisection, so this never does worse
    # than bisection once the target is bracketed.
    prev_slope, prev_accel = 0.0, 1.0
    slope = (acceleration - 1.0) / 1.5
    best_err = math.inf
    for _ in range(int(max_attempts)):
        mask = thrower.sample(_MIN_RADIUS + slope * rho)
        accel = achieved(mask)
        err = abs(accel / acceleration - 1.0)
        best_err = min(best_err, err)
        if err <= tol:
            return torch.from_numpy(mask)
        if accel < acceleration:
            lo = slope
        else:
            hi = slope
        guess = math.nan
        if accel != prev_accel:
            guess = slope + (acceleration - accel) * (slope - prev_slope) / (accel - prev_accel)
        if not lo < guess < hi:  # also catches nan
            guess = 2.0 * lo + 1.0 if math.isinf(hi) else 0.5 * (lo + hi)
        prev_slope, prev_accel, slope = slope, accel, guess
    raise ValueError(
        f"poisson_disc_mask: no density scale reached acceleration {acceleration} within tol {tol} "
        f"after {max_attempts} steps (closest relative error {best_err:.3g})"
    )
