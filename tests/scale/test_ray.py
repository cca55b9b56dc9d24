"""The Ray executor on a local Ray cluster with fake GPUs (CPU only).

One cluster for the module: ``ray.init(num_cpus=4, num_gpus=2)`` tells Ray there are two GPUs, so
its scheduler pins actors to GPU ids and sets ``CUDA_VISIBLE_DEVICES`` exactly as on a GPU node,
while the reconstruction itself runs on the CPU.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from scalekit import BROKEN, GOOD, assert_identical, read_outputs, recon_args, recon_config

from medrecon.cli import main as cli_main
from medrecon.scale import ScaleOptions, run_studies
from medrecon.scale.faults import HangOnce

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a Ray cluster and its actors take ~20 s each to start on 2 cores


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _kill_when_hanging(marker: Path, killed: list, timeout: float = 120.0) -> threading.Thread:
    """Watch for the hanging worker's pid and SIGKILL it (a worker lost in the middle of a study)."""

    def watch():
        t0 = time.time()
        while time.time() - t0 < timeout:
            if marker.is_file():
                pid = int(marker.read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.1)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    return th


def test_ray_pins_gpus_survives_a_killed_worker_and_records_the_corrupt_study(cluster, studies, tiny_prior,
                                                                             reference, tmp_path):
    out = tmp_path / "out"
    marker = tmp_path / "hang.pid"
    killed: list[int] = []
    watcher = _kill_when_hanging(marker, killed)
    summary = run_studies(str(studies), out, recon_config(tiny_prior), options=ScaleOptions(executor="ray"),
                          reconstructor=HangOnce, reconstructor_kwargs={"hang_study": "s1.h5", "marker": str(marker)})
    watcher.join(timeout=1)
    assert len(killed) == 1, "the worker never reached the hang"

    # Every good study done, the corrupt one failed with a reason, nothing pending.
    assert (summary.reconstructed, summary.failed, summary.pending) == (4, 1, 0)
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"] == {"done": 4, "failed": 1, "pending": 0}
    assert "not a recognised file" in m["studies"][BROKEN]["reason"] and m["studies"][BROKEN]["attempts"] == 1

    # The killed study was retried once, on a new worker process, and gives the local executor's pixels.
    assert m["studies"]["s1.h5"]["attempts"] == 2 and m["studies"]["s1.h5"]["status"] == "done"
    assert m["studies"]["s1.h5"]["worker"]["pid"] != killed[0]
    assert all(m["studies"][n]["attempts"] == 1 for n in GOOD if n != "s1.h5")
    assert_identical(read_outputs(out), reference)

    # One fake GPU per actor: each actor holds exactly one id, CUDA_VISIBLE_DEVICES says the same, and
    # both GPUs were used.
    workers = [r.worker for r in summary.results]
    assert all(len(w["gpu_ids"]) == 1 and w["cuda_visible_devices"] == w["gpu_ids"][0] for w in workers)
    assert {w["gpu_ids"][0] for w in workers} == {"0", "1"}
    by_pid: dict[int, set] = {}
    for w in workers:
        by_pid.setdefault(w["pid"], set()).add(w["gpu_ids"][0])
    assert all(len(ids) == 1 for ids in by_pid.values())  # an actor never changes GPU

    # A rerun finds nothing to do: no actor started, no output touched.
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("s*.h5*")}
    again = run_studies(str(studies), out, recon_config(tiny_prior), options=ScaleOptions(executor="ray"))
    assert (again.reconstructed, again.already_done, again.failed_earlier, again.results) == (0, 4, 1, [])
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("s*.h5*")} == mtimes


def test_fractional_gpus_share_a_device_through_the_cli(cluster, studies, tiny_prior, reference, tmp_path, capfd):
    out = tmp_path / "out"
    code = cli_main([str(a) for a in ["recon", studies, "--out", out, *recon_args(tiny_prior), "--executor", "ray",
                                      "--gpus", "1", "--gpus-per-worker", "0.5"]])
    o, err = capfd.readouterr()
    assert code == 1 and "2 actor(s), 0.5 GPU each" in o and err.count("medrecon: error:") == 1 and BROKEN in err
    assert_identical(read_outputs(out), reference)
    m = json.loads((out / "manifest.json").read_text())
    ids = {tuple(e["worker"]["gpu_ids"]) for e in m["studies"].values() if e["status"] == "done"}
    pids = {e["worker"]["pid"] for e in m["studies"].values() if e["status"] == "done"}
    assert len(ids) == 1 and len(next(iter(ids))) == 1  # both actors on the same single GPU
    assert len(pids) == 2  # ... and they are two actors
