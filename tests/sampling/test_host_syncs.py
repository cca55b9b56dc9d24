"""No host-device synchronization per step (issue 22): a sampler reads a tensor's value on the host only on the
divergence guard's checked steps (the first, every 10th and the last), so on a GPU the loop runs ahead of the
host. Checked on the CPU by counting every tensor-to-Python conversion during a chain."""

from __future__ import annotations

import pytest
import torch

from medrecon.sampling.common import DivergenceGuard
from medrecon.sampling.daps import daps_chain
from medrecon.sampling.dps import dps_chain
from medrecon.sampling.fast import fast_chain
from medrecon.sampling.langevin import langevin_chain
from medrecon.testing.problems import small_problem

CONVERSIONS = ("__bool__", "item", "__float__", "__int__", "tolist")
CHAINS = {"fast": (fast_chain, {"cg_iters": 3}), "dps": (dps_chain, {}),
          "langevin": (langevin_chain, {"cg_iters": 3}), "daps": (daps_chain, {"langevin": 3, "ode_steps": 1})}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread (tests/conftest.py)."""


def _conversions(monkeypatch, run) -> int:
    count = [0]
    for name in CONVERSIONS:
        orig = getattr(torch.Tensor, name)

        def counted(self, *a, _orig=orig, **k):
            count[0] += 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    try:
        run()
    finally:
        monkeypatch.undo()
    return count[0]


def test_guard_checks_the_first_every_tenth_and_last_step():
    g = DivergenceGuard("x", 25)
    assert [i for i in range(25) if g.due(i)] == [0, 9, 19, 24]


@pytest.mark.parametrize("modality", ["mri", "ct"])
@pytest.mark.parametrize("method", list(CHAINS))
def test_host_reads_follow_the_guard_not_the_steps(method, modality, monkeypatch):
    prior, problem = small_problem(modality)
    chain, kw = CHAINS[method]
    counts = {}
    for steps in (20, 40):
        counts[steps] = _conversions(monkeypatch, lambda: chain(prior, problem, steps=steps,
                                                                generator=torch.Generator().manual_seed(0), **kw))
    due = {n: sum(DivergenceGuard("x", n).due(i) for i in range(n)) for n in (20, 40)}  # 3 and 5
    assert counts[40] < 40, counts  # far fewer than one per step
    # 20 more steps add only the 2 more guard checks' reads (a few each), not one per step
    assert counts[40] - counts[20] <= 4 * (due[40] - due[20]), counts
