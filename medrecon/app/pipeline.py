"""Reconstruct a file end to end: read (any supported format) -> reconstruct -> write + run record.

This is what ``medrecon recon`` calls; library users can call :func:`reconstruct` directly.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from medrecon.app.memory import check_working_memory, fit_batch_size, on_cuda
from medrecon.device import resolve_device
from medrecon.errors import InputError
from medrecon import methods as registry
from medrecon.recon.config import ReconConfig
from medrecon.io.measurement import LoadedInput
from medrecon.recon.result import ReconResult

if TYPE_CHECKING:
    import torch

__all__ = ["reconstruct", "reconstruct_file", "write_outputs", "LoadedInput", "load_input"]


def _coil_maps(inp: "LoadedInput", choice: str) -> tuple[Optional[np.ndarray], str]:
    """The coil maps ``(S, C, H, W)`` a reconstruction uses (None: ESPIRiT estimates them), and their label."""
    if choice == "true":
        if inp.true_maps is None:
            raise InputError("--maps true needs the simulation's coil maps (the 'true_maps' dataset that "
                             "`medrecon simulate mri` writes); this file has none")
        shape = (*inp.data.shape[:2], *inp.recon_size) if inp.trajectory is not None else inp.data.shape
        return np.ascontiguousarray(np.broadcast_to(inp.true_maps, shape)), "true (from the simulation)"
    if choice == "auto" and inp.maps is not None:
        return inp.maps, "from the file"
    return None, "ESPIRiT (recon.problems.coil_maps_for)"


def load_input(path: Path, slices: Optional[str] = None, axes: Optional[str] = None,
               cfg: Optional[ReconConfig] = None, device: Optional["torch.device"] = None) -> LoadedInput:
    """Read an MRI k-space file (fastMRI h5, ISMRMRD, BART cfl, npy/npz with ``axes``) or a CT sinogram file.

    The measurement is validated here, once for every format (:func:`check_measurement`), so that a
    damaged file fails with one clear :class:`~medrecon.errors.InputError` before any work starts.
    With ``cfg`` (and the ``device`` it will run on), the reconstruction's working memory is checked
    against ``MEDRECON_MAX_GB`` in the reader's child, before the array is handed to this process
    (:func:`medrecon.app.memory.check_working_memory`).

    Raises:
        InputError: missing, unreadable, unrecognised or damaged file; wrong dimensions; NaN/Inf,
            all-zero data, an empty mask, coil maps that do not fit, or an array (with ``cfg``: the
            reconstruction's working memory) over ``MEDRECON_MAX_GB``.
    """
    from medrecon.io.sandbox import isolated

    path = Path(path)
    if not path.exists() and not Path(str(path) + ".cfl").exists():
        raise InputError(f"{path.name}: no such file; check the path")
    # Parsed in a forked child with a memory ceiling and a time limit (medrecon.io.sandbox): a C library
    # (libhdf5, a JPEG 2000 codec) that hangs or crashes on a crafted file cannot take medrecon with it.
    from medrecon.io import privacy

    # Its identifiers join the privacy layer whether or not it parses (a damaged file's header may still hold them).
    try:
        args = (path, slices, axes) if cfg is None else (path, slices, axes, (cfg, device))
        inp = isolated(_read_input_guarded, *args, name=path.name, what="input file")
    finally:
        privacy.register_inputs([path if path.exists() else Path(str(path) + ".cfl")])
    check_measurement(inp, path.name)
    return inp


def _read_input_guarded(path: Path, slices: Optional[str], axes: Optional[str],
                        budget: Optional[tuple] = None) -> LoadedInput:
    """:func:`_read_input` with the last net: any parser failure becomes an InputError naming the file.

    ``budget`` = ``(cfg, device)``: a reconstruction whose working memory would exceed the cap is refused
    here, in the reader's child, so that the parent never receives (and holds a second copy of) the array.
    """
    from medrecon.io.guards import reader_errors

    with reader_errors(path.name, "input"):
        inp = _read_input(path, slices, axes)
    if budget is not None:
        cfg, device = budget
        # The batch reconstruct() will choose (fit_batch_size); on CUDA the network's batch is not in the host's
        # estimate, and CUDA must not be touched in this forked child.
        fitted = None if on_cuda(device) else fit_batch_size(inp, cfg, device)
        check_working_memory(inp, cfg if fitted is None else replace(cfg, batch_size=fitted), path.name, device)
    return inp


def check_measurement(inp: LoadedInput, name: str) -> None:
    """Refuse measurements no method can reconstruct, with a message saying what to do.

    Raises:
        InputError: wrong number of dimensions, NaN/Inf values, all-zero data, a mask that does not
            fit the k-space or selects nothing, or coil maps that do not match the k-space.
    """
    data = inp.data
    noncart = inp.modality == "mri" and inp.trajectory is not None
    want = 4 if inp.modality == "mri" and not noncart else 3
    what = ("sinogram (slices, views, detectors)" if inp.modality == "ct" else
            "k-space (slices, coils, samples)" if noncart else "k-space (slices, coils, H, W)")
    if data.ndim != want or data.size == 0:
        raise InputError(f"{name}: the {what} has shape {data.shape}; expected {want} non-empty dimensions")
    bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise InputError(f"{name}: the {what.split(' (')[0]} holds {bad} NaN or Inf values; the file is damaged "
                         "or was written by a failed process: re-export it")
    if inp.modality == "ct":
        return
    if not np.any(data):
        raise InputError(f"{name}: the k-space is all zeros, so there is nothing to reconstruct; check that the "
                         "file was exported with its data")
    if noncart:
        _check_noncartesian(inp, name)
        return
    h, w = data.shape[-2:]
    if inp.mask is not None:
        mask = np.asarray(inp.mask)
        if mask.shape not in ((w,), (h, w)):
            raise InputError(f"{name}: the sampling mask has shape {mask.shape} but the k-space is {h}x{w}; "
                             f"expected ({w},) or ({h}, {w})")
        if not mask.any():
            raise InputError(f"{name}: the sampling mask selects no k-space samples; the file is damaged (or, for "
                             "fully sampled data, drop the mask and undersample with --mask)")
    if inp.maps is not None:
        if inp.maps.shape != data.shape:
            raise InputError(f"{name}: the coil maps have shape {inp.maps.shape} but the k-space is {data.shape}; "
                             "recompute the maps for this k-space or remove them")
        if not np.isfinite(inp.maps).all() or not np.any(inp.maps):
            raise InputError(f"{name}: the coil maps are all zero or hold NaN/Inf values; recompute them")


def _check_noncartesian(inp: LoadedInput, name: str) -> None:
    """Non-Cartesian k-space ``(S, C, M)``: a trajectory ``(M, 2)`` (the readers checked its values), a matrix
    ``recon_size`` ``(H, W)``, and coil maps ``(S, C, H, W)`` if the file has them."""
    s, c, m = inp.data.shape
    traj = np.asarray(inp.trajectory)
    if traj.shape != (m, 2):
        raise InputError(f"{name}: the trajectory has {traj.shape[0] if traj.ndim else 0} samples but the k-space "
                         f"has {m} per coil")
    if len(inp.recon_size or ()) != 2 or min(int(v) for v in inp.recon_size) < 2:
        raise InputError(f"{name}: non-Cartesian k-space needs the image matrix (H, W); the file gives none")
    h, w = (int(v) for v in inp.recon_size)
    if inp.maps is not None and tuple(inp.maps.shape) != (s, c, h, w):
        raise InputError(f"{name}: the coil maps have shape {inp.maps.shape} but the data need {(s, c, h, w)}; "
                         "recompute the maps or remove them")


def _read_input(path: Path, slices: Optional[str], axes: Optional[str]) -> LoadedInput:
    from medrecon.io import formats

    spec = formats.detect(path)
    if spec.read_measurement is None:
        raise InputError(f"{path.name} is a {spec.name} file; `medrecon recon` reads k-space (fastMRI h5, ISMRMRD, "
                         "BART cfl) or sinograms (from `medrecon simulate ct`)")
    return spec.read_measurement(path, slices, axes)


def scale_warning(prior, pixel_mm: Optional[float]) -> Optional[str]:
    """A one-line warning when the image's pixels are far outside the pixel sizes the prior was trained on.

    A diffusion prior learns anatomy at the scale it saw: on much finer pixels its features are too small
    for the image (measured: the 0.9-1.8 mm brain prior's fast sampler fell below zero-filled on 0.66 mm
    320x320 slices, README "GPU timings"). ``None`` when the sizes agree within 20% or either is unknown.
    """
    rng = (prior.metadata.get("training") or {}).get("pixel_mm_range") if pixel_mm else None
    if not rng or len(rng) != 2:
        return None
    lo, hi = float(rng[0]), float(rng[1])
    if 0.8 * lo <= pixel_mm <= 1.2 * hi:
        return None
    side = "finer" if pixel_mm < lo else "coarser"
    return (f"warning: the image has {pixel_mm:.2f} mm pixels, {side} than the {lo:g}-{hi:g} mm the prior "
            f"{prior.name!r} was trained on; expect lower quality (train or choose a prior for this resolution)")


def reconstruct(inp: LoadedInput, cfg: ReconConfig, load_prior: Optional[Callable] = None) -> ReconResult:
    """Reconstruct a loaded input with the configured method.

    ``load_prior(name_or_path, modality, device)`` replaces :func:`medrecon.priors.load_prior`; batch
    workers pass a cache so each worker loads (and sha256-checks) its prior once, not once per study.
    """
    allowed = registry.names(inp.modality)
    if cfg.method not in allowed:
        raise InputError(f"method {cfg.method!r} does not apply to {inp.modality.upper()} data; choose from "
                         f"{', '.join(allowed)}")
    if cfg.samples < 1:
        raise InputError("--samples must be at least 1")
    if cfg.data_term != "ls" and inp.modality != "ct":
        raise InputError(f"--data-term {cfg.data_term} applies to CT sinograms; MRI k-space uses least squares")
    device = resolve_device(cfg.device)
    # All rows (slice x sample) in one network batch, unless that would not fit the memory budget (issue 22).
    fitted = fit_batch_size(inp, cfg, device)
    if fitted is not None and cfg.volume:
        # Volume mode samples a slab's rows in one batch: the memory budget sets the slab instead.
        slab = cfg.slab if cfg.slab is not None else max(2, fitted // cfg.samples)
        print(f"medrecon: volume mode in slabs of {slab} slices, to fit the memory budget (--slab sets it)",
              file=sys.stderr, flush=True)
        cfg, fitted = replace(cfg, slab=slab), None
    if fitted is not None:
        rows = int(inp.data.shape[0]) * cfg.samples
        print(f"medrecon: {fitted} of {rows} rows (slice x sample) per network batch, to fit the memory budget "
              "(--batch-size sets it)", file=sys.stderr, flush=True)
        cfg = replace(cfg, batch_size=fitted)
    # Before any heavy work: MEDRECON_MAX_GB bounds each input array, not what the method then allocates.
    # (Volume mode's network batch is one slab of slices x samples.)
    check_working_memory(inp, replace(cfg, batch_size=cfg.slab * cfg.samples) if cfg.volume and cfg.slab else cfg,
                         None, device)
    prior = None
    if registry.get(cfg.method).learned:
        if load_prior is None:
            from medrecon.priors import load_prior
        prior = load_prior(cfg.prior, inp.modality, device)
    warning = scale_warning(prior, inp.pixel_mm) if prior is not None else None
    if warning:
        print(f"medrecon: {warning}", file=sys.stderr, flush=True)
    if cfg.method == "dps" and inp.modality == "ct" and cfg.method_params("ct")["steps"] < 1000:
        # Measured (benchmarks/results/ct_example_sweep_2026-12-04): 60 strided steps give 16 dB where FBP
        # gives 30, and larger step sizes diverge; the CT prior's structures are not pulled back by the data.
        print("medrecon: warning: DPS on CT below its 1000 steps invents structure (far below FBP in our "
              "measurements); use --method fast for CT", file=sys.stderr, flush=True)
    if inp.modality == "mri" and inp.trajectory is not None:
        from medrecon.recon.noncart import reconstruct_noncartesian

        noise = cfg.noise_std if cfg.noise_std is not None else inp.noise_std
        maps, maps_label = _coil_maps(inp, cfg.maps)
        res = reconstruct_noncartesian(inp.data, inp.trajectory, tuple(inp.recon_size), cfg, device, prior, noise,
                                       maps=maps, dcf=inp.dcf)
        if cfg.method != "zero-filled":
            res.info["coil_maps"] = maps_label if maps is not None else "ESPIRiT on the gridded k-space centre"
    elif inp.modality == "mri":
        from medrecon.recon.mri import mask_for, reconstruct_kspace

        mask, mask_info = mask_for(inp.data, inp.mask, cfg)
        if not np.any(mask):
            raise InputError("the sampling mask selects no k-space samples; check --mask/--accel or the file's mask")
        if "warning" in mask_info:  # an option that had no effect (issue 23, defect 10); the run record keeps it
            print(f"medrecon: {mask_info['warning']}", file=sys.stderr, flush=True)
        noise = cfg.noise_std if cfg.noise_std is not None else inp.noise_std
        maps, maps_label = _coil_maps(inp, cfg.maps)
        res = reconstruct_kspace(inp.data, mask, inp.recon_size, cfg, device, prior, noise, maps=maps)
        res.info["mask"] = mask_info
        if cfg.method != "zero-filled":
            res.info["coil_maps"] = maps_label
    else:
        from medrecon.io.sinogram import projector_from_geometry
        from medrecon.recon.ct import reconstruct_sinogram

        res = reconstruct_sinogram(inp.data, projector_from_geometry(inp.geometry), cfg, device, inp.mu_water,
                                   inp.photons, prior)
    res.info["device"] = str(device)
    if fitted is not None:
        res.info["batch_size"] = fitted
    if prior is not None:
        res.info["prior"] = {"name": prior.name, "sha256": prior.metadata["weights"]["sha256"],
                             "modality": prior.modality}
        if warning:
            res.info["prior"]["scale_warning"] = warning  # kept in the run record beside the prior it concerns
    if not np.isfinite(res.image).all() or (res.std is not None and not np.isfinite(res.std).all()):
        from medrecon.errors import SamplerDivergedError

        # The samplers' own guards catch most divergence mid-run; this is the last check before writing.
        raise SamplerDivergedError(f"the {cfg.method} reconstruction contains NaN/Inf values, so nothing was "
                                   "written; lower the step size (--zeta), use more --steps, or try --method fast")
    if res.std is not None and cfg.samples < 2:
        # The spread of one sample is identically zero: written, it would read as "no uncertainty" (issue 25).
        res.std = None
    if registry.is_learned(cfg.method):
        res.info["std"] = (f"posterior std of {cfg.samples} samples" if res.std is not None else
                           "not written: a posterior std needs --samples 2 or more")
    return res


def write_outputs(out: Path, inp: LoadedInput, res: ReconResult, cfg: ReconConfig, fmt: Optional[str] = None,
                  like: Optional[Path] = None) -> list[Path]:
    """Write the reconstruction (and std map) in ``fmt`` (an output format of the format registry; by default
    chosen from ``out``'s name); returns the paths written."""
    from medrecon.io import formats

    spec = formats.output(out, fmt)
    return spec.write(out, formats.Output(
        res.image, res.std, res.modality, cfg.method, cfg.samples, res.info.get("prior", {}).get("name", "none"),
        inp.affine, inp.space if inp.affine is not None else None, like))


def reconstruct_file(inp_path: Path, out: Path, cfg: ReconConfig, fmt: Optional[str] = None,
                     like: Optional[Path] = None, command: Optional[list] = None,
                     axes: Optional[str] = None, load_prior: Optional[Callable] = None) -> ReconResult:
    """Read, reconstruct, write outputs and the run record (``<out>.run.json``); ``load_prior`` as in
    :func:`reconstruct`."""
    from medrecon.io.atomic import check_output
    from medrecon.io.run_record import write_run_record

    from medrecon.io import formats

    # before the work: a device node, a read-only folder or /proc is one line now, not after the reconstruction
    check_output(out, folder_output=formats.output(out, fmt).out_folder)
    check_output(Path(str(out) + ".run.json"))
    if like is not None:  # a damaged template is refused now, not after the reconstruction (issue 23, defect 10)
        from medrecon.io.dicom_writer import check_like_template

        check_like_template(like)
    # Resolved before the read: the reader's memory check counts less host memory for a GPU run.
    device = resolve_device(cfg.device)
    inp = load_input(inp_path, cfg.slices, axes, cfg=cfg, device=device)
    res = reconstruct(inp, cfg, load_prior)
    metrics = None
    if inp.target is not None:
        metrics = _metrics(inp, res)
        res.info["metrics"] = metrics
    written = write_outputs(out, inp, res, cfg, fmt, like)
    inputs = [inp_path] if inp_path.exists() else [Path(str(inp_path) + ".cfl")]
    traj = Path(str(inp_path.with_suffix("") if inp_path.suffix in (".cfl", ".hdr") else inp_path) + "_traj.cfl")
    if inp.trajectory is not None and traj.exists():  # a BART pair's trajectory is an input too
        inputs.append(traj)
    write_run_record(out, command=command or sys.argv, inputs=inputs, outputs=written, method=cfg.method,
                     params={**res.params, "samples": cfg.samples, "slices": cfg.slices,
                             "batch_size": res.info.get("batch_size", cfg.batch_size),
                             "autocast": cfg.autocast, "compile": cfg.compile,
                             "data_term": res.info.get("data_term"), "mask": res.info.get("mask"),
                             "support": res.info.get("support"), "coil_maps": res.info.get("coil_maps"),
                             "std": res.info.get("std"), "volume": res.info.get("volume"),
                             "trajectory": res.info.get("trajectory")},
                     prior=res.info.get("prior"), seeds={"sampler": cfg.seed, "mask": (res.info.get("mask") or {}).get("seed")},
                     device=res.info["device"], seconds=res.seconds, nfe=res.nfe, metrics=metrics,
                     data_misfit=res.info.get("data_misfit"))
    return res


#: What ``recon``'s metrics mean (printed and in the run record): the same numbers ``medrecon evaluate`` gives.
METRIC_CONVENTION = {"mri": "fastMRI evaluate.py: volume max as peak, centre crop to width x width",
                     "ct": "volume max as peak, HU + 1000, whole image"}


def _metrics(inp: LoadedInput, res: ReconResult) -> dict:
    from medrecon.metrics import center_crop, fastmri_crop, volume_metrics

    gt = inp.target.astype(np.float64)
    pred = res.image.astype(np.float64)
    if res.modality == "ct":  # HU -> attenuation-like non-negative scale for PSNR's peak
        gt, pred = gt + 1000.0, pred + 1000.0
        h, w = min(gt.shape[-2], pred.shape[-2]), min(gt.shape[-1], pred.shape[-1])
        gt, pred = center_crop(gt, (h, w)), center_crop(pred, (h, w))
    else:  # exactly as `medrecon evaluate` (fastMRI's evaluate.py) scores the written file
        gt, pred = fastmri_crop(gt, pred)
    scores = {k: round(float(v), 5) for k, v in volume_metrics(gt, pred).items()}
    return {**scores, "convention": METRIC_CONVENTION[res.modality]}
