"""The ``medrecon`` command line, the top layer: nothing in the package imports it (docs/design.md, section 1).

- :mod:`.main`: the parser, the command table and :func:`main` (one-line errors, exit codes).
- :mod:`.runtime`: held logs, identifier scrubbing, signals.
- one module per group of commands: :mod:`.priors`, :mod:`.recon` (recon, methods, simulate, evaluate, demo),
  :mod:`.benchmark`.
"""

from medrecon.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
