"""Patch diffusion priors (PaDIS): exact tiling, positions, training patches, bundles, warm start and DPS gradients."""

from __future__ import annotations

import json

import pytest
import torch

from medrecon.cli import main as cli_main
from medrecon.errors import InputError, PriorError
from medrecon.priors import DiffusionPrior, load_bundle, read_metadata
from medrecon.priors.bundle import save_bundle
from medrecon.priors.patch import (PatchDiffusionPrior, build_prior, check_patch_config, expand_input_channels,
                                   position_channels, tile_eps)
from medrecon.priors.train import TrainConfig, train_prior

TINY = {"channels": [16, 32, 32, 32], "norm_num_groups": 8, "num_head_channels": 32}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this module runs with one torch thread (see tests/conftest.py)."""


def _randomize(prior: DiffusionPrior, seed: int = 0) -> DiffusionPrior:
    """MONAI zero-initialises the UNet's last convolution (an untrained net predicts 0): give every weight a
    random value so that outputs depend on inputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in prior.net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return prior.eval()


@pytest.mark.parametrize("shape", [(2, 2, 64, 64), (1, 1, 37, 50), (3, 2, 17, 129)])
@pytest.mark.parametrize("offset", [(0, 0), (5, 31), (31, 1)])
def test_tiling_is_exact_for_an_identity_denoiser(shape, offset):
    x = torch.randn(shape)
    c = shape[1]
    out = tile_eps(lambda inp, t: inp[:, :c], x, torch.zeros(shape[0], dtype=torch.long), 32, offset,
                   lambda s: torch.full(s, 7.0))
    assert torch.equal(out, x)


@pytest.mark.parametrize("offset", [(0, 0), (3, 29), (31, 31)])
def test_tiled_positions_are_one_global_map_whatever_the_offset(offset):
    """A net that echoes its position channels gives the whole image's position map: no seams, no shifts."""
    h, w = 40, 72
    x = torch.zeros(1, 2, h, w)
    out = tile_eps(lambda inp, t: inp[:, 2:], x, torch.zeros(1, dtype=torch.long), 16, offset, torch.zeros)
    whole = position_channels(torch.tensor([0]), torch.tensor([0]), max(h, w), h, w)[0, :, :h, :w]
    assert torch.allclose(out[0], whole, atol=1e-6)
    # the longer side spans [-1, 1] pixel centres; the image centre is 0
    assert abs(float(out[0, 1, 0, 0]) + 1 - 1 / w) < 1e-5 and abs(float(out[0, 1, 0, -1]) - 1 + 1 / w) < 1e-5


def test_training_patches_are_crops_of_the_padded_image_with_their_positions():
    """Encode each pixel's position in the image itself: inside the image a patch's pixels must equal its
    position channels; outside (the padding) they hold the background."""
    prior = build_prior("mri", TINY, kind="patch", patch={"sizes": [8, 16, 24], "pad": 24})
    s = 40
    pos = position_channels(torch.tensor([0]), torch.tensor([0]), s, s, s)  # (1, 2, s, s)
    gen = torch.Generator().manual_seed(3)
    seen = set()
    for _ in range(12):
        patches, ppos = prior.training_patches(pos.repeat(3, 1, 1, 1), gen)
        p = patches.shape[-1]
        seen.add(p)
        assert patches.shape == ppos.shape and patches.shape[0] == 3 * (24 // p) ** 2
        inside = (ppos.abs() <= 1).all(dim=1, keepdim=True).expand_as(ppos)
        assert torch.allclose(patches[inside], ppos[inside], atol=1e-6)
        assert torch.equal(patches[~inside], torch.zeros_like(patches[~inside]))  # MRI background is 0
    assert seen == {8, 16, 24}


def test_patch_config_is_checked():
    assert check_patch_config({"sizes": [16, 32]}) == {"sizes": [16, 32], "probs": [0.5, 0.5], "pad": 64, "tile": 32}
    for bad in ({"sizes": [12]}, {"sizes": [16], "probs": [0.5]}, {"pad": -1}, {"tile": 48}, {"sizes": "64"}):
        with pytest.raises(InputError):
            check_patch_config(bad)


def test_ct_padding_is_air():
    prior = build_prior("ct", TINY, kind="patch")
    assert float(prior.from_network(prior.background()[None], torch.ones(1, 1)).flatten()[0]) == pytest.approx(-1000.0)


def test_patch_prior_round_trips_through_its_bundle(tmp_path):
    torch.manual_seed(0)
    prior = _randomize(build_prior("mri", TINY, name="tiny-patch", kind="patch", patch={"sizes": [16, 32], "pad": 16}))
    save_bundle(prior, tmp_path / "b", weights_dtype="float32")
    meta = read_metadata(tmp_path / "b")
    assert meta["kind"] == "patch" and meta["patch"] == {"sizes": [16, 32], "probs": [0.5, 0.5], "pad": 16, "tile": 32}
    loaded = load_bundle(tmp_path / "b")
    assert isinstance(loaded, PatchDiffusionPrior) and loaded.patch == prior.patch
    x = torch.randn(2, 2, 40, 48)
    from medrecon.priors.prior import use_channels_last

    use_channels_last(prior.net)  # as a CPU load stores them (issue 22): same layout, same bits
    torch.manual_seed(5)
    a = prior.eps(x, 300)
    torch.manual_seed(5)
    b = loaded.eps(x, 300)
    assert torch.equal(a, b)
    torch.manual_seed(6)
    assert not torch.equal(a, loaded.eps(x, 300))  # another tiling offset moves the seams


def test_old_bundles_without_a_kind_load_as_whole_image_priors(tmp_path):
    prior = DiffusionPrior("ct", TINY, name="old")
    save_bundle(prior, tmp_path / "b", weights_dtype="float32")
    meta_path = tmp_path / "b" / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("kind")  # what bundles written before patch priors hold
    meta_path.write_text(json.dumps(meta))
    loaded = load_bundle(tmp_path / "b")
    assert type(loaded) is DiffusionPrior and loaded.kind == "whole"


@pytest.mark.parametrize("field,value", [("kind", "tiles"), ("patch", {"sizes": [7]}), ("patch", None)])
def test_bad_patch_metadata_is_a_one_line_prior_error(tmp_path, field, value):
    prior = build_prior("mri", TINY, kind="patch")
    save_bundle(prior, tmp_path / "b", weights_dtype="float32")
    meta_path = tmp_path / "b" / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta[field] = value
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PriorError) as err:
        load_bundle(tmp_path / "b")
    assert "\n" not in str(err.value) and field in str(err.value)


