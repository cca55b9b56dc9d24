"""Write a copy of a committed suite whose datasets carry a tuning grid for one method (added if the suite lacks it).

The grid is then run on the *tuning* split only (never the test slices) with the benchmark's own tuner::

    python benchmarks/fast_grid.py --suite mri-4x --method fast \
        --grid '{"eta": [0.0, 0.5, 0.85], "samples": [1, 2, 4]}' --out /tmp/mri-4x-fast-grid.suite.json
    medrecon benchmark --suite /tmp/mri-4x-fast-grid.suite.json --methods fast --device cpu \
        --tune --tune-only --no-figures --out OUT

The dataset names are kept, so the resulting ``tuned.json`` applies to the committed suite
(``medrecon benchmark --suite mri-4x --params OUT/tuned.json``). The copy is checked by the
benchmark's manifest validator before it is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medrecon.benchmark.manifest import load_suite


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", required=True, help="a committed suite name (mri-4x, mri-8x, ct-60, ...)")
    ap.add_argument("--method", default="fast")
    ap.add_argument("--grid", required=True, help="JSON object: setting -> list of values")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    doc = json.loads(load_suite(args.suite).path.read_text())  # a name or a file, found and validated
    grid = json.loads(args.grid)
    doc["name"] = f"{doc['name']}-{args.method}-grid"
    for ds in doc["datasets"]:
        ds["tuning_grid"] = {args.method: grid}
        # a method the committed suite does not list yet (a new sampler) runs at its library defaults
        ds.setdefault("methods", {}).setdefault(args.method, {})
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    load_suite(args.out)  # the benchmark's own validation: a bad grid fails here, not an hour later
    print(f"wrote {args.out} ({args.method} grid {grid} over {len(doc['datasets'])} dataset(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
