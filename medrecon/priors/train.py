"""Training loop for diffusion priors (MONAI network + MONAI DDPM schedule).

Standard epsilon-prediction DDPM training (Ho et al., 2020, Algorithm 1) with AdamW, linear
warm-up then cosine decay, an exponential moving average of the weights (the EMA copy is what
gets shipped), bf16 autocast on GPU, periodic checkpoints, resume, a CSV loss log and a wall-clock
bound.

``torchrun --standalone --nproc_per_node=N -m medrecon train-prior ...`` (or the multi-node form with a
c10d rendezvous) runs it data-parallel with DistributedDataParallel: the process group is set up
here from torchrun's environment (nccl on GPUs, gloo on CPUs); each rank samples its own share of
the training volumes; held-out volumes are split over the ranks for the validation loss, never
duplicated; the learning rate is scaled with the world size; rank 0 alone writes checkpoints, logs
and the bundle; and a restarted run (``torchrun --max-restarts``) resumes from the last checkpoint.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from medrecon.device import resolve_device
from medrecon.errors import InputError

from .augment import parse_augment
from .data import PIXEL_MM, SliceSampler, SliceVolume, check_pixel_range, load_training_volumes, split_heldout
from .finalize import SAMPLE_STEPS
from .network import DEFAULT_NETWORK
from .patch import build_prior, expand_input_channels, prior_from_description
from .prior import EDM_P_MEAN, EDM_P_STD, DiffusionPrior

__all__ = ["TrainConfig", "train_prior", "resolve_device", "shard_indices", "validation_loss", "weights_digest"]

VAL_T = (100, 400, 700)  # validation timesteps: low, middle and high noise


@dataclass
class TrainConfig:
    """Settings of ``medrecon train-prior`` (all documented in the README)."""

    modality: str
    data: list
    out: str
    size: int = 128
    steps: int = 20000
    batch_size: int = 16
    lr: float = 2e-4
    warmup: int = 200
    ema_decay: float = 0.999
    max_minutes: Optional[float] = None
    device: str = "auto"
    resume: bool = False
    checkpoint_every: int = 500
    seed: int = 0
    name: Optional[str] = None
    network: dict = field(default_factory=dict)
    heldout: list = field(default_factory=list)
    weights_dtype: str = "float16"
    n_samples: int = 4
    sample_steps: int = SAMPLE_STEPS  # model-card samples (ancestral); see finalize.unconditional_samples
    progress: bool = True
    lr_scaling: str = "sqrt"
    init_from: Optional[str] = None
    pixel_mm: Optional[tuple] = None  # (finest, coarsest) training pixel size; None: the modality's default
    kind: Optional[str] = None  # "whole" or "patch" (PaDIS); None: the --init-from source's kind, else whole
    patch: dict = field(default_factory=dict)  # patch-prior settings over patch.DEFAULT_PATCH
    augment: tuple = ()  # extra augmentations by name (priors.augment: rotate, elastic, gamma, bias)
    objective: Optional[str] = None  # "epsilon" or "edm" (bundle.PREDICTIONS); None: the source's, else epsilon


def _dist_info() -> tuple[int, int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def _init_distributed(device_spec: str) -> tuple[Optional[str], bool]:
    """Join torchrun's process group when launched with ``WORLD_SIZE > 1``.

    Returns ``(backend, owned)``: the backend in use (``None`` when not distributed) and whether this
    call created the group (and so must destroy it). nccl needs one GPU per rank; anything else
    (``--device cpu``, a machine without CUDA) uses gloo.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_backend(), False
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None, False
    use_cuda = torch.cuda.is_available() and not str(device_spec).startswith("cpu")
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # before init: nccl binds the current device
    dist.init_process_group(backend=backend)  # env:// rendezvous from torchrun's MASTER_ADDR/PORT, RANK, WORLD_SIZE
    return backend, True


def _restarted() -> bool:
    """True in a run that torchrun restarted after a failure (``--max-restarts``): it must resume."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def shard_indices(n: int, rank: int, world: int) -> list[int]:
    """Indices ``rank, rank + world, ...`` of ``n`` items: the ranks' shares are disjoint and cover all."""
    return list(range(rank, n, world))


