"""Prior training under torchrun: two CPU ranks on the gloo backend, and resume after a torchrun restart."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
from scalekit import REPO, SUB_ENV, TINY_NET

from medrecon.priors import load_bundle
from medrecon.priors.data import SliceVolume, save_slice_cache
from medrecon.priors.train import TrainConfig, shard_indices, train_prior, weights_digest


def _volume(name: str, seed: int, n: int = 3, size: int = 40) -> SliceVolume:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    disc = (xx ** 2 + yy ** 2 < 0.16).astype(np.float32)
    slices = np.stack([disc * (1 + 0.2 * rng.random()) for _ in range(n)]).astype(np.float32)
    return SliceVolume(name, slices, 1.2, [{"file": name, "sha256": "0" * 64, "licence": "test"}])


def _steps(path):
    with open(path, newline="") as f:
        return [int(r[0]) for r in list(csv.reader(f))[1:]]


@pytest.mark.slow
def test_torchrun_two_gloo_ranks_train_identical_weights(tmp_path):
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    save_slice_cache([_volume(f"t{i}", i) for i in range(3)], tmp_path / "train.npz", "mri")
    save_slice_cache([_volume(f"h{i}", 10 + i) for i in range(2)], tmp_path / "held.npz", "mri")
    out = tmp_path / "bundle"
    cmd = ["torchrun", "--standalone", "--nproc_per_node=2", "-m", "medrecon", "train-prior", "--modality", "mri",
           "--data", str(tmp_path / "train.npz"), "--heldout", str(tmp_path / "held.npz"), "--out", str(out),
           "--size", "32", "--steps", "4", "--batch-size", "2", "--device", "cpu", "--checkpoint-every", "2",
           "--weights-dtype", "float32", "--network", json.dumps(TINY_NET)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=SUB_ENV, cwd=REPO, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    tr = json.loads((out / "configs" / "metadata.json").read_text())["training"]
    assert tr["world_size"] == 2 and tr["backend"] == "gloo" and tr["steps"] == 4
    assert tr["global_batch_size"] == 4 and tr["effective_lr"] == pytest.approx(2e-4 * 2 ** 0.5)
    # Each rank hashed its own weights: identical on both ranks, and equal to what rank 0 shipped.
    assert len(tr["rank_weights_sha256"]) == 2 and len(set(tr["rank_weights_sha256"])) == 1
    assert len(set(tr["rank_ema_sha256"])) == 1
    assert weights_digest(load_bundle(out).net) == tr["rank_ema_sha256"][1]
    # Rank 0 alone wrote the logs and checkpoint (one row per logged step, not one per rank).
    assert _steps(out / "training" / "loss.csv") == [4]
    assert _steps(out / "training" / "val.csv") == [2, 4]
    assert tr["validation_volumes"] == 2 and tr["validation_loss"] > 0
    assert torch.load(out / "training" / "checkpoint.pt", weights_only=True)["step"] == 4


def test_a_torchrun_restart_resumes_from_the_checkpoint(tmp_path, monkeypatch):
    """torchrun --max-restarts reruns the same command; TORCHELASTIC_RESTART_COUNT > 0 must mean resume."""
    vols = [_volume("a", 0), _volume("b", 1)]
    cfg = TrainConfig(modality="mri", data=[], out=str(tmp_path / "p"), size=32, steps=2, batch_size=2, warmup=1,
                      device="cpu", checkpoint_every=1, network=TINY_NET, n_samples=1, sample_steps=10, progress=False,
                      weights_dtype="float32")
    torch.set_num_threads(1)
    train_prior(cfg, volumes=vols)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    cfg.steps = 3  # the same command line, restarted: resume is implied
    train_prior(cfg, volumes=vols)
    assert _steps(tmp_path / "p" / "training" / "loss.csv") == [2, 3]
    assert torch.load(tmp_path / "p" / "training" / "checkpoint.pt", weights_only=True)["step"] == 3


def test_validation_volumes_are_split_without_duplicates():
    for n in range(0, 9):
        for world in (1, 2, 3, 4):
            parts = [shard_indices(n, r, world) for r in range(world)]
            flat = sorted(i for p in parts for i in p)
            assert flat == list(range(n))  # every held-out volume evaluated exactly once
