"""Patch diffusion priors (PaDIS: Hu, Fessler et al., NeurIPS 2024), written for medrecon's prior interface.

The network learns the noise of small patches (mixed sizes, e.g. 16/32/64 px) cut anywhere from a
padded image, with two extra input channels giving each pixel's position in the whole image. One
training image yields hundreds of distinct patches, which is what makes the prior data-efficient.

At sampling time the whole-image denoiser (:meth:`PatchDiffusionPrior.network_eps`) places the image on
a canvas, tiles the canvas into non-overlapping ``tile x tile`` patches whose grid is shifted by a random
offset at every call (PaDIS sec. 3.2: the seams move from step to step, so no pixel stays on one), runs
all patches of all images through the network in one batch and reassembles the noise prediction. The
samplers see the same interface as for a whole-image prior; DPS differentiates through the tiling.

Conventions (the same in training and sampling, so the network sees one distribution):

* Positions: pixel ``i`` of an ``H x W`` image has ``(i + 0.5 - H / 2) / (max(H, W) / 2)`` (rows, then
  columns), so the image spans [-1, 1] along its longer side; padding lies outside it.
* Padding: the canvas outside the image holds the empty background (network value of zero signal for
  MRI, -1000 HU for CT) noised to the current step, ``sqrt(abar) bg + sqrt(1 - abar) n``: exactly the
  marginal ``x_t`` of a padded training image.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
from torch import nn

from medrecon.errors import InputError

from .prior import DiffusionPrior

__all__ = ["PatchDiffusionPrior", "DEFAULT_PATCH", "check_patch_config", "position_channels", "tile_eps",
           "expand_input_channels"]

# Sizes follow PaDIS's mixed-size training; the largest is the sampling tile and the padding.
DEFAULT_PATCH: dict[str, Any] = {"sizes": [16, 32, 64], "probs": [0.2, 0.3, 0.5], "pad": 64, "tile": 64}
_MAX_PATCH = 512


def check_patch_config(patch: Optional[dict], stride: int = 8) -> dict:
    """The patch settings ``{sizes, probs, pad, tile}`` over :data:`DEFAULT_PATCH`, checked.

    Raises:
        InputError: sizes that are not multiples of the UNet's ``stride`` in ``stride..512``, probabilities
            that are not one per size, positive and summing to 1, a padding outside ``0..512`` or a tile that
            is not one of the sizes.
    """
    cfg = {**DEFAULT_PATCH, **(patch or {})}
    if patch and "sizes" in patch and "probs" not in patch:  # new sizes without probabilities: uniform
        cfg["probs"] = [1.0 / len(patch["sizes"])] * len(patch["sizes"]) if isinstance(patch["sizes"], list) else None
    if patch and "sizes" in patch and "tile" not in patch and isinstance(patch["sizes"], list) and patch["sizes"]:
        cfg["tile"] = max(patch["sizes"])
    sizes, probs, pad, tile = cfg["sizes"], cfg["probs"], cfg["pad"], cfg["tile"]

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if not (isinstance(sizes, list) and 1 <= len(sizes) <= 8
            and all(is_int(s) and stride <= s <= _MAX_PATCH and s % stride == 0 for s in sizes)):
        raise InputError(f"patch sizes must be 1 to 8 multiples of {stride} in {stride}..{_MAX_PATCH}, got {sizes!r}"[:160])
    if not (isinstance(probs, list) and len(probs) == len(sizes)
            and all(isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) and p > 0 for p in probs)
            and abs(sum(probs) - 1) < 1e-6):
        raise InputError(f"patch probabilities must be one positive number per size, summing to 1, got {probs!r}"[:160])
    if not (is_int(pad) and 0 <= pad <= _MAX_PATCH):
        raise InputError(f"patch padding must be an integer in 0..{_MAX_PATCH}, got {pad!r}"[:160])
    if tile not in sizes:
        raise InputError(f"the sampling tile must be one of the patch sizes {sizes}, got {tile!r}"[:160])
    return {"sizes": list(sizes), "probs": [float(p) for p in probs], "pad": int(pad), "tile": int(tile)}


def position_channels(top: torch.Tensor, left: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    """Position channels of patches. ``top, left (N,)`` image coordinates of each patch's first pixel
    (negative inside the padding) -> ``(N, 2, size, size)``: rows then columns, in the module's convention."""
    half = max(height, width) / 2.0
    r = torch.arange(size, device=top.device, dtype=torch.float32) + 0.5
    rows = (top.float()[:, None] + r[None] - height / 2.0) / half  # (N, size)
    cols = (left.float()[:, None] + r[None] - width / 2.0) / half
    return torch.stack([rows[:, :, None].expand(-1, size, size), cols[:, None, :].expand(-1, size, size)], dim=1)


