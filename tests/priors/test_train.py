"""Prior training: a tiny run with checkpoint and resume, the train-prior CLI's errors, and the slice sampler."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from medrecon.cli import main as cli_main
from medrecon.errors import InputError
from medrecon.priors import load_bundle, read_metadata
from medrecon.priors.data import SliceSampler, SliceVolume, load_training_volumes, split_heldout
from medrecon.priors.train import TrainConfig, train_prior

TINY = {"channels": [16, 32, 32, 32], "norm_num_groups": 8, "num_head_channels": 32}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this module runs with one torch thread (see tests/conftest.py)."""


def _volume(name: str, modality: str, n: int = 4, size: int = 40, pixel_mm: float = 1.0, seed: int = 0) -> SliceVolume:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    disc = (xx ** 2 + yy ** 2 < 0.16).astype(np.float32)
    slices = np.stack([disc * (1 + 0.2 * rng.random()) for _ in range(n)]).astype(np.float32)
    if modality == "ct":
        slices = slices * 1040.0 - 1000.0  # air outside, ~40 HU inside
    return SliceVolume(name, slices, pixel_mm, [{"file": name, "sha256": "0" * 64, "licence": "test"}])


# ----------------------------------------------------------------------------- training and resume
def _loss_steps(out):
    with open(out / "training" / "loss.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "loss", "loss_ema", "lr", "minutes"]
    assert all(r[0] != "step" for r in rows[1:])  # one header, even after resuming
    return [int(r[0]) for r in rows[1:]]


def test_train_checkpoint_and_resume_continue_the_step_count(tmp_path):
    out = tmp_path / "tiny-mri"
    vols = [_volume("a.nii.gz", "mri", pixel_mm=1.2), _volume("b.nii.gz", "mri", pixel_mm=1.2, seed=1)]
    cfg = TrainConfig(modality="mri", data=[], out=str(out), size=32, steps=3, batch_size=2, warmup=2,
                      device="cpu", checkpoint_every=2, network=TINY, n_samples=1, sample_steps=10, progress=False,
                      weights_dtype="float32")
    assert train_prior(cfg, volumes=vols) == out
    assert _loss_steps(out) == [3]
    ck = torch.load(out / "training" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 3
    meta = read_metadata(out)
    assert meta["training"]["steps"] == 3 and meta["training"]["device"] == "cpu"
    assert meta["training"]["data"] == [v.provenance[0] for v in vols]
    first = load_bundle(out)

    cfg.steps, cfg.resume = 5, True
    train_prior(cfg, volumes=vols)
    assert _loss_steps(out) == [3, 5]
    assert torch.load(out / "training" / "checkpoint.pt", weights_only=True)["step"] == 5
    meta = read_metadata(out)
    assert meta["training"]["steps"] == 5
    assert meta["network"]["channels"] == TINY["channels"] and meta["modality"] == "mri"
    prior = load_bundle(out)
    assert prior.name == "tiny-mri" and prior.channels == 2
    changed = any(not torch.equal(a, b) for a, b in zip(first.net.state_dict().values(),
                                                          prior.net.state_dict().values()))
    assert changed  # the two extra steps trained something
    x = torch.randn(1, 2, 24, 24)
    with torch.no_grad():
        assert torch.isfinite(prior.eps(x, 500)).all()
    assert (out / "docs" / "README.md").is_file() and (out / "docs" / "samples.png").is_file()


# ----------------------------------------------------------------------------- train-prior CLI errors
def _cli_error(argv, capfd):
    code = cli_main(argv)
    captured = capfd.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("medrecon: error:"), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def _train_args(tmp_path, data, modality="mri"):
    return ["train-prior", "--modality", modality, "--data", str(data), "--out", str(tmp_path / "bundle"),
            "--steps", "1", "--size", "16", "--batch-size", "1", "--device", "cpu",
            "--network", '{"channels": [16, 32, 32, 32], "norm_num_groups": 8, "num_head_channels": 32}']


def test_train_prior_cli_empty_folder(tmp_path, capfd):
    (tmp_path / "empty").mkdir()
    msg = _cli_error(_train_args(tmp_path, tmp_path / "empty"), capfd)
    assert "empty" in msg
    assert not (tmp_path / "bundle" / "configs").exists()


def test_train_prior_cli_missing_path(tmp_path, capfd):
    msg = _cli_error(_train_args(tmp_path, tmp_path / "nope.nii.gz"), capfd)
    assert "does not exist" in msg


def _ct_dicom_series(folder):
    from medrecon.io.dicom_writer import write_dicom_series

    hu = np.full((2, 24, 24), -1000.0)
    hu[:, 6:18, 6:18] = 40.0
    write_dicom_series(folder, hu, np.diag([2.0, 1.5, 1.5, 1.0]), "CT", None, "test CT", "test")
    return folder


def test_train_prior_cli_ct_data_for_mri_prior(tmp_path, capfd):
    series = _ct_dicom_series(tmp_path / "ct_series")
    msg = _cli_error(_train_args(tmp_path, series, "mri"), capfd)
    assert "CT volume" in msg and "MRI" in msg
    # The same series is fine training data for a CT prior.
    vols = load_training_volumes([series], "ct")
    assert len(vols) == 1 and vols[0].slices.shape[0] == 2


def test_load_training_volumes_errors(tmp_path):
    with pytest.raises(InputError, match="no training data"):
        load_training_volumes([], "ct")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not an npz")
    with pytest.raises(InputError):
        load_training_volumes([junk], "ct")


# ----------------------------------------------------------------------------- SliceSampler
def test_sampler_batches_shape_and_dtype():
    mri = SliceSampler([_volume("m", "mri")], "mri", size=32, pixel_mm_range=(0.9, 1.8), seed=0)
    b = mri.batch(3)
    assert b.shape == (3, 32, 32) and b.dtype == torch.complex64
    assert float(b.abs().amax()) > 0.5 and float(b.abs().amax()) < 2.0
    assert float(b.imag.abs().amax()) > 0  # a smooth random phase was applied
    ct = SliceSampler([_volume("c", "ct")], "ct", size=32, pixel_mm_range=(1.4, 3.0), seed=0)
    b = ct.batch(2)
    assert b.shape == (2, 32, 32) and b.dtype == torch.float32
    assert float(b.amin()) < -900 and float(b.amax()) < 200


def test_sampler_is_seeded():
    vols = [_volume("a", "ct"), _volume("b", "ct", seed=1)]
    a = SliceSampler(vols, "ct", size=24, pixel_mm_range=(1.4, 3.0), seed=5).batch(4)
    b = SliceSampler(vols, "ct", size=24, pixel_mm_range=(1.4, 3.0), seed=5).batch(4)
    c = SliceSampler(vols, "ct", size=24, pixel_mm_range=(1.4, 3.0), seed=6).batch(4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    m1 = SliceSampler([_volume("m", "mri")], "mri", size=24, seed=3).batch(2)
    m2 = SliceSampler([_volume("m", "mri")], "mri", size=24, seed=3).batch(2)
    assert torch.equal(m1, m2)


def _checkerboard(pixel_mm: float, size: int = 48) -> SliceVolume:
    board = (np.indices((size, size)).sum(0) % 2).astype(np.float32) * 2000.0 - 1000.0  # -1000 / +1000 HU
    return SliceVolume("board", np.stack([board, board]), pixel_mm)


def test_sampler_never_upsamples():
    """A coarse source is only cropped: each crop holds exactly two values, no interpolated ones."""
    coarse = SliceSampler([_checkerboard(4.0)], "ct", size=32, pixel_mm_range=(1.4, 3.0), seed=0)
    for img in coarse.batch(6):
        vals = torch.unique(img)
        assert len(vals) == 2 and float(vals[0]) == -1000.0
        assert (img[1:] != img[:-1]).all() and (img[:, 1:] != img[:, :-1]).all()  # still a 1-pixel checkerboard
    # A fine source is zoomed towards the target pixel size (antialiased), which blends the board.
    fine = SliceSampler([_checkerboard(0.5)], "ct", size=16, pixel_mm_range=(1.4, 3.0), seed=0)
    assert all(len(torch.unique(img)) > 2 for img in fine.batch(3))


def test_sampler_pads_small_slices_with_background():
    small = SliceVolume("s", np.full((1, 10, 10), 40.0, dtype=np.float32), 2.0)
    img = SliceSampler([small], "ct", size=20, pixel_mm_range=(1.4, 3.0), seed=0).batch(1)[0]
    assert img.shape == (20, 20)
    assert int((img == -1000.0).sum()) == 400 - 100
    with pytest.raises(InputError):
        SliceSampler([], "ct")


def test_split_heldout_is_by_volume_and_seeded():
    vols = [_volume(f"v{i}", "ct", n=2 + i) for i in range(10)]
    train, held = split_heldout(vols, fraction=0.2, seed=0)
    assert len(held) == 2 and len(train) == 8
    assert {v.name for v in train}.isdisjoint({v.name for v in held})
    assert sorted(v.name for v in train + held) == sorted(v.name for v in vols)
    assert all(any(h is v for v in vols) for h in held)  # whole volumes, never slices
    assert [v.name for v in split_heldout(vols, 0.2, seed=0)[1]] == [v.name for v in held]
    assert split_heldout(vols[:2], 0.5) == (vols[:2], [])  # too few volumes: nothing held out
    assert split_heldout(vols, 0.0) == (vols, [])


@pytest.mark.parametrize("modality", ["mri", "ct"])
def test_slice_cache_round_trip_float16_and_8bit(tmp_path, modality):
    from medrecon.priors.data import SliceVolume, load_training_volumes, save_slice_cache

    rng = np.random.default_rng(0)
    lo, hi = (0.0, 1.6) if modality == "mri" else (-1000.0, 1800.0)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(5, 48, 40)), 1), 2)
    x = (lo + (smooth - smooth.min()) / np.ptp(smooth) * (hi - lo)).astype(np.float32)
    vols = [SliceVolume("a.nii.gz", x, 1.2, [{"file": "a.nii.gz", "sha256": "0" * 64, "licence": "CC0"}])]
    save_slice_cache(vols, tmp_path / "c16.npz", modality)
    save_slice_cache(vols, tmp_path / "c8.npz", modality, bits=8)
    v16, v8 = (load_training_volumes([tmp_path / f"c{b}.npz"], modality)[0] for b in (16, 8))
    assert v8.name == "a.nii.gz" and v8.pixel_mm == 1.2 and v8.provenance == vols[0].provenance
    assert np.array_equal(v16.slices, x.astype(np.float16).astype(np.float32))
    assert v8.slices.shape == x.shape and v8.slices.dtype == np.float32
    per_slice_range = (x.max(axis=(1, 2)) - x.min(axis=(1, 2)))[:, None, None]
    err = np.abs(v8.slices - x)
    assert np.all(err <= per_slice_range / 510 * 1.001 + 1e-6)  # half a quantization step
    assert np.allclose(v8.slices.min(axis=(1, 2)), x.min(axis=(1, 2)), atol=1e-4 * (hi - lo))
    assert (tmp_path / "c8.npz").stat().st_size < 0.7 * (tmp_path / "c16.npz").stat().st_size
    with pytest.raises(ValueError, match="bits must be 8 or 16"):
        save_slice_cache(vols, tmp_path / "c4.npz", modality, bits=4)


