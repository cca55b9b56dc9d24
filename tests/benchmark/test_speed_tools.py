"""The speed tools of issue 22: the exclusive clock's arithmetic, and the profile of a real sampler run."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import profile_samplers as ps  # noqa: E402


def test_exclusive_clock_nesting():
    """A region's time excludes its children's; nothing is counted outside a root region."""
    clock = ps.ExclusiveClock(cuda=False)
    with clock.region("network"):  # no root open: not counted
        time.sleep(0.01)
    assert clock.total == {}
    with clock.region("other", root=True):
        time.sleep(0.02)
        with clock.region("cg"):
            time.sleep(0.02)
            with clock.region("operator"):
                time.sleep(0.03)
    assert clock.total["operator"] == pytest.approx(0.03, abs=0.015)
    assert clock.total["cg"] == pytest.approx(0.02, abs=0.015)
    assert clock.total["other"] == pytest.approx(0.02, abs=0.015)
    assert clock.calls == {"other": 1, "cg": 1, "operator": 1}


def test_profile_of_the_fast_sampler_adds_up(one_thread):
    """Two fast-sampler steps on the demo's MRI input: the network dominates, the parts add up to the chain,
    and the patches are removed afterwards."""
    from operators.base import LinearOperator

    fwd = LinearOperator.forward
    (row,) = ps.profile(["fast"], ["mri"], "cpu", steps=2, repeat=1)
    assert LinearOperator.forward is fwd
    assert row["steps"] == 2 and row["calls"]["network"] == 2
    assert sum(row["ms_per_step"].values()) == pytest.approx(row["step_ms"], rel=0.01)
    assert row["percent"]["network"] > 50 and row["ms_per_step"]["operator"] > 0
    assert row["ms_per_step"]["backward"] == 0  # the fast sampler never differentiates through the network