def tile_eps(net_call, x_t: torch.Tensor, tt: torch.Tensor, tile: int, offset: tuple[int, int],
             fill: Callable[[tuple], torch.Tensor]) -> torch.Tensor:
    """Whole-image output of a patch network, tiled with non-overlapping patches.

    Args:
        net_call: ``f(inputs (N, C + 2, tile, tile), t (N,)) -> (N, C, tile, tile)``.
        x_t: images ``(B, C, H, W)``.
        tt: timesteps ``(B,)``.
        tile: patch size of the tiling.
        offset: ``(oy, ox)`` in ``0..tile-1``: where the image's first pixel sits on the canvas.
        fill: ``fill(shape)`` gives the canvas ``(B, C, Hc, Wc)`` outside the image.

    Returns:
        ``(B, C, H, W)``: each pixel's output comes from the one patch that holds it. For an identity
        ``net_call`` (image channels in, out) this is ``x_t`` exactly.
    """
    b, c, h, w = x_t.shape
    oy, ox = int(offset[0]), int(offset[1])
    nh, nw = math.ceil((h + oy) / tile), math.ceil((w + ox) / tile)
    hc, wc = nh * tile, nw * tile
    canvas = fill((b, c, hc, wc)).to(x_t.dtype)
    canvas[..., oy:oy + h, ox:ox + w] = x_t  # differentiable: gradients flow back to x_t
    patches = canvas.view(b, c, nh, tile, nw, tile).permute(0, 2, 4, 1, 3, 5).reshape(b * nh * nw, c, tile, tile)
    top = (torch.arange(nh, device=x_t.device) * tile - oy).repeat_interleave(nw)
    left = (torch.arange(nw, device=x_t.device) * tile - ox).repeat(nh)
    pos = position_channels(top, left, tile, h, w).to(x_t.dtype).repeat(b, 1, 1, 1)
    out = net_call(torch.cat([patches, pos], dim=1), tt.repeat_interleave(nh * nw))
    out = out.view(b, nh, nw, c, tile, tile).permute(0, 3, 1, 4, 2, 5).reshape(b, c, hc, wc)
    return out[..., oy:oy + h, ox:ox + w]


def expand_input_channels(state: dict, target: dict) -> dict:
    """A whole-image network's weights fitted to a patch network: every weight that differs only in having
    fewer input channels (the first convolution) is copied and its new position channels start at zero,
    so the patch network starts as the whole-image network applied to each patch."""
    out = {}
    for k, v in state.items():
        want = target[k].shape
        if v.shape != want and v.dim() == 4 and v.shape[0] == want[0] and v.shape[2:] == want[2:] and v.shape[1] < want[1]:
            grown = torch.zeros(want, dtype=v.dtype, device=v.device)
            grown[:, :v.shape[1]] = v
            v = grown
        out[k] = v
    return out


