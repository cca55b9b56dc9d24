"""Optional BART ``pics`` baseline: runs only where the ``bart`` binary is installed (apt install bart)."""

import numpy as np
import pytest
import torch

from medrecon.baselines import cs_wavelet
from medrecon.baselines.bart import bart_available, bart_pics
from medrecon.errors import InputError
from operators import MultiCoilMRI, birdcage_maps, cartesian_mask
from operators.fft import fft2c

needs_bart = pytest.mark.skipif(not bart_available(), reason="needs the bart binary")


def _problem(n=48, coils=4):
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    img = ((xx ** 2 / 0.6 + yy ** 2 / 0.8) < 0.5).float() + 0.5 * ((xx - 0.2) ** 2 + yy ** 2 < 0.05).float()
    img = img.to(torch.complex64)[None]
    maps = birdcage_maps(coils, (n, n)).to(torch.complex64)[None]
    mask = torch.as_tensor(cartesian_mask("random", n, 0.16, 3, seed=0), dtype=torch.bool)
    mask2d = mask[None, :].expand(n, -1)
    k = fft2c(maps * img[:, None]) * mask2d
    return img, maps, mask2d, k


def test_missing_bart_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("MEDRECON_BART", raising=False)
    _, maps, _, k = _problem(16, 2)
    with pytest.raises(InputError, match="bart"):
        bart_pics(k, maps)


@needs_bart
def test_bart_pics_agrees_with_our_cs_wavelet():
    """Same problem, same layout and FFT convention: BART's l1-wavelet image matches ours in shape and scale."""
    img, maps, mask2d, k = _problem()
    ours = cs_wavelet(MultiCoilMRI(maps, mask2d), k, 0.005 * MultiCoilMRI(maps, mask2d).adjoint(k).abs().amax().item(),
                      iters=100).abs()[0]
    theirs = bart_pics(k, maps, lam=0.005, iters=100).abs()[0]
    assert theirs.shape == ours.shape
    corr = np.corrcoef(ours.flatten().numpy(), theirs.flatten().numpy())[0, 1]
    assert corr > 0.98, corr
    assert 0.8 < float(theirs.mean() / ours.mean()) < 1.25  # -S: output in the data's scale
    # and both are far closer to the truth than the zero-filled estimate would be by chance
    err = float((theirs - img[0].abs()).norm() / img[0].abs().norm())
    assert err < 0.2, err
