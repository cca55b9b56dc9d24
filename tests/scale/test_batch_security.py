"""Issue 23, defect 7: batches and their output folder.

- A study behind a dangling symbolic link is a failed study on the record, never silently dropped.
- Two batches started together on one ``--out`` share the work: each study is reconstructed once.
- A claim left by a killed batch does not block the study forever.
- A finished batch leaves only outputs, run records and ``manifest.json`` (no lock or claim files).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from scalekit import SUB_ENV

from medrecon.cli import main as cli_main
from medrecon.testing.samples import tiny_fastmri

RECON = ["--method", "zero-filled", "--quiet"]

# `python -m medrecon`, except that every reconstruction takes SLOW_SECONDS longer and appends one line
# to RECON_LOG: tiny zero-filled studies take milliseconds, and two batches must really overlap.
SLOW_MEDRECON = '''
import os, sys, time
import medrecon.app.pipeline as pipeline
from medrecon.cli import main

_reconstruct = pipeline.reconstruct_file

def _slow(inp, *args, **kwargs):
    time.sleep(float(os.environ["SLOW_SECONDS"]))
    with open(os.environ["RECON_LOG"], "a") as log:
        log.write(f"{os.getpid()} {os.path.basename(str(inp))}\\n")
    return _reconstruct(inp, *args, **kwargs)

pipeline.reconstruct_file = _slow
raise SystemExit(main(sys.argv[1:]))
'''


def _studies(folder: Path, n: int) -> list[str]:
    folder.mkdir()
    names = [f"s{i}.h5" for i in range(n)]
    for i, name in enumerate(names):
        tiny_fastmri(folder / name, seed=i)
    return names


def _cli(args, capfd):
    code = cli_main([str(a) for a in args])
    out, err = capfd.readouterr()
    return code, out, err


def _only_results(out: Path, names: list[str]) -> None:
    """``out`` holds the outputs and run records of ``names`` and the manifest: nothing else."""
    expect = {"manifest.json", *names, *(n + ".run.json" for n in names)}
    assert sorted(os.listdir(out)) == sorted(expect)


def test_a_dangling_symlink_is_a_failed_study_not_a_dropped_one(tmp_path, capfd):
    src = tmp_path / "in"
    _studies(src, 1)
    target = tmp_path / "moved-away" / "patient-jane-doe.h5"  # gone, and a path that must never be shown
    (src / "gone.h5").symlink_to(target)
    for spec, out in ((src, tmp_path / "out"), (f"{src}/*.h5", tmp_path / "out-glob")):
        code, stdout, err = _cli(["recon", spec, *RECON, "--out", out], capfd)
        assert code != 0, stdout
        assert "Traceback" not in stdout + err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("medrecon: error: gone.h5: "), err
        assert "broken symbolic link" in lines[0]
        assert "1 reconstructed" in stdout and "1 failed" in stdout, stdout
        m = json.loads((out / "manifest.json").read_text())
        entry = m["studies"]["gone.h5"]
        assert entry["status"] == "failed" and "broken symbolic link" in entry["reason"]
        assert "\n" not in entry["reason"]
        assert m["counts"] == {"done": 1, "failed": 1, "pending": 0}
        for text in (stdout, err, (out / "manifest.json").read_text()):
            assert "moved-away" not in text and "jane" not in text
        # A rerun still counts it against the exit status (failed earlier), without trying it again.
        code, stdout, err = _cli(["recon", spec, *RECON, "--out", out], capfd)
        assert code != 0 and "1 failed earlier" in stdout and not err


def test_two_batches_on_one_folder_reconstruct_each_study_once(tmp_path):
    src = tmp_path / "in"
    names = _studies(src, 6)
    out = tmp_path / "out"
    runner = tmp_path / "slow_medrecon.py"
    runner.write_text(SLOW_MEDRECON)
    log = tmp_path / "reconstructions.log"
    env = dict(SUB_ENV, SLOW_SECONDS="1.0", RECON_LOG=str(log))
    cmd = [sys.executable, str(runner), "recon", str(src), *RECON, "--out", str(out)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=240) for p in procs]
    for p, (stdout, err) in zip(procs, results):
        assert p.returncode == 0, (stdout, err)
        assert "Traceback" not in stdout + err and not err.strip(), err
    done = log.read_text().split() if log.exists() else []
    studies_done = done[1::2]
    assert sorted(studies_done) == names, f"each study once, but reconstructed: {sorted(studies_done)}"
    # Each process's summary covers all six: the ones it ran and the ones the other one ran.
    ran = []
    for stdout, _ in results:
        line = stdout.strip().splitlines()[-1]
        mine = int(re.search(r"(\d+) reconstructed,", line).group(1))
        other = re.search(r"(\d+) reconstructed by another run", line)
        already = int(re.search(r"(\d+) already done", line).group(1))
        assert mine + already + (int(other.group(1)) if other else 0) == len(names), line
        ran.append(mine)
    assert sum(ran) == len(names), [r[0] for r in results]
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"] == {"done": 6, "failed": 0, "pending": 0}
    assert all(m["studies"][n]["status"] == "done" for n in names)
    _only_results(out, names)


def test_a_claim_left_by_a_killed_batch_is_taken_over(tmp_path, capfd):
    src = tmp_path / "in"
    names = _studies(src, 2)
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id of this host that no longer runs
    claim = out / ".s0.h5.claim"
    claim.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "token": "x"}))
    code, stdout, err = _cli(["recon", src, *RECON, "--out", out], capfd)
    assert code == 0 and "2 reconstructed" in stdout, (stdout, err)
    _only_results(out, names)


def test_a_finished_batch_leaves_no_lock_or_temporary_files(tmp_path, capfd):
    src = tmp_path / "in"
    names = _studies(src, 3)
    out = tmp_path / "out"
    code, stdout, err = _cli(["recon", src, *RECON, "--out", out], capfd)
    assert code == 0, (stdout, err)
    _only_results(out, names)
    # Also after a rerun that only finds everything done, and after a failed study.
    (src / "broken.h5").write_bytes(b"not hdf5")
    code, stdout, err = _cli(["recon", src, *RECON, "--out", out], capfd)
    assert code != 0 and "3 already done" in stdout
    _only_results(out, names)
