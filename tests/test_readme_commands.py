"""The README's example commands, extracted from README.md itself and run at test size (issue 25).

Every command line of the "Commands" section's example block runs in a fresh folder beside a link to
``../shared/data``, exactly as printed except for the test-size rewrites in :data:`REWRITES` (fewer
slices, steps and samples; a tiny network for training; the CPU for ``--device cuda`` without CUDA). A
command that needs a file the project does not have is listed in :data:`NEEDS`, with the reason; the
test fails when the README gains a command that neither runs nor is listed, and when a rewrite or a
listed reason no longer matches anything in the README, so this list cannot go stale quietly.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.data, pytest.mark.slow]

README = Path(__file__).resolve().parents[1] / "README.md"

TINY_NET = '{"channels":[8,8,8,8],"norm_num_groups":4,"num_head_channels":8}'

# (pattern, replacement, why): applied in order to every command; each must match at least one command.
REWRITES = [
    (r"--slices 70:72", "--slices 70:71", "one MRI slice"),
    (r"--slices 8:10", "--slices 8:9", "one CT slice"),
    (r"--slices 56:88 --size 160", "--slices 56:60 --size 48 --center-fraction 0.16", "a 4-slice 48-px slab"),
    (r"--slices 60:62 --size 160 --trajectory", "--slices 60:61 --size 48 --trajectory", "one 48-px radial slice"),
    (r"(--method fast\b.*?)( --out)", r"\1 --steps 3\2", "3 fast-sampler steps"),
    (r"--method dps --steps 1000", "--method dps --steps 3", "3 DPS steps"),
    (r"--samples 4", "--samples 2", "2 posterior samples (still a std map)"),
    (r"(priors samples \S+)", r"\1 --n 1 --steps 3 --size 32", "one 32-px sample, 3 steps"),
    (r"(train-prior .*?--out \S+)", r"\1 --size 32 --batch-size 2 --n-samples 1 --sample-steps 5 --network "
     + shlex.quote(TINY_NET), "a tiny network on 32-px crops, one 5-step model-card sample"),
    (r"--steps 2000 --max-minutes 30", "--steps 2", "2 training steps"),
    (r"--steps 4000 --resume", "--steps 3 --resume", "1 more training step"),
]
if not torch.cuda.is_available():
    REWRITES.append((r"--bf16 --device cuda", "--device cpu", "no CUDA here"))

# Commands that need data the project does not ship or have (matched by substring), and why.
NEEDS = {
    "file1000000.h5": "a fastMRI validation file (licence: fastMRI's data agreement; not in ../shared/data)",
    "my_brains/": "the user's own training scans",
    "/data/fastmri/": "a fastMRI training folder",
}


def readme_commands() -> list[str]:
    """The example block after "Examples (paths into" in README.md: one string per command (continuations
    joined, comments dropped)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("Examples (paths into")
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block, "the README's example block is missing"
    joined = block.group(1).replace("\\\n", " ")
    cmds = []
    for line in joined.splitlines():
        line = line.split(" # ")[0].split("   #")[0].strip()
        if line and not line.startswith("#"):
            cmds.append(re.sub(r"\s+", " ", line))
    return cmds


def at_test_size(cmd: str, used: set) -> str:
    for i, (pat, rep, _) in enumerate(REWRITES):
        new = re.sub(pat, rep, cmd)
        if new != cmd:
            used.add(i)
            cmd = new
    return cmd


def _make_kspace_npy(work: Path) -> None:
    """``kspace.npy`` (C, H, W) for the numpy example: the simulated brain's first slice."""
    import h5py

    with h5py.File(work / "sim" / "brain.h5") as f:
        np.save(work / "kspace.npy", f["kspace"][0])


def test_readme_example_commands_run_as_pasted_at_test_size(shared_data, tmp_path):
    cmds = readme_commands()
    assert len(cmds) >= 15, cmds
    (tmp_path / "shared").symlink_to(shared_data.parent)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    bin_dir = Path(sys.executable).parent
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    used_rewrites: set = set()
    used_needs: set = set()
    ran = []
    for cmd in cmds:
        missing = [k for k in NEEDS if k in cmd]
        if missing:
            used_needs.update(missing)
            continue
        if cmd.startswith("medrecon recon kspace.npy"):
            _make_kspace_npy(work)
        run = at_test_size(cmd, used_rewrites)
        proc = subprocess.run(run, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"README command failed at test size:\n  {cmd}\nran:\n  {run}\n" \
                                     f"{(proc.stdout + proc.stderr)[-2000:]}"
        ran.append(cmd)
    assert used_needs == set(NEEDS), f"stale NEEDS entries: {set(NEEDS) - used_needs}"
    assert used_rewrites == set(range(len(REWRITES))), \
        f"stale rewrites: {[REWRITES[i][2] for i in set(range(len(REWRITES))) - used_rewrites]}"
    # what the examples promise exists
    for path in ("sim/brain.h5", "recon/brain.h5", "sense/brain.nii.gz", "fast/brain.h5", "dps/brain.h5", "sense.h5",
                 "bart_cs.nii.gz", "ct_fbp.nii.gz", "mri_samples.png", "my-ct-prior/configs/metadata.json"):
        assert (work / path).exists(), path
    assert any((work / "ct_fast_dicom").iterdir())
    assert len(ran) == len(cmds) - sum(any(k in c for k in NEEDS) for c in cmds)
