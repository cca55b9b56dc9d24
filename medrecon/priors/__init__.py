"""Diffusion priors built on MONAI: network + schedule, bundles, registry and training.

MONAI is imported only when a network is built (``DiffusionPrior``, ``load_bundle``), so listing
priors stays fast.
"""

from .bundle import load_bundle, read_metadata, save_bundle
from .registry import DEFAULT_PRIORS, list_priors, resolve_prior


def load_prior(name_or_path: str | None, modality: str, device="cpu"):
    """Resolve and load a prior (sha256-verified) for ``modality`` onto ``device``."""
    return load_bundle(resolve_prior(name_or_path, modality), device)


def __getattr__(name: str):
    if name == "DiffusionPrior":
        from .prior import DiffusionPrior

        return DiffusionPrior
    raise AttributeError(name)


__all__ = ["DiffusionPrior", "save_bundle", "load_bundle", "read_metadata", "list_priors",
           "resolve_prior", "load_prior", "DEFAULT_PRIORS"]
