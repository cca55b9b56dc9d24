"""MONAI-bundle-style prior folders (docs/design.md, section 5).

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
from medrecon.io.guards import max_bytes

__all__ = ["save_bundle", "load_bundle", "read_metadata", "sha256_file", "BUNDLE_FORMAT"]

BUNDLE_FORMAT = "medrecon-prior/1"
METADATA = Path("configs") / "metadata.json"
WEIGHTS = Path("models") / "model.safetensors"
_MAX_METADATA_BYTES = 16 * 2**20


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
    """Parse ``configs/metadata.json`` of a bundle (JSON only; never evaluated).

    Raises:
        PriorError: missing, larger than 16 MiB, not JSON, nested too deeply, not this format, or
            without the ``modality``/``network``/``weights`` fields.
    """
    path = Path(bundle_dir) / METADATA
    if not path.is_file():
        raise PriorError(f"{bundle_dir} is not a prior bundle: {METADATA} is missing")
    try:
        if path.stat().st_size > _MAX_METADATA_BYTES:
            raise PriorError(f"{path} is larger than 16 MiB; it is not bundle metadata")
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise PriorError(f"cannot parse {path} ({type(exc).__name__}); reinstall or retrain the prior") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise PriorError(f"{path} is not a {BUNDLE_FORMAT} bundle")
    for key in ("modality", "network", "weights"):
        if key not in meta:
            raise PriorError(f"{path} lacks the {key!r} field")
    if meta["modality"] not in ("mri", "ct") or not isinstance(meta["network"], dict) \
            or not isinstance(meta["weights"], dict):
        raise PriorError(f"{path}: 'modality' must be mri or ct, and 'network'/'weights' JSON objects")
    return meta


def _weights_path(bundle_dir: Path, meta: dict) -> Path:
    """The weights file named by the metadata, which must lie inside the bundle (no ``../`` escapes)."""
    rel = meta["weights"].get("file", str(WEIGHTS))
    if not isinstance(rel, str) or not rel.endswith(".safetensors"):
        raise PriorError(f"prior bundle {bundle_dir.name}: weights must be a .safetensors file, got {str(rel)[:80]!r}")
    wpath = bundle_dir / rel
    try:
        wpath.resolve().relative_to(bundle_dir.resolve())
    except ValueError:
        raise PriorError(f"prior bundle {bundle_dir.name}: the weights file {rel!r} lies outside the bundle") from None
    if not wpath.is_file():
        raise PriorError(f"prior weights {wpath} are missing")
    return wpath


def _weights_shapes(wpath: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors header (the tensors themselves are not read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(wpath), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - not a dict
    except Exception as exc:  # noqa: BLE001 - SafetensorError and OS errors alike: not loadable weights
        raise PriorError(f"prior weights {wpath.name} are not a valid safetensors file ({type(exc).__name__}); "
                         "only safetensors weights are loaded: reinstall or retrain the prior") from None


def _check_declared_network(meta: dict, shapes: dict[str, tuple[int, ...]], bundle_dir: Path) -> None:
    """Build the declared network on the meta device (no memory) and compare it with the weights' shapes.

    A crafted ``network`` config (e.g. a million channels) would otherwise allocate terabytes before
    ``load_state_dict`` could notice that the weights do not fit.
    """
    from .prior import DiffusionPrior

    try:
        with torch.device("meta"):
            skeleton = DiffusionPrior(meta["modality"], meta["network"], meta.get("schedule"),
                                      meta.get("normalization"))
        expected = {k: tuple(v.shape) for k, v in skeleton.net.state_dict().items()}
    except Exception as exc:  # noqa: BLE001 - any failure to build the declared network is a broken bundle
        raise PriorError(f"prior bundle {bundle_dir.name} does not load: it declares a network that cannot be "
                         f"built ({type(exc).__name__}); reinstall or retrain the prior") from None
    if expected != shapes:
        missing = sorted(set(expected) ^ set(shapes))[:3]
        changed = [k for k in expected if k in shapes and expected[k] != shapes[k]][:3]
        raise PriorError(f"prior bundle {bundle_dir.name} does not load: its weights do not fit the declared "
                         f"network (names differ: {missing}, shapes differ: {changed}); the metadata and weights "
                         "are mismatched, reinstall or retrain the prior")


def load_bundle(bundle_dir: Path | str, device: torch.device | str = "cpu"):
    """Load a prior after verifying its weights' sha256 against the metadata.

    Raises:
        PriorError: missing files, bad metadata, sha256 mismatch (tampered or swapped weights) or
            weights that do not fit the declared network.
    """
    bundle_dir = Path(bundle_dir)
    meta = read_metadata(bundle_dir)
    wpath = _weights_path(bundle_dir, meta)
    size = wpath.stat().st_size
    if size > max_bytes():
        raise PriorError(f"prior weights {wpath.name} are {size / 2**30:.3g} GiB, more than MEDRECON_MAX_GB allows")
    digest = sha256_file(wpath)
    if digest != meta["weights"].get("sha256"):
        raise PriorError(f"prior weights {wpath.name} in {bundle_dir} fail the sha256 check "
                         f"(expected {str(meta['weights'].get('sha256'))[:12]}..., got {digest[:12]}...): "
                         "the file was modified or replaced; reinstall or retrain the prior")
    from .prior import DiffusionPrior  # imports MONAI: only when weights are actually loaded

    _check_declared_network(meta, _weights_shapes(wpath), bundle_dir)
    try:
        prior = DiffusionPrior(meta["modality"], meta["network"], meta.get("schedule"),
                               meta.get("normalization"), name=meta.get("name", bundle_dir.name))
        tensors = load_file(str(wpath))
        sd = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
        prior.net.load_state_dict(sd, strict=True)
    except Exception as exc:  # noqa: BLE001 - SafetensorError is not a RuntimeError; any failure is a bad bundle
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise PriorError(f"prior bundle {bundle_dir} does not load ({type(exc).__name__}: {first})") from None
    prior.metadata = meta
    prior.bundle_dir = bundle_dir
    return prior.to(device).eval()
