"""Where priors live and how a name resolves to a bundle.

Shipped defaults sit in ``medrecon/weights/<name>/``; user bundles in the folder named by the
environment variable ``MEDRECON_PRIORS`` (default ``~/.cache/medrecon/priors``). A bare name is
looked up there only; a path (``./my-prior``, ``runs/p``, absolute, ``~``) is used as a bundle folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from medrecon.errors import PriorError

from .bundle import read_metadata

__all__ = ["SHIPPED_DIR", "DEFAULT_PRIORS", "user_prior_dir", "list_priors", "resolve_prior", "prior_summary"]

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_PRIORS = {"mri": "mri-brain", "ct": "ct-body"}


def user_prior_dir() -> Path:
    """The user bundle folder (``$MEDRECON_PRIORS`` or ``~/.cache/medrecon/priors``)."""
    return Path(os.environ.get("MEDRECON_PRIORS", Path.home() / ".cache" / "medrecon" / "priors"))


def _bundle_dirs() -> list[tuple[Path, str]]:
    out = []
    for root, origin in ((SHIPPED_DIR, "shipped"), (user_prior_dir(), "user")):
        if root.is_dir():
            for d in sorted(root.iterdir()):
                if (d / "configs" / "metadata.json").is_file():
                    out.append((d, origin))
    return out


def prior_summary(bundle_dir: Path, origin: str = "path") -> dict:
    """The ``priors list --json`` record of one bundle."""
    meta = read_metadata(bundle_dir)
    tr = meta.get("training", {})
    return {
        "name": meta.get("name", bundle_dir.name),
        "modality": meta["modality"],
        "origin": origin,
        "path": str(bundle_dir),
        "weights": str(bundle_dir / meta["weights"].get("file", "models/model.safetensors")),
        "sha256": meta["weights"].get("sha256"),
        "params": meta.get("params"),
        "training": {"data": tr.get("data", []), "steps": tr.get("steps"), "device": tr.get("device"),
                     "minutes": tr.get("minutes")},
    }


def list_priors() -> list[dict]:
    """Every available prior (shipped first, then user bundles)."""
    out = []
    for d, origin in _bundle_dirs():
        try:
            out.append(prior_summary(d, origin))
        except PriorError:
            continue
    return out


def _is_path(name: str) -> bool:
    """A prior argument is a path only when it looks like one (a separator, ``.``/``~`` start, absolute): a
    bare name is always looked up among the shipped and user priors, so a folder in the working directory
    cannot stand in for ``mri-brain`` (issue 23, defect 3)."""
    return os.sep in name or "/" in name or name.startswith((".", "~")) or Path(name).is_absolute()


def resolve_prior(name_or_path: Optional[str], modality: Optional[str]) -> Path:
    """Bundle folder for a name, a path, or (``None``) the default prior of ``modality``.

    ``modality=None`` accepts a prior of either modality (a name or path is then required).

    Raises:
        PriorError: unknown name, or a prior of the wrong modality.
    """
    name = name_or_path or DEFAULT_PRIORS[modality]
    p = Path(name).expanduser()
    if _is_path(name):
        if not p.is_dir():
            raise PriorError(f"prior folder {p.name} does not exist")
        bundle = p
    else:
        matches = [d for d, _ in _bundle_dirs() if d.name == name]
        if not matches:
            known = ", ".join(d.name for d, _ in _bundle_dirs()) or "none"
            raise PriorError(f"no prior named {name!r} (available: {known}); "
                             "train one with `medrecon train-prior` or pass a bundle folder")
        bundle = matches[0]
    meta = read_metadata(bundle)
    if modality is not None and meta["modality"] != modality:
        raise PriorError(f"prior {bundle.name!r} is a {meta['modality'].upper()} prior but the input is "
                         f"{modality.upper()}; pass --prior with a {modality} prior")
    return bundle