# ----------------------------------------------------------------------------- warm start (--init-from)
def _tiny_cfg(out, modality="mri", **kw):
    return TrainConfig(modality=modality, data=[], out=str(out), size=32, batch_size=2, warmup=2, device="cpu",
                       checkpoint_every=100, network=kw.pop("network", TINY), n_samples=1, sample_steps=10,
                       progress=False, weights_dtype="float32", **kw)


def test_warm_start_begins_at_the_source_weights_and_records_totals(tmp_path):
    vols = [_volume("a.nii.gz", "mri", pixel_mm=1.2), _volume("b.nii.gz", "mri", pixel_mm=1.2, seed=1)]
    src_dir = tmp_path / "src"
    train_prior(_tiny_cfg(src_dir, steps=3), volumes=vols)
    src = load_bundle(src_dir)
    src_meta = read_metadata(src_dir)

    # Zero new steps: the new bundle is the source, bit for bit, and says where it came from.
    same = tmp_path / "same"
    train_prior(_tiny_cfg(same, steps=0, network={}, init_from=str(src_dir)), volumes=vols)
    copy_ = load_bundle(same)
    assert all(torch.equal(a, b) for a, b in zip(src.net.state_dict().values(), copy_.net.state_dict().values()))
    meta = read_metadata(same)
    assert meta["network"]["channels"] == TINY["channels"]  # the source's network, though none was asked for
    assert meta["training"]["init_from"]["sha256"] == src_meta["weights"]["sha256"]
    assert meta["training"]["init_from"]["steps"] == 3 and meta["training"]["total_steps"] == 3
    assert "warm start: from `src`" in (same / "docs" / "README.md").read_text()

    # Two more steps, resumed once: training moves on and the totals add up.
    more = tmp_path / "more"
    cfg = _tiny_cfg(more, steps=1, init_from=str(src_dir))
    train_prior(cfg, volumes=vols)
    cfg.steps, cfg.resume, cfg.init_from = 2, True, None  # the checkpoint remembers the source
    train_prior(cfg, volumes=vols)
    meta = read_metadata(more)
    assert meta["training"]["steps"] == 2 and meta["training"]["total_steps"] == 5
    assert meta["training"]["init_from"]["name"] == "src"
    moved = load_bundle(more)
    assert any(not torch.equal(a, b) for a, b in zip(src.net.state_dict().values(), moved.net.state_dict().values()))


