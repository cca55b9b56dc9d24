"""``python -m medrecon`` is the command line (so ``torchrun -m medrecon`` works)."""

from medrecon.cli import main

raise SystemExit(main())
