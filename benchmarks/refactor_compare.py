"""Compare two ``benchmarks/refactor_check.sh`` output folders: every array of every h5/npz/nii output and every
score field of the smoke results must be equal to the bit. Prints one line per file; exit 1 on any difference.

    python benchmarks/refactor_compare.py BEFORE AFTER
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np

# results.json fields that are measurements of time or memory, or stamps of the run (commit, command line),
# not of the output: these names, and any name starting with "seconds" or ending in "_seconds" or "_mb"
_VOLATILE = {"s_per_slice", "wall_s", "date", "git", "git_commit", "total_seconds", "started", "finished",
             "elapsed", "host", "command"}


def _volatile(key: str) -> bool:
    return key in _VOLATILE or key.startswith("seconds") or key.endswith(("_seconds", "_mb"))


def _h5_arrays(path: Path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
    return out


def _arrays(path: Path) -> dict:
    if path.suffix == ".h5":
        return _h5_arrays(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if path.name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        img = nib.load(path)
        return {"data": np.asarray(img.dataobj), "affine": img.affine}
    return {}


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not _volatile(k)}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _rows(path: Path) -> list:
    data = json.loads(path.read_text())
    rows = data.get("results", data) if isinstance(data, dict) else data
    return _strip(rows)


def _json_diff(x, y, where: str = "") -> str:
    """The first place two JSON values differ, as a path."""
    if isinstance(x, dict) and isinstance(y, dict):
        for k in sorted(set(x) | set(y)):
            if x.get(k, "<absent>") != y.get(k, "<absent>"):
                return _json_diff(x.get(k, "<absent>"), y.get(k, "<absent>"), f"{where}.{k}")
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (u, v) in enumerate(zip(x, y)):
            if u != v:
                return _json_diff(u, v, f"{where}[{i}]")
    return f"{where}: {str(x)[:60]} -> {str(y)[:60]}"


def compare(before: Path, after: Path) -> int:
    bad = 0
    files = sorted(p.relative_to(before) for p in before.rglob("*") if p.is_file())
    for rel in files:
        a, b = before / rel, after / rel
        if not b.exists():
            if rel.suffix in {".h5", ".npz", ".gz", ".nii"} or rel.name == "results.json":
                print(f"MISSING  {rel}")
                bad += 1
            continue
        if rel.name == "results.json":
            x, y = _rows(a), _rows(b)
            same = x == y
            if not same:
                rel = f"{rel} ({_json_diff(x, y)})"
        else:
            x, y = _arrays(a), _arrays(b)
            if not x:
                continue
            same = x.keys() == y.keys() and all(np.array_equal(x[k], y[k], equal_nan=x[k].dtype.kind in "fc")
                                                if isinstance(x[k], np.ndarray) and x[k].dtype.kind in "fc"
                                                else np.array_equal(x[k], y[k]) for k in x)
            if not same:
                diff = [k for k in x if k not in y or not np.array_equal(x[k], y[k])]
                diff += [f"+{k}" for k in y if k not in x]
                rel = f"{rel} ({', '.join(diff)})"
        print(("same     " if same else "DIFFERS  ") + str(rel))
        bad += not same
    print(f"{bad} difference(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(compare(Path(sys.argv[1]), Path(sys.argv[2])))
