"""The Slurm executor: a job array through ``submitit``, each task one shard of the study list.

Each array task runs the local executor on shard ``K/N`` (exactly what ``--shard K/N`` does by
hand) and records its studies in the shared manifest, so the driver only submits and waits. A task
that dies without finishing (node failure, time limit, preemption) leaves its unfinished studies
pending; the driver resubmits those shards, up to ``max_retries`` rounds. The output folder must be
on a file system every node sees.

``submitit`` is an optional dependency (``pip install 'medrecon[slurm]'``), imported only here.
Without it, a plain ``sbatch --array`` script calling ``medrecon recon ... --shard
$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`` does the same (see docs/scaling.md).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

from medrecon.errors import InputError
from medrecon.recon.config import ReconConfig

from .study import one_line

__all__ = ["run_slurm", "shard_job"]


def shard_job(spec: str, out_dir: str, cfg: ReconConfig, fmt: Optional[str], like: Optional[str], k: int, n: int,
              only_failed: bool, command: list) -> dict:
    """One array task: shard ``k`` of ``n`` on the local executor (runs on the compute node)."""
    from .run import ScaleOptions, run_studies

    opts = ScaleOptions(executor="local", shard=(k, n), only_failed=only_failed, quiet=False)
    s = run_studies(spec, Path(out_dir), cfg, fmt, Path(like) if like else None, opts, command)
    print(f"shard {k}/{n}: " + s.line(), flush=True)
    return {"reconstructed": s.reconstructed, "failed": s.failed, "pending": s.pending}


def _tasks(opts) -> tuple[int, int]:
    """``(array tasks, GPUs per task)``: one task per ``gpus_per_worker`` GPUs (whole GPUs: Slurm's unit)."""
    if opts.gpus:
        per = int(opts.gpus_per_worker)
        if per < 1 or per != opts.gpus_per_worker:
            raise InputError("--executor slurm allocates whole GPUs; use --gpus-per-worker 1 (or 2, 3, ...)")
        return opts.workers or max(1, int(opts.gpus) // per), per
    return opts.workers or 1, 0


def run_slurm(spec: str, out_dir: Path, cfg: ReconConfig, fmt: Optional[str], like: Optional[Path], opts,
              command: list) -> None:
    """Submit the batch as a Slurm job array and wait for it (resubmitting lost shards)."""
    try:
        import submitit
    except ImportError:
        raise InputError("--executor slurm needs submitit: pip install 'medrecon[slurm]' (or submit an sbatch "
                         "array of `medrecon recon ... --shard K/N` yourself)") from None
    n, gpus = _tasks(opts)
    # Compute nodes may start elsewhere: give them absolute paths.
    spec = str(Path(spec).resolve()) if Path(spec).is_dir() else os.path.abspath(spec)
    out_abs = str(Path(out_dir).resolve())
    like_abs = str(Path(like).resolve()) if like else None
    cfg = replace(cfg, progress=False)  # bars in Slurm logs are noise
    s = opts.slurm or {}
    ex = submitit.AutoExecutor(folder=Path(out_abs) / ".slurm" / "%j", cluster=s.get("cluster"))
    params = {"name": "medrecon-recon", "timeout_min": int(s.get("timeout_min", 240)), "slurm_array_parallelism": n,
              "cpus_per_task": int(s.get("cpus_per_task", 4))}
    if gpus:
        params["gpus_per_node"] = gpus
    if s.get("partition"):
        params["slurm_partition"] = s["partition"]
    if s.get("extra"):
        params["slurm_additional_parameters"] = dict(s["extra"])
    ex.update_parameters(**params)
    shards = list(range(n))
    for round_ in range(opts.max_retries + 1):
        jobs = ex.map_array(shard_job, [spec] * len(shards), [out_abs] * len(shards), [cfg] * len(shards),
                            [fmt] * len(shards), [like_abs] * len(shards), shards, [n] * len(shards),
                            [opts.only_failed] * len(shards), [command] * len(shards))
        print(f"slurm: submitted {len(jobs)} array task(s) (job {jobs[0].job_id.split('_')[0]}); logs in "
              f"{Path(out_dir) / '.slurm'}", flush=True)
        lost = []
        for k, job in zip(shards, jobs):
            try:
                job.result()
            except Exception as exc:  # noqa: BLE001 - a lost task leaves its studies pending; resubmit it
                print(f"medrecon: warning: slurm task for shard {k}/{n} ended without finishing "
                      f"({one_line(exc)})", file=sys.stderr, flush=True)
                lost.append(k)
        if not lost:
            return
        if round_ < opts.max_retries:
            print(f"slurm: resubmitting {len(lost)} shard(s)", file=sys.stderr, flush=True)
        shards = lost
