"""The CPU network paths of issue 22: channels_last weights and bf16 autocast give the fp32 answer."""

from __future__ import annotations

import copy

import pytest
import torch

from medrecon.device import cpu_has_native_bf16
from medrecon.priors import load_prior
from medrecon.priors.prior import run_network, use_channels_last


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread (tests/conftest.py)."""


@pytest.fixture(scope="module")
def tiny():
    """The shipped MRI prior with its network back in the default layout (a fresh network's output layer is
    zero-initialised, so only trained weights make these comparisons able to fail)."""
    prior = load_prior(None, "mri", torch.device("cpu"))
    prior.net.to(memory_format=torch.contiguous_format)
    prior.net._medrecon_channels_last = False
    return prior


def test_channels_last_matches_contiguous(tiny):
    x = torch.randn(3, 2, 40, 24)
    t = torch.tensor([5, 300, 900])
    with torch.no_grad():
        ref = run_network(tiny.net, x, t)
        net = use_channels_last(copy.deepcopy(tiny.net))
        out = run_network(net, x, t)
    assert out.is_contiguous() and out.shape == ref.shape and ref.abs().max() > 0.1
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-4)


def test_channels_last_gradients_match(tiny):
    """DPS differentiates through the network: the input gradient is the same in either layout."""
    x = torch.randn(2, 2, 32, 32)
    t = torch.tensor([100, 600])
    grads = []
    for net in (tiny.net, use_channels_last(copy.deepcopy(tiny.net))):
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(run_network(net, xr, t).square().sum(), xr)
        grads.append(g)
    assert grads[0].abs().max() > 0.1
    assert torch.allclose(grads[0], grads[1], atol=1e-4, rtol=1e-3)


def test_cpu_bf16_autocast_is_close_and_float32(tiny):
    x = torch.randn(2, 2, 32, 32)
    t = torch.tensor([50, 500])  # noisy inputs: the prediction is far from zero
    with torch.no_grad():
        ref = run_network(tiny.net, x, t)
        out = run_network(tiny.net, x, t, torch.bfloat16)
    assert out.dtype == torch.float32
    rel = (out - ref).norm() / ref.norm()
    assert 0 < rel < 0.05  # bf16 (8-bit mantissa) really ran, and stays close


def test_shipped_prior_loads_channels_last_on_cpu():
    prior = load_prior(None, "ct", torch.device("cpu"))
    assert getattr(prior.net, "_medrecon_channels_last", False)
    w = next(p for p in prior.net.parameters() if p.dim() == 4)
    assert w.is_contiguous(memory_format=torch.channels_last)


def test_native_bf16_detection_is_a_bool():
    assert isinstance(cpu_has_native_bf16(), bool)
