"""Seconds per prior-training step, NCHW (contiguous) against channels_last memory format.

Times exactly what one ``train-prior`` step does (augmented batch, noising, forward, epsilon loss,
backward, gradient clipping, AdamW step) on random-weight networks, alternating the two memory formats
in rounds so that load from other processes hits both alike. Run it on an otherwise idle machine::

    python benchmarks/train_speed.py --data .gpu/mri_train.npz --modality mri --size 64 --batch-size 16 \\
        --network '{"channels":[32,64,64,128],"norm_num_groups":16,"num_head_channels":128}' --steps 20 --rounds 3

prints one line per round and the medians, and with ``--out`` writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from medrecon.priors.data import PIXEL_MM, SliceSampler, load_training_volumes
from medrecon.priors.network import DEFAULT_NETWORK
from medrecon.priors.prior import DiffusionPrior
from medrecon.priors.train import _diffusion_loss

FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def _time_steps(prior: DiffusionPrior, sampler: SliceSampler, batch: int, steps: int, fmt, device) -> float:
    """Median seconds per training step over ``steps`` steps (after two warm-up steps)."""
    net = prior.net.to(memory_format=fmt)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    autocast = device.type == "cuda"
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        x0 = prior.to_network(sampler.batch(batch), 1.0).contiguous(memory_format=fmt)
        loss = _diffusion_loss(prior, net, x0, gen, autocast)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="training volumes or a train-prior cache .npz")
    ap.add_argument("--modality", choices=["mri", "ct"], required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--network", default="{}", help="JSON overrides of the network (as train-prior --network)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per format and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    vols = load_training_volumes([args.data], args.modality)
    sampler = SliceSampler(vols, args.modality, args.size, PIXEL_MM[args.modality], seed=0, device=device)
    network = {**DEFAULT_NETWORK, **json.loads(args.network)}
    torch.manual_seed(0)
    prior = DiffusionPrior(args.modality, network).to(device)
    per = {k: [] for k in FORMATS}
    for r in range(args.rounds):
        for name, fmt in FORMATS.items():
            per[name].append(_time_steps(prior, sampler, args.batch_size, args.steps, fmt, device))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s/step" for k, v in per.items()), flush=True)
    med = {k: statistics.median(v) for k, v in per.items()}
    speedup = med["contiguous"] / med["channels_last"]
    print(f"median: contiguous {med['contiguous']:.3f} s/step, channels_last {med['channels_last']:.3f} s/step "
          f"(channels_last {speedup:.2f}x)")
    if args.out:
        res = {"args": vars(args), "threads": torch.get_num_threads(), "per_round": per, "median": med,
               "channels_last_speedup": round(speedup, 3), "torch": torch.__version__,
               "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