def test_warm_start_refuses_another_network_or_modality(tmp_path):
    from medrecon.errors import PriorError

    vols = [_volume("a.nii.gz", "mri", pixel_mm=1.2), _volume("b.nii.gz", "mri", pixel_mm=1.2, seed=1)]
    src_dir = tmp_path / "src"
    train_prior(_tiny_cfg(src_dir, steps=1), volumes=vols)
    other = {**TINY, "channels": [16, 32, 32, 64]}
    with pytest.raises(InputError, match="--network differs .* in channels"):
        train_prior(_tiny_cfg(tmp_path / "x", steps=1, network=other, init_from=str(src_dir)), volumes=vols)
    ct = [_volume("c.nii.gz", "ct", pixel_mm=2.0), _volume("d.nii.gz", "ct", pixel_mm=2.0, seed=1)]
    with pytest.raises(PriorError, match="MRI prior"):
        train_prior(_tiny_cfg(tmp_path / "y", "ct", steps=1, init_from=str(src_dir)), volumes=ct)
    with pytest.raises(PriorError, match="no prior named"):
        train_prior(_tiny_cfg(tmp_path / "z", steps=1, init_from="no-such-prior"), volumes=vols)
    assert not any((tmp_path / d / "configs").exists() for d in ("x", "y", "z"))


