"""Training augmentations beyond the sampler's built-in ones, with MONAI transforms (issue 16).

:class:`~medrecon.priors.data.SliceSampler` always applies a random zoom towards the training pixel size, a
random crop, the eight dihedral flips/transposes and a mild intensity scale (and, for MRI, a smooth random
phase). The options here add what three training volumes lack, each switched on by name
(``train-prior --augment rotate,elastic,gamma,bias``) so that its effect on held-out denoising can be measured
on its own:

- ``rotate``: an in-plane rotation of up to ``ROTATE_DEG`` degrees (head tilt in the scanner);
- ``elastic``: a smooth random displacement field (MONAI ``Rand2DElastic``; anatomy varies between people);
- ``gamma``: a contrast curve ``I -> I^gamma`` on the image's own range (MONAI ``RandAdjustContrast``; sequence
  and scanner contrast differ), MRI only;
- ``bias``: a smooth multiplicative bias field (MONAI ``RandBiasField``; receive-coil shading), MRI only.

``gamma`` and ``bias`` are refused for CT: Hounsfield units are calibrated (water 0, air -1000), and a prior
that learned bent CT numbers would bend reconstructions. Geometric transforms resample around the modality's
background (0 for MRI, -1000 HU for CT), so padded corners hold air, not water.

Every option keeps images finite; MRI magnitudes stay non-negative and CT stays at or above the
background (tested in ``tests/priors/test_augment.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from medrecon.errors import InputError

__all__ = ["AUGMENTATIONS", "MRI_ONLY", "ROTATE_DEG", "Augmenter", "parse_augment"]

AUGMENTATIONS = ("rotate", "elastic", "gamma", "bias")
MRI_ONLY = ("gamma", "bias")
ROTATE_DEG = 10.0  # a tilted head in the coil; larger angles would mostly teach corner padding
ELASTIC_SPACING = 24  # control-point spacing in pixels: deformation smooth over a few gyri
ELASTIC_MAGNITUDE = (0.5, 2.0)  # displacement scale (MONAI units, ~pixels) at 128-512 px images
GAMMA_RANGE = (0.7, 1.5)
BIAS_COEFF = (0.0, 0.05)  # degree-3 log-polynomial field: measured 0.85x-1.45x at the extremes of 200 draws
PROB = 0.5  # each chosen option is applied to half the images: the originals stay in the mix


def parse_augment(spec: Iterable[str] | str | None, modality: str) -> tuple[str, ...]:
    """Validate an augmentation list (a comma string or names) for a modality.

    Returns:
        the names in canonical order (empty for none).

    Raises:
        InputError: an unknown name, or an MRI-only option for CT (one line).
    """
    if spec is None:
        return ()
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    names = [n for n in names if n and n != "none"]
    bad = sorted(set(names) - set(AUGMENTATIONS))
    if bad:
        raise InputError(f"--augment: unknown option(s) {', '.join(bad)} (choose from {', '.join(AUGMENTATIONS)}, "
                         "or none)")
    if modality == "ct":
        mri_only = sorted(set(names) & set(MRI_ONLY))
        if mri_only:
            raise InputError(f"--augment {','.join(mri_only)} applies to MRI only: CT numbers are calibrated "
                             "(water 0 HU, air -1000 HU)")
    return tuple(a for a in AUGMENTATIONS if a in names)


def _plain(x) -> torch.Tensor:
    """A MONAI output (MetaTensor or array) as a plain float32 tensor."""
    x = x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)
    return x.float()


@dataclass
class Augmenter:
    """Apply the chosen augmentations to one image.

    Args:
        names: from :func:`parse_augment`.
        modality: ``"mri"`` or ``"ct"``.
        background: the value outside the object (0 for MRI magnitude, -1000 for CT in HU).
        seed: seeds MONAI's random state, so a run is reproducible.
    """

    names: tuple[str, ...]
    modality: str
    background: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        # MONAI is imported here: the reconstruction paths do not need it.
        from monai.transforms import Rand2DElastic, RandAdjustContrast, RandAffine, RandBiasField

        self.names = parse_augment(self.names, self.modality)
        rot = math.radians(ROTATE_DEG) if "rotate" in self.names else 0.0
        self._geom = None
        if "elastic" in self.names:
            # One resampling for both: rotation folded into the elastic transform's affine part.
            self._geom = Rand2DElastic(spacing=ELASTIC_SPACING, magnitude_range=ELASTIC_MAGNITUDE, prob=PROB,
                                       rotate_range=rot or None, padding_mode="zeros", mode="bilinear")
        elif rot:
            self._geom = RandAffine(prob=PROB, rotate_range=rot, padding_mode="zeros", mode="bilinear")
        self._gamma = RandAdjustContrast(prob=PROB, gamma=GAMMA_RANGE) if "gamma" in self.names else None
        self._bias = RandBiasField(degree=3, coeff_range=BIAS_COEFF, prob=PROB) if "bias" in self.names else None
        for i, t in enumerate((self._geom, self._gamma, self._bias)):
            if t is not None:
                t.set_random_state(seed=(self.seed * 31 + i) % (2 ** 32))

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """``img``: one real image ``(H, W)`` (MRI magnitude or CT HU); returns the same shape and dtype."""
        if not self.names:
            return img
        x = (img - self.background)[None]  # (1, H, W), background at 0 so that padding is air
        if self._geom is not None:
            x = _plain(self._geom(x))
        if self._gamma is not None or self._bias is not None:
            x = x.clamp_min(0)  # the contrast curve and the field act on a non-negative magnitude
            if self._gamma is not None:
                x = _plain(self._gamma(x))
            if self._bias is not None:
                x = _plain(self._bias(x))
        if self.modality == "ct":
            x = x.clamp_min(0)  # bilinear resampling of air/tissue edges never goes below air
        out = x[0] + self.background
        return torch.nan_to_num(out, nan=self.background).to(img.dtype)
