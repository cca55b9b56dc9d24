"""Benchmark inputs: find and verify the suite's files, then build the measurements of each split.

Volume datasets are simulated from held-out image volumes exactly as ``medrecon simulate`` does
(multi-coil Cartesian k-space with fastMRI masks; parallel- or fan-beam sinograms of attenuation
with optional Poisson noise). fastMRI datasets read the user's multicoil files and undersample them
with the official fastMRI masks; the target is the file's ``reconstruction_rss``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medrecon.acquisition.ct import FAN_KEYS, CtScan
from medrecon.acquisition.mri import simulate_kspace
from medrecon.errors import InputError

from .manifest import Dataset, Suite

__all__ = ["Case", "data_root", "dataset_source", "describe_split", "load_cases", "sha256_of",
           "source_volume", "verify_dataset"]

_SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
_PACKAGE = Path(__file__).resolve().parents[1] / "data"


@dataclass
class Case:
    """One volume of one dataset split, simulated or read, ready to reconstruct.

    Shapes:
        target: ``(S, h, w)`` float32 (MRI: RSS magnitude; CT: HU).
        kspace: ``(S, C, H, W)`` complex64, already masked (MRI); non-Cartesian: ``(S, C, M)`` samples.
        trajectory: ``(M, 2)`` float32 radians per pixel (non-Cartesian MRI), else None.
        mask: ``(W,)`` bool column mask (MRI).
        sinogram: ``(S, views, detectors)`` float32 line integrals (CT).
    """

    dataset: str
    modality: str
    volume: str
    slices: list[int]
    target: np.ndarray
    kspace: np.ndarray | None = None
    mask: np.ndarray | None = None
    recon_size: tuple[int, int] = (0, 0)
    noise_std: float | None = None
    sinogram: np.ndarray | None = None
    projector: Any = None
    mu_water: float = 0.019
    photons: float = 0.0
    trajectory: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def data_root(suite: Suite, override: str | None) -> Path:
    """The folder the suite's file paths are relative to (``--data-root`` wins over the manifest)."""
    if override:
        root = Path(override).expanduser()
    elif suite.data_root == "package":
        root = _PACKAGE
    elif suite.data_root == "shared":
        root = _SHARED
    elif suite.data_root == "user":
        raise InputError(f"suite {suite.name} runs on your own data: pass --data-root DIR")
    else:
        root = suite.path.parent / suite.data_root
    root = root.resolve()
    if not root.is_dir():
        raise InputError(f"suite {suite.name}: data folder {root} does not exist; pass --data-root DIR")
    return root


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a folder as in ``data_manifests/shared_data.json``.

    A folder's digest hashes, for every file below it in sorted path order, the file name followed
    by the raw 32-byte sha256 of its contents (the convention the shared-data manifest was written
    with, so the two manifests agree).
    """
    if path.is_file():
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.name.encode())
        h.update(bytes.fromhex(sha256_of(f)))
    return h.hexdigest()


def verify_dataset(suite: Suite, ds: Dataset, root: Path) -> Path:
    """Check the dataset's file exists and matches its sha256; returns its path.

    Raises:
        InputError: missing file or sha256 mismatch (naming the suite and the file).
    """
    path = root / ds.file.path if ds.file.path else root
    if not path.exists():
        raise InputError(f"suite {suite.name}: data file {ds.file.path or path} is missing under {root}; "
                         "pass --data-root DIR pointing at the folder that holds it")
    if ds.source == "fastmri":
        if not any(path.glob("*.h5")):
            raise InputError(f"suite {suite.name}: no fastMRI .h5 files in {path}")
        return path
    digest = sha256_of(path)
    if digest != ds.file.sha256:
        raise InputError(f"suite {suite.name}: {ds.file.path} has sha256 {digest[:12]}... but the manifest expects "
                         f"{ds.file.sha256[:12]}...; these are not the data the suite was made for (refusing to run)")
    return path


def dataset_source(suite: Suite, ds: Dataset, root: Path | None, excerpt: dict | None = None):
    """Where a dataset's slices come from: its excerpt stand-in if ``excerpt`` holds it, else its verified file.

    Raises:
        InputError: as :func:`verify_dataset` (missing or altered file), or no data root and no excerpt.
    """
    if excerpt and ds.name in excerpt:
        return excerpt[ds.name]
    if root is None:
        raise InputError(f"suite {suite.name}: dataset {ds.name} is not in the excerpt and no data folder was found; "
                         "pass --data-root DIR")
    return verify_dataset(suite, ds, root)


@lru_cache(maxsize=2)
def source_volume(path: str, modality: str):
    """Load a held-out volume once per process (tuning and test splits share it); returns ``(volume, scale)``.

    ``scale`` is the whole volume's 99th percentile of ``|data|`` for MRI (so every split shares it), 1 for CT.
    """
    from medrecon.io.volumes import load_volume

    vol = load_volume(path, modality="CT" if modality == "ct" else None)
    if (vol.kind == "hu") != (modality == "ct"):
        raise InputError(f"{Path(path).name} is {'a CT' if vol.kind == 'hu' else 'not a CT'} volume, but the suite "
                         f"uses it as {modality.upper()}")
    scale = float(np.percentile(np.abs(vol.data), 99)) if modality == "mri" else 1.0
    return vol, max(scale, 1e-8)


def _source(source, modality: str):
    """``(volume, scale, name)`` of a dataset's source: a verified path, or an excerpt's stand-in."""
    from .excerpt import ExcerptVolume

    if isinstance(source, ExcerptVolume):
        return source, source.scale, source.name
    vol, scale = source_volume(str(source), modality)
    return vol, scale, Path(source).name


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of ``(S, H, W)`` images (as ``medrecon simulate ct --size``)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return torch.nn.functional.interpolate(x[:, None], size=size, mode="bilinear", antialias=True)[:, 0]


def _mri_case(ds: Dataset, source, idx: list[int]) -> Case:
    vol, scale, name = _source(source, "mri")
    # The volume's 99th percentile (not the split's) sets the scale, so tuning and test share it.
    img = _resize(torch.from_numpy(vol.data[idx] / scale).float(), ds.image_size)
    a = ds.acquisition
    noise = float(a.get("noise_std", 0.0))
    sim = simulate_kspace(img, int(a.get("coils", 8)), a["mask"], int(a["accel"]), float(a["center_fraction"]),
                          int(a.get("seed", 0)), noise)
    m = sim["mask"].numpy()
    info = {"mask_kind": a["mask"], "acceleration": a["accel"], "achieved_acceleration": round(m.size / m.sum(), 2),
            "center_fraction": a["center_fraction"], "mask_seed": a.get("seed", 0), "coils": a.get("coils", 8),
            "noise_std": noise, "image_size": list(ds.image_size),
            "slice_mm": round(float(vol.spacing[0]), 3),
            "pixel_mm": round(float(vol.spacing[1]) * max(vol.data.shape[-2:]) / max(ds.image_size), 3)}
    return Case(ds.name, "mri", name, idx, sim["target"].numpy(), kspace=sim["kspace"].numpy(), mask=m,
                recon_size=tuple(ds.image_size), noise_std=noise, info=info)


def _noncart_case(ds: Dataset, source, idx: list[int]) -> Case:
    """A radial or spiral MRI case (issue 20): :func:`_mri_case`'s images, the trajectory's NUFFT in place of the
    mask (:func:`medrecon.acquisition.noncart.simulate_noncartesian`, as ``simulate mri --trajectory``)."""
    from medrecon.acquisition.noncart import NonCartesianSampling, simulate_noncartesian

    vol, scale, name = _source(source, "mri")
    img = _resize(torch.from_numpy(vol.data[idx] / scale).float(), ds.image_size)
    a = ds.acquisition
    noise = float(a.get("noise_std", 0.0))
    sampling = NonCartesianSampling(a["trajectory"], int(a["spokes"]), a.get("readout"))
    traj = sampling.trajectory(tuple(ds.image_size))
    sim = simulate_noncartesian(img, int(a.get("coils", 8)), traj, int(a.get("seed", 0)), noise)
    info = {"trajectory": a["trajectory"], "spokes": int(a["spokes"]), "readout": int(traj.shape[1]),
            "coils": a.get("coils", 8), "noise_std": noise, "image_size": list(ds.image_size),
            "slice_mm": round(float(vol.spacing[0]), 3),
            "pixel_mm": round(float(vol.spacing[1]) * max(vol.data.shape[-2:]) / max(ds.image_size), 3)}
    return Case(ds.name, "mri", name, idx, sim["target"].numpy(), kspace=sim["kspace"].numpy(),
                recon_size=tuple(ds.image_size), noise_std=noise, trajectory=sim["trajectory"], info=info)


def _ct_case(ds: Dataset, source, idx: list[int]) -> Case:
    vol, _, name = _source(source, "ct")
    h, w = vol.data.shape[-2:]
    n = ds.image_size[0]
    if ds.image_size[0] != ds.image_size[1]:
        raise InputError(f"dataset {ds.name}: CT image_size must be square, got {list(ds.image_size)}")
    pix = float(vol.spacing[1]) * max(h, w) / n  # keep the field of view
    hu = _resize(torch.from_numpy(vol.data[idx]).float(), (n, n))
    a = ds.acquisition
    photons = a.get("photons")
    mu_water = float(a.get("mu_water", 0.019))
    fan = {k: a[k] for k in FAN_KEYS if k in a}  # a clinical fan beam (scanner preset, mm), fixed whatever n
    scan = CtScan(a.get("geometry", "parallel"), int(a["views"]), pix, photons, mu_water, int(a.get("seed", 0)), **fan)
    A = scan.operator((n, n))
    sino = scan.simulate(hu, A)
    info = {"views": a["views"], "geometry": a.get("geometry", "parallel"), "photons": photons,
            "noise_seed": a.get("seed", 0), "pixel_mm": round(pix, 3), "image_size": [n, n], "mu_water": mu_water,
            "slice_mm": round(float(vol.spacing[0]), 3), **fan}
    return Case(ds.name, "ct", name, idx, hu.numpy(), sinogram=sino.numpy(), projector=A, mu_water=mu_water,
                photons=float(photons or 0.0), info=info)


def _further_mask(acquired: np.ndarray, keep: float, seed: int) -> np.ndarray:
    """Keep the fully sampled centre of a 2-D ``(H, W)`` sampling pattern and ``keep`` of its other samples."""
    from operators.coils import fully_sampled_center

    h, w = acquired.shape
    rows, cols = fully_sampled_center(torch.from_numpy(acquired))
    centre = np.zeros_like(acquired)
    centre[h // 2 - rows // 2: h // 2 - rows // 2 + rows, w // 2 - cols // 2: w // 2 - cols // 2 + cols] = True
    centre &= acquired
    rng = np.random.default_rng(seed)
    chosen = acquired & (rng.random(acquired.shape) < keep)
    return centre | chosen


def _kspace_case(ds: Dataset, folder: Path, idx: list[int]) -> Case:
    """A real k-space file undersampled further, scored against a pseudo-reference of the full acquired set."""
    from medrecon.baselines import cg_sense
    from medrecon.io.bart import read_bart_kspace, read_cfl
    from medrecon.recon.problems import coil_maps_for
    from operators import MultiCoilMRI

    if idx != [0]:
        raise InputError(f"dataset {ds.name}: a kspace dataset holds one slice; its split must be [0]")
    k, acquired = read_bart_kspace(folder / ds.kspace["data"])
    ref = np.abs(read_cfl(folder / ds.kspace["reference"])).squeeze()
    if ref.ndim == 3:  # several ESPIRiT map sets (BART pics -m): their root-sum-of-squares
        ref = np.sqrt((ref ** 2).sum(axis=-1))
    if ref.shape != acquired.shape:
        raise InputError(f"dataset {ds.name}: reference {ref.shape} and k-space {acquired.shape} differ in size")
    kt = torch.from_numpy(k)[None]
    maps = coil_maps_for(kt, torch.from_numpy(acquired))  # as recon estimates them
    full = cg_sense(MultiCoilMRI(maps, torch.from_numpy(acquired)), kt, iters=30).abs()[0].numpy()
    roi = ref > 0.05 * ref.max()
    gain = float((full[roi] * ref[roi]).sum() / (ref[roi] ** 2).sum())  # least-squares scale of the reference
    a = ds.acquisition
    m = _further_mask(acquired, float(a["keep"]), int(a.get("seed", 0)))
    info = {"kspace": ds.kspace["data"], "reference": f"{ds.kspace['reference']} (pseudo-reference, scale {gain:.4g} "
            "by least squares against CG-SENSE of the full acquired set)", "coils": int(k.shape[0]),
            "acquired_fraction": round(float(acquired.mean()), 4), "kept_fraction": round(float(m.mean()), 4),
            "acceleration": round(m.size / m.sum(), 2),
            "keep": a["keep"], "mask_seed": a.get("seed", 0), "image_size": list(acquired.shape)}
    target = (gain * ref)[None].astype(np.float32)
    return Case(ds.name, "mri", folder.name, idx, target, kspace=(k * m)[None].astype(np.complex64), mask=m,
                recon_size=tuple(acquired.shape), noise_std=None, info=info)


def _fastmri_slices(spec, n: int) -> list[int]:
    if spec == "all":
        return list(range(n))
    if isinstance(spec, dict):
        k = min(int(spec["center"]), n)
        start = (n - k) // 2
        return list(range(start, start + k))
    return [i for i in spec if i < n]


def _fastmri_case(ds: Dataset, f: Path) -> Case:
    import h5py

    from medrecon.io import privacy
    from medrecon.io.fastmri import read_fastmri
    from medrecon.acquisition.mri import CartesianSampling

    privacy.register_inputs([f])  # a user's fastMRI file may carry identifying attrs; its name may repeat them
    try:
        with h5py.File(f, "r") as h:
            n = int(h["kspace"].shape[0])
    except (OSError, KeyError) as exc:
        raise InputError(f"{f.name}: not a readable fastMRI k-space file ({type(exc).__name__})") from None
    idx = _fastmri_slices(ds.slices, n)
    v = read_fastmri(f, slice(min(idx), max(idx) + 1))
    if v.target is None or v.mask is not None or not v.multicoil:
        raise InputError(f"{f.name}: the fastmri suite needs fully sampled multicoil files with "
                         "reconstruction_rss (fastMRI train/val), not test or single-coil files")
    sel = [i - min(idx) for i in idx]
    a = ds.acquisition
    seed = tuple(map(ord, f.name)) if a.get("seed", "filename") == "filename" else int(a["seed"])
    w = v.kspace.shape[-1]
    m = CartesianSampling(a["mask"], int(a["accel"]), float(a["center_fraction"]), seed).mask(w)
    k = v.kspace[sel] * m + 0.0  # fastMRI's apply_mask (the + 0.0 avoids -0.0)
    info = {"mask_kind": a["mask"], "acceleration": a["accel"], "achieved_acceleration": round(m.size / m.sum(), 2),
            "center_fraction": a["center_fraction"], "mask_seed": "tuple(map(ord, filename))"
            if not isinstance(seed, int) else seed, "coils": int(v.kspace.shape[1]), "kspace_shape": list(v.kspace.shape[-2:]),
            "recon_size": list(v.recon_size)}
    return Case(ds.name, "mri", f.name, idx, v.target[sel].astype(np.float32), kspace=k.astype(np.complex64), mask=m,
                recon_size=tuple(v.recon_size), noise_std=None, info=info)


def fastmri_files(ds: Dataset, path: Path, split: str) -> list[Path]:
    """The user's fastMRI files a ``fastmri`` dataset uses for ``split`` (sorted; the first ones tune)."""
    files = sorted(Path(path).glob("*.h5"))
    n_tune = int(ds.split.get("tuning_volumes", 0))
    chosen = files[:n_tune] if split == "tuning" else files[n_tune:]
    if split == "test" and ds.max_volumes:
        chosen = chosen[: ds.max_volumes]
    return chosen