# ----------------------------------------------------------------------------- training pixel size (--pixel-mm)
def test_pixel_mm_is_used_recorded_and_inherited_by_a_warm_start(tmp_path, monkeypatch):
    import medrecon.priors.train as train_mod

    used = []

    class Recording(SliceSampler):
        def __init__(self, volumes, modality, size, pixel_mm_range, **kw):
            used.append(tuple(pixel_mm_range))
            super().__init__(volumes, modality, size, pixel_mm_range, **kw)

    monkeypatch.setattr(train_mod, "SliceSampler", Recording)
    vols = [_volume("a.nii.gz", "mri", pixel_mm=1.2), _volume("b.nii.gz", "mri", pixel_mm=1.2, seed=1)]
    train_prior(_tiny_cfg(tmp_path / "default", steps=1), volumes=vols)
    assert used == [(0.9, 1.8)] and read_metadata(tmp_path / "default")["training"]["pixel_mm_range"] == [0.9, 1.8]

    used.clear()
    train_prior(_tiny_cfg(tmp_path / "coarse", steps=1, pixel_mm=(4.0, 5.0)), volumes=vols)
    assert used == [(4.0, 5.0)]
    assert read_metadata(tmp_path / "coarse")["training"]["pixel_mm_range"] == [4.0, 5.0]
    assert "[4.0, 5.0] mm pixels" in (tmp_path / "coarse" / "docs" / "README.md").read_text()

    used.clear()  # a warm start keeps the source's range unless told otherwise
    train_prior(_tiny_cfg(tmp_path / "warm", steps=1, network={}, init_from=str(tmp_path / "coarse")), volumes=vols)
    assert used == [(4.0, 5.0)]
    train_prior(_tiny_cfg(tmp_path / "warm2", steps=1, network={}, init_from=str(tmp_path / "coarse"),
                          pixel_mm=(2.0, 3.0)), volumes=vols)
    assert read_metadata(tmp_path / "warm2")["training"]["pixel_mm_range"] == [2.0, 3.0]


