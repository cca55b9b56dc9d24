"""Compare diffusion priors of one modality on the same held-out crops and the same sample seeds.

Two measurements, both independent of any reconstruction setting:

* held-out denoising: Tweedie PSNR at several timesteps on identical crops (the same numbers a bundle's
  model card records, but on crops of one size for every prior, so they can be compared);
* unconditional samples from the same seeds, one row per prior, in one figure under a row of real held-out
  crops at the same size and pixel size (model cards' sampler by
  default: ancestral, 250 strided steps; ``--eta 0 --sample-steps 50`` for deterministic DDIM).

Usage::

    python benchmarks/compare_priors.py --modality mri --heldout .gpu/mri_held.npz \\
        --prior mri-brain --prior .cpu_prior/mri-brain-small --size 64 128 --out /tmp/cmp_mri

writes ``OUT/denoising.json`` (with ``samples_out_of_range``: samples whose 99th-percentile intensity exceeds
1.5x the brightest held-out crop), ``OUT/samples_SIZE.png`` and prints a markdown table.
Run it on an otherwise idle machine: it is CPU-heavy (about a minute per prior and size on 2 cores).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from medrecon.priors import load_prior
from medrecon.priors.data import SliceSampler, load_training_volumes
from medrecon.priors.finalize import (EVAL_PIXEL_MM, SAMPLE_STEPS, denoising_eval, sampler_label, show_sample,
                                     unconditional_samples)


def _level(imgs: np.ndarray, modality: str) -> np.ndarray:
    """Intensity above the background (MRI magnitude, CT HU + 1000) for the out-of-range count."""
    return imgs + 1000.0 if modality == "ct" else imgs


def _figure(rows: dict[str, np.ndarray], modality: str, path: Path, size: int, how: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = next(iter(rows.values())).shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(2.0 * n, 2.1 * len(rows)), squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        for i in range(n):
            show_sample(axes[r, i], imgs[i], modality)
            if i == 0:
                axes[r, i].set_ylabel(name, fontsize=7)
    fig.suptitle(f"unconditional samples, {size}x{size}, {how}, same seeds per column", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modality", choices=["mri", "ct"], required=True)
    ap.add_argument("--heldout", required=True, help="held-out volumes (files or a train-prior cache .npz)")
    ap.add_argument("--prior", action="append", required=True, help="prior name or bundle folder (repeat)")
    ap.add_argument("--size", type=int, nargs="+", default=[64, 128], help="crop / sample sizes")
    ap.add_argument("--pixel-mm", type=float, default=None,
                    help="pixel size of the held-out crops (default: the model cards' 1.0 mm MRI, 1.5 mm CT); "
                         "set it for priors trained with train-prior --pixel-mm")
    ap.add_argument("--n-eval", type=int, default=32, help="held-out crops per size")
    ap.add_argument("--n-samples", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample-steps", type=int, default=SAMPLE_STEPS, help="sampling steps (default %(default)s)")
    ap.add_argument("--eta", type=float, default=1.0, help="1: ancestral (default), 0: deterministic DDIM")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pix = (args.pixel_mm, args.pixel_mm) if args.pixel_mm else EVAL_PIXEL_MM[args.modality]
    held = load_training_volumes([args.heldout], args.modality, finest_mm=pix[0])
    priors = {p: load_prior(p, args.modality) for p in args.prior}
    table: dict = {"heldout": args.heldout, "n_eval": args.n_eval, "pixel_mm": pix[0], "results": {}}
    for size in args.size:
        ref = SliceSampler(held, args.modality, size, pix, seed=args.seed + 1).batch(args.n_samples)
        rows = {"held-out crops": (ref.abs() if ref.is_complex() else ref).float().numpy()}  # what plausible looks like
        ceiling = 1.5 * float(_level(rows["held-out crops"], args.modality).max())
        for name, prior in priors.items():
            sampler = SliceSampler(held, args.modality, size, pix, seed=999)
            table["results"].setdefault(name, {})[str(size)] = denoising_eval(prior, sampler, n=args.n_eval)
            rows[name] = unconditional_samples(prior, args.n_samples, size, args.seed, args.sample_steps, args.eta,
                                               progress=True)
            p99 = np.percentile(_level(rows[name], args.modality).reshape(args.n_samples, -1), 99, axis=1)
            table.setdefault("samples_out_of_range", {}).setdefault(name, {})[str(size)] = int((p99 > ceiling).sum())
        _figure(rows, args.modality, out / f"samples_{size}.png", size, sampler_label(args.sample_steps, args.eta))
    (out / "denoising.json").write_text(json.dumps(table, indent=1))

    ts = [r["t"] for r in next(iter(next(iter(table["results"].values())).values()))]
    print("| prior | size | " + " | ".join(f"t={t}" for t in ts) + " |")
    print("|---|---|" + "---|" * len(ts))
    for name, by_size in table["results"].items():
        for size, rows_ in by_size.items():
            cells = " | ".join(f"{r['psnr_denoised']:.2f}" for r in rows_)
            print(f"| {name} | {size} | {cells} |")
    print(f"(denoised PSNR in dB on {args.n_eval} held-out crops; noisy-input PSNR is the same for every prior)")
    for name, by_size in table["samples_out_of_range"].items():
        counts = ", ".join(f"{k}/{args.n_samples} at {size}" for size, k in by_size.items())
        print(f"{name}: samples out of range ({sampler_label(args.sample_steps, args.eta)}): {counts}")
    print("(out of range: a sample's 99th-percentile intensity above the background exceeds 1.5x the brightest "
          "held-out crop, i.e. a trajectory that ran off the data, typically to the x0 clamp)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
