"""The ``medrecon`` command line: argument parsing only; the work is done by library functions.

Every user-facing failure ends as one line ``medrecon: error: ...`` and a non-zero exit; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Optional, Sequence

from medrecon import __version__
from medrecon.cli.runtime import (HeldLogs, end_progress_line, input_paths, on_sigterm, one_line, report_warnings,
                                  scrub)
from medrecon.errors import MedreconError

__all__ = ["main", "build_parser"]

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def deco(fn):
        COMMANDS[name] = fn
        return fn

    return deco


# --------------------------------------------------------------------------- priors
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
    for name, adder in EXTRA_PARSERS:
        adder(sub)
    return parser


# Other modules register (name, add_parser_fn) pairs here to keep this file small.
EXTRA_PARSERS: list = []


def _load_extra_commands() -> None:
    """Register the commands that live in their own modules (a missing one is a broken install: it fails)."""
    import medrecon.cli.priors  # noqa: F401,I001  (registers train-prior and priors; listed first)
    import medrecon.cli.recon  # noqa: F401  (registers recon, methods, simulate, evaluate, demo)
    import medrecon.cli.benchmark  # noqa: F401  (registers `benchmark`)


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
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (e.g. called from a worker): leave the handler alone
        previous = None
    held = None if a.debug else HeldLogs()
    from medrecon.io import privacy

    # One scrubbing layer (medrecon.io.privacy): identifiers of the inputs named on the command line are known
    # before anything is printed, readers add those of every file they parse, and stdout/stderr pass through it.
    privacy.forget()
    streams = privacy.scrubbed_std_streams()
    streams.__enter__()
    try:
        privacy.register_inputs(input_paths(argv))
        with warnings.catch_warnings(record=not a.debug) as caught:
            if not a.debug:
                warnings.simplefilter("always")
            code = COMMANDS[a.command](a)
        if held is not None:
            held.restore()
            report_warnings([str(w.message) for w in caught or []] + held.messages())
            held = None
        return code
    except MedreconError as exc:
        if a.debug:
            raise
        end_progress_line()
        print(f"medrecon: error: {scrub(one_line(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if a.debug:
            raise
        end_progress_line()
        print("medrecon: error: interrupted; finished outputs are complete and no partial file was left",
              file=sys.stderr)
        return 130
    except SystemExit as exc:
        if a.debug or not (isinstance(exc.code, int) and exc.code > 128):
            raise
        end_progress_line()
        print("medrecon: error: terminated by a signal; finished outputs are complete and no partial file was left",
              file=sys.stderr)
        return int(exc.code)
    except BrokenPipeError:
        # the reader of our output went away (`medrecon methods | head`): not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stays open: the interpreter flushes it at exit
        except OSError:
            pass
        return 141
    except Exception as exc:
        if a.debug:
            raise
        end_progress_line()
        print(f"medrecon: error: {type(exc).__name__}: {scrub(one_line(exc))} (an unexpected failure; "
              "run with --debug for the traceback and report it)", file=sys.stderr)
        return 1
    finally:
        streams.__exit__(None, None, None)
        privacy.forget()  # identifiers are this command's: a later call (tests, a service) starts empty
        if held is not None:
            held.restore()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