class PatchDiffusionPrior(DiffusionPrior):
    """A diffusion prior whose network was trained on patches with position channels (``kind = "patch"``).

    Args:
        modality, network_config, schedule, normalization, name: as :class:`DiffusionPrior`.
        patch: ``{sizes, probs, pad, tile}`` (see :data:`DEFAULT_PATCH`).
    """

    kind = "patch"
    extra_in_channels = 2

    def __init__(self, modality: str, network_config: dict, schedule: Optional[dict] = None,
                 normalization: Optional[dict] = None, name: str = "untitled", patch: Optional[dict] = None) -> None:
        super().__init__(modality, network_config, schedule, normalization, name)
        self.patch = check_patch_config(patch, 2 ** (len(self.network_config["channels"]) - 1))

    def background(self) -> torch.Tensor:
        """The network-space value of empty background, ``(channels, 1, 1)``: 0 for MRI, -1000 HU for CT."""
        empty = torch.zeros(1, 1, dtype=torch.complex64) if self.modality == "mri" else torch.full((1, 1), -1000.0)
        return self.rule.to_network(empty, torch.ones(1, 1)).reshape(self.channels, 1, 1).to(self.device)

    def network_eps(self, net: nn.Module, x_t: torch.Tensor, tt: torch.Tensor,
                    autocast_dtype: Optional[torch.dtype] = None, generator: Optional[torch.Generator] = None
                    ) -> torch.Tensor:
        """Tiled noise prediction for whole images ``x_t (B, channels, H, W)``, a fresh random tiling offset
        per call (from ``generator``, else torch's global generator, which the samplers seed)."""
        tile = self.patch["tile"]
        off = torch.randint(0, tile, (2,), generator=generator).tolist()
        abar = self.alphas_cumprod[tt].view(-1, 1, 1, 1).to(x_t.dtype)
        bg = self.background().to(x_t.dtype)

        def fill(shape: tuple) -> torch.Tensor:
            noise = torch.randn(shape, generator=generator).to(x_t.device, x_t.dtype)
            return abar.sqrt() * bg + (1 - abar).sqrt() * noise

        return tile_eps(lambda inp, t: self.call_network(net, inp, t, autocast_dtype), x_t, tt, tile, off, fill)

    def training_patches(self, x0: torch.Tensor, gen: torch.Generator, per_image: Optional[int] = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random training patches of clean network-space images ``x0 (B, channels, S, S)``.

        One patch size ``p`` is drawn per call (``probs``); each image gives ``(tile / p)^2`` patches (so a
        step costs about the same whatever ``p``), each cut at a uniform position of the image padded by
        ``pad`` with background. Returns ``(patches (N, channels, p, p), positions (N, 2, p, p))``.
        """
        sizes, probs, pad = self.patch["sizes"], self.patch["probs"], self.patch["pad"]
        p = sizes[int(torch.multinomial(torch.tensor(probs), 1, generator=gen))]
        k = per_image if per_image is not None else max(1, (self.patch["tile"] // p) ** 2)
        b, c, h, w = x0.shape
        bg = self.background().to(x0.dtype)
        canvas = bg.expand(b, c, h + 2 * pad, w + 2 * pad).clone()
        canvas[..., pad:pad + h, pad:pad + w] = x0
        n = b * k
        ys = torch.randint(0, h + 2 * pad - p + 1, (n,), generator=gen)
        xs = torch.randint(0, w + 2 * pad - p + 1, (n,), generator=gen)
        img = torch.arange(b).repeat_interleave(k)
        r = torch.arange(p)
        rows = (ys[:, None] + r[None]).to(x0.device)  # (n, p)
        cols = (xs[:, None] + r[None]).to(x0.device)
        patches = canvas[img.to(x0.device)[:, None, None, None], torch.arange(c, device=x0.device)[None, :, None, None],
                         rows[:, None, :, None], cols[:, None, None, :]]
        pos = position_channels((ys - pad).to(x0.device), (xs - pad).to(x0.device), p, h, w).to(x0.dtype)
        return patches, pos

    def describe(self) -> dict:
        return {**super().describe(), "patch": dict(self.patch)}


def build_prior(modality: str, network: dict, schedule: Optional[dict] = None, normalization: Optional[dict] = None,
                name: str = "untitled", kind: str = "whole", patch: Optional[dict] = None) -> DiffusionPrior:
    """A whole-image or patch prior from its description (bundle metadata, a checkpoint's ``arch``).

    A missing ``kind`` (bundles written before patch priors) means ``whole``.
    """
    if kind in (None, "whole"):
        return DiffusionPrior(modality, network, schedule, normalization, name)
    if kind == "patch":
        return PatchDiffusionPrior(modality, network, schedule, normalization, name, patch)
    raise InputError(f"prior kind must be 'whole' or 'patch', got {str(kind)[:40]!r}")


def prior_from_description(d: dict, name: str = "untitled") -> DiffusionPrior:
    """:func:`build_prior` from a :meth:`DiffusionPrior.describe`-style dict."""
    return build_prior(d["modality"], d["network"], d.get("schedule"), d.get("normalization"), name,
                       d.get("kind", "whole"), d.get("patch"))

