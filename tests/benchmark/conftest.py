"""Helpers for the benchmark tests: writing variants of the shipped suite manifests."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

SUITES = Path(__file__).resolve().parents[2] / "medrecon" / "data" / "suites"
PACKAGE_DATA = Path(__file__).resolve().parents[2] / "medrecon" / "data"


def _suite_json(name: str) -> dict:
    return copy.deepcopy(json.loads((SUITES / f"{name}.json").read_text()))


@pytest.fixture
def suite_json():
    """``suite_json(name)``: a shipped suite manifest as a dict (a deep copy, free to edit)."""
    return _suite_json


@pytest.fixture
def write_manifest(tmp_path):
    """Write a manifest dict to ``tmp_path`` and return its path (data_root pinned to the package data)."""

    def _write(doc: dict, name: str = "suite.json", root: Path | None = PACKAGE_DATA) -> Path:
        doc = copy.deepcopy(doc)
        if root is not None:
            doc["data_root"] = str(root)
        path = tmp_path / name
        path.write_text(json.dumps(doc))
        return path

    return _write
