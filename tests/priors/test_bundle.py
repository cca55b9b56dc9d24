"""Prior bundles: save/load round trips, sha256 verification, bad metadata, the registry and `priors list`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from medrecon.errors import PriorError
from medrecon.priors import (
    DiffusionPrior,
    list_priors,
    load_bundle,
    load_prior,
    read_metadata,
    resolve_prior,
    save_bundle,
)
from medrecon.priors.bundle import BUNDLE_FORMAT, METADATA, WEIGHTS, sha256_file
from medrecon.priors.registry import SHIPPED_DIR

TINY = {"channels": [16, 32, 32, 32], "norm_num_groups": 8, "num_head_channels": 32}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this module runs with one torch thread (see tests/conftest.py)."""


@pytest.fixture(scope="module")
def tiny_ct():
    torch.manual_seed(0)
    prior = DiffusionPrior("ct", TINY, name="tiny-ct")
    with torch.no_grad():  # make sure no weight is exactly representable in fp16 by accident
        for p in prior.net.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    return prior


@pytest.fixture
def bundle(tmp_path, tiny_ct):
    return save_bundle(tiny_ct, tmp_path / "tiny-ct", training={"steps": 3, "device": "cpu"})


def test_round_trip_float32_is_bit_exact(bundle, tiny_ct):
    loaded = load_bundle(bundle)
    sd0, sd1 = tiny_ct.net.state_dict(), loaded.net.state_dict()
    assert sd0.keys() == sd1.keys()
    for k in sd0:
        assert sd1[k].dtype == sd0[k].dtype and torch.equal(sd0[k], sd1[k]), k
    assert loaded.modality == "ct" and loaded.name == "tiny-ct" and not loaded.training
    assert loaded.metadata["weights"]["sha256"] == sha256_file(bundle / WEIGHTS)
    assert loaded.metadata["params"] == sum(v.numel() for v in sd0.values())
    assert loaded.metadata["training"] == {"steps": 3, "device": "cpu"}
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    from medrecon.priors.prior import use_channels_last

    use_channels_last(tiny_ct.net)  # a CPU load stores the weights channels_last (issue 22): same layout, same bits
    with torch.no_grad():
        assert torch.equal(tiny_ct.eval().eps(x, 10), loaded.eps(x, 10))


def test_float16_storage_round_trips_to_fp16_cast_weights(tmp_path, tiny_ct):
    out = save_bundle(tiny_ct, tmp_path / "half", weights_dtype="float16")
    meta = read_metadata(out)
    assert meta["weights"]["dtype"] == "float16"
    loaded = load_bundle(out)
    changed = False
    for k, v in tiny_ct.net.state_dict().items():
        got = loaded.net.state_dict()[k]
        assert got.dtype == torch.float32
        assert torch.equal(got, v.half().float()), k
        changed |= not torch.equal(got, v)
    assert changed  # the fp16 cast really rounded something
    assert (out / WEIGHTS).stat().st_size < 0.6 * (save_bundle(tiny_ct, tmp_path / "full") / WEIGHTS).stat().st_size


def test_tampered_weights_are_refused(bundle):
    w = bundle / WEIGHTS
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0x01
    w.write_bytes(bytes(data))
    with pytest.raises(PriorError, match="sha256"):
        load_bundle(bundle)


def test_missing_weights_file_is_refused(bundle):
    (bundle / WEIGHTS).unlink()
    with pytest.raises(PriorError, match="missing"):
        load_bundle(bundle)


def test_missing_metadata_is_refused(bundle):
    (bundle / METADATA).unlink()
    with pytest.raises(PriorError, match="not a prior bundle"):
        load_bundle(bundle)
    with pytest.raises(PriorError):
        load_bundle(bundle.parent / "does-not-exist")


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2, 3]", "null"])
def test_garbage_metadata_is_refused(bundle, text):
    (bundle / METADATA).write_text(text)
    with pytest.raises(PriorError):
        load_bundle(bundle)


@pytest.mark.parametrize("change", [{"format": "medrecon-prior/999"}, {"format": None}, {"modality": None}])
def test_wrong_format_or_missing_field_is_refused(bundle, change):
    meta = json.loads((bundle / METADATA).read_text())
    for k, v in change.items():
        if v is None:
            meta.pop(k)
        else:
            meta[k] = v
    (bundle / METADATA).write_text(json.dumps(meta))
    with pytest.raises(PriorError):
        load_bundle(bundle)


