"""Command-line parsers for recon, simulate, evaluate and demo (registered into medrecon.cli)."""

from __future__ import annotations

import argparse
import json

from pathlib import Path

from medrecon.cli.main import EXTRA_PARSERS, command
from medrecon import methods as registry
from medrecon.io import formats
from medrecon.recon.config import FIELD_PARAMS, GIVEN_OPTIONS, ReconConfig

def _methods_help() -> str:
    """One line per registered method for ``recon --help`` (modalities and parameters with defaults)."""
    lines = []
    for m in registry.METHODS.values():
        ps = []
        for f in m.param_fields():
            by = f.metadata["by_modality"]
            d = f.default if not by else "/".join(f"{v}" for v in [f.default, *by.values()]) + \
                " (" + "/".join(["mri", *by]) + ")"
            ps.append(f"{f.name}={d}")
        lines.append(f"{m.name} [{', '.join(m.modalities)}]{': ' + ', '.join(ps) if ps else ''}")
    return "; ".join(lines)


def _add_recon(sub) -> None:
    from medrecon.sampling.zcouple import SOLVES

    p = sub.add_parser("recon", help="reconstruct k-space or sinogram files",
                       description="Reconstruct MRI k-space (fastMRI h5, ISMRMRD h5, BART cfl) or CT sinograms "
                                   "(from `medrecon simulate ct`). Writes the image and <out>.run.json.")
    p.add_argument("input", help="input file (or a folder/glob with --out DIR for a batch)")
    p.add_argument("--method", required=True, choices=sorted(registry.names()),
                   help="reconstruction method (`medrecon methods` lists them): " + _methods_help().replace("%", "%%"))
    p.add_argument("--out", required=True, help="output .h5 (fastMRI submission layout), .nii/.nii.gz, .png, or a "
                                                "folder with --format dicom")
    p.add_argument("--format", choices=formats.outputs(), default=None,
                   help="default: from --out's name (" + ", ".join(
                       f"{s.output}: {'/'.join(s.out_names)}" for s in formats.FORMATS.values() if s.out_names)
                   + f"; otherwise {formats.DEFAULT_OUTPUT})")
    p.add_argument("--like", default=None, help="DICOM file/folder whose patient and study modules the output copies")
    p.add_argument("--prior", default=None, help="prior name or bundle folder (default: shipped prior of the modality)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (dps 1000, fast 50, langevin 100 levels, daps 50 levels)")
    p.add_argument("--zeta", type=float, default=None, help="DPS step size")
    p.add_argument("--cg-iters", type=int, default=None, help="fast and langevin samplers: CG iterations per step (MRI 5, CT 20)")
    p.add_argument("--eta", type=float, default=None, help="fast sampler: DDIM stochasticity (0..1)")
    p.add_argument("--lam", type=float, default=None, help="regularization weight: MRI cs-wavelet/cs-tv relative to max|A^H y| (0.005/0.002); "
                   "CT tv in units of mu_water (1.0)")
    p.add_argument("--iters", type=int, default=None, help="iterations of sense/cs/tv")
    _add_method_options(p)
    p.add_argument("--samples", type=int, default=1, help="posterior samples per slice (std map when > 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=None, help="rows (slice x sample) per network batch")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the network (GPU; on the CPU about 2x faster where "
                   "it has native bf16, AVX512-BF16 or AMX, and slower elsewhere)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network once per run (for the GPU; on a CPU it costs 20-50 s and gains nothing)")
    p.add_argument("--data-term", choices=["ls", "pwls", "poisson"], default="ls",  # recon.problems.CT_DATA_TERMS
                   help="CT: least squares on the line integrals (ls), weighted by each ray's counts (pwls; needs "
                        "the scan's photon count): tv becomes PWLS-TV, the samplers weight their likelihood; or the "
                        "pre-log Poisson likelihood, re-expanded at every step (poisson; fast and langevin)")
    p.add_argument("--volume", action="store_true",
                   help="reconstruct the slices as one volume: the samplers couple neighbouring slices by TV along z at "
                        "every step, cs-tv/tv become 3-D TV (needs >= 2 contiguous slices)")
    p.add_argument("--z-weight", type=float, default=None,
                   help="--volume: weight along z (samplers: TV threshold per unit of the estimate's error; cs-tv/tv: "
                        "relative to the in-plane TV weight; default: measured per method and modality; 0: slice by slice)")
    p.add_argument("--z-solve", choices=list(SOLVES), default=None,
                   help="--volume, fast and langevin: couple the slices before each data step (prox) or solve TV along z "
                        "jointly with it by ADMM (admm; admm-carry keeps the ADMM variables from step to step); "
                        "default: measured per modality")
    p.add_argument("--z-rho", type=float, default=None,
                   help="--z-solve admm: the penalty on the z differences relative to the data term (default: measured)")
    p.add_argument("--slab", type=int, default=None,
                   help="--volume: slices per slab (default: the whole study, or what fits the memory budget); "
                        "slabs overlap by a quarter and are blended")
    p.add_argument("--mask", default=None, help="undersample fully sampled k-space with a fastMRI mask kind")
    # No argparse defaults: ReconConfig holds them, and an option the user gave for a file it cannot apply to
    # (already undersampled, or no --mask) is then reported instead of silently dropped (ReconConfig.given).
    p.add_argument("--accel", type=int, default=None, help="acceleration of --mask (default 4)")
    p.add_argument("--center-fraction", type=float, default=None,
                   help="fully sampled centre of --mask, a fraction of the columns (default 0.08)")
    p.add_argument("--mask-seed", type=int, default=None, help="seed of --mask (default: --seed)")
    p.add_argument("--slices", default=None, help="slice range a:b")
    p.add_argument("--axes", default=None, help="axis order of .npy/.npz k-space, letters S C H W (e.g. SCHW, HWC)")
    p.add_argument("--noise-std", type=float, default=None, help="k-space noise std (default: file or estimate)")
    p.add_argument("--support", choices=["auto", "none"], default="auto",
                   help="dps/fast: auto (default) keeps the image empty where the measurement cannot see it "
                        "(MRI: outside the coil maps); none leaves the prior free there")
    p.add_argument("--maps", choices=["auto", "espirit", "true"], default="auto",
                   help="MRI coil maps: auto (default: the file's own maps if it carries them, else ESPIRiT), "
                        "espirit (always estimate), true (the maps a `medrecon simulate mri` file stores, for "
                        "sweeps that separate map error from reconstruction error)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_scale_options(p)


_TYPES = {"int": int, "float": float, "str": str, "bool": lambda v: v.lower() in ("1", "true", "yes")}


def _extra_params() -> list[str]:
    """Registered method parameters that have no ReconConfig field (a method added in one place brings them)."""
    return [n for n in registry.param_names() if n not in FIELD_PARAMS]


def _add_method_options(p) -> None:
    """One flag per parameter of a registered method beyond the built-in ones (``--my-param``)."""
    for name in _extra_params():
        f = registry.param_field(name)
        t = f.type if isinstance(f.type, str) else f.type.__name__
        owners = [m for m in registry.METHODS.values() if name in {x.name for x in m.param_fields()}]
        defaults = {m.name: next(x.default for x in m.param_fields() if x.name == name) for m in owners}
        default = (f"default {f.default}" if len(set(defaults.values())) == 1
                   else "defaults " + ", ".join(f"{k} {v}" for k, v in defaults.items()))  # e.g. --tv
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=_TYPES.get(t, str), default=None,
                       help=f"{', '.join(defaults)}: {f.metadata['help']} ({default})".replace("%", "%%"))


