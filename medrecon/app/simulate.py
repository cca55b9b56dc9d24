"""``medrecon simulate mri|ct``: measurement files from real images.

The physics (sampling, coils, phase, noise, CT geometry and dose) is the acquisition model's
(:func:`medrecon.acquisition.mri.simulate_kspace`, :class:`medrecon.acquisition.ct.CtScan`); this module reads
the image volume, normalizes it and writes the fastMRI-layout or sinogram h5. Every random draw takes a seed.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import torch

from medrecon.acquisition.ct import CtScan
from medrecon.acquisition.mri import simulate_kspace

__all__ = ["simulate_ct_file", "simulate_mri_file"]


def _volume_slices(image_path, slices: Optional[str], modality: Optional[str]):
    from medrecon.io.volumes import load_volume
    from medrecon.io.measurement import slab_affine as _slab_affine, slice_range as _slice_range

    vol = load_volume(image_path, modality=modality)
    s = _slice_range(slices, vol.data.shape[0])
    idx = np.arange(vol.data.shape[0])[s]
    return vol, vol.data[s].astype(np.float32), idx, _slab_affine(np.asarray(vol.affine), int(idx[0]))


def resampled_affine(affine: np.ndarray, before: tuple[int, int], after: tuple[int, int]) -> np.ndarray:
    """The ``(slice, row, col)`` affine of slices resampled from ``before`` to ``after`` pixels over the same field
    of view: the in-plane steps grow by ``before / after``, and the first pixel's centre moves to the centre of
    the first coarse pixel, ``(f - 1) / 2`` fine pixels in (``f = before / after``)."""
    out = np.array(affine, dtype=np.float64, copy=True)
    for axis, (n0, n1) in zip((1, 2), zip(before, after)):
        f = n0 / n1
        out[:3, 3] = out[:3, 3] + out[:3, axis] * (f - 1) / 2
        out[:3, axis] = out[:3, axis] * f
    return out


def simulate_mri_file(image, out, slices: Optional[str] = None, mask: str = "random", accel: int = 4,
                      center_fraction: float = 0.08, coils: int = 8, noise_std: float = 0.0, seed: int = 0,
                      size: Optional[int] = None) -> dict:
    """``medrecon simulate mri``: fastMRI-layout k-space h5 from a real image, at its own matrix size or, with
    ``size``, resampled so that its longer side has ``size`` pixels (same field of view; the stored affine's
    in-plane steps scale with it, so a volume's output keeps its geometry).

    Magnitudes are normalized by the volume's 99th percentile; ``noise_std`` is relative to that
    scale and in k-space units (the FFT is unitary, so it is also the image-domain noise level).
    """
    from medrecon.io.atomic import check_output
    from medrecon.io.fastmri import write_fastmri_kspace

    check_output(out)  # a device node, a read-only folder: refused before the image is read
    data, affine, idx, space = _mri_slices(image, slices, size)
    sim = simulate_kspace(torch.from_numpy(data), coils, mask, accel, center_fraction, seed, noise_std)
    h, w = data.shape[-2:]
    write_fastmri_kspace(out, sim["kspace"].numpy(), target=sim["target"].numpy(), mask=sim["mask"].numpy(),
                         recon_size=(h, w),
                         attrs={"acceleration": accel, "center_fraction": center_fraction, "mask_kind": mask,
                                "seed": seed, "noise_std": float(noise_std), "acquisition": "simulated"},
                         extra={"source_affine": affine, "slice_indices": idx,
                                "source_space": np.bytes_(space or ""),
                                # the coil maps of the simulation, for `recon --maps true` (not read otherwise)
                                "true_maps": sim["maps"].numpy().astype(np.complex64)})
    return {"slices": len(idx), "shape": [h, w], "acceleration": round(float(sim["mask"].numel() / sim["mask"].sum()), 2)}


def _mri_slices(image, slices: Optional[str], size: Optional[int]):
    """The MRI image slices ``(S, H, W)`` normalized by their 99th percentile, resampled with ``size``, and their
    affine, slice indices and space (shared by the Cartesian and non-Cartesian simulations)."""
    from pathlib import Path

    from medrecon.errors import InputError

    if size is not None and not 8 <= size <= 4096:
        raise InputError(f"--size must be between 8 and 4096 pixels, got {size}")
    vol, data, idx, affine = _volume_slices(image, slices, None)
    if vol.kind == "hu":
        raise InputError(f"{Path(image).name} is a CT volume; simulate ct instead")
    data = data / max(float(np.percentile(np.abs(data), 99)), 1e-8)
    if size and max(data.shape[-2:]) != size:
        h0, w0 = data.shape[-2:]
        f = size / max(h0, w0)
        shape = (max(1, round(h0 * f)), max(1, round(w0 * f)))
        data = torch.nn.functional.interpolate(torch.from_numpy(data)[:, None], size=shape, mode="bilinear",
                                               antialias=True)[:, 0].numpy()
        affine = resampled_affine(affine, (h0, w0), shape)
    return data, affine, idx, vol.space


#: ``simulate mri --trajectory``'s output formats, by the output's suffix.
NONCART_SUFFIXES = (".npz", ".h5", ".cfl")


def simulate_noncartesian_file(image, out, trajectory: str, spokes: int = 64, readout: Optional[int] = None,
                               slices: Optional[str] = None, coils: int = 8, noise_std: float = 0.0, seed: int = 0,
                               size: Optional[int] = None) -> dict:
    """``medrecon simulate mri --trajectory radial|golden-radial|spiral``: non-Cartesian multi-coil k-space of a
    real image (:func:`medrecon.acquisition.noncart.simulate_noncartesian`), written by the output's suffix:
    ``.npz`` (kspace, traj, matrix, true_maps, target), ``.h5`` (ISMRMRD acquisitions with their trajectory) or
    ``.cfl`` (a BART pair and its ``_traj`` pair; one slice). Normalization and ``noise_std`` as
    :func:`simulate_mri_file`.
    """
    from pathlib import Path

    from medrecon.acquisition.noncart import NonCartesianSampling, simulate_noncartesian
    from medrecon.errors import InputError
    from medrecon.io.atomic import check_output

    sampling = NonCartesianSampling(trajectory, spokes, readout)  # settings are checked before the image is read
    suffix = Path(out).suffix.lower()
    if suffix not in NONCART_SUFFIXES:
        raise InputError(f"--out for non-Cartesian k-space must end in {', '.join(NONCART_SUFFIXES)}, got "
                         f"{Path(out).name!r}")
    check_output(out)
    data, affine, idx, space = _mri_slices(image, slices, size)
    if suffix == ".cfl" and data.shape[0] != 1:
        raise InputError(f"a BART pair holds one slice here; select one with --slices (got {data.shape[0]})")
    h, w = data.shape[-2:]
    traj = sampling.trajectory((h, w))
    sim = simulate_noncartesian(torch.from_numpy(data), coils, traj, seed, noise_std)
    k = sim["kspace"].numpy()
    if suffix == ".npz":
        from medrecon.io.numpy_kspace import write_noncartesian_npz

        write_noncartesian_npz(out, k, traj, (h, w), true_maps=sim["maps"].numpy().astype(np.complex64),
                               target=sim["target"].numpy())
    elif suffix == ".h5":
        from medrecon.io.ismrmrd_io import write_ismrmrd_noncartesian

        # ISMRMRD's trajectory names: golden-angle radial is "goldenangle"
        write_ismrmrd_noncartesian(out, k, traj, (h, w),
                                   trajectory_name={"golden-radial": "goldenangle"}.get(trajectory, trajectory))
    else:
        from medrecon.io.bart import write_bart_noncartesian

        write_bart_noncartesian(str(Path(out).with_suffix("")), k, traj, (h, w))
    return {"slices": len(idx), "shape": [h, w], "trajectory": trajectory, "spokes": spokes,
            "readout": int(traj.shape[1]), "samples": int(k.shape[-1])}


def simulate_ct_file(image, out, views: int = 60, geometry: str = "parallel", photons: Optional[float] = None,
                     seed: int = 0, slices: Optional[str] = None, mu_water: float = 0.019,
                     size: Optional[int] = None, fan: Optional[dict] = None) -> dict:
    """``medrecon simulate ct``: a sinogram h5 from a HU image (NIfTI, DICOM file or series folder).

    ``size`` optionally resamples slices to ``size x size`` (pixel size scaled to keep the field of view; a clinical
    fan-beam geometry, in mm, stays as it is). ``fan`` holds :class:`CtScan`'s fan-beam settings (``scanner``,
    ``sid_mm``, ``sdd_mm``, ``detector_pitch_mm``, ``detectors``, ``detector``, ``scan``; None = not given). The file
    stores the projector's full geometry, and the preset's name in the ``scanner`` attribute.
    """
    from medrecon.io.sinogram import write_sinogram

    if size is not None and not 8 <= size <= 4096:
        from medrecon.errors import InputError

        raise InputError(f"--size must be between 8 and 4096 pixels, got {size}")
    fan = {k: v for k, v in (fan or {}).items() if v is not None}
    scan = CtScan(geometry, views, 1.0, photons, mu_water, seed, **fan)  # settings are checked before the image is read
    from medrecon.io.atomic import check_output

    check_output(out)
    vol, hu, idx, affine = _volume_slices(image, slices, "CT")
    pix = float(vol.spacing[1]) if vol.spacing is not None else 1.0
    t = torch.from_numpy(hu)
    if size and (t.shape[-1] != size or t.shape[-2] != size):
        h, w = t.shape[-2:]
        pix = pix * max(h, w) / size
        t = torch.nn.functional.interpolate(t[:, None], size=(size, size), mode="bilinear", antialias=True)[:, 0]
        affine = resampled_affine(affine, (h, w), (size, size))
    shape = tuple(t.shape[-2:])
    scan = dataclasses.replace(scan, pixel_mm=pix)
    A = scan.operator(shape)
    sino, counts = scan.simulate(t, A, return_counts=True)
    extra = {"source_affine": affine, "slice_indices": idx}
    if counts is not None:  # the pre-log measurement too, with I0 in ``photons`` (issue 21)
        extra["counts"] = counts.numpy()
    attrs = {"source_space": vol.space or "", "views": views}
    if scan.scanner:
        attrs["scanner"] = scan.scanner
    write_sinogram(out, sino.numpy(), A.geometry(), mu_water, photons or 0.0, seed, target_hu=t.numpy(),
                   extra=extra, attrs=attrs)
    info = {"slices": len(idx), "shape": list(shape), "views": views, "pixel_mm": pix}
    if geometry == "fan":
        g = A.geometry()
        info.update(geometry=g["type"], detectors=g["n_detectors"], scan="short" if A.short_scan else "full",
                    fov_mm=round(2 * A.fov_radius, 1))
    return info
