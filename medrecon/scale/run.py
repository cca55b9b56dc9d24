"""Run a batch of studies on an executor, with the output folder's manifest as the record.

``run_studies`` is what ``medrecon recon IN_DIR --out DIR`` calls: it lists and (optionally) shards the
studies, reconciles the manifest with the outputs already on disk, picks the studies to run (pending
ones, or with ``only_failed`` the recorded failures), hands them to an executor, records each result
as it arrives, and prints one summary line. Executors only decide *where* the per-study
reconstructor (:class:`~medrecon.scale.study.StudyReconstructor`) runs.

Batches started together on one output folder share the work: each study is claimed before it runs
(:meth:`~medrecon.scale.manifest.Manifest.claim`), a study another live process holds is skipped and
waited for, and each invocation's summary says how many studies it ran and how many the others did.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from medrecon.errors import InputError
from medrecon.recon.config import ReconConfig

from .manifest import BUSY, CLAIMED, DONE_ELSEWHERE, Manifest, result_settings
from .studies import Study, list_studies, shard
from .study import StudyReconstructor, StudyResult

__all__ = ["EXECUTORS", "BatchSummary", "ScaleOptions", "claim_each", "run_local", "run_studies"]

EXECUTORS = ("local", "ray", "slurm")
POLL_SECONDS = 0.5  # how often a batch looks again at studies another process is reconstructing


@dataclass
class ScaleOptions:
    """Where and which studies run (the scale-out part of ``medrecon recon``).

    Attributes:
        executor: ``local`` (this process), ``ray`` or ``slurm``.
        shard: ``(K, N)``: only every N-th study starting at K (0-based) of the sorted list.
        only_failed: retry only the studies the manifest records as failed.
        gpus: GPUs to use (Ray: default all of the cluster's; Slurm: one array task per GPU).
        gpus_per_worker: GPUs per Ray actor; below 1 packs several actors on a GPU.
        workers: number of workers (Ray actors / Slurm array tasks); default from ``gpus``.
        ray_address: ``auto`` or ``HOST:PORT`` of a running Ray cluster; ``None`` starts a local one
            (or joins the cluster of a ``ray job submit`` job).
        max_retries: how often a study is retried after its worker died (Ray, Slurm).
        slurm: submitit parameters (``partition``, ``timeout_min``, ``cluster``, ``extra``).
        quiet: no per-study lines or progress bars.
    """

    executor: str = "local"
    shard: Optional[tuple[int, int]] = None
    only_failed: bool = False
    gpus: Optional[float] = None
    gpus_per_worker: float = 1.0
    workers: Optional[int] = None
    ray_address: Optional[str] = None
    max_retries: int = 2
    slurm: dict = field(default_factory=dict)
    quiet: bool = False


@dataclass
class BatchSummary:
    """Counts of one invocation, over the studies it was given (its shard, if any).

    ``done_elsewhere`` and ``failed_elsewhere`` count the studies that another batch running on the same
    output folder at the same time reconstructed (or failed) while this one skipped them.
    """

    reconstructed: int = 0
    failed: int = 0
    already_done: int = 0
    failed_earlier: int = 0
    pending: int = 0
    done_elsewhere: int = 0
    failed_elsewhere: int = 0
    results: list[StudyResult] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 only when every study of the selection is done."""
        return 1 if (self.failed or self.failed_earlier or self.failed_elsewhere or self.pending) else 0

    def line(self) -> str:
        parts = [f"{self.reconstructed} reconstructed", f"{self.already_done} already done", f"{self.failed} failed"]
        if self.done_elsewhere:
            parts.append(f"{self.done_elsewhere} reconstructed by another run")
        if self.failed_elsewhere:
            parts.append(f"{self.failed_elsewhere} failed in another run")
        if self.failed_earlier:
            parts.append(f"{self.failed_earlier} failed earlier (retry them with --only-failed)")
        if self.pending:
            parts.append(f"{self.pending} still pending (rerun to resume)")
        return "batch: " + ", ".join(parts)


OnResult = Callable[[StudyResult], None]


def run_local(todo: Iterable[Study], rec: StudyReconstructor, on_result: OnResult) -> None:
    """The local executor: this process, one study after another on one device.

    Slices of a study are batched on the device by the sampler (``--batch-size``); the prior is
    loaded once for the whole batch. ``todo`` may be lazy (:func:`claim_each` claims each study only
    when its turn comes).
    """
    for s in todo:
        on_result(rec(s))


def _settle(state: str, summary: BatchSummary) -> None:
    """Count a study that another process has settled (done or failed) while this one skipped it."""
    if state == DONE_ELSEWHERE:
        summary.done_elsewhere += 1
    else:
        summary.failed_elsewhere += 1


def claim_each(todo: list[Study], manifest: Manifest, summary: BatchSummary, quiet: bool = True) -> Iterator[Study]:
    """The studies of ``todo`` this process gets to run, each claimed just before it is yielded.

    Studies that another live process holds are passed over and looked at again (every
    :data:`POLL_SECONDS` once nothing else is left) until that process has recorded them, or has died
    and left its claim to be taken over; so the invocation ends only when every study of ``todo`` is
    settled, and its summary covers them all.
    """
    waiting = list(todo)
    told = False
    while waiting:
        busy: list[Study] = []
        progressed = False
        for s in waiting:
            state = manifest.claim(s)
            if state == CLAIMED:
                progressed = True
                yield s
            elif state == BUSY:
                busy.append(s)
            else:
                progressed = True
                _settle(state, summary)
        waiting = busy
        if waiting and not progressed:
            if not quiet and not told:
                print(f"waiting for {len(waiting)} study(ies) another run is reconstructing", flush=True)
                told = True
            time.sleep(POLL_SECONDS)


def _claim_rounds(todo: list[Study], manifest: Manifest, summary: BatchSummary,
                  run: Callable[[list[Study]], None]) -> None:
    """For executors that take a whole list (Ray): claim what is free, run it, repeat for what was busy."""
    waiting = list(todo)
    while waiting:
        mine: list[Study] = []
        busy: list[Study] = []
        for s in waiting:
            state = manifest.claim(s)
            if state == CLAIMED:
                mine.append(s)
            elif state == BUSY:
                busy.append(s)
            else:
                _settle(state, summary)
        if mine:
            run(mine)
        elif busy:
            time.sleep(POLL_SECONDS)
        waiting = busy


def _report(manifest: Manifest, summary: BatchSummary, studies: dict[str, Study], quiet: bool,
            executor: str) -> OnResult:
    """The callback that records each result in the manifest (and says so on the console)."""

    def on_result(r: StudyResult) -> None:
        s = studies[r.name]
        fields: dict[str, Any] = {"status": "done" if r.ok else "failed", "reason": r.reason, "seed": r.seed,
                                  "attempts": r.attempt, "seconds": round(r.seconds, 3), "executor": executor,
                                  "worker": r.worker, "output": s.output.name}
        manifest.update(r.name, **fields)
        summary.results.append(r)
        if r.ok:
            summary.reconstructed += 1
            if not quiet:
                print(f"done {r.name} -> {s.output.name} ({r.seconds:.1f} s)", flush=True)
        else:
            summary.failed += 1
            print(f"medrecon: error: {r.name}: {r.reason}", file=sys.stderr, flush=True)

    return on_result


def run_studies(spec: str, out_dir: Path, cfg: ReconConfig, fmt: Optional[str] = None,
                like: Optional[Path] = None, options: Optional[ScaleOptions] = None,
                command: Optional[list] = None, reconstructor: type = StudyReconstructor,
                reconstructor_kwargs: Optional[dict] = None) -> BatchSummary:
    """Reconstruct the studies of a folder or glob into ``out_dir`` on the chosen executor.

    Args:
        spec: input folder or glob.
        out_dir: output folder (holds ``manifest.json``).
        cfg: reconstruction settings; ``cfg.seed`` seeds every study (see ``study_seed``).
        fmt, like: output format and DICOM template, as for a single ``recon``.
        options: executor, shard, retries (default: local, everything pending).
        command: the command line for the run records (default ``sys.argv``).
        reconstructor, reconstructor_kwargs: the per-study reconstructor class and extra arguments
            (tests substitute one that fails on purpose).

    Returns:
        The summary; ``summary.exit_code`` is the CLI's exit code.

    Raises:
        InputError: no inputs, clashing output names, a manifest from other settings, bad options.
    """
    opts = options or ScaleOptions()
    if opts.executor not in EXECUTORS:
        raise InputError(f"unknown executor {opts.executor!r}; choose from {', '.join(EXECUTORS)}")
    if opts.executor == "slurm" and opts.shard:
        raise InputError("--shard and --executor slurm do not mix: the Slurm executor makes the shards itself")
    if opts.executor == "local" and (opts.gpus is not None or opts.workers is not None or opts.ray_address):
        raise InputError("--gpus, --workers and --ray-address apply to --executor ray or slurm; the local executor "
                         "uses the one --device")
    out_dir = Path(out_dir)
    studies = list_studies(spec, out_dir, fmt)
    if opts.shard:
        studies = shard(studies, *opts.shard)
    manifest = Manifest(out_dir)
    status = manifest.sync(studies, result_settings(cfg, fmt))
    want = "failed" if opts.only_failed else "pending"
    todo = [s for s in studies if status[s.name] == want]
    summary = BatchSummary(already_done=sum(1 for v in status.values() if v == "done"))
    if not opts.only_failed:
        summary.failed_earlier = sum(1 for v in status.values() if v == "failed")
    command = list(command) if command is not None else list(sys.argv)
    try:
        _execute(todo, spec, out_dir, cfg, fmt, like, opts, command, manifest, summary, studies, reconstructor,
                 reconstructor_kwargs)
    finally:
        manifest.close()  # also on Ctrl-C: what finished is recorded, and the claims are given back
    final = manifest.statuses()
    if opts.executor == "slurm" and todo:  # the array tasks recorded their results themselves
        summary.reconstructed = sum(1 for s in todo if final.get(s.name) == "done")
        summary.failed = sum(1 for s in todo if final.get(s.name) == "failed")
    # Pending studies count against the exit code even under --only-failed: the batch is not complete.
    # (A study another run has finished may not be on its record yet: the files are the ground truth.)
    summary.pending = sum(1 for s in studies if final.get(s.name) == "pending" and not s.finished())
    return summary


def _execute(todo, spec, out_dir, cfg, fmt, like, opts, command, manifest, summary, studies, reconstructor,
             reconstructor_kwargs) -> None:
    """Hand ``todo`` to the chosen executor."""
    if not todo:
        return
    if opts.executor == "slurm":
        from .slurm import run_slurm

        run_slurm(spec, out_dir, cfg, fmt, like, opts, command)
        return
    on_result = _report(manifest, summary, {s.name: s for s in studies}, opts.quiet, opts.executor)
    rec_kwargs = dict(reconstructor_kwargs or {})
    if opts.executor == "ray":
        from .ray_executor import run_ray

        _claim_rounds(todo, manifest, summary,
                      lambda mine: run_ray(mine, cfg, fmt, like, command, opts, on_result, reconstructor, rec_kwargs))
    else:
        run_local(claim_each(todo, manifest, summary, opts.quiet), reconstructor(cfg, fmt, like, command, **rec_kwargs),
                  on_result)
