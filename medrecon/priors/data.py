"""Training data for priors: real slices from NIfTI, DICOM, NRRD and fastMRI files.

Each source volume becomes a stack of 2-D slices at its native pixel size; augmentation happens
at batch time (:class:`SliceSampler`): a random zoom towards a target pixel size (never
upsampling, which would teach the prior blur), a random crop (padding with background where the
slice is smaller), left-right flips, and intensity scaling. MRI magnitude sources get a smooth
random phase, since the complex MRI prior must learn the phase behaviour of real scans, which is
smooth (Haacke et al., "Magnetic Resonance Imaging", ch. 15). Held-out data is split by volume,
never by adjacent slices.

A prepared stack can be saved to ``.npz`` (:func:`save_slice_cache`) and passed to
``train-prior --data`` like any source; it keeps the provenance (file name, sha256, licence) of the
volumes it came from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medrecon.acquisition.mri import smooth_random_phase  # noqa: F401  (re-exported: training augments with it)
from medrecon.errors import InputError

from .augment import Augmenter

__all__ = ["PIXEL_MM", "SliceVolume", "check_pixel_range", "load_training_volumes", "split_heldout", "SliceSampler",
           "save_slice_cache", "smooth_random_phase", "source_licence"]

# Target in-plane pixel sizes (mm) that training crops are zoomed towards, per modality.
PIXEL_MM = {"mri": (0.9, 1.8), "ct": (1.4, 3.0)}


def check_pixel_range(pixel_mm: Sequence[float]) -> tuple[float, float]:
    """Validate a ``(finest, coarsest)`` training pixel-size range in mm.

    Raises:
        InputError: not two positive numbers in increasing order.
    """
    try:
        lo, hi = (float(v) for v in pixel_mm)
    except (TypeError, ValueError):
        raise InputError(f"--pixel-mm needs two numbers (finest and coarsest mm), got {pixel_mm!r}") from None
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise InputError(f"--pixel-mm needs 0 < finest <= coarsest, got {lo:g} {hi:g}")
    return lo, hi


MANIFEST = Path(__file__).resolve().parents[2] / "data_manifests" / "shared_data.json"


@dataclass
class SliceVolume:
    """One source volume prepared for training.

    Attributes:
        name: file name (never a patient identifier).
        slices: ``(S, H, W)`` float32: MRI magnitude normalized per slice by its 99th percentile,
            or CT in HU.
        pixel_mm: in-plane pixel size in mm.
        provenance: list of dicts ``{"file", "sha256", "licence"}``.
    """

    name: str
    slices: np.ndarray
    pixel_mm: float
    provenance: list = field(default_factory=list)


def _sha256(path: Path) -> str:
    from medrecon.priors.bundle import sha256_file

    return sha256_file(path) if path.is_file() else _sha256_dir(path)


def _sha256_dir(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.name.encode())
        h.update(bytes.fromhex(_sha256(f)))
    return h.hexdigest()


def source_info(path: Path) -> dict:
    """The data_manifests/shared_data.json entry of a known source, else ``{}``."""
    if MANIFEST.is_file():
        manifest = json.loads(MANIFEST.read_text())
        root = (MANIFEST.parents[1] / manifest.get("root", "../shared/data")).resolve()
        path = Path(path).resolve()
        for entry in manifest.get("files", []):
            known = root / entry["path"]
            if path == known or known in path.parents:
                return entry
    return {}


def source_licence(path: Path) -> str:
    """Licence of a known shared-data source, else 'user data (licence not recorded)'."""
    return source_info(path).get("licence", "user data (licence not recorded)")


def _foreground(slices: np.ndarray, modality: str) -> np.ndarray:
    """Fraction of object pixels per slice (used to drop empty slices)."""
    if modality == "ct":
        return (slices > -500).mean(axis=(1, 2))
    ref = np.percentile(slices, 99) if slices.size else 1.0
    return (slices > 0.1 * ref).mean(axis=(1, 2))


def _normalize_mri(slices: np.ndarray) -> np.ndarray:
    q = np.percentile(np.abs(slices).reshape(len(slices), -1), 99, axis=1)
    return (slices / np.maximum(q, 1e-8)[:, None, None]).astype(np.float32)


def _load_one(path: Path, modality: str, min_foreground: float, finest_mm: float) -> list[SliceVolume]:
    if path.suffix == ".npz":
        vols, cached_modality = _load_cache(path)
        if cached_modality not in (None, modality):
            raise InputError(f"{path.name} holds {cached_modality.upper()} slices; cannot train a {modality} prior on it")
        return vols
    if path.suffix == ".h5":
        from medrecon.priors.fastmri_images import fastmri_training_slices

        mag, pixel_mm = fastmri_training_slices(path)
        kind = "intensity"
    else:
        from medrecon.io.volumes import load_volume

        info = source_info(path)
        vol = load_volume(path, modality="CT" if modality == "ct" else None)
        # Some CT files store CT numbers with an offset (e.g. air = 0); the manifest records it.
        mag = np.asarray(vol.data, dtype=np.float32) + float(info.get("hu_offset", 0.0))
        pixel_mm = float(min(vol.spacing[1], vol.spacing[2])) if vol.spacing is not None else 1.0
        kind = vol.kind
    if modality == "ct" and kind != "hu":
        raise InputError(f"{path.name} is not a CT volume in HU; cannot train a CT prior on it")
    if modality == "mri" and kind == "hu":
        raise InputError(f"{path.name} is a CT volume; cannot train an MRI prior on it")
    keep = _foreground(mag, modality) >= min_foreground
    if not keep.any():
        raise InputError(f"{path.name} has no slice with enough signal to train on")
    mag = mag[keep]
    mag, pixel_mm = _downsample_to(mag, pixel_mm, finest_mm)
    if modality == "mri":
        mag = _normalize_mri(np.abs(mag))
    prov = [{"file": path.name, "sha256": _sha256(path), "licence": source_licence(path)}]
    return [SliceVolume(path.name, np.ascontiguousarray(mag), pixel_mm, prov)]


def _downsample_to(slices: np.ndarray, pixel_mm: float, finest_mm: float) -> tuple[np.ndarray, float]:
    """Antialiased downsampling of slices finer than ``finest_mm``: the sampler never needs them finer."""
    if pixel_mm >= 0.95 * finest_mm:
        return slices, pixel_mm
    zoom = pixel_mm / finest_mm
    h, w = slices.shape[1:]
    size = (max(8, round(h * zoom)), max(8, round(w * zoom)))
    t = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))[:, None]
    out = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)[:, 0].numpy()
    return out, pixel_mm * h / size[0]


def _load_cache(path: Path) -> tuple[list[SliceVolume], Optional[str]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            vols = [SliceVolume(v["name"], _cached_slices(z, i), float(v["pixel_mm"]), v["provenance"])
                    for i, v in enumerate(meta["volumes"])]
            return vols, meta.get("modality")
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path.name} is not a medrecon slice cache: {exc}") from None


def _cached_slices(z, i: int) -> np.ndarray:
    """Slices ``(S, H, W)`` float32 of cached volume ``i``: float16 as stored, or 8-bit codes mapped back."""
    a = z[f"slices_{i}"]
    if a.dtype != np.uint8:
        return a.astype(np.float32)
    lo, hi = (z[f"range_{i}"][:, k].astype(np.float32)[:, None, None] for k in (0, 1))
    return lo + a.astype(np.float32) * ((hi - lo) / 255.0)


def save_slice_cache(volumes: Sequence[SliceVolume], path: Path | str, modality: Optional[str] = None,
                     bits: int = 16) -> None:
    """Save prepared volumes with their provenance (and modality) to one ``.npz``.

    ``bits=16`` stores float16; ``bits=8`` stores each slice as 8-bit codes between its own minimum and
    maximum (about half the file size, 0.5-0.6x on the shipped priors' caches: the quantization step is 1/255 of the slice's range, ~0.4% of an MRI
    slice's peak, ~12 HU on a -1000..2000 HU CT slice, below the noise of either; what 8-bit natural-image
    datasets train diffusion models on). Used to fit training data into small transfers (benchmarks/gpu_prepare.sh).
    """
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    meta = {"modality": modality, "bits": bits,
            "volumes": [{"name": v.name, "pixel_mm": v.pixel_mm, "provenance": v.provenance} for v in volumes]}
    arrays = {}
    for i, v in enumerate(volumes):
        x = np.asarray(v.slices, dtype=np.float32)
        if bits == 16:
            arrays[f"slices_{i}"] = x.astype(np.float16)
            continue
        lo, hi = x.min(axis=(1, 2)), x.max(axis=(1, 2))
        step = np.maximum(hi - lo, 1e-12)[:, None, None] / 255.0
        arrays[f"slices_{i}"] = np.clip(np.round((x - lo[:, None, None]) / step), 0, 255).astype(np.uint8)
        arrays[f"range_{i}"] = np.stack([lo, hi], axis=1).astype(np.float32)
    from medrecon.io.atomic import atomic_write

    with atomic_write(path) as tmp:
        np.savez_compressed(tmp, meta=np.array(json.dumps(meta)), **arrays)


def load_training_volumes(paths: Sequence[str | Path], modality: str, min_foreground: float = 0.15,
                          finest_mm: Optional[float] = None) -> list[SliceVolume]:
    """Load every source (files, DICOM folders, or folders of files) for ``modality``.

    Sources finer than ``finest_mm`` (default: the modality's :data:`PIXEL_MM` lower end) are
    downsampled to it once, at load time; slice caches are taken as they were saved.

    Raises:
        InputError: no path given, a missing/unreadable file, an empty folder, or a volume of the
            wrong modality.
    """
    if not paths:
        raise InputError("no training data given; pass --data FILE_OR_FOLDER ...")
    finest = float(finest_mm) if finest_mm else PIXEL_MM[modality][0]
    out: list[SliceVolume] = []
    for p in map(Path, paths):
        if not p.exists():
            raise InputError(f"training data {p} does not exist")
        if p.is_dir() and not _is_dicom_dir(p):
            files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
            if not files:
                raise InputError(f"training data folder {p} is empty")
            for f in files:
                out.extend(_load_one(f, modality, min_foreground, finest))
        else:
            out.extend(_load_one(p, modality, min_foreground, finest))
    return out


def _is_dicom_dir(p: Path) -> bool:
    for f in sorted(p.iterdir())[:5]:
        if f.is_file():
            with open(f, "rb") as fh:
                head = fh.read(132)
            if head[128:132] == b"DICM":
                return True
    return False


def split_heldout(volumes: list[SliceVolume], fraction: float = 0.15, seed: int = 0) -> tuple[list, list]:
    """Split by volume (never by slice): returns ``(train, heldout)``; no held-out below 3 volumes."""
    if len(volumes) < 3 or fraction <= 0:
        return volumes, []
    rng = np.random.default_rng(seed)
    n = max(1, int(round(fraction * len(volumes))))
    idx = set(rng.choice(len(volumes), size=n, replace=False).tolist())
    return [v for i, v in enumerate(volumes) if i not in idx], [v for i, v in enumerate(volumes) if i in idx]


class SliceSampler:
    """Draw augmented training batches from prepared volumes, on any device.

    Args:
        volumes: the training volumes.
        modality: ``"mri"`` or ``"ct"``.
        size: crop size in pixels (square).
        pixel_mm_range: target pixel size range; sources are only ever downsampled towards it.
        seed: sampling seed.
        device: where slices and batches live.
        augment: extra augmentations by name (:mod:`medrecon.priors.augment`: rotate, elastic, gamma, bias);
            applied to the whole slice after the zoom and before the crop. Empty for validation.
    """

    def __init__(self, volumes: Sequence[SliceVolume], modality: str, size: int = 128,
                 pixel_mm_range: tuple[float, float] = (0.9, 1.8), seed: int = 0, device="cpu",
                 background_hu: float = -1000.0, augment: Sequence[str] = ()) -> None:
        if not volumes:
            raise InputError("no training slices")
        self.modality = modality
        self.size = int(size)
        self.range = pixel_mm_range
        self.device = torch.device(device)
        self.background = background_hu if modality == "ct" else 0.0
        self.augment = Augmenter(tuple(augment), modality, self.background, seed) if augment else None
        self.slices = [torch.from_numpy(v.slices).to(self.device, torch.float16) for v in volumes]
        self.pixel_mm = [v.pixel_mm for v in volumes]
        # Sample volumes in proportion to the square root of their slice counts: big volumes do not drown small ones.
        counts = np.array([len(s) for s in self.slices], dtype=np.float64)
        self.vol_p = np.sqrt(counts) / np.sqrt(counts).sum()
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)

    def _one(self) -> torch.Tensor:
        vi = int(self.rng.choice(len(self.slices), p=self.vol_p))
        stack = self.slices[vi]
        img = stack[int(self.rng.integers(len(stack)))].float()
        target = float(self.rng.uniform(*self.range))
        zoom = min(1.0, self.pixel_mm[vi] / target)
        if zoom < 0.98:
            h, w = img.shape
            new = (max(8, round(h * zoom)), max(8, round(w * zoom)))
            img = F.interpolate(img[None, None], size=new, mode="bilinear", antialias=True, align_corners=False)[0, 0]
        if self.augment is not None:
            img = self.augment(img.cpu()).to(self.device)  # MONAI's random state lives on the host
        img = self._crop(img)
        # Dihedral augmentation: files disagree on orientation (radiological vs neurological, RAS vs LPS).
        if self.rng.random() < 0.5:
            img = img.flip(-1)
        if self.rng.random() < 0.5:
            img = img.flip(-2)
        if self.rng.random() < 0.5:
            img = img.transpose(-1, -2)
        if self.modality == "mri":
            img = img * float(self.rng.uniform(0.85, 1.15))
        else:
            # Mild HU scale jitter around water keeps tissue contrast plausible.
            img = (img + 1000.0) * float(self.rng.uniform(0.95, 1.05)) - 1000.0
        return img

    def _crop(self, img: torch.Tensor) -> torch.Tensor:
        s = self.size
        h, w = img.shape
        ph, pw = max(0, s - h), max(0, s - w)
        if ph or pw:
            img = F.pad(img[None, None], (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=self.background)[0, 0]
            h, w = img.shape
        y = int(self.rng.integers(h - s + 1))
        x = int(self.rng.integers(w - s + 1))
        return img[y:y + s, x:x + s]

    def batch(self, n: int) -> torch.Tensor:
        """A batch of physical images: MRI complex ``(n, size, size)``, CT HU ``(n, size, size)``."""
        imgs = torch.stack([self._one() for _ in range(n)])
        if self.modality == "mri":
            phase = smooth_random_phase((self.size, self.size), self.gen, self.device, n=n)
            return torch.polar(imgs.clamp_min(0), phase)
        return imgs
