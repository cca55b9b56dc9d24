"""The ``medrecon`` command line: argument parsing only; the work is done by library functions.

Every user-facing failure ends as one line ``medrecon: error: ...`` and a non-zero exit; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Optional, Sequence

from medrecon import __version__
from medrecon.errors import MedreconError

__all__ = ["main", "build_parser"]

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def deco(fn):
        COMMANDS[name] = fn
        return fn

    return deco


# --------------------------------------------------------------------------- priors
@command("train-prior")
def _train_prior(a: argparse.Namespace) -> int:
    from medrecon.priors.data import load_training_volumes, save_slice_cache
    from medrecon.priors.train import TrainConfig, train_prior

    if a.save_cache:
        vols = load_training_volumes(a.data, a.modality)
        save_slice_cache(vols, a.save_cache, a.modality)
        print(f"saved {sum(len(v.slices) for v in vols)} slices from {len(vols)} volumes to {a.save_cache}")
        return 0
    net = json.loads(a.network) if a.network else {}
    cfg = TrainConfig(modality=a.modality, data=a.data, out=a.out, size=a.size, steps=a.steps,
                      batch_size=a.batch_size, lr=a.lr, max_minutes=a.max_minutes, device=a.device,
                      resume=a.resume, seed=a.seed, name=a.name, network=net, heldout=a.heldout or [],
                      checkpoint_every=a.checkpoint_every, weights_dtype=a.weights_dtype)
    bundle = train_prior(cfg)
    print(f"prior bundle written to {bundle}")
    return 0


@command("priors")
def _priors(a: argparse.Namespace) -> int:
    from medrecon.priors import list_priors

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
    p.add_argument("--save-cache", default=None, metavar="NPZ",
                   help="only prepare the training slices and save them to this .npz, then exit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medrecon", description="MRI and CT reconstruction with diffusion posterior sampling over MONAI priors.")
    parser.add_argument("--version", action="version", version=f"medrecon {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train_prior(sub)
    p = sub.add_parser("priors", help="list available priors")
    psub = p.add_subparsers(dest="priors_command", metavar="list")
    pl = psub.add_parser("list", help="list shipped and user priors")
    pl.add_argument("--json", action="store_true")
    for name, adder in EXTRA_PARSERS:
        adder(sub)
    return parser


# Other modules register (name, add_parser_fn) pairs here to keep this file small.
EXTRA_PARSERS: list = []


def _load_extra_commands() -> None:
    import importlib

    for mod in ("medrecon.cli_recon",):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    _load_extra_commands()
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.command is None:
        parser.print_help()
        return 0
    if a.command == "priors" and getattr(a, "priors_command", None) is None:
        a.json = False
    try:
        return COMMANDS[a.command](a)
    except MedreconError as exc:
        if a.debug:
            raise
        print(f"medrecon: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medrecon: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one error path for the CLI
        if a.debug:
            raise
        msg = str(exc).splitlines()[0] if str(exc) else ""
        print(f"medrecon: error: {type(exc).__name__}: {msg} (run with --debug for the traceback)", file=sys.stderr)
        return 1
