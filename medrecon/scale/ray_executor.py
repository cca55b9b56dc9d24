"""The Ray executor: one actor per GPU (or per fraction of one), each holding its loaded prior.

The driver keeps the study queue and hands each idle actor one study at a time, so a slow study
never holds others back and results are recorded in the manifest as they arrive. Ray pins each
actor to its GPU(s) through ``CUDA_VISIBLE_DEVICES``, so inside the actor the device is simply
``cuda``. When an actor dies (a node lost, the OOM killer, a segfault in a driver library), the
driver replaces it with a fresh actor and puts the study back in the queue, up to ``max_retries``
times; after that the study is recorded as failed and the others go on. A study that *fails*
(a corrupt file) is not retried: the reconstructor reports it and the actor stays alive.

Ray is an optional dependency (``pip install 'medrecon[ray]'``) and is imported only here.
"""

from __future__ import annotations

import math
import os
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from medrecon.errors import DeviceError, InputError, MedreconError
from medrecon.recon.config import ReconConfig

from .studies import Study, study_seed
from .study import StudyReconstructor, StudyResult, one_line

__all__ = ["import_ray", "plan_workers", "run_ray"]


def import_ray():
    """``import ray``, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError("--executor ray needs Ray: pip install 'medrecon[ray]'") from None
    return ray


def plan_workers(n_studies: int, cluster_gpus: float, cluster_cpus: float, gpus: Optional[float],
                 gpus_per_worker: float, workers: Optional[int]) -> tuple[int, float]:
    """How many actors, and how many GPUs each: ``(n_actors, gpus_per_actor)``.

    With GPUs (``gpus`` given, or the cluster has some) there is one actor per ``gpus_per_worker``
    GPUs, e.g. 8 GPUs at 0.5 -> 16 actors, two per GPU. Without GPUs there is one single-CPU actor
    per cluster CPU. Never more actors than studies.

    Raises:
        InputError: a ``gpus_per_worker`` Ray cannot schedule (must be a fraction below 1 or a whole number).
    """
    if gpus_per_worker <= 0 or (gpus_per_worker > 1 and gpus_per_worker != int(gpus_per_worker)):
        raise InputError(f"--gpus-per-worker {gpus_per_worker}: use a fraction of one GPU (e.g. 0.5) "
                         "or a whole number")
    use_gpus = cluster_gpus if gpus is None else gpus
    if use_gpus and use_gpus > 0:
        n = workers or max(1, math.floor(use_gpus / gpus_per_worker + 1e-9))
        per = gpus_per_worker
    else:
        n = workers or max(1, int(cluster_cpus))
        per = 0.0
    return max(1, min(n, n_studies)), per


class RayStudyWorker:
    """The actor body: a :class:`StudyReconstructor` living for the actor's lifetime.

    Defined as a plain class and wrapped with ``ray.remote`` at run time, so importing this module
    does not need Ray.
    """

    def __init__(self, cfg: ReconConfig, fmt: Optional[str], like: Optional[Path], command: list,
                 reconstructor: type, kwargs: dict, threads: int) -> None:
        import ray
        import torch

        # Ray sets OMP_NUM_THREADS to the actor's CPUs; torch's intra-op pool must agree, or
        # actors packed on one node oversubscribe its cores.
        torch.set_num_threads(max(1, threads))
        worker = {"gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                  "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
        if worker["gpu_ids"] and cfg.device.startswith("cuda:"):
            # Ray renumbers the actor's GPUs from 0; a host index like cuda:3 means nothing in here.
            cfg = replace(cfg, device="cuda")
        self.rec = reconstructor(cfg, fmt, like, command, worker=worker, **kwargs)

    def run(self, study: Study, attempt: int) -> StudyResult:
        return self.rec(study, attempt)

    def info(self) -> dict[str, Any]:
        return dict(self.rec.worker)


def _connect(ray, address: Optional[str]) -> bool:
    """Join or start a Ray cluster; returns whether this call started (and must stop) it."""
    if ray.is_initialized():
        return False
    try:
        if address is None and not os.environ.get("RAY_ADDRESS"):
            ray.init(include_dashboard=False)  # a private cluster on this machine, for this batch
        else:
            ray.init(address=address)  # "auto", HOST:PORT, or the job's cluster under `ray job submit`
    except ConnectionError as exc:
        raise InputError(f"cannot join the Ray cluster at {address or os.environ.get('RAY_ADDRESS')}: "
                         f"{one_line(exc)}; start one with `ray start --head` or leave out --ray-address") from None
    return True


def run_ray(todo: list[Study], cfg: ReconConfig, fmt: Optional[str], like: Optional[Path], command: list,
            opts, on_result: Callable[[StudyResult], None], reconstructor: type = StudyReconstructor,
            reconstructor_kwargs: Optional[dict] = None) -> None:
    """Reconstruct ``todo`` on Ray actors, calling ``on_result`` (on the driver) for every study.

    Args:
        todo: the studies to run.
        cfg, fmt, like, command: as for :class:`StudyReconstructor`.
        opts: :class:`~medrecon.scale.run.ScaleOptions` (gpus, gpus_per_worker, workers, ray_address,
            max_retries).
        on_result: called once per study with its final result.
        reconstructor, reconstructor_kwargs: the per-study reconstructor class and extra arguments.
    """
    ray = import_ray()
    started = _connect(ray, opts.ray_address)
    try:
        res = ray.cluster_resources()
        cluster_gpus, cluster_cpus = float(res.get("GPU", 0)), float(res.get("CPU", 1))
        if opts.gpus is not None and opts.gpus > cluster_gpus:
            msg = f"--gpus {opts.gpus:g} but the Ray cluster has {cluster_gpus:g} GPU(s)"
            if started:
                raise DeviceError(msg)
            print(f"medrecon: warning: {msg}; actors wait until the cluster grows", file=sys.stderr, flush=True)
        n, per = plan_workers(len(todo), cluster_gpus, cluster_cpus, opts.gpus, opts.gpus_per_worker, opts.workers)
        print(f"ray: {len(todo)} studies on {n} actor(s), {per:g} GPU each", flush=True)
        _dispatch(ray, todo, cfg, fmt, like, command, opts.max_retries, on_result, reconstructor,
                  dict(reconstructor_kwargs or {}), n, per)
    finally:
        if started:
            ray.shutdown()


def _dispatch(ray, todo, cfg, fmt, like, command, max_retries, on_result, reconstructor, kwargs, n, per) -> None:
    """The driver loop: one study per idle actor; dead actors replaced and their study requeued."""
    from ray.exceptions import RayActorError, RayError, RayTaskError

    cfg = replace(cfg, progress=False)  # progress bars of many actors would interleave on the driver
    cpus = 1.0
    actor_cls = ray.remote(RayStudyWorker)

    def new_actor():
        # max_restarts=0: the driver replaces dead actors itself, so it knows which study to retry
        # and can bound the retries per study.
        return actor_cls.options(num_gpus=per, num_cpus=cpus, max_restarts=0).remote(
            cfg, fmt, like, command, reconstructor, kwargs, int(cpus))

    actors = [new_actor() for _ in range(n)]
    idle = list(range(n))
    queue: deque[Study] = deque(todo)
    attempts: dict[str, int] = {}
    inflight: dict[Any, tuple[int, Study]] = {}
    init_failures = 0
    try:
        while queue or inflight:
            while queue and idle:
                i, s = idle.pop(), queue.popleft()
                attempts[s.name] = attempts.get(s.name, 0) + 1
                inflight[actors[i].run.remote(s, attempts[s.name])] = (i, s)
            (ref,), _ = ray.wait(list(inflight), num_returns=1)
            i, s = inflight.pop(ref)
            try:
                result = ray.get(ref)
            except RayTaskError as exc:  # the reconstructor catches everything; this is a bug, not a death
                idle.append(i)
                result = StudyResult(s.name, False, one_line(exc.cause if exc.cause else exc),
                                     study_seed(s.name, cfg.seed), 0.0, attempts[s.name])
            except (RayActorError, RayError) as exc:
                ray.kill(actors[i], no_restart=True)
                actors[i] = new_actor()
                idle.append(i)
                if isinstance(exc, RayActorError) and getattr(exc, "actor_init_failed", False):
                    # The actor never started (medrecon missing on a node?): not the study's fault.
                    init_failures += 1
                    attempts[s.name] -= 1
                    queue.appendleft(s)
                    if init_failures >= max(3, n):
                        raise MedreconError(f"Ray workers fail to start ({one_line(exc)}); is medrecon installed "
                                            "on every node of the cluster?") from None
                    continue
                if attempts[s.name] <= max_retries:
                    print(f"ray: the worker died during {s.name} (try {attempts[s.name]}); retrying on a new worker",
                          file=sys.stderr, flush=True)
                    queue.appendleft(s)
                    continue
                result = StudyResult(s.name, False, f"the worker died on each of {attempts[s.name]} tries "
                                     f"(last: {one_line(exc)})", study_seed(s.name, cfg.seed), 0.0,
                                     attempts[s.name])
            else:
                idle.append(i)
            on_result(result)
    finally:
        for a in actors:
            ray.kill(a, no_restart=True)