def _add_scale_options(p) -> None:
    """Batch scale-out flags (a folder or glob input); see docs/scaling.md."""
    g = p.add_argument_group("batches (folder or glob input)",
                             "Each study is seeded by --seed and its file name, so every executor, shard and retry "
                             "writes the same output; OUT/manifest.json records done / failed / pending.")
    from medrecon.scale.run import EXECUTORS

    g.add_argument("--executor", choices=EXECUTORS, default=EXECUTORS[0],
                   help="where studies run: this process (default), Ray actors, or a Slurm job array (submitit)")
    g.add_argument("--shard", default=None, metavar="K/N",
                   help="only shard K of N (K from 0) of the sorted study list, e.g. $SLURM_ARRAY_TASK_ID/8")
    g.add_argument("--only-failed", action="store_true", help="retry only the studies the manifest records as failed")
    g.add_argument("--gpus", type=float, default=None, help="GPUs to use (ray: default all; slurm: array tasks x GPUs)")
    g.add_argument("--gpus-per-worker", type=float, default=1.0,
                   help="GPUs per Ray actor; 0.5 puts two actors on each GPU (default 1)")
    g.add_argument("--workers", type=int, default=None,
                   help="number of Ray actors / Slurm array tasks (default: one per GPU, or per CPU without GPUs)")
    g.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT",
                   help="join a running Ray cluster (default: start a local one, or the job's under ray job submit)")
    g.add_argument("--max-retries", type=int, default=2,
                   help="retries of a study whose worker died (ray, slurm; default 2)")
    g.add_argument("--slurm-partition", default=None)
    g.add_argument("--slurm-time", type=int, default=240, metavar="MINUTES", help="time limit per array task")
    g.add_argument("--slurm-param", action="append", default=[], metavar="KEY=VALUE",
                   help="extra sbatch option, e.g. account=myproj or qos=high (repeatable)")


