"""The pre-log Poisson likelihood (issue 21): value against scipy, gradient against autograd, the curvature bound,
and no NaN for non-positive counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import poisson

from medrecon.recon.poisson import poisson_curvature, poisson_nll, poisson_nll_grad


def _data(seed: int = 0, shape=(2, 6, 9), photons: float = 500.0):
    gen = torch.Generator().manual_seed(seed)
    l = 4.0 * torch.rand(shape, generator=gen, dtype=torch.float64)
    counts = torch.poisson(photons * torch.exp(-l), generator=gen)
    return l, counts


def test_value_is_minus_scipy_log_pmf():
    l, counts = _data()
    for background in (0.0, 3.0):
        mean = 500.0 * np.exp(-l.numpy()) + background
        expected = -poisson.logpmf(counts.numpy(), mean).reshape(2, -1).sum(axis=1)
        np.testing.assert_allclose(poisson_nll(l, counts, 500.0, background).numpy(), expected, rtol=1e-10)


def test_gradient_matches_autograd():
    l, counts = _data(1)
    counts = counts - 2.0  # some negative counts: electronic noise
    for kw in ({}, {"background": 2.0}, {"electronic_std": 3.0}):
        x = l.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(poisson_nll(x, counts, 500.0, **kw).sum(), x)
        torch.testing.assert_close(poisson_nll_grad(l, counts, 500.0, **kw), g, rtol=1e-10, atol=1e-10)


def test_non_positive_counts_give_finite_values():
    l = torch.tensor([[[0.5, 8.0, 12.0]]], dtype=torch.float64)
    counts = torch.tensor([[[0.0, -4.0, -50.0]]], dtype=torch.float64)
    for kw in ({}, {"electronic_std": 2.0}):
        assert torch.isfinite(poisson_nll(l, counts, 1e3, **kw)).all()
        assert torch.isfinite(poisson_nll_grad(l, counts, 1e3, **kw)).all()
    with pytest.raises(ValueError, match="I0"):
        poisson_nll(l, counts, 0.0)


def test_maximum_curvature_majorizes_on_nonnegative_line_integrals():
    """h(l0) + h'(l0) (l - l0) + c/2 (l - l0)^2 >= h(l) for l, l0 >= 0 (Erdogan & Fessler 1999)."""
    photons = 300.0
    counts = torch.tensor([0.0, 3.0, 40.0, 280.0], dtype=torch.float64).view(1, 1, 4)
    grid = torch.linspace(0.0, 7.0, 141, dtype=torch.float64)
    for background in (0.0, 5.0):
        c = poisson_curvature(counts, photons, background)
        assert (c >= 0).all() and (c <= photons).all()
        for l0 in (0.0, 0.7, 2.5, 6.0):
            L0 = torch.full_like(counts, l0)
            h0 = poisson_nll_grad(L0, counts, photons, background)
            v0 = torch.stack([poisson_nll(L0[..., k:k + 1], counts[..., k:k + 1], photons, background) for k in range(4)])
            for l in grid:
                L = torch.full_like(counts, float(l))
                v = torch.stack([poisson_nll(L[..., k:k + 1], counts[..., k:k + 1], photons, background)
                                 for k in range(4)])
                surrogate = v0.flatten() + (h0 * (L - L0)).flatten() + (c / 2 * (L - L0) ** 2).flatten()
                assert (surrogate >= v.flatten() - 1e-9).all(), (background, l0, float(l))
