"""The ``medrecon`` command line: argument parsing only; the work is done by library functions.

Every user-facing failure ends as one line ``medrecon: error: ...`` and a non-zero exit; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
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
        save_slice_cache(vols, a.save_cache, a.modality, bits=a.cache_bits)
        print(f"saved {sum(len(v.slices) for v in vols)} slices from {len(vols)} volumes to {a.save_cache}")
        return 0
    net = json.loads(a.network) if a.network else {}
    cfg = TrainConfig(modality=a.modality, data=a.data, out=a.out, size=a.size, steps=a.steps,
                      batch_size=a.batch_size, lr=a.lr, max_minutes=a.max_minutes, device=a.device,
                      resume=a.resume, seed=a.seed, name=a.name, network=net, heldout=a.heldout or [],
                      checkpoint_every=a.checkpoint_every, weights_dtype=a.weights_dtype,
                      lr_scaling=a.lr_scaling, init_from=a.init_from,
                      pixel_mm=tuple(a.pixel_mm) if a.pixel_mm else None)
    bundle = train_prior(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 writes the bundle
        print(f"prior bundle written to {bundle}")
    return 0


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
    p.add_argument("--save-cache", default=None, metavar="NPZ",
                   help="only prepare the training slices and save them to this .npz, then exit")
    p.add_argument("--cache-bits", type=int, choices=[8, 16], default=16,
                   help="with --save-cache: float16 (16, default) or per-slice 8-bit codes (8, about half the size)")


class _Parser(argparse.ArgumentParser):
    """argparse with the one error format: a single ``medrecon: error: ...`` line and exit status 2.

    Subparsers inherit the class (argparse creates them with ``type(self)``), so a bad option of any
    command fails the same way; ``--help`` still shows the usage.
    """

    def error(self, message: str):  # type: ignore[override]
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        hint = f"see `medrecon {command} --help`" if command else "see `medrecon --help`"
        self.exit(2, f"medrecon: error: {message.splitlines()[0] if message else 'bad arguments'} ({hint})\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="medrecon", description="MRI and CT reconstruction with diffusion posterior sampling over MONAI priors.")
    parser.add_argument("--version", action="version", version=f"medrecon {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train_prior(sub)
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
    for name, adder in EXTRA_PARSERS:
        adder(sub)
    return parser


# Other modules register (name, add_parser_fn) pairs here to keep this file small.
EXTRA_PARSERS: list = []


def _load_extra_commands() -> None:
    """Register the commands that live in their own modules (a missing one is a broken install: it fails)."""
    import medrecon.cli_recon  # noqa: F401,I001  (registers recon, methods, simulate, evaluate, demo; listed first)
    import medrecon.cli_benchmark  # noqa: F401  (registers `benchmark`)


def _input_paths(argv: Sequence[str]) -> list[Path]:
    """Existing files and folders named on the command line (inputs, --like, --image ...)."""
    out = []
    for arg in argv:
        value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
        if value.startswith("-") or len(value) > 4096:
            continue
        try:
            p = Path(value)
            if p.exists():
                out.append(p)
        except (OSError, ValueError):
            continue
    return out


def _scrub(message: str, argv: Sequence[str]) -> str:
    """``message`` without patient identifiers stored in the inputs named on the command line.

    Our own messages never quote identifiers; this is the second line of defence for messages we
    do not write (third-party exceptions and warnings) that might quote a header field.
    """
    import warnings

    try:
        from medrecon.io.run_record import identifiers_in, scrub_identifiers

        with warnings.catch_warnings():  # re-reading a damaged input warns; the error line stays alone
            warnings.simplefilter("ignore")
            found = [s for p in _input_paths(argv) for s in identifiers_in(p)]
        return str(scrub_identifiers(message, planted=found)) if found else message
    except Exception:  # noqa: BLE001 - never let the error path itself fail; drop the text instead
        return "(message withheld: it could not be checked for patient identifiers)"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _on_sigterm(signum, frame) -> None:
    # Schedulers (SLURM, Kubernetes, systemd) stop jobs with SIGTERM. Raising here unwinds the stack
    # like Ctrl-C does, so atomic writes remove their temporaries instead of leaving them behind.
    raise SystemExit(128 + signum)


class _HeldLogs:
    """Hold the log records of third-party libraries while a command runs.

    nibabel, pydicom and others print their warnings through ``logging`` handlers of their own
    (nibabel: "sizeof_hdr should be 348..."), which would break the one-line error and may quote
    header fields. While a command runs, every handler is set aside and records of level WARNING and
    above are kept; :meth:`restore` puts the handlers back.
    """

    def __init__(self) -> None:
        import logging

        self.records: list = []
        holder = self

        class _Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                holder.records.append(record)

        self.handler = _Keep(logging.WARNING)
        loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                          if isinstance(lg, logging.Logger)]
        self.saved = [(lg, lg.handlers[:], lg.propagate) for lg in loggers]
        for lg, _, _ in self.saved:
            lg.handlers = []
            lg.propagate = True
        logging.getLogger().addHandler(self.handler)

    def restore(self) -> None:
        import logging

        logging.getLogger().removeHandler(self.handler)
        for lg, handlers, propagate in self.saved:
            lg.handlers = handlers
            lg.propagate = propagate

    def messages(self) -> list[str]:
        out = []
        for r in self.records:
            try:
                out.append(r.getMessage())
            except Exception:  # noqa: BLE001, S112 - a malformed record is dropped, not fatal
                continue
        return out


def _report_warnings(messages: list[str], argv: Sequence[str]) -> None:
    """Print each distinct warning once, as one scrubbed line, after a successful command."""
    seen: set[str] = set()
    for message in messages:
        text = _scrub(message.strip().splitlines()[0] if message.strip() else "warning", argv)
        if text not in seen:
            seen.add(text)
            print(f"medrecon: warning: {text}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; every failure ends as one ``medrecon: error: ...`` line and a non-zero exit.

    Exit status: 0 success, 1 an unexpected failure (a bug: please report it with ``--debug``
    output), 2 a user-facing error (bad input, arguments, prior or device), 130 Ctrl-C, 143 SIGTERM.
    Warnings are held back while the command runs: on success each is printed once as a
    ``medrecon: warning:`` line; on failure only the error line is printed.
    """
    import signal
    import warnings

    argv = list(sys.argv[1:] if argv is None else argv)
    _load_extra_commands()
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.command is None:
        parser.print_help()
        return 0
    if a.command == "priors" and getattr(a, "priors_command", None) is None:
        a.json = False
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (e.g. called from a worker): leave the handler alone
        previous = None
    held = None if a.debug else _HeldLogs()
    try:
        with warnings.catch_warnings(record=not a.debug) as caught:
            if not a.debug:
                warnings.simplefilter("always")
            code = COMMANDS[a.command](a)
        if held is not None:
            held.restore()
            _report_warnings([str(w.message) for w in caught or []] + held.messages(), argv)
            held = None
        return code
    except MedreconError as exc:
        if a.debug:
            raise
        print(f"medrecon: error: {_scrub(_one_line(exc), argv)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if a.debug:
            raise
        print("medrecon: error: interrupted; finished outputs are complete and no partial file was left",
              file=sys.stderr)
        return 130
    except SystemExit as exc:
        if a.debug or not (isinstance(exc.code, int) and exc.code > 128):
            raise
        print("medrecon: error: terminated by a signal; finished outputs are complete and no partial file was left",
              file=sys.stderr)
        return int(exc.code)
    except Exception as exc:
        if a.debug:
            raise
        print(f"medrecon: error: {type(exc).__name__}: {_scrub(_one_line(exc), argv)} (an unexpected failure; "
              "run with --debug for the traceback and report it)", file=sys.stderr)
        return 1
    finally:
        if held is not None:
            held.restore()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