def _scale_options(a: argparse.Namespace):
    """The ScaleOptions of the parsed batch flags."""
    from medrecon.errors import InputError
    from medrecon.scale import ScaleOptions, parse_shard

    extra = {}
    for kv in a.slurm_param:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            raise InputError(f"--slurm-param wants KEY=VALUE, got {kv!r}")
        extra[key.strip()] = value.strip()
    if a.max_retries < 0:
        raise InputError("--max-retries must be 0 or more")
    slurm = {"partition": a.slurm_partition, "timeout_min": a.slurm_time, "extra": extra}
    return ScaleOptions(executor=a.executor, shard=parse_shard(a.shard) if a.shard else None,
                        only_failed=a.only_failed, gpus=a.gpus, gpus_per_worker=a.gpus_per_worker, workers=a.workers,
                        ray_address=a.ray_address, max_retries=a.max_retries, slurm=slurm, quiet=a.quiet)


def _batch_flags_used(a: argparse.Namespace) -> list[str]:
    used = [("--executor", a.executor != "local"), ("--shard", a.shard), ("--only-failed", a.only_failed),
            ("--gpus", a.gpus is not None), ("--workers", a.workers is not None), ("--ray-address", a.ray_address)]
    return [name for name, on in used if on]


@command("recon")
def _recon(a: argparse.Namespace) -> int:
    from medrecon.app.pipeline import reconstruct_file

    given = {k: getattr(a, k) for k in GIVEN_OPTIONS if getattr(a, k) is not None}
    cfg = ReconConfig(method=a.method, prior=a.prior, steps=a.steps, zeta=a.zeta, cg_iters=a.cg_iters, eta=a.eta,
                      lam=a.lam, iters=a.iters, samples=a.samples, seed=a.seed, device=a.device,
                      batch_size=a.batch_size, autocast=a.bf16, compile=a.compile, data_term=a.data_term, mask=a.mask, slices=a.slices,
                      noise_std=a.noise_std, progress=not a.quiet, support=a.support, maps=a.maps,
                      volume=a.volume, z_weight=a.z_weight, slab=a.slab,
                      z_solve=a.z_solve, z_rho=a.z_rho,
                      options={n: getattr(a, n) for n in _extra_params() if getattr(a, n, None) is not None},
                      given=tuple(given), **given)
    inp = Path(a.input)
    if inp.is_dir() or any(c in a.input for c in "*?["):
        from medrecon.app.batch import run_batch
        from medrecon.io.atomic import check_output_folder

        check_output_folder(a.out)  # a read-only or special output is refused before any study starts
        if a.like:  # a damaged template fails once here, not once per study after its reconstruction
            from medrecon.io.dicom_writer import check_like_template

            check_like_template(a.like)
        return run_batch(a.input, Path(a.out), cfg, a.format, Path(a.like) if a.like else None, _scale_options(a))
    if _batch_flags_used(a):
        from medrecon.errors import InputError

        raise InputError(f"{', '.join(_batch_flags_used(a))} apply to batches; give a folder or glob as the input")
    res = reconstruct_file(inp, Path(a.out), cfg, a.format, Path(a.like) if a.like else None, axes=a.axes)
    msg = f"{a.method}: {res.image.shape[0]} slice(s) in {res.seconds:.1f} s"
    if res.nfe:
        msg += f", {res.nfe} network evaluations"
    if "metrics" in res.info:
        m = res.info["metrics"]
        msg += (f"; PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, NMSE {m['nmse']:.4f} "
                f"({'fastMRI evaluate.py convention' if res.modality == 'mri' else 'volume max, HU + 1000'})")
    fit = res.info.get("data_misfit")
    if fit:  # numbers only: nothing here can name a patient
        msg += f"; data misfit {fit['mean']:.4g} (noise level {sum(fit['noise_misfit']) / len(fit['noise_misfit']):.4g})"
    print(msg + f" -> {a.out}")
    return 0


