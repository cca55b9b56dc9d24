"""Training loop for diffusion priors (MONAI network + MONAI DDPM schedule).

Standard epsilon-prediction DDPM training (Ho et al., 2020, Algorithm 1) with AdamW, linear
warm-up then cosine decay, an exponential moving average of the weights (the EMA copy is what
gets shipped), bf16 autocast on GPU, periodic checkpoints, resume, a CSV loss log and a wall-clock
bound. ``torchrun`` runs it data-parallel (DistributedDataParallel); rank 0 alone writes files.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from medrecon.device import resolve_device

from .data import PIXEL_MM, SliceSampler, SliceVolume, load_training_volumes, split_heldout
from .network import DEFAULT_NETWORK
from .prior import DiffusionPrior

__all__ = ["TrainConfig", "train_prior", "resolve_device"]



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
    progress: bool = True


def _dist_info() -> tuple[int, int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def _lr_at(step: int, cfg: TrainConfig, world: int, minutes: float) -> float:
    """Warm-up then cosine decay to 10%; progress is by steps or, with --max-minutes, by time if further."""
    base = cfg.lr * math.sqrt(world)  # sqrt scaling keeps AdamW stable at large effective batch
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
                    autocast: bool) -> torch.Tensor:
    b = x0.shape[0]
    t = torch.randint(0, prior.num_timesteps, (b,), generator=gen, device="cpu").to(x0.device)
    noise = torch.randn(x0.shape, generator=gen, device="cpu").to(x0.device)
    x_t = prior.scheduler.add_noise(x0, noise, t)
    with torch.autocast(x0.device.type, dtype=torch.bfloat16, enabled=autocast):
        pred = net(x_t, t)
    return torch.mean((pred.float() - noise) ** 2)


def train_prior(cfg: TrainConfig, volumes: Optional[list[SliceVolume]] = None) -> Path:
    """Train a prior and write its bundle to ``cfg.out``. Returns the bundle path.

    Args:
        cfg: training settings.
        volumes: prepared training volumes (loaded from ``cfg.data`` when None).
    """
    rank, world, local_rank = _dist_info()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
    out = Path(cfg.out)
    if volumes is None:
        volumes = load_training_volumes(cfg.data, cfg.modality)
    if cfg.heldout:
        train_vols, held = volumes, load_training_volumes(cfg.heldout, cfg.modality)
    else:
        train_vols, held = split_heldout(volumes, seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    prior = DiffusionPrior(cfg.modality, {**DEFAULT_NETWORK, **cfg.network}, name=cfg.name or out.name).to(device)
    net = prior.net
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.0)
    step, elapsed0, loss_ema = 0, 0.0, None
    ckpt_path = out / "training" / "checkpoint.pt"
    if cfg.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        net.load_state_dict(ck["net"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, elapsed0, loss_ema = int(ck["step"]), float(ck["elapsed"]), ck.get("loss_ema")
    elif cfg.resume and rank == 0:
        print(f"medrecon: no checkpoint in {out}; starting from scratch")
    model = net
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    sampler = SliceSampler(train_vols, cfg.modality, cfg.size, PIXEL_MM[cfg.modality],
                           seed=cfg.seed * 1000 + rank * 7919 + step, device=device)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank * 7919 + step + 1)
    autocast = device.type == "cuda"
    if rank == 0:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    log_f = open(ckpt_path.parent / "loss.csv", "a", newline="") if rank == 0 else None
    log = csv.writer(log_f) if log_f else None
    if log_f and log_f.tell() == 0:
        log.writerow(["step", "loss", "loss_ema", "lr", "minutes"])
    t0 = time.time()
    deadline = None if cfg.max_minutes is None else t0 + 60 * cfg.max_minutes
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.modality} prior", disable=not cfg.progress or rank != 0)
    stop = False
    while step < cfg.steps and not stop:
        lr = _lr_at(step, cfg, world, (elapsed0 + time.time() - t0) / 60)
        for g in opt.param_groups:
            g["lr"] = lr
        x0 = prior.to_network(sampler.batch(cfg.batch_size), 1.0)
        loss = _diffusion_loss(prior, model, x0, gen, autocast)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        _ema_update(ema, net, min(cfg.ema_decay, (1 + step) / (10 + step)))
        if step % 25 == 0 or step == cfg.steps:
            lv = float(loss.detach())
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
        if world > 1:
            flag = torch.tensor([1.0 if stop else 0.0], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        if rank == 0 and (step % cfg.checkpoint_every == 0 or stop or step == cfg.steps):
            _save_checkpoint(ckpt_path, net, ema, opt, step, elapsed0 + time.time() - t0, loss_ema)
    bar.close()
    if log_f:
        log_f.close()
    minutes = (elapsed0 + time.time() - t0) / 60
    if rank != 0:
        return out
    from .finalize import finalize_bundle

    return finalize_bundle(prior, ema, cfg, train_vols, held, step, minutes, loss_ema, device, world)


def _save_checkpoint(path: Path, net, ema, opt, step: int, elapsed: float, loss_ema) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                "elapsed": elapsed, "loss_ema": loss_ema}, tmp)
    os.replace(tmp, path)
