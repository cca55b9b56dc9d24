"""Held-out denoising PSNR of a prior, computed exactly as ``train-prior`` does for its bundle's metadata.

For comparing a background run with the shipped prior on the same held-out cache (the cache's slices change
with ``benchmarks/gpu_prepare.sh``, so numbers from different caches are not comparable)::

    python benchmarks/heldout_denoising.py mri-brain .gpu/mri_held.npz
    python benchmarks/heldout_denoising.py /path/to/bundle .gpu/mri_held.npz
"""

from __future__ import annotations

import argparse
import sys

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prior", help="a shipped prior name or a bundle folder")
    ap.add_argument("heldout", help="held-out volumes or a slice cache (.npz)")
    ap.add_argument("--modality", default="mri", choices=("mri", "ct"))
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args(argv)
    from medrecon.priors import load_prior
    from medrecon.priors.data import PIXEL_MM, SliceSampler, load_training_volumes
    from medrecon.priors.finalize import denoising_eval, eval_pixel_mm

    prior = load_prior(args.prior, args.modality, device="cpu")
    prior.eval()
    pixel = tuple(PIXEL_MM[args.modality])
    vols = load_training_volumes([args.heldout], args.modality, finest_mm=pixel[0])
    sampler = SliceSampler(vols, args.modality, args.size, eval_pixel_mm(args.modality, pixel), seed=999,
                           device=torch.device("cpu"))
    ev = denoising_eval(prior, sampler)
    print(args.prior, " / ".join(f"t={e['t']}: {e['psnr_denoised']:.2f}" for e in ev))
    return 0


if __name__ == "__main__":
    sys.exit(main())