def _add_methods(sub) -> None:
    p = sub.add_parser("methods", help="list the reconstruction methods, their modalities and parameters",
                       description="List the registered reconstruction methods (medrecon/methods.py): where each "
                                   "applies, whether it needs a prior, and its parameters with their defaults.")
    p.add_argument("--json", action="store_true", help="machine-readable output")


@command("methods")
def _methods(a: argparse.Namespace) -> int:
    rows = registry.describe()
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        kind = "learned (needs a prior)" if r["learned"] else "classical"
        needs = f", needs `{r['needs']}`" if r["needs"] else ""
        print(f"{r['name']:<12} {'/'.join(r['modalities']):<7} {kind}{needs}: {r['summary']}")
        for p in r["params"]:
            by = "".join(f", {k} {v}" for k, v in p.get("default_by_modality", {}).items())
            print(f"    --{p['name'].replace('_', '-'):<10} {p['default']}{by}  {p['help']}")
    return 0


def _add_simulate(sub) -> None:
    p = sub.add_parser("simulate", help="simulate measurements from real images")
    ss = p.add_subparsers(dest="sim_kind", metavar="mri|ct", required=True)
    m = ss.add_parser("mri", help="multi-coil Cartesian k-space (fastMRI layout) from a NIfTI/DICOM image")
    m.add_argument("--image", required=True)
    m.add_argument("--slices", default=None, help="slice range a:b")
    m.add_argument("--mask", default="random", help="fastMRI mask kind (random, equispaced, ..._fraction, magic)")
    m.add_argument("--accel", type=int, default=4)
    m.add_argument("--center-fraction", type=float, default=0.08)
    m.add_argument("--coils", type=int, default=8)
    m.add_argument("--noise-std", type=float, default=0.0, help="k-space noise std relative to the image scale")
    m.add_argument("--size", type=int, default=None,
                   help="resample slices so the longer side has SIZE pixels (same field of view)")
    m.add_argument("--trajectory", default=None, metavar="radial|golden-radial|spiral",
                   help="non-Cartesian k-space instead of masked Cartesian (docs/noncartesian.md): --out FILE.npz "
                        "(npz with kspace, traj, matrix), FILE.h5 (ISMRMRD) or FILE.cfl (BART pair + FILE_traj)")
    m.add_argument("--spokes", type=int, default=64, help="radial spokes or spiral interleaves (with --trajectory)")
    m.add_argument("--readout", type=int, default=None,
                   help="samples per spoke or interleave (default: twice the matrix, readout oversampling 2)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", required=True)
    c = ss.add_parser("ct", help="sparse-view / low-dose sinogram from a HU image (NIfTI, DICOM file or folder)")
    c.add_argument("--image", required=True)
    c.add_argument("--slices", default=None)
    c.add_argument("--views", type=int, default=60)
    c.add_argument("--geometry", choices=["parallel", "fan"], default="parallel")
    from medrecon.acquisition.scanners import SCANNERS

    fan = c.add_argument_group("fan-beam geometry (with --geometry fan; docs/ct_geometry.md)",
                               "a clinical geometry in mm, fixed whatever --size: a preset and/or all of --sid, "
                               "--sdd, --detector-pitch, --detectors (flags override the preset); none of them: "
                               "source and detector at 4 and 6 image widths")
    fan.add_argument("--scanner", default=None, metavar="NAME",
                     help="preset: " + "; ".join(f"{p.name} ({p.sid_mm:g}/{p.sdd_mm:g} mm, {p.detectors} x "
                                                 f"{p.detector_pitch_mm:g} mm, {p.detector})" for p in SCANNERS.values()))
    fan.add_argument("--sid", type=float, default=None, metavar="MM", help="source-to-isocentre distance (mm)")
    fan.add_argument("--sdd", type=float, default=None, metavar="MM", help="source-to-detector distance (mm)")
    fan.add_argument("--detector-pitch", type=float, default=None, metavar="MM",
                     help="channel pitch at the detector (mm; arc length on a curved detector)")
    fan.add_argument("--detectors", type=int, default=None, metavar="N", help="channels per view")
    fan.add_argument("--detector", default=None, metavar="flat|curved",
                     help="detector shape (default: the preset's, else flat)")
    fan.add_argument("--scan", default="full", metavar="full|short",
                     help="full: 2 pi; short: pi + the fan angle, FBP with Parker weights (default full)")
    c.add_argument("--photons", type=float, default=None, help="incident photons per ray (low dose); none = noiseless")
    c.add_argument("--size", type=int, default=None,
                   help="resample slices to SIZE x SIZE (same field of view; a clinical fan beam's mm stay as they are)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", required=True)


