"""MONAI-bundle-style prior folders (DESIGN.md section 5).

Layout::

    BUNDLE/
      configs/metadata.json    version, network, schedule, normalization, training record, weights sha256
      models/model.safetensors weights (fp16 or fp32), loaded only after the sha256 check
      docs/README.md           model card (optional), docs/samples.png (optional)

Configs are data: they are parsed as JSON and never evaluated. Weights are read only through
safetensors, never pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

from medrecon import __version__
from medrecon.errors import PriorError


__all__ = ["save_bundle", "load_bundle", "read_metadata", "sha256_file", "BUNDLE_FORMAT"]

BUNDLE_FORMAT = "medrecon-prior/1"
METADATA = Path("configs") / "metadata.json"
WEIGHTS = Path("models") / "model.safetensors"


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def save_bundle(prior, out_dir: Path | str, training: Optional[dict] = None,
                extra: Optional[dict] = None, weights_dtype: str = "float32",
                state_dict: Optional[dict] = None) -> Path:
    """Write ``prior`` as a bundle folder (each file written to a temporary name, then renamed).

    Args:
        prior: the prior whose network weights (or ``state_dict``) are saved.
        out_dir: bundle folder to create or replace.
        training: training record (data sources with sha256 and licence, steps, device, minutes, loss).
        extra: any further metadata (evaluation numbers, world size...).
        weights_dtype: ``"float32"`` or ``"float16"`` storage.
        state_dict: weights to store instead of ``prior.net``'s (e.g. the EMA copy).

    Returns:
        The bundle path.
    """
    out_dir = Path(out_dir)
    dtype = {"float32": torch.float32, "float16": torch.float16}[weights_dtype]
    sd = state_dict if state_dict is not None else prior.net.state_dict()
    tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous() for k, v in sd.items()}
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    (out_dir / "configs").mkdir(parents=True, exist_ok=True)
    # Weights first, metadata last: the metadata (with the weights' sha256) is the commit record, so an
    # interrupted save leaves a bundle that refuses to load rather than one that loads the wrong weights.
    wtmp = out_dir / "models" / ".model.safetensors.tmp"
    save_file(tensors, str(wtmp), metadata={"format": "pt"})
    digest = sha256_file(wtmp)
    os.replace(wtmp, out_dir / WEIGHTS)
    meta = {
        "format": BUNDLE_FORMAT,
        "name": prior.name,
        "version": (extra or {}).get("version", "0.1.0"),
        "medrecon_version": __version__,
        **prior.describe(),
        "params": sum(v.numel() for v in tensors.values()),
        "weights": {"file": str(WEIGHTS), "sha256": digest, "dtype": weights_dtype},
        "training": training or {},
        **{k: v for k, v in (extra or {}).items() if k != "version"},
    }
    mtmp = out_dir / "configs" / ".metadata.json.tmp"
    mtmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(mtmp, out_dir / METADATA)
    return out_dir


def read_metadata(bundle_dir: Path | str) -> dict:
    """Parse ``configs/metadata.json`` of a bundle (JSON only; never evaluated)."""
    path = Path(bundle_dir) / METADATA
    if not path.is_file():
        raise PriorError(f"{bundle_dir} is not a prior bundle: {METADATA} is missing")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PriorError(f"cannot parse {path}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise PriorError(f"{path} is not a {BUNDLE_FORMAT} bundle")
    for key in ("modality", "network", "weights"):
        if key not in meta:
            raise PriorError(f"{path} lacks the {key!r} field")
    return meta


def load_bundle(bundle_dir: Path | str, device: torch.device | str = "cpu"):
    """Load a prior after verifying its weights' sha256 against the metadata.

    Raises:
        PriorError: missing files, bad metadata, sha256 mismatch (tampered or swapped weights) or
            weights that do not fit the declared network.
    """
    bundle_dir = Path(bundle_dir)
    meta = read_metadata(bundle_dir)
    wpath = bundle_dir / meta["weights"].get("file", str(WEIGHTS))
    if not wpath.is_file():
        raise PriorError(f"prior weights {wpath} are missing")
    digest = sha256_file(wpath)
    if digest != meta["weights"].get("sha256"):
        raise PriorError(f"prior weights {wpath.name} in {bundle_dir} fail the sha256 check "
                         f"(expected {str(meta['weights'].get('sha256'))[:12]}..., got {digest[:12]}...): "
                         "the file was modified or replaced; reinstall or retrain the prior")
    from .prior import DiffusionPrior  # imports MONAI: only when weights are actually loaded

    try:
        prior = DiffusionPrior(meta["modality"], meta["network"], meta.get("schedule"),
                               meta.get("normalization"), name=meta.get("name", bundle_dir.name))
        tensors = load_file(str(wpath))
        sd = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
        prior.net.load_state_dict(sd, strict=True)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise PriorError(f"prior bundle {bundle_dir} does not load: {str(exc).splitlines()[0]}") from None
    prior.metadata = meta
    prior.bundle_dir = bundle_dir
    return prior.to(device).eval()
