"""The ``train-prior`` and ``priors`` commands (registered into medrecon.cli)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from medrecon.cli.main import EXTRA_PARSERS, command


@command("train-prior")
def _train_prior(a: argparse.Namespace) -> int:
    from medrecon.priors.data import load_training_volumes, save_slice_cache
    from medrecon.priors.train import TrainConfig, train_prior

    if a.save_cache:
        vols = load_training_volumes(a.data, a.modality)
        save_slice_cache(vols, a.save_cache, a.modality, bits=a.cache_bits)
        print(f"saved {sum(len(v.slices) for v in vols)} slices from {len(vols)} volumes to {a.save_cache}")
        return 0
    net = json.loads(a.network) if a.network else {}
    cfg = TrainConfig(modality=a.modality, data=a.data, out=a.out, size=a.size, steps=a.steps,
                      batch_size=a.batch_size, lr=a.lr, max_minutes=a.max_minutes, device=a.device,
                      resume=a.resume, seed=a.seed, name=a.name, network=net, heldout=a.heldout or [],
                      checkpoint_every=a.checkpoint_every, weights_dtype=a.weights_dtype,
                      lr_scaling=a.lr_scaling, init_from=a.init_from,
                      pixel_mm=tuple(a.pixel_mm) if a.pixel_mm else None, kind=a.kind,
                      patch=_patch_settings(a), augment=tuple(a.augment.split(",")) if a.augment else (),
                      n_samples=a.n_samples, sample_steps=a.sample_steps, objective=a.objective)
    bundle = train_prior(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 writes the bundle
        print(f"prior bundle written to {bundle}")
    return 0


def _positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (argparse prints the error as one line)."""
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return v


def _patch_settings(a: argparse.Namespace) -> dict:
    """``--patch-sizes`` / ``--patch-pad`` as the patch config (checked when the prior is built)."""
    from medrecon.errors import InputError

    if (a.patch_sizes or a.patch_pad is not None) and a.kind != "patch":
        raise InputError("--patch-sizes and --patch-pad need --kind patch")
    patch = {}
    if a.patch_sizes:
        patch["sizes"] = list(a.patch_sizes)
    if a.patch_pad is not None:
        patch["pad"] = a.patch_pad
    return patch


@command("priors")
def _priors(a: argparse.Namespace) -> int:
    from medrecon.priors import list_priors

    if getattr(a, "priors_command", None) == "samples":
        return _prior_samples(a)

    rows = list_priors()
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no priors found")
        return 0
    print(f"{'name':<16} {'modality':<8} {'params':>10} {'steps':>7}  {'origin':<8} path")
    for r in rows:
        print(f"{r['name']:<16} {r['modality']:<8} {r['params'] or 0:>10,} {r['training']['steps'] or 0:>7}  "
              f"{r['origin']:<8} {r['path']}")
    return 0


def _prior_samples(a: argparse.Namespace) -> int:
    from medrecon.device import resolve_device
    from medrecon.errors import InputError
    from medrecon.priors.bundle import load_bundle
    from medrecon.priors.finalize import SAMPLE_STEPS, sample_figure, sampler_label
    from medrecon.priors.registry import resolve_prior

    out = Path(a.out)
    if out.suffix.lower() != ".png":
        raise InputError(f"--out must be a .png file, got {out.name!r}")
    if not out.parent.is_dir():
        raise InputError(f"folder {out.parent} does not exist")
    if a.steps is None:
        a.steps = SAMPLE_STEPS
    if a.n < 1 or a.size < 8 or a.steps < 1 or not 0.0 <= a.eta <= 1.0:
        raise InputError("need --n >= 1, --size >= 8, --steps >= 1 and 0 <= --eta <= 1")
    prior = load_bundle(resolve_prior(a.prior, None), resolve_device(a.device))
    if a.steps > prior.num_timesteps:
        raise InputError(f"--steps {a.steps} exceeds the prior's {prior.num_timesteps} training timesteps")
    sample_figure(prior, out, a.n, a.size, a.seed, a.steps, a.eta, progress=True)
    print(f"{a.n} samples of {prior.name} ({sampler_label(a.steps, a.eta)}, {a.size}x{a.size}, seed {a.seed}) "
          f"written to {out}")
    return 0


