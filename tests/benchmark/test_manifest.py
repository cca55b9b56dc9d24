"""Suite manifests: the shipped ones are valid and use held-out data only; bad ones fail in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medrecon.benchmark import load_suite, suite_names
from medrecon.cli import main as cli_main
from medrecon.errors import InputError

REPO = Path(__file__).resolve().parents[2]


def test_every_issue_suite_is_shipped_and_valid():
    assert {"smoke", "mri-4x", "mri-8x", "ct-60", "ct-120", "fastmri"} <= set(suite_names())
    for name in suite_names():
        suite = load_suite(name)
        assert suite.name == name
        for ds in suite.datasets:
            expected = ({"zero-filled", "sense", "cs-wavelet", "cs-tv", "dps", "fast"} if ds.modality == "mri"
                        else {"fbp", "cs-tv", "dps", "fast"})
            if name.startswith("robust"):  # issue 24 names zero-filled/FBP, CS, TV, fast and DPS (no SENSE)
                expected = expected - {"sense"}
            # issue 18: every sampler, CPU and GPU suites; ct-fan-60 (issue 21) runs ct-60's methods
            if name.split("-gpu")[0] in ("mri-4x", "mri-8x", "ct-60", "ct-fan-60", "mri-radial"):
                expected = expected | {"langevin", "daps"}
            if name == "mri-radial":  # issue 20: golden-angle radial, every method
                assert ds.acquisition["trajectory"] == "golden-radial" and ds.acquisition["spokes"] in (64, 32)
            if name == "ct-fan-60":  # issue 21's clinical fan beam: ct-60's data, methods and settings, fan geometry
                assert ds.acquisition["geometry"] == "fan" and ds.acquisition["scanner"]
            if name == "ct-lowdose":  # issue 21: FBP, (PWLS-)TV and the samplers, each data term its own dataset
                term = ds.name.rsplit("-", 1)[1]
                expected = {"fast", "langevin"} if term == "poisson" else {"fbp", "cs-tv", "fast", "langevin"}
                assert {ds.methods[m].get("data_term") for m in expected - {"fbp"}} == {term}
            if "-vol-" in name:  # issue 19: slice-by-slice vs volume mode of the samplers and (3-D) TV
                # the MRI slabs also run the Langevin sampler both ways (about 20 s per slice on the CPU)
                samplers = {"fast", "langevin"} if ds.modality == "mri" else {"fast"}
                expected = ({"zero-filled", "cs-wavelet", "cs-tv"} if ds.modality == "mri" else {"fbp", "cs-tv"}) \
                    | samplers
                assert set(ds.volume_methods) == {"cs-tv"} | samplers
                assert len(ds.split["test"]) >= 14 and ds.split["test"] == list(range(ds.split["test"][0],
                                                                                     ds.split["test"][-1] + 1))
            assert set(ds.methods) - {"bart-pics"} == expected, (name, ds.name)  # bart-pics: optional extra
            assert ds.file.licence


def test_smoke_has_one_mri_and_one_ct_test_slice_with_reduced_steps():
    suite = load_suite("smoke")
    assert sorted(d.modality for d in suite.datasets) == ["ct", "mri"]
    for ds in suite.datasets:
        assert len(ds.split["test"]) == 1
        assert ds.methods["dps"]["steps"] <= 20 and ds.methods["fast"]["steps"] <= 20


def _heldout_and_training(modality: str) -> tuple[set, set]:
    meta = json.loads((REPO / "medrecon" / "weights" / ("mri-brain" if modality == "mri" else "ct-body") / "configs"
                       / "metadata.json").read_text())
    return {d["file"] for d in meta["training"]["heldout"]}, {d["file"] for d in meta["training"]["data"]}


def test_shared_data_suites_use_only_volumes_held_out_of_prior_training():
    shared = json.loads((REPO / "data_manifests" / "shared_data.json").read_text())
    digests = {f["path"]: f["sha256"] for f in shared["files"]}
    for name in suite_names():
        suite = load_suite(name)
        if suite.data_root != "shared":
            continue
        for ds in suite.datasets:
            heldout, training = _heldout_and_training(ds.modality)
            base = Path(ds.file.path).name
            assert base not in training, (name, ds.file.path)
            # real k-space (robust-bart) was never a training or validation volume; every simulated source is
            # the prior's own held-out volume
            assert base in heldout or ds.source == "kspace", (name, ds.file.path)
            assert ds.file.sha256 == digests[ds.file.path], "suite and shared_data.json disagree"
            test, tuning = ds.split["test"], ds.split["tuning"]
            if name.startswith("robust"):  # one test slice per variant, settings from the other suites' tuning
                assert len(test) == 1 and not tuning
                continue
            assert len(test) >= 4 and len(tuning) >= 2
            assert all(abs(a - b) > 1 for a in test for b in tuning)


def test_smoke_files_match_the_sample_manifest():
    samples = json.loads((REPO / "data_manifests" / "samples.json").read_text())
    digests = {Path(f["path"]).name: f["sha256"] for f in samples["files"]}
    for ds in load_suite("smoke").datasets:
        assert digests[ds.file.path] == ds.file.sha256


@pytest.fixture
def broken(suite_json):
    """``broken(mutate)``: the smoke manifest with one change."""

    def _make(mutate) -> dict:
        doc = suite_json("smoke")
        mutate(doc)
        return doc

    return _make


BAD = [
    ("format", lambda d: d.update(format="something-else"), "format"),
    ("no datasets", lambda d: d.update(datasets=[]), "datasets"),
    ("unknown method", lambda d: d["datasets"][0]["methods"].update({"unet": {}}), "'unet'"),
    ("fbp on MRI", lambda d: d["datasets"][0]["methods"].update({"fbp": {}}), "does not apply to MRI"),
    ("unknown setting", lambda d: d["datasets"][0]["methods"]["dps"].update(stepz=3), "stepz"),
    ("negative setting", lambda d: d["datasets"][0]["methods"]["dps"].update(steps=-3), "positive"),
    ("adjacent split", lambda d: d["datasets"][1]["file"].update(source_slices=[6, 7]), "adjacent"),
    ("same slice", lambda d: d["datasets"][0]["split"].update(tuning=[0]), "adjacent"),
    ("missing sha", lambda d: d["datasets"][0]["file"].pop("sha256"), "sha256"),
    ("short sha", lambda d: d["datasets"][0]["file"].update(sha256="abc"), "64"),
    ("bad mask", lambda d: d["datasets"][0]["acquisition"].update(mask="spiral"), "mask"),
    ("bad geometry", lambda d: d["datasets"][1]["acquisition"].update(geometry="cone"), "geometry"),
    ("stray acquisition key", lambda d: d["datasets"][1]["acquisition"].update(kvp=120), "kvp"),
    ("grid of unlisted method", lambda d: d["datasets"][1]["tuning_grid"].update({"sense": {"iters": [1]}}), "sense"),
    ("negative eta in a grid", lambda d: d["datasets"][0].update(tuning_grid={"fast": {"eta": [0.0, -0.5]}}),
     "tuning_grid.fast.eta"),
    ("zero steps in a grid", lambda d: d["datasets"][0].update(tuning_grid={"fast": {"steps": [0, 50]}}),
     "tuning_grid.fast.steps"),
    ("empty slice list", lambda d: d["datasets"][0]["split"].update(test=[]), "split.test"),
    ("duplicate dataset", lambda d: d["datasets"].append(d["datasets"][0]), "used twice"),
    ("modality", lambda d: d["datasets"][0].update(modality="pet"), "modality"),
    ("data term on MRI", lambda d: d["datasets"][0]["methods"]["fast"].update(data_term="pwls"), "CT only"),
    ("unknown data term", lambda d: d["datasets"][1]["methods"]["fast"].update(data_term="gaussian"), "'pwls'"),
    ("poisson for TV", lambda d: d["datasets"][1]["methods"]["cs-tv"].update(data_term="poisson"), "fast"),
]


@pytest.mark.parametrize("label,mutate,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_manifest_is_one_input_error(label, mutate, needle, write_manifest, broken):
    path = write_manifest(broken(mutate))
    with pytest.raises(InputError) as exc:
        load_suite(path)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("suite smoke:") and needle in msg


def test_a_grid_may_tune_eta_down_to_deterministic_ddim(write_manifest, broken):
    """eta = 0 (deterministic DDIM) is a valid fast-sampler setting, in a grid as in the methods block."""
    suite = load_suite(write_manifest(broken(lambda d: d["datasets"][0].update(
        tuning_grid={"fast": {"eta": [0.0, 0.5], "samples": [1, 2]}}))))
    assert suite.datasets[0].tuning_grid == {"fast": {"eta": [0.0, 0.5], "samples": [1, 2]}}


def test_bad_manifest_through_the_cli_is_one_line(write_manifest, broken, tmp_path, capfd):
    path = write_manifest(broken(lambda d: d["datasets"][0]["methods"].update({"unet": {}})))
    code = cli_main(["benchmark", "--suite", str(path), "--device", "cpu", "--out", str(tmp_path / "o")])
    _, err = capfd.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("medrecon: error: suite smoke:") and "Traceback" not in err
    assert not (tmp_path / "o" / "results.json").exists()


def test_invalid_json_and_unknown_suite(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid json"):
        load_suite(bad)
    with pytest.raises(InputError, match="unknown suite 'nope'; choose from .*smoke"):
        load_suite("nope")
    with pytest.raises(InputError, match="does not exist"):
        load_suite(tmp_path / "missing.json")


def test_yaml_manifests_are_read_with_safe_load(tmp_path, suite_json):
    yaml = pytest.importorskip("yaml")
    doc = suite_json("smoke")
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert [d.name for d in load_suite(path).datasets] == ["smoke-mri", "smoke-ct"]


def test_robust_suites_cover_the_issue_variants():
    """Full FOV at 256 and 320, both fastMRI mask kinds at 4x and 8x, 8 and 16 coils, noise none to high,
    real in-vivo k-space, CT at 512x512: one held-out test slice each."""
    ds = load_suite("robust").datasets + load_suite("robust-bart").datasets
    mri = [d for d in ds if d.modality == "mri" and d.source == "volume"]
    assert {tuple(d.image_size) for d in mri} == {(256, 256), (320, 320)}
    assert {(d.acquisition["mask"], d.acquisition["accel"]) for d in mri} >= {
        ("random", 4), ("random", 8), ("equispaced_fraction", 4), ("equispaced_fraction", 8)}
    assert {d.acquisition["coils"] for d in mri} == {8, 16}
    assert {d.acquisition["noise_std"] for d in mri} >= {0.0, 0.002, 0.01}
    assert any(d.source == "kspace" for d in ds)
    assert any(d.modality == "ct" and tuple(d.image_size) == (512, 512) for d in ds)
    assert all(len(d.split["test"]) == 1 for d in ds)


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d["acquisition"].update(keep=0), "keep"),
    (lambda d: d["kspace"].update(data="../ksp"), "kspace.data"),
    (lambda d: d.pop("kspace"), "kspace"),
    (lambda d: d["acquisition"].update(mask="random"), "unknown key"),
])
def test_bad_kspace_dataset_is_one_input_error(mutate, needle, tmp_path):
    raw = json.loads((REPO / "medrecon" / "data" / "suites" / "robust-bart.json").read_text())
    mutate(raw["datasets"][0])
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(raw))
    with pytest.raises(InputError, match=needle):
        load_suite(p)
