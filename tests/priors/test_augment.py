"""Training augmentations (issue 16): MONAI rotate/elastic/gamma/bias keep images finite and in range."""

import json

import numpy as np
import pytest
import torch

from medrecon.errors import InputError
from medrecon.priors.augment import AUGMENTATIONS, Augmenter, parse_augment
from medrecon.priors.data import SliceSampler, SliceVolume


def _phantom(n: int = 96, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(n, n)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    img[(yy / 0.8) ** 2 + (xx / 0.6) ** 2 < 1] = 1.0
    img[(yy / 0.2) ** 2 + ((xx - 0.2) / 0.1) ** 2 < 1] = 2.0
    return img + 0.05 * torch.rand(n, n, generator=g) * (img > 0)


@pytest.mark.parametrize("names", [(a,) for a in AUGMENTATIONS] + [AUGMENTATIONS])
def test_mri_augmentation_keeps_images_finite_and_in_range(names):
    img = _phantom()
    aug = Augmenter(names, "mri", 0.0, seed=3)
    changed = 0
    for _ in range(30):
        out = aug(img)
        assert out.shape == img.shape and out.dtype == img.dtype and torch.isfinite(out).all()
        assert out.min() >= 0  # a magnitude
        assert out.max() <= 1.5 * img.max()  # the bias field's measured extreme is 1.45x
        changed += bool((out - img).abs().max() > 1e-4)
    assert 5 <= changed <= 25  # each option is applied to about half the images, never to none or all


@pytest.mark.parametrize("names", [("rotate",), ("elastic",), ("rotate", "elastic")])
def test_ct_geometry_pads_with_air_and_keeps_hu_in_range(names):
    hu = _phantom() * 1000 - 1000  # air -1000 outside, tissue 0..1000 HU inside
    aug = Augmenter(names, "ct", -1000.0, seed=5)
    for _ in range(20):
        out = aug(hu)
        assert torch.isfinite(out).all()
        assert out.min() >= -1000.0 and out.max() <= hu.max() + 1e-3
        # the corners stay air: padding is the background, not 0 HU (water)
        assert out[0, 0] == -1000.0 and out[-1, -1] == -1000.0


def test_parse_augment_errors_are_one_line():
    assert parse_augment("bias,rotate", "mri") == ("rotate", "bias")
    assert parse_augment("none", "ct") == () and parse_augment(None, "mri") == ()
    with pytest.raises(InputError, match="unknown option") as e:
        parse_augment("rotate,mixup", "mri")
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="MRI only"):
        parse_augment("rotate,gamma", "ct")


def test_the_slice_sampler_applies_augmentation_and_stays_reproducible():
    vol = SliceVolume("phantom", np.stack([_phantom(seed=i).numpy() for i in range(4)]).astype(np.float32), 1.0,
                      [{"file": "phantom", "sha256": "0" * 64, "licence": "test"}])
    a = SliceSampler([vol], "mri", size=64, pixel_mm_range=(1.0, 1.0), seed=2, augment=("rotate", "elastic"))
    b = SliceSampler([vol], "mri", size=64, pixel_mm_range=(1.0, 1.0), seed=2, augment=("rotate", "elastic"))
    plain = SliceSampler([vol], "mri", size=64, pixel_mm_range=(1.0, 1.0), seed=2)
    xa, xb, xp = a.batch(6), b.batch(6), plain.batch(6)
    assert xa.shape == (6, 64, 64) and xa.is_complex() and torch.isfinite(xa).all()
    torch.testing.assert_close(xa, xb)  # same seed, same batch
    assert not torch.allclose(xa.abs(), xp.abs())


def test_train_prior_refuses_a_bad_augmentation_in_one_line(tmp_path, capfd):
    from medrecon.cli import main as cli_main

    code = cli_main(["train-prior", "--modality", "ct", "--data", str(tmp_path / "missing.nii.gz"),
                     "--out", str(tmp_path / "b"), "--augment", "bias"])
    _, err = capfd.readouterr()
    assert code == 2 and err.count("\n") == 1 and "MRI only" in err
    assert not (tmp_path / "b").exists()


@pytest.mark.filterwarnings("error:Converting a tensor with requires_grad")  # finalize's evaluation runs without autograd
def test_augmentation_is_recorded_in_the_bundle(tmp_path):
    from medrecon.priors.train import TrainConfig, train_prior

    vols = [SliceVolume(f"v{k}", np.stack([_phantom(48, seed=i + k).numpy() for i in range(3)]).astype(np.float32),
                        1.0, [{"file": f"v{k}", "sha256": "0" * 64, "licence": "test"}]) for k in range(3)]
    cfg = TrainConfig(modality="mri", data=[], out=str(tmp_path / "p"), size=32, steps=2, batch_size=2,
                      device="cpu", network={"channels": [16, 32, 32, 32], "norm_num_groups": 8,
                                             "num_head_channels": 32},
                      n_samples=1, sample_steps=2, progress=False, warmup=1, augment=("gamma", "rotate"))
    out = train_prior(cfg, volumes=vols)
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    assert meta["training"]["augment"] == ["rotate", "gamma"]
    assert "rotate, gamma (MONAI)" in (out / "docs" / "README.md").read_text()


def test_model_card_sample_options(tmp_path, capfd):
    """--n-samples/--sample-steps shorten a CPU run's finalization; their defaults are the library's."""
    from medrecon.cli import main as cli_main
    from medrecon.cli.main import _load_extra_commands, build_parser
    from medrecon.priors.finalize import SAMPLE_STEPS

    _load_extra_commands()
    a = build_parser().parse_args(["train-prior", "--modality", "mri", "--data", "x", "--out", "o"])
    assert (a.n_samples, a.sample_steps) == (4, SAMPLE_STEPS)
    with pytest.raises(SystemExit) as e:
        cli_main(["train-prior", "--modality", "mri", "--data", "x", "--out", str(tmp_path / "o"),
                  "--sample-steps", "0"])
    _, err = capfd.readouterr()
    assert e.value.code == 2 and err.count("\n") == 1 and "at least 1" in err
