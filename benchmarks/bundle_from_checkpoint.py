"""Write a loadable bundle from a training run's checkpoint (its EMA weights), without the model card.

For scoring a background run with the fast sampler while its own finalization (held-out denoising,
250-step samples: slow for a patch prior on one CPU thread) still runs, or after it was cut off. The
bundle's ``training`` record says where it came from; it is for evaluation, not for shipping.

    python benchmarks/bundle_from_checkpoint.py RUN_DIR OUT_BUNDLE --modality mri
"""

from __future__ import annotations

import argparse
import sys

import torch

from medrecon.priors.bundle import save_bundle
from medrecon.priors.patch import prior_from_description


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="the train-prior --out folder (holds training/checkpoint.pt)")
    ap.add_argument("out", help="bundle folder to write")
    ap.add_argument("--modality", choices=["mri", "ct"], required=True)
    a = ap.parse_args(argv)
    ck = torch.load(f"{a.run}/training/checkpoint.pt", map_location="cpu", weights_only=True)
    if not ck.get("arch"):
        ap.error("the checkpoint has no 'arch' record (written before 2026-12-05); rebuild the network by hand")
    prior = prior_from_description({**ck["arch"], "modality": a.modality}, name="from-checkpoint")
    prior.net.load_state_dict(ck["ema"])
    init = ck.get("init_from") or {}
    record = {"source": "checkpoint (EMA weights), not finalized", "steps": int(ck["step"]),
              "minutes": round(float(ck["elapsed"]) / 60, 2), "init_from": init,
              "total_steps": int(init.get("steps", 0)) + int(ck["step"]),
              "pixel_mm_range": ck["arch"].get("pixel_mm"), "final_loss": ck.get("loss_ema")}
    save_bundle(prior, a.out, training=record, weights_dtype="float16")
    print(f"bundle written to {a.out} ({prior.kind}, step {ck['step']}, {record['minutes']} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