def test_weights_that_do_not_fit_the_declared_network_are_refused(bundle):
    meta = json.loads((bundle / METADATA).read_text())
    meta["network"]["channels"] = [16, 32, 32, 64]
    (bundle / METADATA).write_text(json.dumps(meta))
    with pytest.raises(PriorError, match="does not load"):
        load_bundle(bundle)


def test_save_leaves_no_temporary_files(bundle):
    names = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())
    assert names == ["configs/metadata.json", "models/model.safetensors"]
    assert read_metadata(bundle)["format"] == BUNDLE_FORMAT


# ----------------------------------------------------------------------------- shipped priors and registry
@pytest.mark.parametrize("modality,name", [("mri", "mri-brain"), ("ct", "ct-body")])
def test_shipped_priors_load_by_default_name(modality, name):
    prior = load_prior(None, modality)
    assert prior.name == name and prior.modality == modality
    assert prior.channels == (2 if modality == "mri" else 1)
    assert prior.bundle_dir == SHIPPED_DIR / name
    assert prior.metadata["weights"]["sha256"] == sha256_file(SHIPPED_DIR / name / WEIGHTS)
    assert resolve_prior(name, modality) == SHIPPED_DIR / name


def test_wrong_modality_prior_is_refused():
    with pytest.raises(PriorError, match="MRI prior"):
        resolve_prior("mri-brain", "ct")
    with pytest.raises(PriorError, match="CT prior"):
        load_prior("ct-body", "mri")


def test_unknown_prior_name_is_refused():
    with pytest.raises(PriorError, match="no prior named"):
        resolve_prior("no-such-prior", "mri")


REPO = Path(__file__).resolve().parents[2]


def _cli_env(**extra):
    """The console script, running this checkout's code (another checkout may be pip-installed)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path, **extra)


def _priors_list_json(env):
    proc = subprocess.run(["medrecon", "priors", "list", "--json"], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_priors_list_json_shows_shipped_and_user_priors(tmp_path, tiny_ct):
    user = tmp_path / "user-priors"
    save_bundle(tiny_ct, user / "tiny-ct", training={"data": [{"file": "x.nii.gz"}], "steps": 3, "device": "cpu",
                                                     "minutes": 0.1})
    (user / "not-a-bundle").mkdir()
    rows = {r["name"]: r for r in _priors_list_json(_cli_env(MEDRECON_PRIORS=str(user)))}
    assert {"mri-brain", "ct-body", "tiny-ct"} <= set(rows)
    for name, modality in (("mri-brain", "mri"), ("ct-body", "ct")):
        r = rows[name]
        assert r["modality"] == modality and r["origin"] == "shipped"
        assert r["path"] == str(SHIPPED_DIR / name)
        assert r["weights"] == str(SHIPPED_DIR / name / WEIGHTS)
        assert r["sha256"] == sha256_file(SHIPPED_DIR / name / WEIGHTS)
        assert isinstance(r["params"], int) and r["params"] > 1_000_000
        tr = r["training"]
        assert tr["data"] and all({"file", "sha256", "licence"} <= set(d) for d in tr["data"])
        assert isinstance(tr["steps"], int) and tr["steps"] > 0
        assert tr["device"] and isinstance(tr["minutes"], (int, float))
    u = rows["tiny-ct"]
    assert u["origin"] == "user" and u["modality"] == "ct" and u["path"] == str(user / "tiny-ct")
    assert u["training"] == {"data": [{"file": "x.nii.gz"}], "steps": 3, "device": "cpu", "minutes": 0.1}


def test_medrecon_priors_env_folder_is_listed_and_resolved(tmp_path, tiny_ct, monkeypatch):
    user = tmp_path / "mine"
    save_bundle(tiny_ct, user / "tiny-ct")
    monkeypatch.setenv("MEDRECON_PRIORS", str(user))
    rows = {r["name"]: r for r in list_priors()}
    assert rows["tiny-ct"]["origin"] == "user"
    assert [r["origin"] for r in list_priors()][:2] == ["shipped", "shipped"]
    assert resolve_prior("tiny-ct", "ct") == user / "tiny-ct"
    assert load_prior("tiny-ct", "ct").name == "tiny-ct"
    # A bundle folder path works directly, whatever the registry holds.
    monkeypatch.setenv("MEDRECON_PRIORS", str(tmp_path / "empty"))
    assert "tiny-ct" not in {r["name"] for r in list_priors()}
    assert resolve_prior(str(user / "tiny-ct"), "ct") == user / "tiny-ct"
