"""End of training: held-out denoising evaluation, sample figure, model card, bundle."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from medrecon.io.atomic import atomic_write

from .bundle import save_bundle
from .data import PIXEL_MM, SliceSampler
from .prior import DiffusionPrior

__all__ = ["EVAL_PIXEL_MM", "SAMPLE_STEPS", "eval_pixel_mm", "denoising_eval", "finalize_bundle", "sample_figure",
           "sampler_label", "show_sample", "unconditional_samples"]

EVAL_T = (50, 100, 200, 400, 700)
EVAL_PIXEL_MM = {"mri": (1.0, 1.0), "ct": (1.5, 1.5)}  # held-out crops for the denoising evaluation



def _shared_command() -> str:
    """The training command for the metadata and model card, which are shared: paths keep base names only
    (a data folder may name a patient; medrecon.io.privacy scrubs declared identifiers on top)."""
    import sys

    from medrecon.io.run_record import arg_basename

    if not (sys.argv and "medrecon" in sys.argv[0]):
        return "train_prior()"
    return " ".join(["medrecon", *(arg_basename(a) for a in sys.argv[1:])])

def eval_pixel_mm(modality: str, pixel_range: tuple[float, float]) -> tuple[float, float]:
    """Pixel size of the held-out denoising crops: the fixed default (comparable across the shipped
    priors) when the prior covers it, else the finest pixel size the prior was trained for."""
    lo, hi = pixel_range
    fixed = EVAL_PIXEL_MM[modality]
    return fixed if lo <= fixed[0] <= hi else (lo, lo)


def _extra_augment(meta_training: dict) -> str:
    """The model card's words for ``--augment`` (older bundles record none)."""
    names = meta_training.get("augment") or []
    return f"; with --augment: {', '.join(names)} (MONAI)" if names else ""


@torch.no_grad()
def denoising_eval(prior: DiffusionPrior, sampler: SliceSampler, n: int = 32, seed: int = 123) -> list[dict]:
    """Held-out denoising PSNR at several noise levels (network space, peak = max |x0|).

    For each timestep t, ``x_t = sqrt(abar) x0 + sqrt(1-abar) n``; the noisy estimate is
    ``x_t / sqrt(abar)`` and the denoised one Tweedie's ``x0_hat``. The gain is their PSNR difference.
    """
    gen = torch.Generator().manual_seed(seed)
    x0 = prior.to_network(sampler.batch(n), 1.0)
    peak = float(x0.abs().amax())
    rows = []
    for t in EVAL_T:
        abar = prior.alphas_cumprod[t]
        noise = torch.randn(x0.shape, generator=gen).to(x0.device)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        chunks = [prior.x0(x_t[i:i + 8], t) for i in range(0, n, 8)]
        den = torch.cat(chunks)

        def psnr(a):
            mse = float(torch.mean((a - x0) ** 2))
            return 10 * math.log10(peak ** 2 / mse)

        rows.append({"t": t, "sigma": float(((1 - abar) / abar).sqrt()), "psnr_noisy": round(psnr(x_t / abar.sqrt()), 2),
                     "psnr_denoised": round(psnr(den), 2)})
    return rows


SAMPLE_STEPS = 250  # model-card samples: strided ancestral DDPM (eta 1); see unconditional_samples


def unconditional_samples(prior: DiffusionPrior, n: int, size: int, seed: int, steps: int = SAMPLE_STEPS,
                          eta: float = 1.0, progress: bool = False) -> np.ndarray:
    """``n`` unconditional samples in physical units (MRI magnitude, CT HU): ``(n, size, size)``.

    The default is ancestral sampling (eta 1, Ho et al. 2020 with a strided schedule): its fresh noise at
    every step corrects errors of earlier steps (Karras et al. 2022, sec. 4). Deterministic DDIM (eta 0,
    50 steps) sent most trajectories of a briefly trained prior to the x0 clamp (saturated noise) while
    ancestral sampling of the same network gave brain-shaped images (benchmarks/compare_priors.py --eta).
    """
    from medrecon.sampling.schedule import unconditional_ddim

    gen = torch.Generator().manual_seed(seed)
    x = unconditional_ddim(prior, (n, prior.channels, size, size), steps=steps, generator=gen, eta=eta,
                           progress=progress)
    img = prior.from_network(x, torch.ones(1, 1, device=x.device))
    return (img.abs() if img.is_complex() else img).float().cpu().numpy()


def sampler_label(steps: int = SAMPLE_STEPS, eta: float = 1.0) -> str:
    """How samples were drawn, for figure titles: ``"ancestral, 250 steps"`` or ``"DDIM eta 0, 50 steps"``."""
    return f"ancestral, {steps} steps" if eta == 1.0 else f"DDIM eta {eta:g}, {steps} steps"


def show_sample(ax, img: np.ndarray, modality: str) -> None:
    """Draw one sample the way model cards do: CT in a soft-tissue window, MRI up to its 99.5th percentile."""
    if modality == "ct":
        ax.imshow(img, cmap="gray", vmin=-200, vmax=300)
    else:
        ax.imshow(img, cmap="gray", vmin=0, vmax=float(np.percentile(img, 99.5)) or 1.0)
    ax.set_xticks([])
    ax.set_yticks([])