@command("simulate")
def _simulate(a: argparse.Namespace) -> int:
    from medrecon.app.simulate import simulate_ct_file, simulate_mri_file

    if a.sim_kind == "mri" and a.trajectory:
        from medrecon.app.simulate import simulate_noncartesian_file

        info = simulate_noncartesian_file(a.image, a.out, a.trajectory, a.spokes, a.readout, a.slices, a.coils,
                                          a.noise_std, a.seed, size=a.size)
    elif a.sim_kind == "mri":
        info = simulate_mri_file(a.image, a.out, a.slices, a.mask, a.accel, a.center_fraction, a.coils, a.noise_std,
                                 a.seed, size=a.size)
    else:
        info = simulate_ct_file(a.image, a.out, a.views, a.geometry, a.photons, a.seed, a.slices, size=a.size,
                                fan={"scanner": a.scanner, "sid_mm": a.sid, "sdd_mm": a.sdd,
                                     "detector_pitch_mm": a.detector_pitch, "detectors": a.detectors,
                                     "detector": a.detector, "scan": a.scan})
    print(f"wrote {a.out}: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="fastMRI metrics (NMSE, PSNR, SSIM) of reconstructions against targets")
    p.add_argument("--target", required=True, help="folder of target h5 files (reconstruction_rss/esc)")
    p.add_argument("--recon", required=True, help="folder of reconstruction h5 files (same names)")
    p.add_argument("--target-key", default=None)
    p.add_argument("--volume", action="store_true",
                   help="also the volume metrics of each file's slices as one contiguous volume: 3-D SSIM, the "
                        "sagittal and coronal reformats' PSNR/SSIM, the slice-difference (stripe) PSNR")
    p.add_argument("--json", action="store_true")


@command("evaluate")
def _evaluate(a: argparse.Namespace) -> int:
    from medrecon.metrics import evaluate_folders, format_summary

    summary = evaluate_folders(a.target, a.recon, a.target_key, volume=a.volume)
    if a.json:
        print(json.dumps(_no_nan(summary), indent=2, allow_nan=False))
    else:  # one line per convention (docs/benchmarks.md: the two are not comparable)
        print(f"{summary['n_volumes']} volume(s)")
        print("fastMRI convention (volume max): " + format_summary(summary["fastmri"]))
        print("per-slice convention:            " + format_summary(summary["per_slice"]))
        if "volume3d" in summary:  # medrecon.metrics3d: each file as one contiguous volume
            print("volume (3-D, reformats, dz):     " + format_summary(summary["volume3d"]))
    return 0


def _no_nan(obj):
    """JSON has no NaN: a spread over a single volume is undefined, so it becomes null."""
    import math

    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    if hasattr(obj, "item"):
        obj = obj.item()
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the end-to-end demo on the shipped sample scans")
    p.add_argument("--modality", choices=["mri", "ct", "both"], default="both")
    p.add_argument("--out", default="medrecon-demo")
    p.add_argument("--device", default="auto")
    p.add_argument("--full", action="store_true", help="full settings (1000-step DPS); meant for a GPU")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="the networks' arithmetic: auto = bf16 on a CPU with native bf16 (AVX512-BF16/AMX), "
                        "else fp32")


@command("demo")
def _demo(a: argparse.Namespace) -> int:
    from medrecon.app.demo import run_demo

    run_demo(a.modality, Path(a.out), a.device, full=a.full, precision=a.precision)
    return 0


EXTRA_PARSERS.extend([("recon", _add_recon), ("methods", _add_methods), ("simulate", _add_simulate), ("evaluate", _add_evaluate),
                      ("demo", _add_demo)])

