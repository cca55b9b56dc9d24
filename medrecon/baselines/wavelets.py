"""Orthogonal periodized 2-D discrete wavelet transform in pure torch (runs on any device).

The transform is the separable, periodized Mallat pyramid (Mallat, *A Wavelet Tour of Signal
Processing*, 3rd ed., sec. 7.5.1): along each axis ``a[k] = sum_n lo[n] x[(2k + n - L/2 + 1) mod N]``
and ``d[k] = sum_n hi[n] x[(2k + n - L/2 + 1) mod N]`` with ``lo`` PyWavelets' ``rec_lo`` and
``hi[n] = (-1)^n lo[L-1-n]``. For an orthonormal scaling filter these analysis rows form an
orthonormal basis, so the inverse is the exact adjoint (strided transposed convolution folded back
modulo ``N``): ``idwt2(dwt2(x)) == x`` and ``||dwt2(x)|| == ||x||``. The coefficients equal
``pywt.coeffs_to_array(pywt.wavedec2(x, wavelet, mode="periodization", level=levels))[0]``.

Sizes not divisible by ``2**levels`` are zero-padded at the bottom/right to the next multiple and
cropped back by the inverse; ``DWT2`` is then an isometry (``W^H W = I``) but not onto its
coefficient space. The default number of levels is PyWavelets' ``dwt_max_level`` rule
(``floor(log2(min(H, W) / (L - 1)))``), the one SigPy's ``linop.Wavelet`` uses with ``level=None``.

Coefficients are packed in the usual Mallat layout in one ``(..., Hp, Wp)`` tensor: the coarsest
approximation in the top-left ``(Hp >> levels, Wp >> levels)`` block, each level's
horizontal/vertical/diagonal details around it. Complex inputs are transformed as real and
imaginary parts (the filters are real).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from operators.base import LinearOperator

__all__ = ["DWT2", "dwt2", "idwt2", "max_level", "soft_threshold", "wavelet_filter"]

# Reconstruction low-pass filters (PyWavelets' ``rec_lo``), orthonormal: sum lo^2 = 1, sum lo = sqrt 2.
_REC_LO: dict[str, tuple[float, ...]] = {
    "haar": (0.7071067811865476, 0.7071067811865476),
    "db1": (0.7071067811865476, 0.7071067811865476),
    "db2": (0.48296291314453416, 0.8365163037378079, 0.2241438680420134, -0.12940952255126037),
    "db4": (0.2303778133088965, 0.7148465705529157, 0.6308807679298589, -0.027983769416859854,
            -0.18703481171909309, 0.030841381835560764, 0.0328830116668852, -0.010597401785069032),
}


def wavelet_filter(name: str) -> tuple[float, ...]:
    """The orthonormal low-pass filter of wavelet ``name``.

    ``haar``/``db1``, ``db2`` and ``db4`` are built in; any other orthogonal PyWavelets name
    (``sym4``, ``coif2``, ...) is looked up in PyWavelets if it is installed.

    Shapes:
        returns: a tuple of ``L`` floats (``L`` even).
    """
    key = name.lower()
    if key in _REC_LO:
        return _REC_LO[key]
    try:
        import pywt
    except ImportError as exc:  # pragma: no cover - pywt ships with sigpy
        raise ValueError(f"unknown wavelet {name!r}; built in: {sorted(_REC_LO)}") from exc
    wav = pywt.Wavelet(name)
    if not wav.orthogonal:
        raise ValueError(f"wavelet {name!r} is not orthogonal")
    return tuple(float(v) for v in wav.rec_lo)


def max_level(shape: Sequence[int], wavelet: str = "db4") -> int:
    """PyWavelets' ``dwt_max_level`` over the smaller image side (SigPy's default level).

    Shapes:
        shape: ``(H, W)``.
    """
    n, flen = min(int(s) for s in shape[-2:]), len(wavelet_filter(wavelet))
    if n < flen - 1:
        return 0
    return math.floor(math.log2(n / (flen - 1)))


def _filters(name: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The four separable 2-D analysis kernels ``(LL, LH, HL, HH)`` (rows x columns) of ``name``."""
    lo = torch.tensor(wavelet_filter(name), dtype=torch.float64)
    sign = torch.tensor([(-1.0) ** n for n in range(lo.numel())], dtype=torch.float64)
    hi = sign * lo.flip(0)  # quadrature mirror filter
    k = torch.stack([torch.outer(a, b) for a in (lo, hi) for b in (lo, hi)])
    return k[:, None].to(dtype=dtype, device=device)  # (4, 1, L, L)