def _add_train_prior(sub) -> None:
    p = sub.add_parser("train-prior", help="train a diffusion prior on real scans (MONAI)",
                       description="Train a MONAI DiffusionModelUNet prior and write a verifiable bundle.")
    p.add_argument("--modality", choices=["mri", "ct"], required=True)
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="NIfTI/DICOM/NRRD/fastMRI h5 files, DICOM series folders, or a prepared .npz slice cache")
    p.add_argument("--out", required=True, help="bundle folder to write (training state goes to OUT/training)")
    p.add_argument("--heldout", nargs="+", metavar="PATH", help="held-out volumes for the denoising evaluation")
    p.add_argument("--size", type=int, default=128, help="training crop size in pixels (default 128)")
    p.add_argument("--steps", type=int, default=20000, help="planned optimizer steps (default 20000)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this wall time")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/training/checkpoint.pt")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None, help="prior name (default: the folder name)")
    p.add_argument("--network", default=None, help='JSON overrides of the network, e.g. \'{"channels": [32,64,64,64]}\'')
    p.add_argument("--weights-dtype", choices=["float16", "float32"], default="float16")
    p.add_argument("--init-from", default=None, metavar="PRIOR",
                   help="warm start: begin from this prior's weights (name or bundle folder, same modality; its "
                        "network, schedule and normalization are kept); a fresh optimizer and learning-rate "
                        "schedule; the metadata records the source and the total steps and minutes")
    p.add_argument("--pixel-mm", nargs=2, type=float, default=None, metavar=("FINEST", "COARSEST"),
                   help="training pixel-size range in mm: crops are zoomed to a random size in it, never upsampled "
                        "(default: MRI 0.9 1.8, CT 1.4 3.0; with --init-from, the source's); e.g. 0.5 1.0 for "
                        "fastMRI knee. Recorded in the metadata; recon warns when an image falls outside it")
    p.add_argument("--lr-scaling", choices=["sqrt", "linear", "none"], default="sqrt",
                   help="under torchrun: scale --lr by sqrt(world size) (default), world size, or not at all")
    p.add_argument("--kind", choices=["whole", "patch"], default=None,
                   help="whole: the network sees whole crops (default); patch: PaDIS patches of mixed sizes with two "
                        "position channels, tiled at sampling time (with --init-from a whole-image prior, its weights "
                        "start the patch network)")
    p.add_argument("--patch-sizes", nargs="+", type=int, default=None, metavar="PX",
                   help="with --kind patch: training patch sizes, multiples of 8 (default 16 32 64; the largest is the "
                        "sampling tile)")
    p.add_argument("--patch-pad", type=int, default=None, metavar="PX",
                   help="with --kind patch: background padding around each training image (default 64)")
    p.add_argument("--augment", default=None, metavar="LIST",
                   help="extra MONAI augmentations, comma-separated: rotate (up to 10 degrees), elastic, gamma and "
                        "bias (MRI only: CT numbers are calibrated); default none, beyond the zoom, crop, flips, "
                        "intensity jitter and (MRI) smooth phase that every run uses. Recorded in the metadata")
    p.add_argument("--objective", choices=["epsilon", "edm"], default=None,
                   help="what the network learns: epsilon (noise prediction, DDPM; the default and the shipped "
                        "priors') or edm (Karras et al. 2022 preconditioning with their noise-level distribution; "
                        "sigma_data measured on the training crops). With --init-from or --resume, the source's")
    p.add_argument("--n-samples", type=_positive_int, default=4, metavar="N",
                   help="unconditional samples drawn for the model card's figure (default 4)")
    p.add_argument("--sample-steps", type=_positive_int, default=250, metavar="N",
                   help="ancestral steps per model-card sample (default 250; fewer finish a CPU run sooner, "
                        "with rougher samples)")
    p.add_argument("--save-cache", default=None, metavar="NPZ",
                   help="only prepare the training slices and save them to this .npz, then exit")
    p.add_argument("--cache-bits", type=int, choices=[8, 16], default=16,
                   help="with --save-cache: float16 (16, default) or per-slice 8-bit codes (8, about half the size)")


def _add_priors(sub) -> None:
    p = sub.add_parser("priors", help="list available priors")
    psub = p.add_subparsers(dest="priors_command", metavar="list|samples")
    pl = psub.add_parser("list", help="list shipped and user priors")
    pl.add_argument("--json", action="store_true")
    ps = psub.add_parser("samples", help="draw unconditional samples of a prior to a PNG",
                         description="Draw unconditional samples of a prior (what its model card shows) to a PNG.")
    ps.add_argument("prior", metavar="PRIOR", help="prior name (see `medrecon priors list`) or bundle folder")
    ps.add_argument("--out", required=True, help="PNG file to write")
    ps.add_argument("--n", type=int, default=4, help="number of samples (default 4)")
    ps.add_argument("--size", type=int, default=128, help="image size in pixels (default 128)")
    ps.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model cards' 250)")
    ps.add_argument("--eta", type=float, default=1.0, help="1: ancestral DDPM (default); 0: deterministic DDIM")
    ps.add_argument("--seed", type=int, default=0)
    ps.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")


EXTRA_PARSERS.extend([("train-prior", _add_train_prior), ("priors", _add_priors)])
