"""The prior's denoising network: a MONAI ``DiffusionModelUNet`` built from a plain config dict.

Fully convolutional except MONAI's mid-block self-attention at the coarsest level (one head, so
memory stays ``O((H/8 * W/8)^2)``), which lets one prior serve 256, 320 and 512 pixel images.
"""

from __future__ import annotations

from typing import Any

from monai.networks.nets import DiffusionModelUNet
from torch import nn

__all__ = ["DEFAULT_NETWORK", "build_network", "count_parameters"]

# 10.4 M parameters: stored in fp16 it stays under the 25 MB limit for shipped weights.
DEFAULT_NETWORK: dict[str, Any] = {
    "spatial_dims": 2,
    "channels": [64, 128, 192, 192],
    "num_res_blocks": 1,
    "attention_levels": [False, False, False, False],
    "norm_num_groups": 16,
    "num_head_channels": 192,
}


def build_network(config: dict[str, Any], in_channels: int, out_channels: int | None = None) -> nn.Module:
    """Build a ``DiffusionModelUNet`` predicting noise (epsilon): ``in_channels`` in, ``out_channels`` out
    (default: as many as in; a patch prior adds two position channels to its input only)."""
    cfg = {**DEFAULT_NETWORK, **config}
    return DiffusionModelUNet(
        spatial_dims=int(cfg["spatial_dims"]),
        in_channels=in_channels,
        out_channels=in_channels if out_channels is None else out_channels,
        channels=tuple(int(c) for c in cfg["channels"]),
        num_res_blocks=int(cfg["num_res_blocks"]) if isinstance(cfg["num_res_blocks"], int)
        else tuple(int(n) for n in cfg["num_res_blocks"]),
        attention_levels=tuple(bool(a) for a in cfg["attention_levels"]),
        norm_num_groups=int(cfg["norm_num_groups"]),
        num_head_channels=int(cfg["num_head_channels"]),
        use_flash_attention=True,
    )


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
