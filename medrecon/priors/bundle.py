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
import math
import os
import stat
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save_file

from medrecon import __version__
from medrecon.errors import InputError, PriorError
from medrecon.io.guards import max_bytes

__all__ = ["save_bundle", "load_bundle", "read_metadata", "sha256_file", "BUNDLE_FORMAT"]

BUNDLE_FORMAT = "medrecon-prior/1"
METADATA = Path("configs") / "metadata.json"
WEIGHTS = Path("models") / "model.safetensors"
_MAX_METADATA_BYTES = 16 * 2**20
# The safetensors library refuses headers over 100 MB; the same bound keeps our own header parse cheap.
_MAX_HEADER_BYTES = 100 * 2**20

# Ranges for every metadata field that sizes something built at load time. A crafted bundle may carry a
# valid sha256 of its own weights (the sha256 covers the weights only), so these numbers are checked
# before anything is built: 3e8 timesteps took 7.6 GB, 20000 residual blocks minutes of CPU time.
_MAX_TIMESTEPS = 100_000
_MAX_LEVELS = 8
_MAX_RES_BLOCKS = 8
_MAX_WIDTH = 1024
_SCHEDULES = ("linear_beta", "scaled_linear_beta", "sigmoid_beta")  # the MONAI ones taking beta_start/end
PREDICTIONS = ("epsilon", "edm")  # what a network predicts (priors.prior); a schedule without one is epsilon
_MAX_ABS_HU = 1e6


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
    from medrecon.io.atomic import write_text

    write_text(out_dir / METADATA, json.dumps(meta, indent=2) + "\n")
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