def _wrap_index(n: int, flen: int, device: torch.device) -> torch.Tensor:
    # Samples -(L/2 - 1) .. N + L/2 - 1 modulo N: the phase of PyWavelets' "periodization" mode.
    return (torch.arange(n + flen - 1, device=device) - (flen // 2 - 1)) % n


def _level_fwd(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """One periodized analysis level: ``(B, N, M) -> (B, 4, N/2, M/2)`` bands ``(LL, LH, HL, HH)``.

    ``band[i, j] = sum_{m,n} k[m, n] x[(2i + m - L/2 + 1) mod N, (2j + n - L/2 + 1) mod M]``:
    periodic extension by ``L - 1`` samples, then a stride-2 cross-correlation.
    """
    n, m, flen = x.shape[-2], x.shape[-1], k.shape[-1]
    xe = x.index_select(-2, _wrap_index(n, flen, x.device)).index_select(-1, _wrap_index(m, flen, x.device))
    return F.conv2d(xe.unsqueeze(1), k, stride=2)


def _level_inv(c: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Exact adjoint (= inverse) of :func:`_level_fwd`: ``(B, 4, N/2, M/2) -> (B, N, M)``."""
    n, m, flen = 2 * c.shape[-2], 2 * c.shape[-1], k.shape[-1]
    ext = F.conv_transpose2d(c, k, stride=2, output_padding=1)[:, 0]  # (B, N+L-1, M+L-1)
    return _fold(_fold(ext, m, flen).transpose(-1, -2), n, flen).transpose(-1, -2)


def _fold(ext: torch.Tensor, n: int, flen: int) -> torch.Tensor:
    """Adjoint of the periodic extension along the last axis: ``(..., N+L-1) -> (..., N)``.

    Sample ``j`` of the extension sits at position ``j - (L/2 - 1)`` mod ``N`` (see
    :func:`_wrap_index`). Zero-pad so the first sample is at a multiple of ``N`` and the length is
    one, then sum the ``N``-periods (deterministic, unlike a scatter-add on GPU).
    """
    off = flen // 2 - 1
    pre = -off % n
    total = pre + ext.shape[-1]
    padded = F.pad(ext, (pre, -total % n))
    return padded.reshape(*ext.shape[:-1], -1, n).sum(dim=-2)


def _pack(bands: torch.Tensor, approx: torch.Tensor) -> torch.Tensor:
    top = torch.cat([approx, bands[:, 1]], dim=-1)
    return torch.cat([top, torch.cat([bands[:, 2], bands[:, 3]], dim=-1)], dim=-2)


def _pyramid_fwd(x: torch.Tensor, k: torch.Tensor, levels: int) -> torch.Tensor:
    """Mallat pyramid on ``(B, N, M)``: transform the approximation band ``levels`` times."""
    if levels == 0:
        return x
    bands = _level_fwd(x, k)
    return _pack(bands, _pyramid_fwd(bands[:, 0], k, levels - 1))


def _pyramid_inv(c: torch.Tensor, k: torch.Tensor, levels: int) -> torch.Tensor:
    if levels == 0:
        return c
    h2, w2 = c.shape[-2] // 2, c.shape[-1] // 2
    approx = _pyramid_inv(c[..., :h2, :w2], k, levels - 1)
    bands = torch.stack([approx, c[..., :h2, w2:], c[..., h2:, :w2], c[..., h2:, w2:]], dim=1)
    return _level_inv(bands, k)


def _real_apply(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply ``fn`` to ``(B, N, M)`` real batches: leading dims flattened, real/imag parts stacked.

    ``fn`` may change the trailing size (padding); the leading dims are restored.
    """
    lead, (n, m) = x.shape[:-2], x.shape[-2:]
    if not x.is_complex():
        out = fn(x.reshape(-1, n, m))
        return out.reshape(*lead, *out.shape[-2:])
    out = fn(torch.view_as_real(x).movedim(-1, 0).reshape(-1, n, m))
    out = out.reshape(2, *lead, *out.shape[-2:]).movedim(0, -1)
    return torch.view_as_complex(out.contiguous())


def _resolve(shape: Sequence[int], wavelet: str, levels: int | None) -> tuple[int, tuple[int, int]]:
    h, w = int(shape[-2]), int(shape[-1])
    lev = max_level((h, w), wavelet) if levels is None else int(levels)
    if lev < 0:
        raise ValueError(f"levels must be >= 0, got {levels}")
    m = 2 ** lev
    return lev, (-(-h // m) * m, -(-w // m) * m)


def dwt2(x: torch.Tensor, wavelet: str = "db4", levels: int | None = None) -> torch.Tensor:
    """Forward periodized orthogonal 2-D DWT (Mallat layout), zero-padding to a multiple of 2^levels.

    Args:
        x: real or complex image(s).
        wavelet: ``"db4"``, ``"haar"``, ``"db2"`` or another orthogonal PyWavelets name.
        levels: decomposition levels; ``None`` uses :func:`max_level` of ``(H, W)``.

    Returns:
        Coefficients, same dtype as ``x``.

    Shapes:
        x: ``(..., H, W)`` -> ``(..., Hp, Wp)`` with ``Hp, Wp`` the multiples of ``2**levels``
        at or above ``H, W``.
    """
    lev, (hp, wp) = _resolve(x.shape, wavelet, levels)
    pad = (0, wp - x.shape[-1], 0, hp - x.shape[-2])
    filt = _filters(wavelet, x.real.dtype, x.device)
    return _real_apply(lambda t: _pyramid_fwd(F.pad(t, pad), filt, lev), x)


def idwt2(coeffs: torch.Tensor, shape: Sequence[int], wavelet: str = "db4", levels: int | None = None) -> torch.Tensor:
    """Inverse (= adjoint) of :func:`dwt2`, cropping back to ``shape``.

    Args:
        coeffs: coefficients as returned by :func:`dwt2`.
        shape: the image shape ``(H, W)`` given to :func:`dwt2`.
        wavelet: as for :func:`dwt2`.
        levels: as for :func:`dwt2` (``None`` resolves from ``shape``, as there).

    Shapes:
        coeffs: ``(..., Hp, Wp)`` -> ``(..., H, W)``.
    """
    lev, (hp, wp) = _resolve(shape, wavelet, levels)
    if tuple(coeffs.shape[-2:]) != (hp, wp):
        raise ValueError(f"idwt2: coefficients {tuple(coeffs.shape[-2:])} do not match padded shape {(hp, wp)}")
    filt = _filters(wavelet, coeffs.real.dtype, coeffs.device)
    out = _real_apply(lambda t: _pyramid_inv(t, filt, lev), coeffs)
    return out[..., : int(shape[-2]), : int(shape[-1])]


class DWT2(LinearOperator):
    """:func:`dwt2` as a linear operator; its adjoint is :func:`idwt2` (an isometry, ``W^H W = I``).

    Args:
        shape: image shape ``(H, W)``.
        wavelet: wavelet name (see :func:`wavelet_filter`).
        levels: decomposition levels, ``None`` for :func:`max_level`.

    Shapes:
        forward: ``(..., H, W)`` -> ``(..., Hp, Wp)``; adjoint: ``(..., Hp, Wp)`` -> ``(..., H, W)``.
    """

    def __init__(self, shape: Sequence[int], wavelet: str = "db4", levels: int | None = None) -> None:
        h, w = int(shape[-2]), int(shape[-1])
        self.levels, padded = _resolve((h, w), wavelet, levels)
        super().__init__((h, w), padded, None, None)
        self.wavelet = wavelet

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return dwt2(x, self.wavelet, self.levels)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return idwt2(y, self.in_shape, self.wavelet, self.levels)

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, wavelet={self.wavelet!r}, levels={self.levels}"


def soft_threshold(x: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """Soft thresholding, the proximal map of ``t ||.||_1``: shrink each magnitude by ``t``.

    For complex entries the magnitude is shrunk and the phase kept, ``x * max(1 - t/|x|, 0)``.

    Shapes:
        x: ``(...)``; threshold: a float or a tensor broadcastable to ``x`` (real, >= 0).
    """
    mag = x.abs()
    scale = (1.0 - threshold / torch.where(mag > 0, mag, torch.ones_like(mag))).clamp_min(0.0)
    return x * scale
