"""``--compile`` (issue 22's GPU path, checked for correctness on the CPU): the compiled network gives the eager
network's answers, inside a sampler too, and is made once per prior."""

from __future__ import annotations

import pytest
import torch

from medrecon.priors import DiffusionPrior
from medrecon.sampling import posterior_sample

TINY = {"channels": [16, 32, 32, 32], "norm_num_groups": 8, "num_head_channels": 32}


@pytest.fixture(scope="module")
def prior():
    torch.manual_seed(0)
    p = DiffusionPrior("ct", TINY).eval()
    with torch.no_grad():  # a fresh UNet's output layer is zero: give every weight a value, so outputs can differ
        for w in p.net.parameters():
            w.normal_(0.0, 0.05)
    return p


@pytest.mark.slow
def test_compiled_network_matches_eager_and_is_cached(prior, one_thread):
    from medrecon.recon.problems import ct_problem
    from operators import ParallelBeamCT

    view = prior.at_precision(None, compiled=True)
    assert view is not prior and prior.at_precision(None) is prior
    assert prior.compiled_net() is prior.compiled_net()  # compiled once per prior
    assert not any("compiled" in k for k in prior.state_dict())  # not a submodule: bundles stay as they were
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        ref, got = prior.eps(x, 400), view.eps(x, 400)
    assert ref.abs().max() > 1e-3
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-3)
    A = ParallelBeamCT((32, 32), 12)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    problem = ct_problem(prior, A, A(0.019 * ((xx ** 2 + yy ** 2) < 0.6).float()[None]))
    a = posterior_sample("fast", prior, problem, seed=1, steps=3, cg_iters=3)
    b = posterior_sample("fast", view, problem, seed=1, steps=3, cg_iters=3)
    torch.testing.assert_close(b.mean, a.mean, atol=1e-5, rtol=1e-3)
