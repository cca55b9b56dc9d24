"""``DiffusionPrior``: a MONAI network plus a MONAI noise schedule, seen by samplers as a denoiser.

Samplers use only this interface (docs/design.md, section 1): the cumulative schedule
``alphas_cumprod``, the noise prediction ``eps(x_t, t)``, Tweedie's estimate
``x0(x_t, t) = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`` (Chung et al. 2023, eq. 7 for the
variance-preserving SDE) and the score ``-eps / sqrt(1 - abar_t)``; plus the normalization rule
that maps physical images to and from the network's space.

What the network itself predicts is the schedule's ``prediction`` (docs/design.md, section 5):

* ``"epsilon"`` (the default, every bundle before it existed): the network output is the noise (Ho et
  al. 2020, eq. 14).
* ``"edm"``: Karras et al. 2022 (EDM), Table 1 preconditioning on the VP schedule. With
  ``sigma_t = sqrt((1 - abar_t) / abar_t)`` and ``y = x_t / sqrt(abar_t) = x0 + sigma_t eps``, the network
  ``F`` sees ``c_in y`` (``c_in = 1 / sqrt(sigma^2 + sigma_data^2)``) and the denoiser is
  ``D = c_skip y + c_out F`` (``c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)``,
  ``c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)``); the noise prediction is then
  ``(y - D) / sigma``. With ``sigma_data = 1`` this is v-prediction (Salimans & Ho 2022).
  :meth:`DiffusionPrior.call_network` does the conversion, so the samplers see the same ``eps`` either way.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from monai.networks.schedulers import DDPMScheduler
import torch.nn.functional as F
from torch import nn

from .bundle import PREDICTIONS
from .network import build_network
from .normalization import NormalizationRule, rule_from_dict

__all__ = ["DiffusionPrior", "DEFAULT_SCHEDULE", "EDM_P_MEAN", "EDM_P_STD"]

# EDM's training noise levels: ln(sigma) ~ N(P_mean, P_std^2) (Karras et al. 2022, Table 1)
EDM_P_MEAN, EDM_P_STD = -1.2, 1.2

DEFAULT_SCHEDULE: dict[str, Any] = {"num_train_timesteps": 1000, "schedule": "linear_beta",
                                    "beta_start": 1e-4, "beta_end": 2e-2}


def make_scheduler(schedule: dict[str, Any]) -> DDPMScheduler:
    """The MONAI DDPM scheduler described by ``schedule`` (epsilon prediction)."""
    s = {**DEFAULT_SCHEDULE, **schedule}
    return DDPMScheduler(num_train_timesteps=int(s["num_train_timesteps"]), schedule=s["schedule"],
                         beta_start=float(s["beta_start"]), beta_end=float(s["beta_end"]),
                         prediction_type="epsilon", clip_sample=False)


class DiffusionPrior(nn.Module):
    """A trained (or untrained) whole-image diffusion prior (``kind = "whole"``).

    Subclasses change how the network sees an image by overriding :meth:`network_eps` (e.g. the patch
    prior of :mod:`medrecon.priors.patch` tiles it); samplers only ever call :meth:`eps`, :meth:`x0`
    and :meth:`score`.

    Args:
        modality: ``"mri"`` (complex, 2 channels) or ``"ct"`` (real, 1 channel).
        network_config: kwargs for :func:`build_network`.
        schedule: MONAI noise-schedule settings.
        normalization: the rule as a dict (see :mod:`medrecon.priors.normalization`).
        name: a human-readable name.
    """

    kind = "whole"
    extra_in_channels = 0  # network input channels beyond the image's (a patch prior's positions)

    def __init__(self, modality: str, network_config: dict, schedule: Optional[dict] = None,
                 normalization: Optional[dict] = None, name: str = "untitled") -> None:
        super().__init__()
        if modality not in ("mri", "ct"):
            raise ValueError(f"modality must be 'mri' or 'ct', got {modality!r}")
        self.modality = modality
        self.name = name
        self.schedule = {**DEFAULT_SCHEDULE, **(schedule or {})}
        default_rule = {"kind": "complex-percentile", "percentile": 99.0} if modality == "mri" else \
            {"kind": "hu-window", "low": -1000.0, "high": 2000.0}
        self.rule: NormalizationRule = rule_from_dict(normalization or default_rule)
        self.network_config = dict(network_config)
        self.channels = self.rule.channels
        self.net = build_network(self.network_config, self.channels + self.extra_in_channels, self.channels)
        self.scheduler = make_scheduler(self.schedule)
        self.register_buffer("alphas_cumprod", self.scheduler.alphas_cumprod.clone().float(), persistent=False)
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"schedule prediction must be one of {PREDICTIONS}, got {self.prediction!r}")

    @property
    def prediction(self) -> str:
        """What the network predicts: the schedule's ``prediction`` (``epsilon`` when absent)."""
        return str(self.schedule.get("prediction", "epsilon"))

    @property
    def sigma_data(self) -> float:
        """EDM's data standard deviation, from the schedule (0.5, EDM's default, when absent)."""
        return float(self.schedule.get("sigma_data", 0.5))

    @property
    def num_timesteps(self) -> int:
        return int(self.schedule["num_train_timesteps"])

    @property
    def device(self) -> torch.device:
        return self.alphas_cumprod.device

    def _t(self, t, batch: int) -> torch.Tensor:
        t = torch.as_tensor(t, device=self.device)
        if t.dim() == 0:
            t = t.expand(batch)
        return t.long()

    def edm_coefficients(self, tt: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """EDM preconditioning at timesteps ``tt (B,)``, each ``(B, 1, 1, 1)``: ``(abar, sigma, c_in_xt, c_skip,
        c_out)``, where ``c_in_xt = c_in / sqrt(abar) = 1 / sqrt(1 - abar + abar sigma_data^2)`` multiplies
        ``x_t`` (so that the network sees ``c_in y``)."""
        abar = self.alphas_cumprod[tt].view(-1, 1, 1, 1)
        sd2 = self.sigma_data ** 2
        s2 = (1 - abar) / abar
        c_in_xt = (1 - abar + abar * sd2).rsqrt()
        c_skip = sd2 / (s2 + sd2)
        c_out = s2.sqrt() * self.sigma_data / (s2 + sd2).sqrt()
        return abar, s2.sqrt(), c_in_xt, c_skip, c_out

    def call_network(self, net: nn.Module, x: torch.Tensor, tt: torch.Tensor,
                     autocast_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """The noise prediction of ``net`` for network inputs ``x (N, channels + extra, h, w)`` (noisy image
        channels first, then any noise-free extra channels such as a patch prior's positions) at ``tt (N,)``:
        the raw output for ``epsilon`` priors, EDM's denoiser converted to noise for ``edm`` priors."""
        if self.prediction == "epsilon":
            return run_network(net, x, tt, autocast_dtype)
        abar, sigma, c_in_xt, c_skip, c_out = (c.to(x.dtype) for c in self.edm_coefficients(tt))
        img = x[:, :self.channels]
        inp = img * c_in_xt if x.shape[1] == self.channels else torch.cat([img * c_in_xt, x[:, self.channels:]], 1)
        f = run_network(net, inp, tt, autocast_dtype)
        y = img / abar.sqrt()
        return (y - (c_skip * y + c_out * f)) / sigma

    def at_precision(self, dtype: Optional[torch.dtype], compiled: bool = False) -> "DiffusionPrior":
        """This prior with its network run under autocast (CUDA, or bf16 on the CPU) at ``dtype`` (None: full
        precision), and through :meth:`compiled_net` when ``compiled``.

        Returns a view that shares the weights; the prior itself is never changed, so batch workers that
        share one cached prior cannot leak one run's precision into another's.
        """
        if dtype is None and not compiled:
            return self
        return _PrecisionView(self, dtype, self.compiled_net() if compiled else None)  # type: ignore[return-value]

    def compiled_net(self) -> nn.Module:
        """``torch.compile`` of the network (``--compile``), made once per prior and reused; it compiles again for
        each new input shape (once per reconstruction: a sampler's shapes do not change).

        Meant for the GPU (fused kernels; issue 22). On the 2-core CPU it does not pay: compiling took 23 s (MRI)
        and 47 s (CT) for a forward pass no faster than the channels_last eager one
        (``benchmarks/results/profile_cpu_2026-12-07/compile.json``). Kept out of the module tree (no state-dict
        keys), so bundles are unaffected.
        """
        net = self.__dict__.get("_compiled_net")
        if net is None:
            net = torch.compile(self.net)
            self.__dict__["_compiled_net"] = net
        return net

    def eps(self, x_t: torch.Tensor, t, autocast_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """Predicted noise. Shapes: ``x_t (B, channels, H, W)``, ``t`` int or ``(B,)`` -> ``(B, channels, H, W)``.

        Any ``H, W`` works (see :meth:`network_eps`). ``autocast_dtype`` runs the network under CUDA
        autocast (ignored on CPU).
        """
        return self.network_eps(self.net, x_t, self._t(t, x_t.shape[0]), autocast_dtype)

    def network_eps(self, net: nn.Module, x_t: torch.Tensor, tt: torch.Tensor,
                    autocast_dtype: Optional[torch.dtype] = None, generator: Optional[torch.Generator] = None
                    ) -> torch.Tensor:
        """``net``'s noise prediction for whole images ``x_t (B, channels, H, W)`` at timesteps ``tt (B,)``.

        ``net`` is this prior's network or a copy of it (training evaluates its EMA copy). The input is
        reflect-padded to a multiple of the UNet's total stride and the output cropped back.
        ``generator`` is unused here (a patch prior draws its tiling offset from it).
        """
        h, w = x_t.shape[-2:]
        m = 2 ** (len(self.network_config["channels"]) - 1)
        ph, pw = (-h) % m, (-w) % m
        x = F.pad(x_t, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="reflect") if ph or pw else x_t
        out = self.call_network(net, x, tt, autocast_dtype)
        return out[..., ph // 2:ph // 2 + h, pw // 2:pw // 2 + w] if ph or pw else out

    def x0_from_eps(self, x_t: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """Tweedie estimate from a noise prediction: ``(x_t - sqrt(1-abar) eps) / sqrt(abar)``."""
        abar = self.alphas_cumprod[self._t(t, x_t.shape[0])].view(-1, 1, 1, 1)
        return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()

    def x0(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """Tweedie's posterior-mean estimate ``E[x0 | x_t]``. Shapes as :meth:`eps`."""
        return self.x0_from_eps(x_t, t, self.eps(x_t, t))

    def score(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """``grad log p_t(x_t) = -eps / sqrt(1 - abar_t)``. Shapes as :meth:`eps`."""
        abar = self.alphas_cumprod[self._t(t, x_t.shape[0])].view(-1, 1, 1, 1)
        return -self.eps(x_t, t) / (1 - abar).sqrt()

    # ----------------------------------------------------- physical <-> network
    def scale_of(self, image: torch.Tensor) -> torch.Tensor:
        """Per-slice scale of a physical image under the prior's rule. ``(..., H, W) -> (..., 1, 1)``."""
        return self.rule.scale_of(image)

    def to_network(self, image: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Physical image ``(..., H, W)`` (complex for MRI, HU for CT) -> ``(..., channels, H, W)``."""
        return self.rule.to_network(image, scale)

    def from_network(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Network tensor ``(..., channels, H, W)`` -> physical image ``(..., H, W)``."""
        return self.rule.from_network(x, scale)

    def describe(self) -> dict:
        """Plain-data description stored in bundle metadata."""
        return {"modality": self.modality, "kind": self.kind, "network": self.network_config,
                "schedule": self.schedule, "normalization": self.rule.to_dict(), "channels": self.channels}


def use_channels_last(net: nn.Module) -> nn.Module:
    """Store ``net``'s weights channels_last for CPU inference; :func:`run_network` then feeds it NHWC.

    Measured on the 2-core CPU (issue 22, ``benchmarks/results/profile_cpu_2026-12-07``): the shipped UNets'
    forward pass is about 20% faster, and forward plus backward (DPS) too; outputs change only by
    floating-point reordering (``tests/sampling/test_pinned_outputs.py``). Not used on the GPU, where the
    H200 measured channels_last training slower (``benchmarks/results/gpu_h200_2026-12-04``).
    """
    net.to(memory_format=torch.channels_last)
    net._medrecon_channels_last = True  # type: ignore[assignment]
    return net


def run_network(net: nn.Module, x: torch.Tensor, tt: torch.Tensor,
                autocast_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``net(x, tt)``, under autocast at ``autocast_dtype`` when given (float32 out).

    On CUDA any autocast dtype; on the CPU bf16 autocast (fast where the CPU has native bf16, e.g.
    AVX512-BF16 or AMX: :func:`medrecon.device.cpu_has_native_bf16`). A network stored channels_last
    (:func:`use_channels_last`) gets its CPU input in that layout; the output is returned contiguous.
    """
    if x.device.type == "cpu" and getattr(net, "_medrecon_channels_last", False):
        x = x.contiguous(memory_format=torch.channels_last)
    if autocast_dtype is not None and x.device.type in ("cuda", "cpu"):
        with torch.autocast(x.device.type, dtype=autocast_dtype):
            return net(x, tt).float().contiguous()
    return net(x, tt).contiguous()


class _PrecisionView:
    """A :class:`DiffusionPrior` evaluated under autocast and/or through a compiled copy of its network: every
    attribute is the prior's, except that the network calls (``eps``, ``x0``, ``score``) pass the view's dtype
    and network."""

    def __init__(self, prior: DiffusionPrior, dtype: Optional[torch.dtype], net: Optional[nn.Module] = None) -> None:
        self._prior = prior
        self.autocast_dtype = dtype
        self._net = net

    def __getattr__(self, name: str):
        return getattr(self._prior, name)

    def eps(self, x_t: torch.Tensor, t) -> torch.Tensor:
        if self._net is None:
            return self._prior.eps(x_t, t, self.autocast_dtype)
        return self._prior.network_eps(self._net, x_t, self._prior._t(t, x_t.shape[0]), self.autocast_dtype)

    def x0(self, x_t: torch.Tensor, t) -> torch.Tensor:
        return self._prior.x0_from_eps(x_t, t, self.eps(x_t, t))

    def score(self, x_t: torch.Tensor, t) -> torch.Tensor:
        abar = self._prior.alphas_cumprod[self._prior._t(t, x_t.shape[0])].view(-1, 1, 1, 1)
        return -self.eps(x_t, t) / (1 - abar).sqrt()