def sample_figure(prior: DiffusionPrior, path: Path, n: int, size: int, seed: int, steps: int = SAMPLE_STEPS,
                  eta: float = 1.0, progress: bool = False) -> None:
    """Draw ``n`` unconditional ``size``x``size`` samples in one row and write them to ``path`` (PNG).

    The file appears only when complete (:func:`medrecon.io.atomic.atomic_write`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imgs = unconditional_samples(prior, n, size, seed, steps, eta, progress)
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.4))
    for i, ax in enumerate(np.atleast_1d(axes)):
        show_sample(ax, imgs[i], prior.modality)
        ax.axis("off")
    fig.suptitle(f"{prior.name}: unconditional samples ({sampler_label(steps, eta)})", fontsize=9)
    fig.tight_layout()
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)


def _model_card(meta_training: dict, evaluation: list, prior: DiffusionPrior, params: int) -> str:
    rows = "\n".join(f"| {r['t']} | {r['sigma']:.3f} | {r['psnr_noisy']:.2f} | {r['psnr_denoised']:.2f} | "
                     f"{r['psnr_denoised'] - r['psnr_noisy']:+.2f} |" for r in evaluation) or "| - | - | - | - | - |"
    data = "\n".join(f"- `{d['file']}` (sha256 `{d['sha256'][:16]}...`), licence: {d['licence']}"
                     for d in meta_training["data"])
    held = "\n".join(f"- `{d['file']}`" for d in meta_training.get("heldout", [])) or "- none"
    init = meta_training.get("init_from")
    warm = "" if not init else (
        f"- warm start: from `{init['name']}` (weights sha256 `{init['sha256'][:16]}...`, {init['steps']} steps, "
        f"{init['minutes']:.1f} min on `{init['device']}`); in all {meta_training['total_steps']} steps and "
        f"{meta_training['total_minutes']:.1f} minutes of training\n")
    objective = ("epsilon prediction" if prior.prediction == "epsilon" else
                 f"EDM preconditioning (Karras et al. 2022, sigma_data {prior.sigma_data:g})")
    return f"""# Model card: {prior.name}

A {prior.modality.upper()} diffusion prior for medrecon: MONAI `DiffusionModelUNet`
({params / 1e6:.1f} M parameters, channels {prior.network_config['channels']}), {objective},
{prior.schedule['num_train_timesteps']}-step {prior.schedule['schedule']} DDPM schedule.
Normalization: `{prior.rule.to_dict()}`.

## How it was trained
- command: `{meta_training.get('command', 'medrecon train-prior')}`
- steps: {meta_training['steps']} of batch {meta_training['batch_size']} on {meta_training['size']}x{meta_training['size']} crops,
  {meta_training['minutes']:.1f} minutes on `{meta_training['device']}` (world size {meta_training['world_size']}),
  final EMA loss {meta_training['final_loss']}
{warm}- AdamW, warm-up + cosine learning rate, EMA {meta_training['ema_decay']}, bf16 autocast on GPU.
- augmentation: zoom towards {meta_training['pixel_mm_range']} mm pixels (never upsampling), random crops, flips and transposes,
  intensity jitter{', smooth random phase' if prior.modality == 'mri' else ''}{_extra_augment(meta_training)}.

Training data:
{data}

Held-out volumes (never trained on):
{held}

## How good it is
Held-out denoising (network space, PSNR with the batch's max |x0| as peak; Tweedie estimate vs. the
noisy input rescaled by 1/sqrt(abar)):

| t | sigma | noisy PSNR (dB) | denoised PSNR (dB) | gain (dB) |
|---|---|---|---|---|
{rows}

Unconditional samples: `samples.png` beside this file. Reconstruction quality with this prior is
reported in the project README (benchmarks), not here.

## Limitations
Trained on a handful of public volumes, so it knows little anatomy and few contrasts; expect
hallucination risk at high acceleration on anatomy unlike the training data. Research use only;
not a medical device.
"""


def finalize_bundle(prior: DiffusionPrior, ema, cfg, train_vols, held, step: int, minutes: float, loss_ema,
                    device, world: int, extra_training: Optional[dict] = None) -> Path:
    """Write the bundle (EMA weights), its evaluation and model card.

    ``extra_training`` is merged into the metadata's ``training`` record (the trainer's distributed
    facts: backend, scaled learning rate, per-rank weight digests, validation loss).
    """
    import sys

    out = Path(cfg.out)
    pixel_range = tuple(cfg.pixel_mm or PIXEL_MM[cfg.modality])
    net_sd = prior.net.state_dict()
    prior.net.load_state_dict(ema.state_dict())  # evaluate and ship the EMA weights
    prior.eval()
    heldout_src = held or train_vols
    ev_sampler = SliceSampler(heldout_src, cfg.modality, cfg.size, eval_pixel_mm(cfg.modality, pixel_range),
                              seed=999, device=device)
    evaluation = denoising_eval(prior, ev_sampler)
    training = {
        "command": _shared_command(),
        "data": [p for v in train_vols for p in v.provenance],
        "heldout": [p for v in held for p in v.provenance],
        "evaluated_on": "held-out volumes" if held else "training volumes (no held-out volume given)",
        "steps": step, "batch_size": cfg.batch_size, "size": cfg.size, "lr": cfg.lr, "ema_decay": cfg.ema_decay,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "world_size": world, "minutes": round(minutes, 2),
        "final_loss": None if loss_ema is None else round(float(loss_ema), 5),
        "pixel_mm_range": list(pixel_range),
        "augment": list(cfg.augment),
        **(extra_training or {}),
    }
    docs = out / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    sample_figure(prior, docs / "samples.png", cfg.n_samples, cfg.size, cfg.seed, cfg.sample_steps)
    params = sum(p.numel() for p in prior.net.parameters())
    from medrecon.io.atomic import write_text

    write_text(docs / "README.md", _model_card(training, evaluation, prior, params))
    save_bundle(prior, out, training=training, extra={"evaluation": {"heldout_denoising": evaluation}},
                weights_dtype=cfg.weights_dtype)
    prior.net.load_state_dict(net_sd)
    return out