def _lr_scale(cfg: TrainConfig, world: int) -> float:
    """Learning-rate multiplier for ``world`` data-parallel ranks (the effective batch grows ``world``-fold).

    ``sqrt`` (default) keeps AdamW stable at large effective batch; ``linear`` is Goyal et al.'s rule;
    ``none`` keeps ``--lr`` as given.
    """
    rules = {"sqrt": math.sqrt(world), "linear": float(world), "none": 1.0}
    if cfg.lr_scaling not in rules:
        raise ValueError(f"lr_scaling must be one of {sorted(rules)}, got {cfg.lr_scaling!r}")
    return rules[cfg.lr_scaling]


def _lr_at(step: int, cfg: TrainConfig, world: int, minutes: float) -> float:
    """Warm-up then cosine decay to 10%; progress is by steps or, with --max-minutes, by time if further."""
    base = cfg.lr * _lr_scale(cfg, world)
    if step < cfg.warmup:
        return base * (step + 1) / cfg.warmup
    frac = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    if cfg.max_minutes:
        frac = max(frac, min(1.0, minutes / cfg.max_minutes))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), net.parameters()):
        e.lerp_(p.detach(), 1 - decay)
    for e, b in zip(ema.buffers(), net.buffers()):
        e.copy_(b)


def _diffusion_loss(prior: DiffusionPrior, net: torch.nn.Module, x0: torch.Tensor, gen: torch.Generator,
                    autocast: bool, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The training loss of clean ``x0 (B, C, H, W)``; ``cond (B, K, H, W)`` are extra, noise-free input
    channels (a patch prior's positions).

    ``epsilon`` priors: the noise-prediction loss (Ho et al. 2020, eq. 14), timesteps uniform.
    ``edm`` priors: EDM's loss (Karras et al. 2022, eq. 2 with Table 1's weighting), which is unweighted in the
    network's own output: ``|F - (x0 - c_skip y) / c_out|^2``; noise levels ``ln sigma ~ N(-1.2, 1.2^2)``,
    each rounded to the schedule's nearest timestep (the network is conditioned on the timestep).
    """
    b = x0.shape[0]
    if prior.prediction == "edm":
        t = edm_timesteps(prior, b, gen).to(x0.device)
    else:
        t = torch.randint(0, prior.num_timesteps, (b,), generator=gen, device="cpu").to(x0.device)
    noise = torch.randn(x0.shape, generator=gen, device="cpu").to(x0.device)
    x_t = prior.scheduler.add_noise(x0, noise, t)
    if prior.prediction == "edm":
        abar, sigma, c_in_xt, c_skip, c_out = prior.edm_coefficients(t)
        target = (x0 - c_skip * (x0 + sigma * noise)) / c_out
        x_t = x_t * c_in_xt
    else:
        target = noise
    inp = x_t if cond is None else torch.cat([x_t, cond], dim=1)
    with torch.autocast(x0.device.type, dtype=torch.bfloat16, enabled=autocast):
        pred = net(inp, t)
    return torch.mean((pred.float() - target) ** 2)


def edm_timesteps(prior: DiffusionPrior, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` training timesteps for an ``edm`` prior: ``ln sigma ~ N(EDM_P_MEAN, EDM_P_STD^2)`` mapped to the
    schedule's timestep of nearest ``ln sigma_t`` (``sigma_t = sqrt((1 - abar_t) / abar_t)``, increasing in t)."""
    log_sig = EDM_P_MEAN + EDM_P_STD * torch.randn(n, generator=gen)
    ac = prior.alphas_cumprod.detach().double().cpu()
    log_st = (0.5 * torch.log((1 - ac) / ac)).float()
    i = torch.searchsorted(log_st, log_sig).clamp(1, len(log_st) - 1)
    nearer_lower = (log_sig - log_st[i - 1]) < (log_st[i] - log_sig)
    return torch.where(nearer_lower, i - 1, i).long()


def estimate_sigma_data(prior: DiffusionPrior, sampler, batches: int = 4, batch_size: int = 16) -> float:
    """The standard deviation of the training crops in network units (EDM's ``sigma_data``), from ``batches``
    batches of ``sampler``, rounded to 3 decimals (recorded in the bundle's schedule)."""
    xs = [prior.to_network(sampler.batch(batch_size), 1.0).float() for _ in range(batches)]
    return round(float(torch.cat(xs).std()), 3)


@torch.no_grad()
def validation_loss(prior: DiffusionPrior, net: torch.nn.Module, volumes: list[SliceVolume], size: int,
                    rank: int = 0, world: int = 1, seed: int = 0, max_slices: int = 8) -> Optional[float]:
    """Mean held-out denoising loss, each volume evaluated by exactly one rank.

    Rank ``r`` takes volumes ``r, r + world, ...`` (:func:`shard_indices`); every volume uses up to
    ``max_slices`` evenly spaced slices, centre-cropped (or padded) to ``size`` at native
    resolution, at the timesteps :data:`VAL_T`, with noise seeded by the volume's index. The sums are
    all-reduced, so the value does not depend on the world size (up to float summation order).

    Returns:
        The mean epsilon-prediction MSE, or ``None`` without held-out volumes.
    """
    device = prior.device
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for vi in shard_indices(len(volumes), rank, world):
        stack = volumes[vi].slices
        idx = np.unique(np.linspace(0, len(stack) - 1, min(max_slices, len(stack))).round().astype(int))
        imgs = torch.stack([_center(torch.from_numpy(np.asarray(stack[i], dtype=np.float32)), size,
                                    -1000.0 if prior.modality == "ct" else 0.0) for i in idx]).to(device)
        if prior.modality == "mri":
            imgs = torch.polar(imgs.clamp_min(0), torch.zeros_like(imgs))
        x0 = prior.to_network(imgs, 1.0)
        for t in VAL_T:
            g = torch.Generator().manual_seed(seed * 100_003 + vi * 1009 + t)  # a volume's noise, whoever evaluates it
            noise = torch.randn(x0.shape, generator=g).to(device)
            tt = torch.full((x0.shape[0],), t, device=device, dtype=torch.long)
            pred = prior.network_eps(net, prior.scheduler.add_noise(x0, noise, tt), tt, generator=g)
            total[0] += ((pred.float() - noise) ** 2).mean(dim=(1, 2, 3)).sum().double()
            total[1] += x0.shape[0]
    if world > 1:
        dist.all_reduce(total)
    return float(total[0] / total[1]) if float(total[1]) > 0 else None


def _center(img: torch.Tensor, size: int, background: float) -> torch.Tensor:
    """Centre crop / pad a slice to ``size x size``."""
    h, w = img.shape
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        img = F.pad(img[None, None], (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=background)[0, 0]
        h, w = img.shape
    y, x = (h - size) // 2, (w - size) // 2
    return img[y:y + size, x:x + size]


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 of a module's state dict (names and exact bytes): equal digests mean identical weights."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _train_shard(train_vols: list[SliceVolume], rank: int, world: int) -> list[SliceVolume]:
    """This rank's training volumes (a distributed sampler over volumes); all of them if too few to split."""
    if world > 1 and len(train_vols) >= world:
        return [train_vols[i] for i in shard_indices(len(train_vols), rank, world)]
    return train_vols


def _network_diff(asked: dict, have: dict) -> list[str]:
    """Keys in which a ``--network`` override disagrees with an existing network (none when nothing was asked).

    Compared as JSON over the defaults, so tuples and lists of the same values agree.
    """
    if not asked:
        return []
    a, h = (json.loads(json.dumps({**DEFAULT_NETWORK, **n})) for n in (asked, have))
    return sorted(k for k in a.keys() | h.keys() if a.get(k) != h.get(k))


def _warm_start_source(cfg: TrainConfig) -> tuple[DiffusionPrior, dict]:
    """The prior named by ``--init-from`` (sha256-verified) and what the new bundle records about it.

    The new run keeps the source's network, noise schedule and normalization (a warm start continues
    training the same model); a ``--network`` that disagrees with the source is an input error.

    Raises:
        PriorError: unknown prior, wrong modality, or a bundle that fails its checks.
        InputError: ``cfg.network`` names a different network than the source's.
    """
    from .bundle import load_bundle
    from .registry import resolve_prior

    src = load_bundle(resolve_prior(cfg.init_from, cfg.modality))
    diff = _network_diff(cfg.network, src.network_config)
    if diff:
        raise InputError(f"--network differs from the --init-from prior {src.name!r} in {', '.join(diff)}; "
                         "a warm start keeps the source's network (drop --network)")
    t = src.metadata.get("training", {})
    record = {"name": src.metadata.get("name", src.name), "sha256": src.metadata["weights"]["sha256"],
              "steps": int(t.get("total_steps", t.get("steps")) or 0),
              "minutes": float(t.get("total_minutes", t.get("minutes")) or 0.0), "device": t.get("device")}
    return src, record


def _warm_prior(cfg: TrainConfig, src: DiffusionPrior, name: str) -> DiffusionPrior:
    """The prior a warm start trains: the source's network, schedule and normalization, and its kind unless
    ``--kind patch`` turns a whole-image source into a patch prior (the other way is refused: a patch
    network's weights need its position channels)."""
    kind = cfg.kind or src.kind
    if src.kind == "patch" and kind == "whole":
        raise InputError(f"the --init-from prior {src.name!r} is a patch prior; a whole-image prior cannot start from it")
    patch = cfg.patch or (src.patch if src.kind == "patch" else {})
    return build_prior(cfg.modality, {**DEFAULT_NETWORK, **src.network_config}, src.schedule, src.rule.to_dict(),
                       cfg.name or name, kind=kind, patch=patch)


def _check_objective(cfg: TrainConfig, prior: DiffusionPrior, what: str, hint: str) -> None:
    """A one-line error when ``--objective`` asks for another objective than ``prior`` (resumed or warm-start
    source) was trained with."""
    if cfg.objective and cfg.objective != prior.prediction:
        raise InputError(f"--objective {cfg.objective} differs from {what} ({prior.prediction}); {hint}")


def _pixel_range(cfg: TrainConfig, src: Optional[DiffusionPrior], arch: Optional[dict] = None) -> tuple[float, float]:
    """The training pixel-size range: ``--pixel-mm``, else the resumed run's, else a warm-start source's,
    else the modality's default."""
    if cfg.pixel_mm is not None:
        return check_pixel_range(cfg.pixel_mm)
    if arch and arch.get("pixel_mm"):
        return check_pixel_range(arch["pixel_mm"])
    src_range = (src.metadata.get("training") or {}).get("pixel_mm_range") if src is not None else None
    if src_range:
        return check_pixel_range(src_range)
    return tuple(PIXEL_MM[cfg.modality])


def train_prior(cfg: TrainConfig, volumes: Optional[list[SliceVolume]] = None) -> Path:
    """Train a prior and write its bundle to ``cfg.out``. Returns the bundle path.

    Under ``torchrun`` every rank calls this; it joins (and afterwards leaves) the process group itself.

    Args:
        cfg: training settings.
        volumes: prepared training volumes (loaded from ``cfg.data`` when None).
    """
    cfg = dataclasses.replace(cfg, augment=parse_augment(cfg.augment, cfg.modality))  # before any slow work
    backend, owned = _init_distributed(cfg.device)
    try:
        return _train(cfg, volumes, backend)
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, volumes: Optional[list[SliceVolume]], backend: Optional[str]) -> Path:
    rank, world, local_rank = _dist_info()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
    out = Path(cfg.out)
    ckpt_path = out / "training" / "checkpoint.pt"
    resume = cfg.resume or _restarted()
    ck = torch.load(ckpt_path, map_location=device, weights_only=True) if resume and ckpt_path.is_file() else None
    arch = (ck or {}).get("arch")  # what the resumed run trains (older checkpoints lack it)
    src, init_record = _warm_start_source(cfg) if cfg.init_from and not arch else (None, None)
    cfg = dataclasses.replace(cfg, pixel_mm=_pixel_range(cfg, src, arch))
    if volumes is None:
        volumes = load_training_volumes(cfg.data, cfg.modality, finest_mm=cfg.pixel_mm[0])
    if cfg.heldout:
        train_vols, held = volumes, load_training_volumes(cfg.heldout, cfg.modality, finest_mm=cfg.pixel_mm[0])
    else:
        train_vols, held = split_heldout(volumes, seed=cfg.seed)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    if arch:  # resuming: the checkpoint's own network, schedule and normalization (a warm start's included)
        diff = _network_diff(cfg.network, arch["network"])
        if diff:
            raise InputError(f"--network differs in {', '.join(diff)} from the run being resumed in {out}; "
                             "drop --network to continue it, or train into a new --out")
        if cfg.kind and cfg.kind != arch.get("kind", "whole"):
            raise InputError(f"--kind {cfg.kind} differs from the run being resumed in {out} "
                             f"({arch.get('kind', 'whole')}); drop --kind to continue it")
        prior = prior_from_description({**arch, "modality": cfg.modality}, name=cfg.name or out.name)
        _check_objective(cfg, prior, f"the run being resumed in {out}", "drop --objective to continue it")
    elif src is None:
        objective = cfg.objective or "epsilon"
        prior = build_prior(cfg.modality, {**DEFAULT_NETWORK, **cfg.network},
                            {"prediction": objective} if objective != "epsilon" else None,
                            name=cfg.name or out.name, kind=cfg.kind or "whole", patch=cfg.patch)
        if objective == "edm":  # the same crops on every rank, so every rank gets the same value
            probe = SliceSampler(train_vols, cfg.modality, cfg.size, cfg.pixel_mm, seed=cfg.seed * 1000 + 99991)
            prior.schedule["sigma_data"] = estimate_sigma_data(prior, probe)
    else:
        prior = _warm_prior(cfg, src, out.name)
        _check_objective(cfg, prior, f"the --init-from prior {src.name!r}", "a warm start keeps the source's objective")
        if ck is None:  # a checkpoint, when there is one, overrides them below
            # the source's (EMA) weights are the starting point; a whole-image source's first convolution
            # gains zero weights for a patch prior's position channels
            sd = src.net.state_dict()
            if src.kind != prior.kind:
                sd = expand_input_channels(sd, prior.net.state_dict())
            prior.net.load_state_dict(sd)
    prior = prior.to(device)
    net = prior.net
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.0)
    step, elapsed0, loss_ema = 0, 0.0, None
    if ck is not None:
        try:
            net.load_state_dict(ck["net"])
            ema.load_state_dict(ck["ema"])
        except RuntimeError:  # an old checkpoint without "arch", resumed with other settings
            raise InputError(f"the checkpoint in {out} holds another network than the one asked for; resume with "
                             "the --network (or --init-from) it was started with") from None
        opt.load_state_dict(ck["opt"])
        step, elapsed0, loss_ema = int(ck["step"]), float(ck["elapsed"]), ck.get("loss_ema")
        init_record = ck.get("init_from") or init_record
        if rank == 0 and _restarted():
            print(f"medrecon: restarted by torchrun; resuming at step {step}", flush=True)
    elif cfg.resume and rank == 0:
        print(f"medrecon: no checkpoint in {out}; starting from scratch")
    model = net
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)
    sampler = SliceSampler(_train_shard(train_vols, rank, world), cfg.modality, cfg.size, cfg.pixel_mm,
                           seed=cfg.seed * 1000 + rank * 7919 + step, device=device, augment=cfg.augment)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank * 7919 + step + 1)
    autocast = device.type == "cuda"
    if device.type == "cuda":
        # Fixed crop size: let cuDNN pick its fastest convolution algorithms once (no effect on the CPU).
        torch.backends.cudnn.benchmark = True
    if rank == 0:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    d = prior.describe()  # saved with every checkpoint so that --resume rebuilds this model
    model_arch = {"network": d["network"], "schedule": d["schedule"], "normalization": d["normalization"],
                  "pixel_mm": list(cfg.pixel_mm), "kind": d["kind"], **({"patch": d["patch"]} if "patch" in d else {})}
    log_f = open(ckpt_path.parent / "loss.csv", "a", newline="") if rank == 0 else None
    log = csv.writer(log_f) if log_f else None
    if log_f and log_f.tell() == 0:
        log.writerow(["step", "loss", "loss_ema", "lr", "minutes"])
    t0 = time.time()
    deadline = None if cfg.max_minutes is None else t0 + 60 * cfg.max_minutes
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.modality} prior", disable=not cfg.progress or rank != 0)
    stop, val = False, None
    while step < cfg.steps and not stop:
        lr = _lr_at(step, cfg, world, (elapsed0 + time.time() - t0) / 60)
        for g in opt.param_groups:
            g["lr"] = lr
        x0 = prior.to_network(sampler.batch(cfg.batch_size), 1.0)
        cond = None
        if prior.kind == "patch":  # PaDIS: random patches of the batch, with their position channels
            x0, cond = prior.training_patches(x0, gen)
        loss = _diffusion_loss(prior, model, x0, gen, autocast, cond)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        _ema_update(ema, net, min(cfg.ema_decay, (1 + step) / (10 + step)))
        if step % 25 == 0 or step == cfg.steps:
            lv = _mean_over_ranks(loss.detach(), world)  # every rank sees the same value (and the same divergence)
            if not math.isfinite(lv):
                raise RuntimeError(f"training diverged at step {step} (loss {lv}); lower --lr")
            loss_ema = lv if loss_ema is None else 0.9 * loss_ema + 0.1 * lv
            minutes = (elapsed0 + time.time() - t0) / 60
            if log:
                log.writerow([step, f"{lv:.6f}", f"{loss_ema:.6f}", f"{lr:.3e}", f"{minutes:.3f}"])
                log_f.flush()
            bar.set_postfix(loss=f"{loss_ema:.4f}")
        bar.update(1)
        if deadline is not None and time.time() > deadline:
            stop = True
        if world > 1:  # one rank past the deadline stops them all, at the same step
            flag = torch.tensor([1.0 if stop else 0.0], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        if step % cfg.checkpoint_every == 0 or stop or step == cfg.steps:
            val = validation_loss(prior, ema, held, cfg.size, rank, world, cfg.seed)  # collective: all ranks
            if rank == 0:
                _save_checkpoint(ckpt_path, net, ema, opt, step, elapsed0 + time.time() - t0, loss_ema, init_record,
                                 model_arch)
                _log_validation(ckpt_path.parent / "val.csv", step, val)
    bar.close()
    if log_f:
        log_f.close()
    minutes = (elapsed0 + time.time() - t0) / 60
    dist_record = _distributed_record(net, ema, world, backend, cfg, val, held)
    if init_record:  # a warm start: the bundle's totals include the source's training
        dist_record.update(init_from=init_record, total_steps=init_record["steps"] + step,
                           total_minutes=round(init_record["minutes"] + minutes, 2))
    if rank != 0:
        return out
    from .finalize import finalize_bundle

    return finalize_bundle(prior, ema, cfg, train_vols, held, step, minutes, loss_ema, device, world,
                           extra_training=dist_record)


def _mean_over_ranks(x: torch.Tensor, world: int) -> float:
    if world > 1:
        x = x.clone()
        dist.all_reduce(x)
        x = x / world
    return float(x)


def _log_validation(path: Path, step: int, val: Optional[float]) -> None:
    if val is None:
        return
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["step", "val_loss"])
        w.writerow([step, f"{val:.6f}"])