def test_a_whole_image_network_starts_the_patch_network_unchanged():
    """Zero weights on the new position channels: the patch net at first is the whole net on each patch."""
    torch.manual_seed(1)
    whole = _randomize(DiffusionPrior("mri", TINY))
    patch = build_prior("mri", TINY, kind="patch").eval()
    patch.net.load_state_dict(expand_input_channels(whole.net.state_dict(), patch.net.state_dict()))
    x, t = torch.randn(3, 2, 32, 32), torch.full((3,), 400)
    pos = position_channels(torch.tensor([-8, 0, 16]), torch.tensor([4, 0, -30]), 32, 64, 64)
    with torch.no_grad():
        assert torch.allclose(patch.net(torch.cat([x, pos], 1), t), whole.net(x, t), atol=1e-5)


def test_dps_gradients_flow_through_the_tiled_denoiser():
    """DPS needs d||y - A x0(x_t)||^2 / d x_t through the tiling (Chung et al. 2023, Algorithm 1)."""
    torch.manual_seed(2)
    prior = _randomize(build_prior("mri", TINY, kind="patch", patch={"sizes": [16], "pad": 16}))
    x_t = torch.randn(2, 2, 40, 40, requires_grad=True)
    target = torch.randn(2, 2, 40, 40)
    loss = ((prior.x0(x_t, 500) - target) ** 2).sum()
    (grad,) = torch.autograd.grad(loss, x_t)
    assert torch.isfinite(grad).all() and float(grad.abs().mean()) > 0
    assert float(grad[..., 15:17, :].abs().mean()) > 0  # pixels next to a seam get gradients too


def test_samplers_run_with_a_patch_prior():
    from medrecon.recon.problems import ct_problem
    from medrecon.sampling import posterior_sample
    from operators import ParallelBeamCT, hu_to_mu

    torch.manual_seed(4)
    prior = _randomize(build_prior("ct", TINY, kind="patch", patch={"sizes": [16], "pad": 16}), seed=4)
    A = ParallelBeamCT((32, 32), 12)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    hu = ((xx ** 2 + yy ** 2 < 0.6).float() - 1.0)[None] * 1000.0
    problem = ct_problem(prior, A, A(hu_to_mu(hu)))
    for method, kw in (("dps", {"steps": 3, "zeta": 1.0}), ("fast", {"steps": 3, "cg_iters": 2, "eta": 0.85}),
                       ("langevin", {"steps": 3, "cg_iters": 2}), ("daps", {"steps": 3, "langevin": 2})):
        res = posterior_sample(method, prior, problem, samples=1, seed=0, **kw)
        assert torch.isfinite(res.mean).all()


def test_train_a_patch_prior_warm_from_a_whole_image_bundle_then_resume(tmp_path, disc_volume):
    torch.manual_seed(0)
    src = _randomize(DiffusionPrior("mri", TINY, name="src"))
    save_bundle(src, tmp_path / "src", training={"steps": 7, "minutes": 1.0}, weights_dtype="float32")
    vols = [disc_volume("a.nii.gz"), disc_volume("b.nii.gz", seed=1)]
    out = tmp_path / "patch"
    cfg = TrainConfig(modality="mri", data=[], out=str(out), size=32, steps=2, batch_size=2, warmup=1, device="cpu",
                      n_samples=1, sample_steps=4, progress=False, weights_dtype="float32",
                      init_from=str(tmp_path / "src"), kind="patch", patch={"sizes": [8, 16], "pad": 8})
    train_prior(cfg, volumes=vols)
    meta = read_metadata(out)
    assert meta["kind"] == "patch" and meta["patch"]["sizes"] == [8, 16] and meta["training"]["total_steps"] == 9
    assert isinstance(load_bundle(out), PatchDiffusionPrior)
    # resuming keeps the checkpoint's kind; asking for another is refused
    train_prior(TrainConfig(**{**cfg.__dict__, "steps": 3, "resume": True, "init_from": None, "kind": None,
                               "patch": {}}), volumes=vols)
    assert read_metadata(out)["training"]["steps"] == 3 and read_metadata(out)["kind"] == "patch"
    with pytest.raises(InputError, match="--kind whole differs"):
        train_prior(TrainConfig(**{**cfg.__dict__, "steps": 4, "resume": True, "kind": "whole"}), volumes=vols)
    # a whole-image prior cannot start from a patch prior
    with pytest.raises(InputError, match="is a patch prior"):
        train_prior(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "w"), "init_from": str(out), "kind": "whole"}),
                    volumes=vols)


def test_train_prior_cli_patch_options_need_kind_patch(tmp_path, capfd):
    rc = cli_main(["train-prior", "--modality", "mri", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                   "--patch-sizes", "16", "32"])
    err = capfd.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "--kind patch" in err[0]