def register_identifiers(ds: Dataset, path) -> None:
    """Put the identifiers of a user's fastMRI files (both splits) into the privacy layer before anything is
    printed: the output folder or a file name may repeat them (medrecon.io.privacy). Shipped suites'
    files are public and carry none."""
    if ds.source != "fastmri" or not isinstance(path, Path):
        return
    from medrecon.io import privacy

    privacy.register_inputs([*fastmri_files(ds, path, "tuning"), *fastmri_files(ds, path, "test")])


def load_cases(suite: Suite, ds: Dataset, path, split: str) -> list[Case]:
    """Build the cases (volumes) of ``split`` (``"test"`` or ``"tuning"``) for one dataset.

    Args:
        suite: the suite (for messages).
        ds: the dataset.
        path: its file or folder, as returned by :func:`verify_dataset`, or its excerpt stand-in
            (:func:`dataset_source`).
        split: ``"test"`` or ``"tuning"``.

    Raises:
        InputError: slices out of range, an empty split, unreadable fastMRI files.
    """
    if ds.source == "fastmri":
        files = sorted(path.glob("*.h5"))
        n_tune = int(ds.split.get("tuning_volumes", 0))
        chosen = fastmri_files(ds, path, split)
        if not chosen:
            raise InputError(f"suite {suite.name}: dataset {ds.name} has no {split} volumes in {path} "
                             f"({len(files)} file(s), {n_tune} reserved for tuning)")
        return [_fastmri_case(ds, f) for f in chosen]
    idx = ds.split[split]
    if not idx:
        raise InputError(f"suite {suite.name}: dataset {ds.name} has no {split} slices")
    if ds.source == "kspace":
        return [_kspace_case(ds, Path(path), idx)]
    vol, _, _ = _source(path, ds.modality)
    n = vol.data.shape[0]
    if max(idx) >= n:
        raise InputError(f"suite {suite.name}: dataset {ds.name} asks for slice {max(idx)} but "
                         f"{ds.file.path} has {n} slices")
    if ds.modality == "mri":
        return [_noncart_case(ds, path, idx) if "trajectory" in ds.acquisition else _mri_case(ds, path, idx)]
    return [_ct_case(ds, path, idx)]


def describe_split(cases: list[Case]) -> str:
    """``"4 slices of 1 volume"``-style summary for progress lines."""
    s = sum(len(c.slices) for c in cases)
    return f"{s} slice{'s' * (s != 1)} of {len(cases)} volume{'s' * (len(cases) != 1)}"