def _distributed_record(net, ema, world: int, backend: Optional[str], cfg: TrainConfig, val: Optional[float],
                        held: list) -> dict:
    """What the bundle metadata records about the run's parallelism (gathered from every rank).

    Each rank hashes its own weights; identical digests prove the ranks stayed in sync. A mismatch
    means the DDP run is broken, so it stops here instead of shipping one rank's weights.
    """
    digests = [weights_digest(net) + ":" + weights_digest(ema)]
    if world > 1:
        gathered: list = [None] * world
        dist.all_gather_object(gathered, digests[0])
        digests = gathered
    if len(set(digests)) != 1:
        raise RuntimeError(f"the {world} ranks ended with different weights; the DDP run is not trustworthy")
    return {"world_size": world, "backend": backend, "lr_scaling": cfg.lr_scaling,
            "effective_lr": cfg.lr * _lr_scale(cfg, world), "global_batch_size": cfg.batch_size * world,
            "rank_weights_sha256": [d.split(":")[0] for d in digests],
            "rank_ema_sha256": [d.split(":")[1] for d in digests],
            "validation_loss": None if val is None else round(val, 6),
            "validation_volumes": len(held)}


def _save_checkpoint(path: Path, net, ema, opt, step: int, elapsed: float, loss_ema,
                     init_from: Optional[dict] = None, arch: Optional[dict] = None) -> None:
    """Atomically write the training state; ``arch`` (network, schedule, normalization, pixel_mm) lets
    ``--resume`` rebuild the same model without the original ``--network``/``--init-from``/``--pixel-mm``."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                "elapsed": elapsed, "loss_ema": loss_ema, "init_from": init_from, "arch": arch}, tmp)
    os.replace(tmp, path)
