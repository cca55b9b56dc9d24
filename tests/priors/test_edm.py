"""EDM preconditioning (Karras et al. 2022) as a prior's training objective: the conversion to the samplers'
noise prediction, the training noise levels, the bundle round trip and the train-prior errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from medrecon.cli import main as cli_main
from medrecon.errors import InputError, PriorError
from medrecon.priors import DiffusionPrior, load_bundle, save_bundle
from medrecon.priors.patch import build_prior
from medrecon.priors.prior import EDM_P_MEAN, EDM_P_STD
from medrecon.priors.train import TrainConfig, _diffusion_loss, edm_timesteps, train_prior

TINY = {"channels": [16, 32, 32, 32], "norm_num_groups": 8, "num_head_channels": 32}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this module runs with one torch thread (see tests/conftest.py)."""


def _edm(modality: str = "mri", sigma_data: float = 0.5, kind: str = "whole") -> DiffusionPrior:
    torch.manual_seed(0)
    prior = build_prior(modality, TINY, {"prediction": "edm", "sigma_data": sigma_data}, kind=kind).eval()
    with torch.no_grad():  # a non-trivial network output (MONAI zero-initialises the last convolution)
        for p in prior.net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return prior


def test_eps_of_an_edm_prior_gives_the_preconditioned_denoiser_as_tweedie():
    """x0_from_eps(eps) must be D = c_skip y + c_out F(c_in y), with y = x_t / sqrt(abar) (Karras Table 1)."""
    prior = _edm()
    x_t = torch.randn(3, 2, 32, 32)
    tt = torch.tensor([5, 300, 900])
    with torch.no_grad():
        x0 = prior.x0_from_eps(x_t, tt, prior.eps(x_t, tt))
        abar = prior.alphas_cumprod[tt].view(-1, 1, 1, 1)
        sig = ((1 - abar) / abar).sqrt()
        sd = 0.5
        y = x_t / abar.sqrt()
        f = prior.net(y / (sig ** 2 + sd ** 2).sqrt(), tt)
        d = sd ** 2 / (sig ** 2 + sd ** 2) * y + sig * sd / (sig ** 2 + sd ** 2).sqrt() * f
    assert torch.allclose(x0, d, rtol=1e-4, atol=1e-4)


def test_edm_with_unit_sigma_data_is_v_prediction():
    """With sigma_data = 1 the network sees x_t itself and eps = sqrt(1 - abar) x_t - sqrt(abar) F, i.e. F = -v
    of Salimans & Ho (2022)."""
    prior = _edm(sigma_data=1.0)
    x_t = torch.randn(2, 2, 32, 32)
    tt = torch.tensor([100, 700])
    with torch.no_grad():
        f = prior.net(x_t, tt)
        abar = prior.alphas_cumprod[tt].view(-1, 1, 1, 1)
        expected = (1 - abar).sqrt() * x_t - abar.sqrt() * f
        assert torch.allclose(prior.eps(x_t, tt), expected, rtol=1e-4, atol=1e-5)


def test_the_edm_loss_is_the_denoiser_error_with_karras_weighting():
    """|F - target|^2 = lambda(sigma) |D - x0|^2 with lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2."""
    prior = _edm(sigma_data=0.4)
    x0 = torch.randn(4, 2, 32, 32) * 0.3
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        loss = _diffusion_loss(prior, prior.net, x0, g, autocast=False)
        g = torch.Generator().manual_seed(3)  # the same draws again: timesteps, then noise
        t = edm_timesteps(prior, 4, g)
        noise = torch.randn(x0.shape, generator=g)
        x_t = prior.scheduler.add_noise(x0, noise, t)
        d = prior.x0_from_eps(x_t, t, prior.eps(x_t, t))
        abar = prior.alphas_cumprod[t].view(-1, 1, 1, 1)
        s2 = (1 - abar) / abar
        lam = (s2 + 0.16) / (s2 * 0.16)
        expected = (lam * (d - x0) ** 2).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-3)


def test_edm_training_noise_levels_follow_the_log_normal():
    prior = _edm()
    t = edm_timesteps(prior, 20000, torch.Generator().manual_seed(0))
    assert t.min() >= 0 and t.max() <= prior.num_timesteps - 1
    abar = prior.alphas_cumprod[t].double()
    log_sig = 0.5 * torch.log((1 - abar) / abar)
    assert float(log_sig.median()) == pytest.approx(EDM_P_MEAN, abs=0.05)
    assert float(log_sig.std()) == pytest.approx(EDM_P_STD, abs=0.08)  # the schedule's range clips a little


def test_a_patch_prior_takes_the_edm_objective_through_its_tiling():
    prior = _edm(kind="patch")
    x_t = torch.randn(1, 2, 64, 64)
    with torch.no_grad():
        eps = prior.eps(x_t, 400)
    assert eps.shape == x_t.shape and torch.isfinite(eps).all()


def test_an_edm_bundle_round_trips_and_old_bundles_stay_epsilon(tmp_path):
    prior = _edm(modality="ct", sigma_data=0.37)
    out = save_bundle(prior, tmp_path / "edm-ct")
    back = load_bundle(out)
    assert back.prediction == "edm" and back.sigma_data == pytest.approx(0.37)
    x_t = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(back.eps(x_t, 250), prior.eps(x_t, 250), atol=1e-5)
    assert load_bundle("medrecon/weights/ct-body").prediction == "epsilon"

    meta_path = out / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["schedule"]["prediction"] = "v-magic"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PriorError, match="schedule.prediction"):
        load_bundle(out)


def test_train_an_edm_prior_and_refuse_to_switch_objective(tmp_path, disc_volume):
    vols = [disc_volume("a.nii.gz"), disc_volume("b.nii.gz", seed=1)]
    cfg = TrainConfig(modality="mri", data=[], out=str(tmp_path / "edm"), size=32, steps=2, batch_size=2, warmup=1,
                      device="cpu", network=TINY, n_samples=1, sample_steps=5, progress=False,
                      weights_dtype="float32", objective="edm")
    out = train_prior(cfg, volumes=vols)
    prior = load_bundle(out)
    assert prior.prediction == "edm" and 0 < prior.sigma_data < 2 and math.isfinite(prior.sigma_data)
    # a warm start keeps the source's objective; asking for another is a one-line error
    warm = TrainConfig(modality="mri", data=[], out=str(tmp_path / "warm"), size=32, steps=1, batch_size=2,
                       device="cpu", n_samples=1, sample_steps=5, progress=False, init_from=str(out),
                       objective="epsilon")
    with pytest.raises(InputError, match="--objective epsilon differs"):
        train_prior(warm, volumes=vols)


def test_train_prior_cli_rejects_an_unknown_objective(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["train-prior", "--modality", "mri", "--data", "x.npz", "--out", "o", "--objective", "v"])
    assert exc.value.code != 0
    assert "--objective" in capsys.readouterr().err
