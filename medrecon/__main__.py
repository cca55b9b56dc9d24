"""``python -m medrecon`` is the command line (so ``torchrun -m medrecon train-prior ...`` works).

The guard matters: a ``spawn``-started child process (multiprocessing, DataLoader workers) re-imports
the main module under another name, and must not run the command line a second time.
"""

from medrecon.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
