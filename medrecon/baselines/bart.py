"""BART ``pics`` as an optional reference baseline (Uecker et al., BART toolbox; Debian package ``bart``).

The field's reference implementation of parallel-imaging compressed sensing. medrecon does not link
it: when the ``bart`` binary is on ``PATH`` (or named by ``MEDRECON_BART``), :func:`bart_pics` writes
the k-space and coil maps as ``.cfl`` files in a private temporary folder, runs ``bart pics`` once per
slice and reads the image back. Layouts: our ``(C, H, W)`` k-space is BART's ``(H, W, 1, C)`` with
the same centred FFT (BART's centre ``N // 2`` is ours, see :mod:`medrecon.io.bart`), so no shift or
flip is needed.

Settings: ``-R W:3:0:lam`` (l1-wavelet over both image axes) or ``-R T:3:0:lam`` (total variation),
``-i iters``, ``-n`` (no random wavelet cycle spinning, so runs are reproducible) and ``-S`` (output
in the data's scale). BART scales the data internally before applying ``lam``, so its ``lam`` is
relative, like medrecon's CS weights (which are relative to ``max|A^H y|``), but the two are not the
same number: tune each on the tuning split.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from medrecon.errors import InputError
from medrecon.io.bart import read_cfl, write_cfl

__all__ = ["bart_available", "bart_binary", "bart_pics"]

_REGULARIZERS = {"wavelet": "W", "tv": "T"}


def bart_binary() -> str | None:
    """Path of the ``bart`` executable (``$MEDRECON_BART`` or ``PATH``), or None."""
    return os.environ.get("MEDRECON_BART") or shutil.which("bart")


def bart_available() -> bool:
    """Whether :func:`bart_pics` can run here."""
    return bart_binary() is not None


def bart_trajectory(trajectory: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Our trajectory ``(M, 2)`` (radians per pixel; column 0 along H, column 1 along W) in BART's convention:
    ``(3, M, 1)`` complex64 coordinates in units of 1/FOV (``w N / (2 pi)``), BART's first image dimension being
    our H (images go to BART as ``(H, W, 1, C)``), the third coordinate 0 (2-D)."""
    t = np.asarray(trajectory, dtype=np.float64).reshape(-1, 2)
    out = np.zeros((3, t.shape[0], 1), dtype=np.complex64)
    out[0, :, 0] = t[:, 0] * shape[0] / (2 * np.pi)
    out[1, :, 0] = t[:, 1] * shape[1] / (2 * np.pi)
    return out


def bart_pics(kspace: torch.Tensor, maps: torch.Tensor, lam: float = 0.005, iters: int = 100,
              regularizer: str = "wavelet", timeout_s: float = 600.0,
              trajectory: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Reconstruct each slice with ``bart pics``.

    Args:
        kspace: masked multi-coil k-space (zeros where not sampled), complex.
        maps: coil sensitivities, complex (one set per slice, or one set for all).
        lam: regularization weight in BART's (internally scaled) units.
        iters: iterations.
        regularizer: ``"wavelet"`` (l1-wavelet), ``"tv"`` or ``"l2"`` (Tikhonov: ``-l2 -r lam``, CG-SENSE when
            ``lam`` is small).
        timeout_s: time limit per slice.
        trajectory: non-Cartesian data: ``(M, 2)`` radians per pixel (``bart pics -t``), ``kspace`` ``(S, C, M)``.

    Returns:
        Complex images on the input's device.

    Shapes:
        kspace: ``(S, C, H, W)``; maps: ``(S, C, H, W)`` or ``(C, H, W)`` -> returns ``(S, H, W)``.
    """
    exe = bart_binary()
    if exe is None:
        raise InputError("the 'bart' binary is not installed (Debian/Ubuntu: apt install bart; or set MEDRECON_BART)")
    if regularizer not in (*_REGULARIZERS, "l2"):
        raise ValueError(f"regularizer must be one of {sorted(_REGULARIZERS) + ['l2']}, got {regularizer!r}")
    noncart = trajectory is not None
    if kspace.dim() != (3 if noncart else 4):
        raise ValueError(f"kspace must be {'(S, C, M)' if noncart else '(S, C, H, W)'}, got {tuple(kspace.shape)}")
    maps = maps.expand(kspace.shape[0], *maps.shape[-3:]) if maps.dim() == 3 else maps
    if (maps.shape[:2] if noncart else maps.shape) != kspace.shape[: 2 if noncart else 4]:
        raise ValueError(f"coil maps {tuple(maps.shape)} do not match k-space {tuple(kspace.shape)}")
    k_np = kspace.detach().cpu().numpy().astype(np.complex64)
    m_np = maps.detach().cpu().numpy().astype(np.complex64)
    h, w = m_np.shape[-2:]
    if regularizer == "l2":
        reg_args = ["-l2", "-r", f"{float(lam):g}"]
    else:
        reg_args = ["-R", f"{_REGULARIZERS[regularizer]}:3:0:{float(lam):g}"]
    out = []
    with tempfile.TemporaryDirectory(prefix="medrecon-bart-") as tmp:
        d = Path(tmp)
        traj_args: list[str] = []
        if noncart:
            write_cfl(d / "traj", bart_trajectory(trajectory.detach().cpu().numpy(), (h, w)))
            traj_args = ["-t", str(d / "traj")]
        for s in range(k_np.shape[0]):
            # (C, H, W) -> BART (H, W, 1, C); non-Cartesian (C, M) -> (1, M, 1, C)
            ksp = k_np[s].T[None, :, None, :] if noncart else np.transpose(k_np[s], (1, 2, 0))[:, :, None, :]
            write_cfl(d / "ksp", ksp)
            write_cfl(d / "sens", np.transpose(m_np[s], (1, 2, 0))[:, :, None, :])
            cmd = [exe, "pics", "-d0", "-n", "-S", "-i", str(int(iters)), *reg_args, *traj_args,
                   str(d / "ksp"), str(d / "sens"), str(d / "img")]
            try:
                run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
            except subprocess.TimeoutExpired as exc:
                raise InputError(f"bart pics took longer than {timeout_s:.0f} s on slice {s}") from exc
            if run.returncode != 0:
                last = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no message"]
                raise InputError(f"bart pics failed on slice {s}: {last[0]}")
            img = read_cfl(d / "img").reshape(h, w)
            out.append(img)
    return torch.from_numpy(np.stack(out)).to(kspace.device)
