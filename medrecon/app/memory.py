"""The working memory of a whole reconstruction, estimated before it starts (issue 23, defect 6).

``MEDRECON_MAX_GB`` (:mod:`medrecon.io.guards`) is checked for every array a reader allocates, from the
file's header. That bounds the input, not the process: the methods make many input-sized copies
(complex64 conversion, the masked k-space, coil images, FFT temporaries), ESPIRiT builds a ``C x C``
matrix per pixel of a slice, and a learned method runs its network on a whole batch of images. A 1.5 KB
HDF5 file whose compressed ``kspace`` claimed 1.9 GiB, just under ``MEDRECON_MAX_GB=2``, made
``recon --method zero-filled`` peak at 10 GB; at the default cap the kernel would have killed the
process without a word. :func:`check_working_memory` refuses such a run in one line before any heavy
work: in the reader's child process right after the read (so the array never reaches the parent) and
again in :func:`medrecon.app.pipeline.reconstruct` (library callers, batch workers).

The estimate is a sum of terms, each meant as an upper bound of what the code allocates, with multipliers
calibrated on measured peaks (below), which include the allocator's slack (freed blocks the C heap keeps).
With ``K`` = ``--samples``, ``X`` = the k-space as complex64 (``S x C x H x W x 8`` bytes), ``I`` = the
image stack as complex64 (``S x H x W x 8``), ``E`` = one slice's ESPIRiT matrix (``C^2 x H x W x 8``),
``R`` = rows (slice x sample) of one network batch and ``P = H x W`` pixels:

- every run: :data:`FIXED_BYTES` (library workspaces: FFT plans, thread buffers) plus the input array;
- MRI: ``copies x X + images x I (+ slack x X, at most SLACK_MAX_BYTES)`` per method (:data:`MRI_METHODS`:
  the masked copy, FFT shifts, the operator's coil images, the solver's vectors and the many small
  temporaries of an iterative method, and the freed blocks the C heap keeps),
  ``4.5 E`` (:data:`ESPIRIT_FACTOR`) when ESPIRiT estimates the coil maps, ``X`` for coil maps given by
  the file or the simulation, and the output image and std map;
- CT: ``copies x`` the float32 image stack, the projector's chunked temporaries
  (:data:`CT_CHUNK_BYTES_PER_VALUE`), and for the iterative and learned methods its CSR system matrix while
  it is built (:data:`CSR_BUILD_FACTOR` times the bytes of ``A`` and ``A^T``) when it fits the operator's
  sparse limit (``MEDRECON_CT_SPARSE_MAX_GB``);
- learned methods: ``R x P x`` the network's bytes per pixel per row (:data:`NET_BYTES_PER_PIXEL`: forward
  only for ``fast``, with the backward pass for ``dps``), the ``K``-fold repeated measurement and coil
  maps, the image terms ``K`` times, and the samples gathered for the mean and std;
- on a GPU only what stays in the host's memory counts: the input, NumPy's scan of the sampled lines,
  coil maps from the file, the outputs, and :data:`CUDA_HOST_BYTES` for the CUDA runtime (reasoned from
  the code, not measured: the machine that calibrated this had no GPU).

Measured (CPU, one thread, 2026-12-06; ``VmHWM`` above the resident size before the input was made)::

    OMP_NUM_THREADS=1 python benchmarks/memory_peak.py --json benchmarks/results/memory_peak_2026-12-06.json

(The zero-filled rows were measured again after its terms changed, and the (16|32, 8, 320, 320) rows added then;
the other rows come from the full run before, whose terms did not change.)

    (MiB; MRI shapes (S, C, H, W), CT shapes (S, image size, views))
    method       shape               options                    input     peak  estimate  ratio
    zero-filled  (1, 8, 320, 320)    -                            6.2       43        94  2.16x
    zero-filled  (4, 8, 320, 320)    -                           25.0      192       279  1.45x
    zero-filled  (16, 8, 320, 320)   -                          100.0      501       780  1.55x
    zero-filled  (32, 8, 320, 320)   -                          200.0     1002      1367  1.36x
    zero-filled  (2, 16, 640, 368)   -                           57.5      317       517  1.63x
    sense        (4, 8, 320, 320)    -                           25.0      544       685  1.26x
    sense        (8, 4, 256, 256)    -                           16.0      321       472  1.47x
    sense        (16, 8, 320, 320)   -                          100.0     1142      1970  1.72x
    sense        (2, 16, 640, 368)   -                           57.5     2081      2851  1.37x
    cs-wavelet   (4, 8, 320, 320)    -                           25.0      469       685  1.46x
    cs-wavelet   (2, 16, 640, 368)   -                           57.5     2115      2851  1.35x
    cs-wavelet   (16, 8, 320, 320)   -                          100.0     1057      1970  1.86x
    cs-tv        (4, 8, 320, 320)    -                           25.0      643       785  1.22x
    cs-tv        (2, 16, 640, 368)   -                           57.5     2107      3024  1.43x
    cs-tv        (16, 8, 320, 320)   -                          100.0     1344      2370  1.76x
    fast         (4, 8, 320, 320)    steps=2                     25.0     1816      2541  1.40x
    fast         (4, 8, 320, 320)    samples=2, steps=2          25.0     3252      4598  1.41x
    fast         (4, 8, 320, 320)    steps=2, batch_size=1       25.0      740      1194  1.61x
    fast         (2, 16, 640, 368)   steps=2                     57.5     2159      5043  2.34x
    dps          (1, 8, 320, 320)    steps=2                      6.2     1729      2332  1.35x
    dps          (2, 8, 320, 320)    steps=2                     12.5     3172      4407  1.39x
    ct:fbp       (4, 256, 180)       -                            1.0      175       231  1.32x
    ct:fbp       (8, 512, 360)       -                            8.0      186       280  1.51x
    ct:tv        (4, 256, 180)       -                            1.0     2536      3306  1.30x
    ct:tv        (2, 384, 120)       -                            0.5     3729      4826  1.29x
    ct:fast      (4, 256, 180)       steps=2                      1.0     2518      4460  1.77x

The peaks vary by about 15% from run to run (allocator slack: zero-filled on (4, 8, 320, 320) measured 173-230
MiB over five runs, sense 459-544 MiB over four); two threads measured no more than one. The review's file, a
1.5 KB HDF5 whose all-fill ``kspace`` claims (16, 32, 640, 780) = 1.9 GiB, under ``MEDRECON_MAX_GB=2`` with
``recon --method zero-filled``: refused (estimate 10.8 GiB) in the reader's child after the read, peak
resident size 2.2 GB (``/usr/bin/time -v``), where it reached 10 GB before.

A shape or method not measured here is covered by the same terms; a prior with a wider network than the
shipped ones (64 channels at full resolution) needs proportionally more than :data:`NET_BYTES_PER_PIXEL`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional, Union

import numpy as np

from medrecon.errors import InputError

__all__ = ["estimate_working_bytes", "check_working_memory", "fit_batch_size", "on_cuda", "MethodMemory", "MRI_METHODS", "CT_METHODS",
           "FIXED_BYTES", "NET_BYTES_PER_PIXEL"]

_MIB = 2**20
_GIB = 2**30

#: Library workspaces that grow with the first large transform (the smallest case measured, zero-filled on
#: (1, 8, 320, 320), peaked at 43-49 MiB with its 6 MiB input).
FIXED_BYTES = 32 * _MIB
#: Network activations per pixel of one batch row (the shipped priors' U-Net: 64 channels at full size).
#: Measured: fast ~3.4 KB (no_grad forward), dps ~14 KB (activations kept for the backward pass).
NET_BYTES_PER_PIXEL = {"forward": 4600, "backward": 20000}
#: The most :attr:`MethodMemory.slack` counts.
SLACK_MAX_BYTES = 160 * _MIB
#: ESPIRiT's peak per slice in units of its C x C per-pixel matrix (measured 4.0-4.7 for C = 8..32; with 4
#: coils its per-pixel vectors weigh more, which the image terms cover).
ESPIRIT_FACTOR = 4.5
#: The CSR system matrix of the CT projector while it is built, in units of its final size (measured 3.3).
CSR_BUILD_FACTOR = 4.0
#: Temporaries of the CT projector's chunked (grid_sample) path and of FBP, per value of one chunk: the
#: projector cuts its work into chunks of at most 2^22 values (``max_chunk_elements``), 192 MiB in all.
CT_CHUNK_BYTES_PER_VALUE = 48
_CT_CHUNK_VALUES = 2**22
#: Host memory of the CUDA runtime and its kernels once a GPU is used (an allowance, not measured here).
CUDA_HOST_BYTES = 1 * _GIB


@dataclass(frozen=True)
class MethodMemory:
    """What one method needs beyond its input.

    Attributes:
        copies: MRI: complex64 k-space-sized arrays (``X``) alive or made at once; CT: float32 arrays of
            the image stack (``S x H x W``).
        images: MRI: complex64 arrays of the image stack (``S x H x W``: the solver's vectors, and the
            allocator's slack for the many small temporaries of an iterative method).
        slack: MRI: freed k-space-sized blocks the C heap may keep, in ``X`` units but at most
            :data:`SLACK_MAX_BYTES` (blocks above glibc's 32 MiB mmap threshold go back to the system):
            what makes a small input's peak several times a large one's, relative to its size.
        espirit: MRI: estimates coil maps with ESPIRiT unless the file or simulation gives them.
        projector: CT: applies the forward projector (builds its system matrix when it fits).
        network: ``"forward"`` / ``"backward"`` for learned methods (the network's activations per
            batch row, :data:`NET_BYTES_PER_PIXEL`), or None.
    """

    copies: float
    images: float = 0.0
    slack: float = 0.0
    espirit: bool = False
    projector: bool = False
    network: Optional[str] = None


#: Per MRI method (``bart-pics`` runs the bart binary in its own process: only medrecon's part counts).
MRI_METHODS = {
    "zero-filled": MethodMemory(4.5, 2, slack=4),
    "sense": MethodMemory(8, 64, espirit=True),
    "cs-wavelet": MethodMemory(8, 64, espirit=True),
    "cs-tv": MethodMemory(10, 80, espirit=True),
    "bart-pics": MethodMemory(8, 64, espirit=True),
    "fast": MethodMemory(8, 64, espirit=True, network="forward"),
    "dps": MethodMemory(8, 64, espirit=True, network="backward"),
}
#: Per CT method.
CT_METHODS = {
    "fbp": MethodMemory(4),
    "tv": MethodMemory(8, projector=True),
    "fast": MethodMemory(8, projector=True, network="forward"),
    "dps": MethodMemory(8, projector=True, network="backward"),
}


def _method_memory(method: str, modality: str) -> MethodMemory:
    """The table entry; a method registered later (a plugin) gets the most demanding built-in one of its kind."""
    from medrecon import methods as registry

    table = MRI_METHODS if modality == "mri" else CT_METHODS
    if method in table:
        return table[method]
    learned = registry.is_learned(method)
    return table["dps"] if learned else max((m for m in table.values() if m.network is None),
                                            key=lambda m: m.copies)


def on_cuda(device: Union[str, Any, None]) -> bool:
    return device is not None and str(getattr(device, "type", device)).startswith("cuda")


def _rows(cfg, batch: int) -> int:
    """Rows (slice x sample) of one network batch: ``--batch-size``, or all at once."""
    rows = batch * cfg.samples
    return rows if cfg.batch_size is None else max(1, min(rows, int(cfg.batch_size)))


def _maps_given(inp, cfg) -> bool:
    """Whether the coil maps come with the input (as :func:`medrecon.app.pipeline._coil_maps` decides)."""
    return cfg.maps == "true" or (cfg.maps == "auto" and inp.maps is not None)


def _noncartesian(inp) -> bool:
    """Non-Cartesian MRI: k-space ``(S, C, M)`` with a trajectory, on the ``recon_size`` matrix (issue 20)."""
    return inp.modality == "mri" and getattr(inp, "trajectory", None) is not None


def _mri_dims(inp) -> tuple[int, int, int, int]:
    """``(S, C, H, W)`` of the images an MRI method works on (non-Cartesian: the matrix, ``recon_size``)."""
    if _noncartesian(inp):
        s, c = (int(v) for v in inp.data.shape[:2])
        h, w = (int(v) for v in inp.recon_size)
        return s, c, h, w
    return tuple(int(v) for v in inp.data.shape)


def _data_ndim(inp) -> int:
    """The number of dimensions a measurement of this modality has."""
    return 3 if inp.modality == "ct" or _noncartesian(inp) else 4


def _mri_bytes(inp, cfg, spec: MethodMemory, cuda: bool) -> int:
    s, c, h, w = _mri_dims(inp)
    # the k-space as complex64, the dtype every method computes in (non-Cartesian: the samples, or the coil
    # images of the gridding, whichever is larger)
    x = s * c * max(h * w, int(inp.data.shape[-1]) if _noncartesian(inp) else 0) * 8
    rh, rw = (int(v) for v in inp.recon_size) if len(inp.recon_size or ()) == 2 else (h, w)
    outputs = s * min(h, rh) * min(w, rw) * 4 * 2  # image and std map, float32
    mask_scan = x // 2 if inp.mask is None else 0  # |k| (float32) to find the sampled lines
    given = x if _maps_given(inp, cfg) else 0
    if cuda:  # the transforms, maps and network live on the GPU; the host keeps NumPy's part
        return mask_scan + given + outputs + CUDA_HOST_BYTES
    k = cfg.samples if spec.network is not None else 1  # a learned method works on K rows per slice
    image = s * h * w * 8
    total = spec.copies * x + spec.images * image * k + min(spec.slack * x, SLACK_MAX_BYTES) + given + outputs
    if inp.data.dtype != np.complex64:
        total += x  # converted to complex64 once more
    if spec.espirit and not _maps_given(inp, cfg):
        total += ESPIRIT_FACTOR * c * c * h * w * 8
    if spec.network is not None:
        total += NET_BYTES_PER_PIXEL[spec.network] * _rows(cfg, s) * h * w
        total += 2 * k * x  # the measurement and the coil maps repeated for K samples
        total += 3 * k * image  # the samples, gathered, then their mean and std
    return int(total)


def _ct_bytes(inp, cfg, spec: MethodMemory, cuda: bool) -> int:
    s = int(inp.data.shape[0])
    shape = (inp.geometry or {}).get("image_shape") or [0, 0]
    h, w = (int(v) for v in shape)
    image = s * h * w * 4
    if cuda:
        return 2 * image + CUDA_HOST_BYTES
    views = int(inp.data.shape[1])
    chunk = min(_CT_CHUNK_VALUES, max(s, 2) * views * h * w)  # a small problem is one small chunk
    total = spec.copies * image + 2 * image + CT_CHUNK_BYTES_PER_VALUE * chunk
    if spec.projector:
        total += CSR_BUILD_FACTOR * _csr_bytes(inp.geometry)
    if spec.network is not None:
        k = cfg.samples
        total += NET_BYTES_PER_PIXEL[spec.network] * _rows(cfg, s) * h * w
        total += k * int(inp.data.nbytes) + 3 * s * k * h * w * 4
    return int(total)


def _csr_bytes(geometry: Optional[dict]) -> int:
    """Bytes of the CT projector's sparse ``A`` and ``A^T`` when it keeps them (0 when it streams instead).

    The projector is rebuilt from the geometry (cheap: no matrix is made) to ask it, so the rule (its size
    bound, ``MEDRECON_CT_SPARSE_MAX_GB``) stays in one place.
    """
    if not geometry:
        return 0
    import torch

    from medrecon.io.sinogram import projector_from_geometry

    try:
        A = projector_from_geometry(geometry)
        if not A._use_sparse(torch.empty(0, dtype=torch.float32)):
            return 0
        return int(A._sparse_bytes())
    except (InputError, AttributeError):  # a bad geometry is reported by the reconstruction itself
        return 0


def estimate_working_bytes(inp, cfg, device: Union[str, Any, None] = None) -> int:
    """Bytes of host memory that reconstructing ``inp`` with ``cfg`` is expected to need at its peak.

    An upper bound of the measured peaks (module docstring), the input array included.

    Args:
        inp: a :class:`~medrecon.io.measurement.LoadedInput` (MRI k-space ``(S, C, H, W)`` or a CT
            sinogram ``(S, views, detectors)``).
        cfg: the :class:`~medrecon.recon.config.ReconConfig` (method, samples, batch size, coil maps).
        device: where the reconstruction runs (``torch.device`` or a name); on a CUDA device only the
            host's share counts. None: the CPU (the larger estimate).

    Returns:
        The estimate in bytes; just the input's size for data no method can take (wrong number of
        dimensions), which the input checks refuse anyway.
    """
    data = inp.data
    want = _data_ndim(inp)
    base = FIXED_BYTES + int(data.nbytes)
    if data.ndim != want or data.size == 0:
        return int(data.nbytes)
    spec = _method_memory(cfg.method, inp.modality)
    cuda = on_cuda(device)
    try:
        extra = _mri_bytes(inp, cfg, spec, cuda) if inp.modality == "mri" else _ct_bytes(inp, cfg, spec, cuda)
    except (TypeError, ValueError):  # a malformed recon size or geometry: the reconstruction reports it
        extra = 0
    return base + extra


#: The share of a GPU's free memory that a learned method's network batches may fill (the rest: the CUDA
#: allocator's fragmentation, the operator's and the sampler's own tensors).
GPU_BATCH_SHARE = 0.7


def fit_batch_size(inp, cfg, device: Union[str, Any, None] = None) -> Optional[int]:
    """Rows (slice x sample) per network batch that keep a learned reconstruction within its memory budget.

    Issue 22: all slices and posterior samples of a study go through the network in one batch, up to a budget.
    ``None`` (one batch of all rows) when the user gave ``--batch-size``, the method has no network, or all rows
    fit. Otherwise the most rows that fit:

    - CPU: the largest batch whose :func:`estimate_working_bytes` stays within ``MEDRECON_MAX_GB``;
    - CUDA: :data:`GPU_BATCH_SHARE` of the device's free memory over the network's bytes per row
      (:data:`NET_BYTES_PER_PIXEL`, the CPU calibration, an upper bound of fp32 activations).

    1 when not even one row fits (then :func:`check_working_memory` refuses on the CPU).
    """
    from medrecon import methods as registry
    from medrecon.io.guards import max_bytes

    if cfg.batch_size is not None or cfg.method not in registry.names(inp.modality) or \
            not registry.is_learned(cfg.method):
        return None
    data = inp.data
    if data.ndim != _data_ndim(inp) or data.size == 0:
        return None
    rows = int(data.shape[0]) * cfg.samples
    if on_cuda(device):
        import torch

        spec = _method_memory(cfg.method, inp.modality)
        if inp.modality == "mri":
            h, w = _mri_dims(inp)[2:]
        else:
            h, w = (int(v) for v in ((inp.geometry or {}).get("image_shape") or [0, 0]))
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        per_row = NET_BYTES_PER_PIXEL[spec.network or "backward"] * max(1, h * w)
        fit = int(GPU_BATCH_SHARE * free // per_row)
        return None if fit >= rows else max(1, fit)
    cap = max_bytes()

    def fits(r: int) -> bool:
        return estimate_working_bytes(inp, replace(cfg, batch_size=r), device) <= cap

    if fits(rows):
        return None
    lo, hi = 1, rows  # fits(lo) is unknown; the estimate grows with the batch
    if not fits(lo):
        return 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def check_working_memory(inp, cfg, name: Optional[str] = None, device: Union[str, Any, None] = None) -> int:
    """Refuse, in one line, a reconstruction whose estimated working memory exceeds ``MEDRECON_MAX_GB``.

    Args:
        inp, cfg, device: as :func:`estimate_working_bytes`.
        name: the input file's base name for the message (never a path), or None.

    Returns:
        The estimate in bytes (within the cap).

    Raises:
        InputError: the estimate is over the cap; the message gives both and what to do.
    """
    from medrecon import methods as registry
    from medrecon.io.guards import ENV_MAX_GB, max_bytes

    cap = max_bytes()
    if cfg.method not in registry.names(inp.modality):
        return 0  # the method check reports this one
    est = estimate_working_bytes(inp, cfg, device)
    if est <= cap:
        return est
    what = "k-space" if inp.modality == "mri" else "sinogram"
    hints = ["select fewer slices with --slices a:b"]
    if registry.is_learned(cfg.method) and _rows(cfg, int(inp.data.shape[0])) > 1:
        hints.append("use a smaller --batch-size")
    hints.append(f"raise {ENV_MAX_GB} if the machine has the memory")
    prefix = f"{name}: " if name else ""
    raise InputError(
        f"{prefix}reconstructing this {what} {tuple(int(v) for v in inp.data.shape)} with {cfg.method} would need "
        f"about {est / _GIB:.3g} GiB of memory (estimated), more than the {ENV_MAX_GB} limit of {cap / _GIB:.3g} GiB; "
        + ", or ".join(hints))