def test_eval_pixel_mm_keeps_the_fixed_size_when_the_range_covers_it():
    from medrecon.priors.finalize import EVAL_PIXEL_MM, eval_pixel_mm

    assert eval_pixel_mm("mri", (0.9, 1.8)) == EVAL_PIXEL_MM["mri"]
    assert eval_pixel_mm("mri", (4.0, 5.0)) == (4.0, 4.0)
    assert eval_pixel_mm("ct", (0.5, 1.0)) == (0.5, 0.5)


def test_load_training_volumes_downsamples_to_the_finest_pixel_size(tmp_path):
    import nibabel as nib

    data = np.zeros((64, 64, 3), dtype=np.float32)
    data[8:56, 8:56] = 1.0 + np.random.default_rng(0).random((48, 48, 3))
    path = tmp_path / "fine.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.5, 3.0, 1.0])), str(path))
    default = load_training_volumes([path], "mri")[0]  # MRI default: down to 0.9 mm
    assert default.slices.shape[1:] == (36, 36) and default.pixel_mm == pytest.approx(64 * 0.5 / 36)
    kept = load_training_volumes([path], "mri", finest_mm=0.5)[0]
    assert kept.slices.shape[1:] == (64, 64) and kept.pixel_mm == 0.5


@pytest.mark.parametrize("bad", [["2", "1"], ["0", "1"], ["-1", "2"]])
def test_train_prior_cli_rejects_a_bad_pixel_range(tmp_path, capfd, bad):
    data = tmp_path / "empty"
    data.mkdir()
    msg = _cli_error(_train_args(tmp_path, data) + ["--pixel-mm", *bad], capfd)
    assert "--pixel-mm" in msg


# ----------------------------------------------------------------------------- resuming with other settings
def test_resume_rebuilds_the_checkpoints_model_and_refuses_another_network(tmp_path):
    vols = [_volume("a.nii.gz", "mri", pixel_mm=1.2), _volume("b.nii.gz", "mri", pixel_mm=1.2, seed=1)]
    out = tmp_path / "run"
    train_prior(_tiny_cfg(out, steps=2, pixel_mm=(2.0, 3.0)), volumes=vols)
    # No --network and no --pixel-mm on resume: the checkpoint says what the run trains.
    train_prior(_tiny_cfg(out, steps=3, network={}, resume=True), volumes=vols)
    meta = read_metadata(out)
    assert meta["network"]["channels"] == TINY["channels"] and meta["training"]["steps"] == 3
    assert meta["training"]["pixel_mm_range"] == [2.0, 3.0]

    other = {**TINY, "channels": [16, 32, 32, 64]}
    with pytest.raises(InputError, match="differs in channels from the run being resumed"):
        train_prior(_tiny_cfg(out, steps=4, network=other, resume=True), volumes=vols)

    # A checkpoint written before it recorded its model: a mismatch is still one clear error.
    ck_path = out / "training" / "checkpoint.pt"
    ck = torch.load(ck_path, weights_only=True)
    ck.pop("arch")
    torch.save(ck, ck_path)
    with pytest.raises(InputError, match="holds another network"):
        train_prior(_tiny_cfg(out, steps=4, network=other, resume=True), volumes=vols)
    assert read_metadata(out)["training"]["steps"] == 3  # the bundle was left as it was
