"""``benchmarks/best_tuned.py``: the tuning round whose best grid point scores highest is the one copied."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _tuned(path: Path, psnrs: list[float | None], steps: int) -> Path:
    grid = [{"steps": steps, "samples": k, "psnr": p} for k, p in enumerate(psnrs, 1)]
    path.write_text(json.dumps({"format": "medrecon-tuned/1", "params": {"ds": {"fast": {"steps": steps}}},
                                "grid": {"ds": {"fast": grid}}}))
    return path


def test_picks_the_round_with_the_highest_point_and_skips_failed_points(tmp_path):
    a = _tuned(tmp_path / "a.json", [30.0, 31.0], 50)
    b = _tuned(tmp_path / "b.json", [None, 31.5, 29.0], 100)  # None: a grid point that failed
    out = tmp_path / "best.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "best_tuned.py"), str(out), str(a), str(b)],
                          capture_output=True, text=True, check=True)
    assert json.loads(out.read_text()) == json.loads(b.read_text())
    assert "b.json" in proc.stdout
    # ties go to the first file given, as the scripts' earlier inline rule did
    c = _tuned(tmp_path / "c.json", [31.5], 200)
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "best_tuned.py"), str(out), str(b), str(c)], check=True)
    assert json.loads(out.read_text())["params"]["ds"]["fast"]["steps"] == 100