def _read_weights(wpath: Path) -> bytes:
    """The weights file's bytes, read once through one file descriptor.

    The sha256 check, the header check and the deserialization all use these bytes, so the file cannot
    be swapped between the check and the load. The size comes from ``fstat`` on the open descriptor and
    is checked against ``MEDRECON_MAX_GB`` before anything is read.

    Raises:
        PriorError: the file cannot be opened, is not a regular file, is over the cap, or changed size
            while being read.
    """
    # O_NONBLOCK: a FIFO swapped in for the weights must not block the open; it has no effect on files.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(wpath, flags)
    except OSError as exc:
        raise PriorError(f"prior weights {wpath.name} cannot be opened ({type(exc).__name__})") from None
    with open(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise PriorError(f"prior weights {wpath.name} are not a regular file; reinstall or retrain the prior")
        if info.st_size > max_bytes():
            raise PriorError(f"prior weights {wpath.name} are {info.st_size / 2**30:.3g} GiB, more than "
                             "MEDRECON_MAX_GB allows")
        try:
            data = f.read(info.st_size + 1)  # one byte more than fstat said: a growing file is noticed
        except OSError as exc:
            raise PriorError(f"prior weights {wpath.name} cannot be read ({type(exc).__name__})") from None
    if len(data) != info.st_size:
        raise PriorError(f"prior weights {wpath.name} changed size while being read; reinstall or retrain the prior")
    return data


def _weights_shapes(data: bytes, name: str) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors header of ``data`` (the tensors themselves are not read).

    The header is an 8-byte little-endian length followed by that many bytes of JSON mapping each
    tensor name to its dtype, shape and offsets (plus an optional ``__metadata__`` entry).

    Args:
        data: the weights file's bytes.
        name: the file's base name, for messages.

    Raises:
        PriorError: ``data`` does not start with a well-formed safetensors header.
    """
    try:
        if len(data) < 8:
            raise ValueError("short")
        n = int.from_bytes(data[:8], "little")
        if n > min(len(data) - 8, _MAX_HEADER_BYTES):
            raise ValueError("header length")
        header = json.loads(str(memoryview(data)[8:8 + n], "utf-8"))
        if not isinstance(header, dict):
            raise TypeError("header type")
        shapes = {}
        for key, entry in header.items():
            if key == "__metadata__":
                continue
            shape = entry["shape"]
            if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                      for d in shape):
                raise ValueError("shape")
            shapes[key] = tuple(shape)
        return shapes
    except (ValueError, TypeError, KeyError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise PriorError(f"prior weights {name} are not a valid safetensors file ({type(exc).__name__}); "
                         "only safetensors weights are loaded: reinstall or retrain the prior") from None


def _is_int(x: Any) -> bool:
    """True for a JSON integer (``bool`` is an ``int`` subclass in Python, and is not one)."""
    return isinstance(x, int) and not isinstance(x, bool)


def _is_real(x: Any) -> bool:
    """True for a finite JSON number (``json`` parses ``NaN`` and ``Infinity``)."""
    # An int is exact (math.isfinite would overflow on a 400-digit JSON integer); a float must be finite.
    return _is_int(x) or (isinstance(x, float) and math.isfinite(x))


def _int_list(x: Any, low: int, high: int, max_len: int = _MAX_LEVELS) -> bool:
    """True for a list of 1..``max_len`` integers, each in ``low..high``."""
    return isinstance(x, list) and 1 <= len(x) <= max_len and all(_is_int(v) and low <= v <= high for v in x)


def _check_metadata_bounds(meta: dict, bundle_dir: Path) -> None:
    """Check the type and range of every metadata field that sizes what :func:`load_bundle` builds.

    Fields left out keep their defaults (:data:`~medrecon.priors.network.DEFAULT_NETWORK`,
    :data:`~medrecon.priors.prior.DEFAULT_SCHEDULE`, the modality's normalization), which are in range.
    Combinations (e.g. group norm dividing the channels) are left to the network build, which runs on the
    meta device once the sizes here are known to be small.

    Args:
        meta: parsed metadata (from :func:`read_metadata`).
        bundle_dir: the bundle, named in messages.

    Raises:
        PriorError: one line naming the first field out of range and the allowed range.
    """
    def bad(field: str, allowed: str, value: Any) -> PriorError:
        """The one-line error for ``field`` (dotted name), its ``allowed`` range and the ``value`` found."""
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."  # never echo more of the file than this
        return PriorError(f"prior bundle {bundle_dir.name}: metadata field {field} must be {allowed}, got {shown}")

    net = meta["network"]  # a dict: read_metadata checked it
    checks = (
        ("spatial_dims", lambda v: v == 2 and _is_int(v), "2"),
        ("channels", lambda v: _int_list(v, 1, _MAX_WIDTH), f"a list of 1..{_MAX_LEVELS} integers in 1..{_MAX_WIDTH}"),
        ("num_res_blocks", lambda v: (_is_int(v) and 1 <= v <= _MAX_RES_BLOCKS) or _int_list(v, 1, _MAX_RES_BLOCKS),
         f"an integer in 1..{_MAX_RES_BLOCKS} or a list of them"),
        ("attention_levels", lambda v: isinstance(v, list) and 1 <= len(v) <= _MAX_LEVELS
         and all(isinstance(a, bool) for a in v), f"a list of 1..{_MAX_LEVELS} booleans"),
        ("norm_num_groups", lambda v: _is_int(v) and 1 <= v <= _MAX_WIDTH, f"an integer in 1..{_MAX_WIDTH}"),
        ("num_head_channels", lambda v: (_is_int(v) and 1 <= v <= _MAX_WIDTH) or _int_list(v, 1, _MAX_WIDTH),
         f"an integer in 1..{_MAX_WIDTH} or a list of them"),
        ("in_channels", lambda v: _is_int(v) and 1 <= v <= 8, "an integer in 1..8"),
        ("out_channels", lambda v: _is_int(v) and 1 <= v <= 8, "an integer in 1..8"),
    )
    for key, ok, allowed in checks:
        if key in net and not ok(net[key]):
            raise bad(f"network.{key}", allowed, net[key])

    kind = meta.get("kind", "whole")
    if kind not in ("whole", "patch"):
        raise bad("kind", "whole or patch", kind)
    if kind == "patch":
        from .patch import check_patch_config

        if not isinstance(meta.get("patch"), dict):
            raise bad("patch", "a JSON object (sizes, probs, pad, tile)", meta.get("patch"))
        try:
            check_patch_config(meta["patch"])
        except InputError as exc:
            raise PriorError(f"prior bundle {bundle_dir.name}: metadata field {exc}") from None

    schedule = meta.get("schedule")
    if schedule is not None:
        if not isinstance(schedule, dict):
            raise bad("schedule", "a JSON object", schedule)
        if "num_train_timesteps" in schedule:
            v = schedule["num_train_timesteps"]
            if not (_is_int(v) and 1 <= v <= _MAX_TIMESTEPS):
                raise bad("schedule.num_train_timesteps", f"an integer in 1..{_MAX_TIMESTEPS}", v)
        if "schedule" in schedule and schedule["schedule"] not in _SCHEDULES:
            raise bad("schedule.schedule", " or ".join(_SCHEDULES), schedule["schedule"])
        for key in ("beta_start", "beta_end"):
            if key in schedule and not (_is_real(schedule[key]) and 0 < schedule[key] < 1):
                raise bad(f"schedule.{key}", "a finite number in (0, 1)", schedule[key])
        if "prediction" in schedule and schedule["prediction"] not in PREDICTIONS:
            raise bad("schedule.prediction", " or ".join(PREDICTIONS), schedule["prediction"])
        if "sigma_data" in schedule and not (_is_real(schedule["sigma_data"]) and 0 < schedule["sigma_data"] <= 10):
            raise bad("schedule.sigma_data", "a finite number in (0, 10]", schedule["sigma_data"])

    norm = meta.get("normalization")
    if norm is not None:
        if not isinstance(norm, dict):
            raise bad("normalization", "a JSON object", norm)
        kind = norm.get("kind")
        if kind == "complex-percentile":
            # percentile / 100 is a torch.quantile level: NaN or a value outside (0, 100] breaks every sample.
            p = norm.get("percentile", 99.0)
            if not (_is_real(p) and 0 < p <= 100):
                raise bad("normalization.percentile", "a finite number in (0, 100]", p)
        elif kind == "hu-window":
            for key in ("low", "high"):
                if not (_is_real(norm.get(key)) and abs(norm[key]) <= _MAX_ABS_HU):
                    raise bad(f"normalization.{key}", f"a finite number of HU within +-{_MAX_ABS_HU:g}", norm.get(key))
            if not norm["low"] < norm["high"]:
                raise bad("normalization.high", "greater than normalization.low", norm["high"])
        else:
            raise bad("normalization.kind", "complex-percentile or hu-window", kind)


def _check_declared_network(meta: dict, shapes: dict[str, tuple[int, ...]], bundle_dir: Path) -> None:
    """Build the declared network on the meta device (no memory) and compare it with the weights' shapes.

    A crafted ``network`` config (e.g. a million channels) would otherwise allocate terabytes before
    ``load_state_dict`` could notice that the weights do not fit.
    """
    from .patch import prior_from_description

    try:
        with torch.device("meta"):
            skeleton = prior_from_description(meta)
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

    The weights file is read once; its sha256, safetensors header and tensors all come from those
    bytes. Metadata fields that size the network, schedule or normalization are range-checked first.

    Args:
        bundle_dir: the bundle folder.
        device: where the loaded prior is moved.

    Returns:
        The :class:`~medrecon.priors.prior.DiffusionPrior` (a patch prior for ``kind: patch``), in eval mode, with ``metadata`` and ``bundle_dir``.

    Raises:
        PriorError: missing files, bad or out-of-range metadata, weights over ``MEDRECON_MAX_GB``,
            sha256 mismatch (tampered or swapped weights) or weights that do not fit the declared network.
    """
    bundle_dir = Path(bundle_dir)
    meta = read_metadata(bundle_dir)
    _check_metadata_bounds(meta, bundle_dir)
    wpath = _weights_path(bundle_dir, meta)
    # One read: the bytes hashed here are the bytes deserialized below (the file is not opened again).
    data = _read_weights(wpath)
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["weights"].get("sha256"):
        raise PriorError(f"prior weights {wpath.name} in {bundle_dir} fail the sha256 check "
                         f"(expected {str(meta['weights'].get('sha256'))[:12]}..., got {digest[:12]}...): "
                         "the file was modified or replaced; reinstall or retrain the prior")
    from .patch import prior_from_description  # imports MONAI: only when weights are actually loaded

    _check_declared_network(meta, _weights_shapes(data, wpath.name), bundle_dir)
    try:
        prior = prior_from_description(meta, name=meta.get("name", bundle_dir.name))
        tensors = load_safetensors_bytes(data)
        del data  # the tensors hold their own copies
        sd = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
        prior.net.load_state_dict(sd, strict=True)
    except Exception as exc:  # noqa: BLE001 - SafetensorError is not a RuntimeError; any failure is a bad bundle
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise PriorError(f"prior bundle {bundle_dir} does not load ({type(exc).__name__}: {first})") from None
    prior.metadata = meta
    prior.bundle_dir = bundle_dir
    prior = prior.to(device).eval()
    if prior.device.type == "cpu":
        from .prior import use_channels_last

        use_channels_last(prior.net)
    return prior
